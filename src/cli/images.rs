//! `taskbox images build [base|developer|all]`, with build progress on stderr.

use clap::{Subcommand, ValueEnum};

use crate::runtime::images::{self, BUILTIN_IMAGES};
use crate::runtime::{ContainerRuntime, DockerRuntime};

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

pub async fn run(command: ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Build { which, force } = command;
    let runtime = DockerRuntime::new();
    runtime.ping().await?;
    let names: &[&str] = match which {
        Which::Base => &["taskbox-base"],
        Which::Developer => &["taskbox-developer"],
        Which::All => &["taskbox-base", "taskbox-developer"],
    };
    for def in BUILTIN_IMAGES.iter().filter(|d| names.contains(&d.name)) {
        let progress = |line: &str| eprintln!("{line}");
        if force {
            images::build(&runtime, def, &progress).await?;
        } else if !images::build_if_needed(&runtime, def, &progress).await? {
            eprintln!("{} is up to date (--force rebuilds it)", def.name);
            continue;
        }
        eprintln!("built {}", def.name);
    }
    Ok(())
}
