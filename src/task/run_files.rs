//! The files a background execution's supervisor keeps in `tasks/<task>/run/<execution>/`
//! (mounted in the container at `/.taskbox/run/<execution>`), read and written from the host.
//!
//! Everything here is written by a process in the container, so it is hostile input: every
//! open is relative to the execution's directory, opened without following links, and
//! checks the file's type on the open descriptor (a link or a device swapped in is refused);
//! reads are bounded (`MAX_STATUS`, the caller's chunk size) and a status that does not parse
//! is reported as such, never trusted in part.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags, flock, fstat, openat};
use rustix::io::Errno;

/// A status file is a few hundred bytes; anything longer is not the supervisor's.
const MAX_STATUS: usize = 4096;
/// How much of the end of stdout `last_line` looks at.
const LAST_LINE_WINDOW: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn file(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// How the supervisor says the command ended (`status`, written once, atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorStatus {
    pub ended_by: EndedBy,
    /// The exit code, when the command exited; `None` when a signal ended it.
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub stdout_bytes: u64,
    pub stdout_kept: u64,
    pub stderr_bytes: u64,
    pub stderr_kept: u64,
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The command ended on its own.
    Exited,
    /// Its `timeout_s` passed.
    Timeout,
    /// A signal from kill_execution, or from taskbox ending the task's executions.
    Signal,
}

impl SupervisorStatus {
    /// The exit status the supervisor itself exits with, as Docker reports it: the
    /// command's exit code, or 128 + the signal that ended it.
    pub fn exit_status(&self) -> Option<i64> {
        self.exit_code.or(self.signal.map(|signal| 128 + signal))
    }

    /// Parses `key=value` lines; unknown keys are ignored (a newer supervisor may add some),
    /// missing or malformed ones are an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("a line without '=': {:.40}", line))?;
            fields.insert(key, value);
        }
        let number = |key: &str| -> Result<i64, String> {
            fields
                .get(key)
                .ok_or_else(|| format!("no {key}"))?
                .parse::<i64>()
                .map_err(|_| format!("{key} is not a number"))
        };
        let count = |key: &str| number(key).and_then(|n| u64::try_from(n).map_err(|_| format!("{key} is negative")));
        if number("version")? != 1 {
            return Err("an unknown version".into());
        }
        let ended_by = match fields.get("ended_by").copied() {
            Some("exited") => EndedBy::Exited,
            Some("timeout") => EndedBy::Timeout,
            Some("signal") => EndedBy::Signal,
            other => return Err(format!("ended_by is {other:?}")),
        };
        let (exit_code, signal) = match (fields.contains_key("exit_code"), fields.contains_key("signal")) {
            (true, false) => (Some(number("exit_code")?), None),
            (false, true) => (None, Some(number("signal")?)),
            _ => return Err("neither or both of exit_code and signal".into()),
        };
        Ok(Self {
            ended_by,
            exit_code,
            signal,
            stdout_bytes: count("stdout_bytes")?,
            stdout_kept: count("stdout_kept")?,
            stderr_bytes: count("stderr_bytes")?,
            stderr_kept: count("stderr_kept")?,
            started_unix_ms: number("started_unix_ms")?,
            finished_unix_ms: number("finished_unix_ms")?,
        })
    }
}

/// What the supervisor saw the tree do after a silence of `stall_s` (`activity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// Printing, or running.
    Active,
    /// A process of it blocks reading its standard input (or a terminal).
    WaitingForInput { what: String },
    /// Every process sleeps on something else; `what` names one and its wait channel.
    Stalled { what: String },
}

/// The longest `blocked_on` text kept.
const MAX_BLOCKED_ON: usize = 200;

impl Activity {
    /// Parses the supervisor's `activity` file (`key=value` lines). `what` comes from the
    /// container's process names: control characters are dropped and it is cut short.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=').ok_or("a line without '='")?;
            fields.insert(key, value);
        }
        if fields.get("version") != Some(&"1") {
            return Err("an unknown version".into());
        }
        let what: String = fields
            .get("blocked_on")
            .copied()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_BLOCKED_ON)
            .collect();
        match fields.get("state").copied() {
            Some("active") => Ok(Self::Active),
            Some("waiting_for_input") => Ok(Self::WaitingForInput { what }),
            Some("stalled") => Ok(Self::Stalled { what }),
            other => Err(format!("state is {other:?}")),
        }
    }
}

/// One background execution's directory on the host.
#[derive(Debug, Clone)]
pub struct RunFiles {
    dir: PathBuf,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl RunFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory (0700) for the supervisor, owned by the user the command runs as
    /// (`uid:gid`, when known as numbers), so that it can create its files there.
    pub fn create(&self, owner: Option<(u32, u32)>) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&self.dir)?;
        if let Some((uid, gid)) = owner {
            let fd = openat(rustix::fs::CWD, &self.dir, dir_flags(), Mode::empty())?;
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        Ok(())
    }

    fn open(&self, name: &str, flags: OFlags, kind: FileType) -> std::io::Result<OwnedFd> {
        let dir = openat(rustix::fs::CWD, &self.dir, dir_flags(), Mode::empty())?;
        let fd = openat(&dir, name, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        if FileType::from_raw_mode(fstat(&fd)?.st_mode) != kind {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("{name} is not a {kind:?}"),
            ));
        }
        Ok(fd)
    }

    /// Up to `max` bytes of a stream from `offset`, and the stream's size now. A stream not
    /// made yet reads as empty.
    pub fn read(&self, stream: Stream, offset: u64, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
        let fd = match self.open(stream.file(), OFlags::RDONLY | OFlags::NONBLOCK, FileType::RegularFile) {
            Ok(fd) => fd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        let file = File::from(fd);
        let size = file.metadata()?.len();
        let want = size.saturating_sub(offset).min(max as u64) as usize;
        let mut buf = vec![0; want];
        let mut got = 0;
        while got < want {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok((buf, size))
    }

    /// The last non-empty line the command printed (at most `output::LAST_LINE_MAX`
    /// characters, control characters dropped), of the stream that most likely holds a
    /// prompt, which may go to either (`read -p` prints to stderr, apt to stdout): stderr when
    /// it ends in a line without its newline (a prompt waits on the same line) and stdout
    /// does not, else stdout, else stderr.
    pub fn last_line(&self) -> Option<String> {
        let tail_of = |stream: Stream| -> Option<(String, bool)> {
            let (_, size) = self.read(stream, 0, 0).ok()?;
            let start = size.saturating_sub(LAST_LINE_WINDOW);
            let (tail, _) = self.read(stream, start, LAST_LINE_WINDOW as usize).ok()?;
            let line = crate::task::output::last_line_of(&tail)?;
            Some((line, !tail.ends_with(b"\n")))
        };
        let (out, err) = (tail_of(Stream::Stdout), tail_of(Stream::Stderr));
        let stderr_first = match (&out, &err) {
            (None, _) => true,
            (_, None) => false,
            (Some((_, out_open)), Some((_, err_open))) => *err_open && !out_open,
        };
        let (first, second) = if stderr_first { (err, out) } else { (out, err) };
        first.or(second).map(|(line, _)| line)
    }

    /// The supervisor's status file: `Ok(None)` while there is none.
    pub fn status(&self) -> Result<Option<SupervisorStatus>, String> {
        let fd = match self.open("status", OFlags::RDONLY | OFlags::NONBLOCK, FileType::RegularFile) {
            Ok(fd) => fd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the status file: {e}")),
        };
        let file = File::from(fd);
        let mut buf = vec![0; MAX_STATUS + 1];
        let n = file.read_at(&mut buf, 0).map_err(|e| e.to_string())?;
        if n > MAX_STATUS {
            return Err(format!("the status file is longer than {MAX_STATUS} bytes"));
        }
        let text = std::str::from_utf8(&buf[..n]).map_err(|_| "the status file is not text".to_string())?;
        SupervisorStatus::parse(text)
            .map(Some)
            .map_err(|e| format!("the status file is malformed: {e}"))
    }

    /// What the supervisor last saw the tree do after a silence; `Active` when it wrote
    /// nothing (yet) or what it wrote cannot be read.
    pub fn activity(&self) -> Activity {
        let Ok(fd) = self.open("activity", OFlags::RDONLY | OFlags::NONBLOCK, FileType::RegularFile) else {
            return Activity::Active;
        };
        let mut buf = vec![0; MAX_STATUS];
        let n = File::from(fd).read_at(&mut buf, 0).unwrap_or(0);
        std::str::from_utf8(&buf[..n])
            .map_err(|e| e.to_string())
            .and_then(Activity::parse)
            .unwrap_or(Activity::Active)
    }

    /// Whether the execution has the standard-input FIFO send_input writes to (a background
    /// one; a foreground one, yielded or not, has its call's input).
    pub fn has_input(&self) -> bool {
        self.open(
            "stdin",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::PATH,
            FileType::Fifo,
        )
        .is_ok()
    }

    /// Tells an attached supervisor that the server stopped waiting for it (the command was
    /// yielded to the background): it then makes its files and status durable at the end.
    pub fn mark_detached(&self) -> std::io::Result<()> {
        let dir = openat(rustix::fs::CWD, &self.dir, dir_flags(), Mode::empty())?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match openat(&dir, "detached", flags, Mode::from_raw_mode(0o600)) {
            Ok(_) => Ok(()),
            // Already there (a second yield cannot happen; the command may have made one).
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the supervisor is alive: it holds an exclusive lock on `lock` for as long as
    /// it runs. `None` when there is no lock file (it never started).
    pub fn supervisor_alive(&self) -> Option<bool> {
        let fd = self
            .open("lock", OFlags::RDONLY | OFlags::NONBLOCK, FileType::RegularFile)
            .ok()?;
        match flock(&fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => Some(false),
            Err(Errno::WOULDBLOCK) => Some(true),
            // Cannot tell: count it as alive rather than end a running execution's record.
            Err(_) => Some(true),
        }
    }

    /// Writes `bytes` to the command's standard input (the FIFO `stdin`), waiting up to
    /// `limit` while the pipe is full. Blocking: run it off the async runtime.
    pub fn write_input(&self, bytes: &[u8], limit: Duration) -> std::io::Result<()> {
        let fd = match self.open("stdin", OFlags::WRONLY | OFlags::NONBLOCK, FileType::Fifo) {
            Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => {
                return Err(std::io::Error::new(
                    ErrorKind::BrokenPipe,
                    "nothing reads the command's standard input any more",
                ));
            }
            other => other?,
        };
        let mut file = File::from(fd);
        let deadline = Instant::now() + limit;
        let mut rest = bytes;
        while !rest.is_empty() {
            match file.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(std::io::Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "the command did not read its input within {limit:?}; {} of {} bytes were written",
                            bytes.len() - rest.len(),
                            bytes.len()
                        ),
                    ));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Where a reader of an execution's output is: bytes of stdout and of stderr already
/// returned. Clients get it as an opaque string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub stdout: u64,
    pub stderr: u64,
}

impl Cursor {
    pub fn encode(self) -> String {
        format!("o{}e{}", self.stdout, self.stderr)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (out, err) = text.strip_prefix('o')?.split_once('e')?;
        Some(Self {
            stdout: out.parse().ok()?,
            stderr: err.parse().ok()?,
        })
    }
}

/// How many bytes of `chunk` to hand out now so that no UTF-8 character is split between two
/// replies: a sequence cut short at the end waits for the next read (unless the stream is
/// over, when it is all there will be).
pub fn whole_chars(chunk: &[u8], at_end: bool) -> usize {
    if at_end {
        return chunk.len();
    }
    let len = chunk.len();
    for back in 1..=3.min(len) {
        let byte = chunk[len - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let needed = match byte {
            b if b >= 0xF0 => 4,
            b if b >= 0xE0 => 3,
            b if b >= 0xC0 => 2,
            _ => 1,
        };
        return if needed > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "version=1\nended_by=exited\nexit_code=3\nstdout_bytes=36\nstdout_kept=20\n\
        stderr_bytes=4\nstderr_kept=4\nstarted_unix_ms=1\nfinished_unix_ms=2\n";

    #[test]
    fn a_status_parses_and_hostile_ones_are_refused() {
        let status = SupervisorStatus::parse(STATUS).unwrap();
        assert_eq!(status.ended_by, EndedBy::Exited);
        assert_eq!((status.exit_code, status.signal), (Some(3), None));
        assert_eq!((status.stdout_bytes, status.stdout_kept), (36, 20));
        let killed = STATUS.replace("exit_code=3", "signal=9").replace("exited", "signal");
        let killed = SupervisorStatus::parse(&killed).unwrap();
        assert_eq!((killed.ended_by, killed.signal), (EndedBy::Signal, Some(9)));
        for bad in [
            "",
            "garbage",
            &STATUS.replace("version=1", "version=2"),
            &STATUS.replace("exit_code=3", "exit_code=3\nsignal=9"),
            &STATUS.replace("stdout_bytes=36", "stdout_bytes=-1"),
            &STATUS.replace("ended_by=exited", "ended_by=magic"),
            &STATUS.replace("stderr_kept=4", "stderr_kept=lots"),
        ] {
            assert!(SupervisorStatus::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn activity_parses_and_its_text_is_tamed() {
        let waiting =
            "version=1\nstate=waiting_for_input\nsince_unix_ms=5\nblocked_on=sh (pid 7) reads its standard input\n";
        assert_eq!(
            Activity::parse(waiting),
            Ok(Activity::WaitingForInput {
                what: "sh (pid 7) reads its standard input".into()
            })
        );
        let hostile = format!("version=1\nstate=stalled\nblocked_on=\u{1b}[31m{}\n", "x".repeat(1000));
        let Ok(Activity::Stalled { what }) = Activity::parse(&hostile) else {
            panic!("not parsed");
        };
        assert!(what.starts_with("[31m") && what.len() == MAX_BLOCKED_ON, "{what}");
        assert_eq!(Activity::parse("version=1\nstate=active\n"), Ok(Activity::Active));
        for bad in [
            "",
            "version=2\nstate=active",
            "version=1\nstate=sleepy",
            "version=1\nnonsense",
        ] {
            assert!(Activity::parse(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let files = RunFiles::new(dir.path().to_path_buf());
        assert_eq!(files.activity(), Activity::Active);
        std::fs::write(dir.path().join("activity"), waiting).unwrap();
        assert!(matches!(files.activity(), Activity::WaitingForInput { .. }));
    }

    #[test]
    fn the_last_line_is_the_prompt_whichever_stream_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = RunFiles::new(dir.path().to_path_buf());
        assert_eq!(files.last_line(), None);
        std::fs::write(dir.path().join("stdout"), "preparing\n\n").unwrap();
        std::fs::write(dir.path().join("stderr"), "warning\n").unwrap();
        assert_eq!(files.last_line().as_deref(), Some("preparing"));
        // `read -p` prints its prompt to stderr, without a newline.
        std::fs::write(dir.path().join("stderr"), "Continue? [y/N] ").unwrap();
        assert_eq!(files.last_line().as_deref(), Some("Continue? [y/N] "));
        std::fs::write(dir.path().join("stdout"), "Do you want to continue? [Y/n] ").unwrap();
        assert_eq!(files.last_line().as_deref(), Some("Do you want to continue? [Y/n] "));
        std::fs::remove_file(dir.path().join("stdout")).unwrap();
        assert_eq!(files.last_line().as_deref(), Some("Continue? [y/N] "));
    }

    #[test]
    fn files_are_read_bounded_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let files = RunFiles::new(dir.path().join("e-1"));
        files.create(None).unwrap();
        assert_eq!(files.read(Stream::Stdout, 0, 10).unwrap(), (vec![], 0));
        assert_eq!(files.status(), Ok(None));
        assert_eq!(files.supervisor_alive(), None);
        std::fs::write(files.path().join("stdout"), "one\ntwo\n\n").unwrap();
        assert_eq!(files.read(Stream::Stdout, 2, 3).unwrap(), (b"e\nt".to_vec(), 9));
        assert_eq!(files.read(Stream::Stdout, 20, 3).unwrap(), (vec![], 9));
        assert_eq!(files.last_line().as_deref(), Some("two"));
        // A link to a file outside is refused, not followed.
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "secret").unwrap();
        std::os::unix::fs::symlink(&secret, files.path().join("stderr")).unwrap();
        assert!(files.read(Stream::Stderr, 0, 10).is_err());
        std::os::unix::fs::symlink(&secret, files.path().join("status")).unwrap();
        assert!(files.status().is_err());
        // A status too long to be the supervisor's.
        std::fs::remove_file(files.path().join("status")).unwrap();
        std::fs::write(files.path().join("status"), "x".repeat(MAX_STATUS + 1)).unwrap();
        assert!(files.status().unwrap_err().contains("longer"));
        // The lock: free means the supervisor is gone.
        std::fs::write(files.path().join("lock"), "").unwrap();
        assert_eq!(files.supervisor_alive(), Some(false));
        let held = File::open(files.path().join("lock")).unwrap();
        flock(&held, FlockOperation::LockExclusive).unwrap();
        assert_eq!(files.supervisor_alive(), Some(true));
        // Input goes only to a FIFO something reads.
        assert!(files.write_input(b"x", Duration::from_millis(10)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_chars_are_not_split() {
        let cursor = Cursor { stdout: 12, stderr: 3 };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "12", "o1", "oxe1", "o1e-1"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
        let text = "aé€😀".as_bytes();
        assert_eq!(whole_chars(text, false), text.len());
        assert_eq!(whole_chars(&text[..text.len() - 1], false), text.len() - 4);
        assert_eq!(whole_chars(&text[..2], false), 1);
        assert_eq!(whole_chars(&text[..2], true), 2);
        assert_eq!(whole_chars(b"", false), 0);
    }
}
