//! `taskbox token create|list|revoke`: the bearer tokens `serve --http` accepts. A new token
//! is printed once, on stdout (nothing else goes there), so it can be captured by a script;
//! everything else goes to stderr.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;

use crate::domain::Owner;
use crate::task::TaskService;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for OWNER and print it on stdout. It is shown this once: only its hash is kept.
    Create {
        /// Whose tasks the token's sessions see and create ([a-z0-9][a-z0-9-]*, e.g. alice).
        #[arg(long)]
        owner: String,
        /// A note to tell tokens apart in `token list` (e.g. the machine it is for).
        #[arg(long)]
        label: Option<String>,
        /// Allow `--owner local`: the token then sees every task made over stdio (yours).
        #[arg(long)]
        allow_local: bool,
    },
    /// List tokens: id, owner, label, created, last used, revoked.
    List,
    /// Revoke a token by id (from `token list`); requests with it get 401 from then on.
    Revoke {
        /// The token's id (tok-…), not the token itself.
        id: String,
    },
}

pub fn run(service: &TaskService, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            owner,
            label,
            allow_local,
        } => {
            let owner = Owner::new(&owner)?;
            if owner.is_local() && !allow_local {
                anyhow::bail!(
                    "owner 'local' owns every task made over stdio; a token for it reaches all of them over HTTP.                      Pick another owner name, or pass --allow-local if that is what you want"
                );
            }
            let (record, token) = service.create_token(&owner, label.as_deref())?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{token}").context("cannot print the token")?;
            stdout.flush().context("cannot print the token")?;
            eprintln!(
                "taskbox: created token {} for owner {owner}; it is shown only this once. Clients send it as `Authorization: Bearer <token>`.",
                record.id
            );
        }
        TokenCommand::List => {
            let tokens = service.list_tokens()?;
            let mut stdout = std::io::stdout().lock();
            writeln!(
                stdout,
                "{:<31} {:<16} {:<20} {:<20} {:<20} label",
                "id", "owner", "created", "last used", "revoked"
            )?;
            let day = |t: Option<crate::domain::Timestamp>| {
                t.map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            };
            for t in tokens {
                writeln!(
                    stdout,
                    "{:<31} {:<16} {:<20} {:<20} {:<20} {}",
                    t.id,
                    t.owner.as_str(),
                    day(Some(t.created_at)),
                    day(t.last_used_at),
                    day(t.revoked_at),
                    t.label.as_deref().unwrap_or("-")
                )?;
            }
        }
        TokenCommand::Revoke { id } => {
            let record = service.revoke_token(&id)?;
            eprintln!("taskbox: revoked token {} of owner {}", record.id, record.owner);
        }
    }
    Ok(())
}
