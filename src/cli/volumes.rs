//! `taskbox volumes ls|rm|prune`: the named volumes of this data directory (every owner's
//! package caches and tasks' own volumes), for the operator. The same `TaskService` calls as
//! everywhere; tables fit the terminal, `--json` for scripts. docs/cli.md.

// These commands print their answer on stdout for a person or a script; they never run in
// `serve`, whose stdout is the protocol's alone.
#![allow(clippy::print_stdout)]

use clap::Subcommand;

use crate::task::TaskService;
use crate::task::service::{VolumeEntry, VolumeRemoval};

#[derive(Debug, Subcommand)]
pub enum VolumesCommand {
    /// List the volumes: owner, kind (cache or named), name, the tasks that mount them.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove volumes by their Docker name (the VOLUME column of `ls`); one a task mounts is
    /// refused.
    Rm {
        #[arg(required = true)]
        volumes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove every volume no task mounts (archived tasks mount none).
    Prune {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(service: &TaskService, command: VolumesCommand) -> anyhow::Result<()> {
    match command {
        VolumesCommand::Ls { json } => {
            let volumes = service.list_volumes().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&volumes)?);
            } else {
                print_table(&volumes, super::tasks::width());
            }
        }
        VolumesCommand::Rm { volumes, json } => {
            let removals = service.remove_volumes(&volumes).await?;
            report(&removals, json, "removed")?;
            let failed = removals.iter().filter(|r| r.error.is_some()).count();
            anyhow::ensure!(failed == 0, "{failed} of {} volume(s) not removed", removals.len());
        }
        VolumesCommand::Prune { dry_run, json } => {
            let removals = service.prune_volumes(dry_run).await?;
            report(&removals, json, if dry_run { "would remove" } else { "removed" })?;
            if !json && removals.is_empty() {
                eprintln!("no volume to prune: every volume is mounted by a task");
            }
            let failed = removals.iter().filter(|r| r.error.is_some()).count();
            anyhow::ensure!(failed == 0, "{failed} volume(s) could not be removed");
        }
    }
    Ok(())
}

/// One line per volume on stdout (`--json`: the list), errors on stderr.
fn report(removals: &[VolumeRemoval], json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(removals)?);
        return Ok(());
    }
    for removal in removals {
        match &removal.error {
            Some(error) => eprintln!("kept {}: {error}", removal.volume),
            None => println!("{verb} {}", removal.volume),
        }
    }
    Ok(())
}

/// VOLUME, OWNER, KIND, NAME and CREATED whole; the tasks that mount it fill what is left of
/// the line.
fn print_table(volumes: &[VolumeEntry], width: usize) {
    if volumes.is_empty() {
        eprintln!("no volumes (caches are made when [caches] is on; tasks make theirs with `volumes`)");
        return;
    }
    let w = |title: &str, f: &dyn Fn(&VolumeEntry) -> usize| volumes.iter().map(f).max().unwrap_or(0).max(title.len());
    let volume_w = w("VOLUME", &|v| v.volume.len());
    let owner_w = w("OWNER", &|v| v.owner.len());
    let kind_w = w("KIND", &|v| v.kind.len());
    let name_w = w("NAME", &|v| v.name.len());
    let created_w = 19;
    let fixed = volume_w + owner_w + kind_w + name_w + created_w + 10;
    let used_w = width.saturating_sub(fixed).max(8);
    println!(
        "{:volume_w$}  {:owner_w$}  {:kind_w$}  {:name_w$}  {:created_w$}  USED BY",
        "VOLUME", "OWNER", "KIND", "NAME", "CREATED"
    );
    for v in volumes {
        let used = if v.used_by.is_empty() {
            "-".to_string()
        } else {
            v.used_by.join(",")
        };
        let used = if used.chars().count() > used_w {
            let kept: String = used.chars().take(used_w.saturating_sub(1)).collect();
            format!("{kept}…")
        } else {
            used
        };
        let created: String = v.created_at.replace('T', " ").chars().take(created_w).collect();
        println!(
            "{:volume_w$}  {:owner_w$}  {:kind_w$}  {:name_w$}  {created:created_w$}  {used}",
            v.volume, v.owner, v.kind, v.name
        );
    }
}
