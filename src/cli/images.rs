//! `taskbox images build [base|developer|all] [--force]`, with build progress on stderr;
//! `taskbox images dockerfile base|developer` prints a Dockerfile compiled into the binary.

use std::io::Write;

use clap::{Subcommand, ValueEnum};

use super::progress::Bar;
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
    /// Print the Dockerfile this binary builds an image from (they are compiled in).
    Dockerfile {
        #[arg(value_enum)]
        which: One,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum One {
    Base,
    Developer,
}

pub fn print_dockerfile(which: One) -> anyhow::Result<()> {
    let name = match which {
        One::Base => "taskbox-base",
        One::Developer => "taskbox-developer",
    };
    let def = crate::runtime::images::builtin(name).ok_or_else(|| anyhow::anyhow!("no built-in image {name}"))?;
    std::io::stdout().write_all(def.dockerfile.as_bytes())?;
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    Base,
    Developer,
    All,
}

pub async fn run(service: &TaskService, command: ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Build { which, force } = command else {
        // Printed in `cli::run`, with no service.
        return Ok(());
    };
    let names: &[&str] = match which {
        Which::Base => &["taskbox-base"],
        Which::Developer => &["taskbox-developer"],
        Which::All => &["taskbox-base", "taskbox-developer"],
    };
    // On a terminal a bar shows the build's latest line; elsewhere each line is logged.
    let bar = Bar::new(format!("images build {}", names.join(" "))).log_stages();
    let progress = bar.progress();
    let report = |line: &str| progress(line);
    for (name, built) in bar.run(service.build_images(names, force, &report)).await? {
        if built {
            eprintln!("built {name}");
        } else {
            eprintln!("{name} is up to date (--force rebuilds it)");
        }
    }
    Ok(())
}
