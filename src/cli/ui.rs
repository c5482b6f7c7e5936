//! `taskbox ui`: a one-time sign-in link to the web dashboard of `serve --http`, for the
//! local owner (whoever can run this command owns the data directory, and so every task made
//! over stdio). The link is printed on stdout, alone, so a script can open it; it works once,
//! for `LOGIN_TTL`, on a server that uses this data directory.

use std::io::Write;

use anyhow::Context;

use crate::domain::Owner;
use crate::task::TaskService;
use crate::task::service::LOGIN_TTL;

#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// The server's address as the browser reaches it (default: from http.listen, e.g.
    /// http://127.0.0.1:8765).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

pub fn run(service: &TaskService, listen: &str, args: &UiArgs) -> anyhow::Result<()> {
    let base = match &args.url {
        Some(url) => {
            let url = url.trim_end_matches('/');
            anyhow::ensure!(
                (url.starts_with("http://") || url.starts_with("https://")) && !url.contains(['#', '?', ' ']),
                "--url must be the server's base address, like http://127.0.0.1:8765, not '{url}'"
            );
            url.to_string()
        }
        None => format!("http://{}", browser_address(listen)),
    };
    let code = service.create_ui_login(&Owner::local(), None)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{base}/ui/login#code={code}").context("cannot print the link")?;
    stdout.flush().context("cannot print the link")?;
    eprintln!(
        "taskbox: open this link in a browser to see your tasks; it signs in once, within {} minutes, on a \
         `taskbox serve --http` that uses this data directory",
        LOGIN_TTL.num_minutes()
    );
    Ok(())
}

/// The address a browser on this machine uses for a listening address: a wildcard one
/// (0.0.0.0, [::]) is reached on the loopback address.
fn browser_address(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        return format!("127.0.0.1:{port}");
    }
    if let Some(port) = listen.strip_prefix("[::]:") {
        return format!("[::1]:{port}");
    }
    listen.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_become_loopback_ones() {
        assert_eq!(browser_address("0.0.0.0:8765"), "127.0.0.1:8765");
        assert_eq!(browser_address("[::]:80"), "[::1]:80");
        assert_eq!(browser_address("127.0.0.1:8765"), "127.0.0.1:8765");
    }
}
