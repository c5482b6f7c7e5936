//! Reading which TCP ports listen in a container (list_ports, expose_port).

use super::{ContainerOp, Failed, Output, Stdout, sh};
use crate::runtime::ExecSpec;

/// The most of the socket tables read: about 3,000 sockets; a container with more gets the
/// first ones (the parser bounds what it reports anyway).
pub const SOCKETS_KEPT: usize = 512 * 1024;

/// Prints the container's `/proc/net/tcp` and `/proc/net/tcp6` (either may be missing: a
/// kernel without IPv6). The text is hostile: `task::ports::listening` parses it.
const SOCKETS_SCRIPT: &str = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; exit 0";

/// Reads the socket tables, as the task's user (they are readable by anyone).
pub struct ListeningSockets<'a> {
    pub user: Option<&'a str>,
}

impl ContainerOp for ListeningSockets<'_> {
    /// The tables' text (lossy UTF-8, cut at `SOCKETS_KEPT`).
    type Outcome = Result<String, Failed>;

    fn stdout(&self) -> Stdout {
        Stdout::Memory(SOCKETS_KEPT)
    }

    fn into_spec(self) -> ExecSpec {
        ExecSpec {
            cmd: sh(SOCKETS_SCRIPT, &["taskbox-ports"]),
            user: self.user.map(String::from),
            ..Default::default()
        }
    }

    fn outcome(output: Output) -> Self::Outcome {
        match output.code {
            // A cut table still lists its first sockets.
            Some(0) => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
            _ => Err(output.failed()),
        }
    }
}
