//! The file tools' commands. Each resolves its path in the container (`CONFINE`) and refuses
//! anything outside /workspace before it reads, writes or lists; exit codes 90–95 say why.

use super::git::git_spec;
use super::{ContainerOp, Output, STDOUT_KEPT, Stdout};
use crate::domain::Tool;
use crate::runtime::ExecSpec;

/// Resolves `$1` and exits 90 unless it is /workspace or below it; the real operation follows.
const CONFINE: &str = r#"p=$(realpath -m -- "$1") || exit 90
case "$p" in /workspace|/workspace/*) ;; *) exit 90 ;; esac
"#;

const READ_SCRIPT: &str = r#"[ -e "$p" ] || exit 91
[ -d "$p" ] && exit 92
[ -f "$p" ] || exit 95
[ -r "$p" ] || exit 93
wc -c < "$p"
head -c "$2" -- "$p""#;

const WRITE_SCRIPT: &str = r#"[ -d "$p" ] && exit 92
[ -e "$p" ] && [ ! -f "$p" ] && exit 95
mkdir -p -- "$(dirname -- "$p")" || exit 93
cat > "$p" || exit 93"#;

const LIST_SCRIPT: &str = r#"[ -e "$p" ] || exit 91
[ -d "$p" ] || exit 94
cd "$p" || exit 93
if g rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  g -c core.quotePath=false ls-files --cached --others --exclude-standard -z
else
  find . -mindepth 1 \( -name .git -prune \) -o -type f -printf '%P\0'
fi"#;

/// One file operation; `FileCommand` runs it as a user.
pub trait FileOp {
    /// The `operation` the hooks see.
    const OPERATION: &'static str;
    /// Runs after `CONFINE`, with the resolved path in `$p`.
    const SCRIPT: &'static str;
    type Outcome;
    /// The most of the script's stdout that is read into memory (the rest is dropped).
    const STDOUT_LIMIT: usize = STDOUT_KEPT;
    /// The path as the agent gave it (relative ones are relative to /workspace).
    fn path(&self) -> &str;
    /// The script's arguments after the path (`$2`…).
    fn args(&self) -> Vec<String> {
        Vec::new()
    }
    fn into_stdin(self) -> Option<Vec<u8>>
    where
        Self: Sized,
    {
        None
    }
    /// What the script printed when it succeeded: at most `STDOUT_LIMIT` bytes, `cut` when
    /// it printed more.
    fn parse(stdout: Vec<u8>, cut: bool) -> Self::Outcome;
}

/// Why a file operation was refused, from its script's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRefusal {
    /// 90: the path resolves (after `..` and symlinks) outside /workspace.
    OutsideWorkspace,
    /// 91
    NotFound,
    /// 92
    IsDirectory,
    /// 93: permissions.
    Unreadable,
    /// 94
    NotDirectory,
    /// 95: a pipe or a device, say.
    NotRegularFile,
    /// Any other exit: the operation itself failed.
    Failed,
}

impl FileRefusal {
    fn from_code(code: Option<i64>) -> Self {
        match code {
            Some(90) => Self::OutsideWorkspace,
            Some(91) => Self::NotFound,
            Some(92) => Self::IsDirectory,
            Some(93) => Self::Unreadable,
            Some(94) => Self::NotDirectory,
            Some(95) => Self::NotRegularFile,
            _ => Self::Failed,
        }
    }
}

/// A file operation as the user it runs as (the task's, known once the task is resolved).
pub struct FileCommand<'a, O> {
    pub op: O,
    pub user: Option<&'a str>,
}

impl<O: FileOp> ContainerOp for FileCommand<'_, O> {
    type Outcome = Result<O::Outcome, FileRefusal>;

    fn stdout(&self) -> Stdout {
        Stdout::Memory(O::STDOUT_LIMIT)
    }

    fn into_spec(self) -> ExecSpec {
        let path = self.op.path();
        let target = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/workspace/{path}")
        };
        let args = self.op.args();
        let mut argv = vec![target.as_str()];
        argv.extend(args.iter().map(String::as_str));
        let spec = git_spec(&format!("{CONFINE}{}", O::SCRIPT), "taskbox-file", &argv, self.user);
        ExecSpec {
            workdir: Some("/workspace".into()),
            stdin: self.op.into_stdin(),
            ..spec
        }
    }

    fn outcome(output: Output) -> Self::Outcome {
        match output.code {
            Some(0) => Ok(O::parse(output.stdout, output.stdout_cut)),
            code => Err(FileRefusal::from_code(code)),
        }
    }
}

pub struct ReadFile<'a> {
    pub path: &'a str,
}

impl ReadFile<'_> {
    /// The most of a file that is read.
    pub const LIMIT: usize = 1024 * 1024;
}

/// The start of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileBytes {
    /// Of the whole file.
    pub size: u64,
    /// At most `ReadFile::LIMIT` bytes.
    pub data: Vec<u8>,
    /// The file is longer than `data`.
    pub truncated: bool,
}

impl FileOp for ReadFile<'_> {
    const OPERATION: &'static str = Tool::ReadFile.as_str();
    const SCRIPT: &'static str = READ_SCRIPT;
    type Outcome = FileBytes;
    /// The size line, then one byte past the limit; `head -c` in the container is not
    /// trusted to stop there.
    const STDOUT_LIMIT: usize = Self::LIMIT + 1 + 32;

    fn path(&self) -> &str {
        self.path
    }

    /// One byte past the limit, to tell a file of exactly the limit from a longer one.
    fn args(&self) -> Vec<String> {
        vec![(Self::LIMIT + 1).to_string()]
    }

    /// The size on the first line, then the bytes.
    fn parse(mut stdout: Vec<u8>, _: bool) -> FileBytes {
        let newline = stdout.iter().position(|b| *b == b'\n').unwrap_or(stdout.len());
        let size = String::from_utf8_lossy(&stdout[..newline]).trim().parse().unwrap_or(0);
        stdout.drain(..(newline + 1).min(stdout.len()));
        let truncated = stdout.len() > Self::LIMIT;
        stdout.truncate(Self::LIMIT);
        FileBytes {
            size,
            data: stdout,
            truncated,
        }
    }
}

/// Writes `content` to the file, making its directories.
pub struct WriteFile<'a> {
    pub path: &'a str,
    pub content: &'a [u8],
}

impl FileOp for WriteFile<'_> {
    const OPERATION: &'static str = Tool::WriteFile.as_str();
    const SCRIPT: &'static str = WRITE_SCRIPT;
    type Outcome = ();

    fn path(&self) -> &str {
        self.path
    }

    fn into_stdin(self) -> Option<Vec<u8>> {
        Some(self.content.to_vec())
    }

    fn parse(_: Vec<u8>, _: bool) {}
}

/// The files under a directory: git-tracked and untracked with .gitignore honoured, or every
/// file outside a repository.
pub struct ListFiles<'a> {
    pub path: &'a str,
}

/// The listing as printed: NUL-separated paths, read up to `ListFiles::STDOUT_LIMIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    bytes: Vec<u8>,
    /// The listing went on past the limit.
    pub cut: bool,
}

impl Paths {
    /// The whole paths (a path the limit cut in two is left out), without copying them.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let whole = match self.cut {
            // Up to the last NUL: what follows it is the start of a path.
            true => &self.bytes[..self.bytes.iter().rposition(|b| *b == 0).unwrap_or(0)],
            false => &self.bytes[..],
        };
        whole.split(|b| *b == 0).filter(|p| !p.is_empty())
    }
}

impl FileOp for ListFiles<'_> {
    const OPERATION: &'static str = Tool::ListFiles.as_str();
    const SCRIPT: &'static str = LIST_SCRIPT;
    /// Paths relative to the directory.
    type Outcome = Paths;
    /// About 100 000 paths; the service folds them into at most 2000 entries as it goes.
    const STDOUT_LIMIT: usize = 4 << 20;

    fn path(&self) -> &str {
        self.path
    }

    fn parse(bytes: Vec<u8>, cut: bool) -> Paths {
        Paths { bytes, cut }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::output;
    use super::*;

    #[test]
    fn paths_are_confined_and_relative_ones_start_at_the_workspace() {
        let read = FileCommand {
            op: ReadFile { path: "src/a.rs" },
            user: Some("dev"),
        }
        .into_spec();
        assert!(read.cmd[2].ends_with(&format!("{CONFINE}{READ_SCRIPT}")));
        assert_eq!(read.cmd[3..], ["taskbox-file", "/workspace/src/a.rs", "1048577"]);
        assert_eq!(
            (read.user.as_deref(), read.workdir.as_deref(), read.stdin),
            (Some("dev"), Some("/workspace"), None)
        );
        let write = FileCommand {
            op: WriteFile {
                path: "/etc/passwd",
                content: b"x",
            },
            user: None,
        }
        .into_spec();
        assert!(write.cmd[2].ends_with(&format!("{CONFINE}{WRITE_SCRIPT}")));
        assert_eq!(write.cmd[3..], ["taskbox-file", "/etc/passwd"]);
        assert_eq!(write.stdin.as_deref(), Some(&b"x"[..]));
        let list = FileCommand {
            op: ListFiles { path: "" },
            user: None,
        }
        .into_spec();
        assert_eq!(list.cmd[3..], ["taskbox-file", "/workspace/"]);
    }

    #[test]
    fn exit_codes_say_why_a_path_was_refused() {
        let refusal = |code| FileCommand::<ListFiles>::outcome(output(code, b"", "")).unwrap_err();
        assert_eq!(refusal(90), FileRefusal::OutsideWorkspace);
        assert_eq!(refusal(91), FileRefusal::NotFound);
        assert_eq!(refusal(92), FileRefusal::IsDirectory);
        assert_eq!(refusal(93), FileRefusal::Unreadable);
        assert_eq!(refusal(94), FileRefusal::NotDirectory);
        assert_eq!(refusal(95), FileRefusal::NotRegularFile);
        assert_eq!(refusal(1), FileRefusal::Failed);
        let killed = Output::default();
        assert_eq!(FileCommand::<ListFiles>::outcome(killed), Err(FileRefusal::Failed));
    }

    #[test]
    fn a_read_is_the_size_then_at_most_the_limit() {
        let read = |stdout: &[u8]| FileCommand::<ReadFile>::outcome(output(0, stdout, "")).unwrap();
        assert_eq!(
            read(b"6\nhello\n"),
            FileBytes {
                size: 6,
                data: b"hello\n".to_vec(),
                truncated: false
            }
        );
        assert_eq!(read(b"0\n").data, b"");
        let mut long = b"2000000\n".to_vec();
        long.extend(vec![b'x'; ReadFile::LIMIT + 1]);
        let long = read(&long);
        assert_eq!(
            (long.size, long.data.len(), long.truncated),
            (2_000_000, ReadFile::LIMIT, true)
        );
    }

    #[test]
    fn a_listing_is_nul_separated_and_a_cut_path_is_left_out() {
        let listed = FileCommand::<ListFiles>::outcome(output(0, b"a.rs\0dir/b \xff.rs\0", "")).unwrap();
        assert_eq!(listed.iter().collect::<Vec<_>>(), [&b"a.rs"[..], b"dir/b \xff.rs"]);
        let cut = Output {
            stdout_cut: true,
            ..output(0, b"a.rs\0b.r", "")
        };
        let listed = FileCommand::<ListFiles>::outcome(cut).unwrap();
        assert!(listed.cut);
        assert_eq!(listed.iter().collect::<Vec<_>>(), [&b"a.rs"[..]]);
        let none = Output {
            stdout_cut: true,
            ..output(0, b"abc", "")
        };
        assert_eq!(FileCommand::<ListFiles>::outcome(none).unwrap().iter().count(), 0);
    }

    #[test]
    fn reads_and_listings_take_a_bounded_stdout() {
        let read = FileCommand {
            op: ReadFile { path: "a" },
            user: None,
        };
        assert_eq!(read.stdout(), Stdout::Memory(ReadFile::LIMIT + 33));
        let list = FileCommand {
            op: ListFiles { path: "" },
            user: None,
        };
        assert_eq!(list.stdout(), Stdout::Memory(4 << 20));
    }
}
