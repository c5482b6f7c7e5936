//! `taskbox images build [base|developer|all]`, with build progress on stderr.

use clap::{Subcommand, ValueEnum};

use crate::runtime::images::{self, BUILTIN_IMAGES};
use crate::runtime::{ContainerRuntime, DockerRuntime};

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build one or all task images (default: base).
    Build {
        #[arg(value_enum, default_value_t = Which::Base)]
        which: Which,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    Base,
    Developer,
    All,
}

pub async fn run(command: ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Build { which } = command;
    let runtime = DockerRuntime::new();
    runtime.ping().await?;
    let names: &[&str] = match which {
        Which::Base => &["taskbox-base"],
        Which::Developer => &["taskbox-developer"],
        Which::All => &["taskbox-base", "taskbox-developer"],
    };
    for def in BUILTIN_IMAGES.iter().filter(|d| names.contains(&d.name)) {
        images::build(&runtime, def, &|line: &str| eprintln!("{line}")).await?;
        eprintln!("built {}", def.name);
    }
    Ok(())
}
