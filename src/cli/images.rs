//! `taskbox images build [base|developer|all] [--force]`, with build progress on stderr.

use clap::{Subcommand, ValueEnum};

use crate::task::TaskService;

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build one or all task images (default: base). Images that are present and were built
    /// from this binary's Dockerfiles are kept unless --force.
    Build {
        #[arg(value_enum, default_value_t = Which::Base)]
        which: Which,
        /// Rebuild even when the image is current.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    Base,
    Developer,
    All,
}

pub async fn run(service: &TaskService, command: ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Build { which, force } = command;
    let names: &[&str] = match which {
        Which::Base => &["taskbox-base"],
        Which::Developer => &["taskbox-developer"],
        Which::All => &["taskbox-base", "taskbox-developer"],
    };
    let progress = |line: &str| eprintln!("{line}");
    for (name, built) in service.build_images(names, force, &progress).await? {
        if built {
            eprintln!("built {name}");
        } else {
            eprintln!("{name} is up to date (--force rebuilds it)");
        }
    }
    Ok(())
}
