//! Capture of one output stream of an execution, capped for the reply.
//!
//! The reply keeps the first and last `cap / 2` bytes of a stream and a marker saying how much
//! was cut and where the whole stream is. Small outputs stay in memory while the command runs
//! (the service writes them out at its end, for the dashboard); the moment a
//! stream passes the cap, everything so far (still whole in memory at that point) is written
//! to its log file and the rest streams there, so memory stays bounded whatever the command
//! prints. The log file itself stops growing at the spill limit (`execution.spill_limit_bytes`,
//! 256 MiB by default), so disk stays bounded too; the bytes past it are counted, and the cut
//! is said in the reply.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

pub struct StreamCapture {
    cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    log_path: PathBuf,
    log: Option<BufWriter<File>>,
    /// Set once the stream passed the cap; the spill is tried only then, never again.
    spilled: bool,
    log_error: Option<String>,
    /// Most bytes the log file keeps, and what it has kept.
    spill_limit: u64,
    logged: u64,
}

/// What a stream looks like in the reply.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedStream {
    pub text: String,
    pub bytes: u64,
    pub truncated: bool,
    /// The file holding the whole stream, when it was truncated.
    pub full_output: Option<PathBuf>,
    /// Bytes past the spill limit that the file does not hold either.
    pub not_kept: u64,
}

impl StreamCapture {
    pub fn new(cap: usize, log_path: PathBuf) -> Self {
        Self {
            cap: cap.max(2),
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            log_path,
            log: None,
            spilled: false,
            log_error: None,
            spill_limit: crate::config::DEFAULT_SPILL_LIMIT_BYTES,
            logged: 0,
        }
    }

    /// Caps the log file at `limit` bytes (at least the reply's own cap).
    pub fn with_spill_limit(mut self, limit: u64) -> Self {
        self.spill_limit = limit.max(self.cap as u64);
        self
    }

    /// Writes to the log what the spill limit still allows.
    fn log_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let room = self.spill_limit.saturating_sub(self.logged);
        let kept = &bytes[..bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        self.logged += kept.len() as u64;
        match &mut self.log {
            Some(log) => log.write_all(kept),
            None => Ok(()),
        }
    }

    pub fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if self.log.is_some() {
            if let Err(e) = self.log_write(chunk) {
                self.log_error.get_or_insert(e.to_string());
            }
        } else if self.total > self.cap as u64 && !self.spilled {
            self.spilled = true;
            self.spill(chunk);
        }
        let head_room = self.cap / 2 - self.head.len().min(self.cap / 2);
        let to_head = head_room.min(chunk.len());
        self.head.extend_from_slice(&chunk[..to_head]);
        chunk = &chunk[to_head..];
        let tail_cap = self.cap - self.cap / 2;
        if chunk.len() >= tail_cap {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - tail_cap..]);
        } else {
            let overflow = (self.tail.len() + chunk.len()).saturating_sub(tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(chunk);
        }
    }

    /// Counts `n` bytes of the stream that someone else (the supervisor, past its cap) saw but
    /// did not keep: the reply and the record say they existed and were not kept.
    pub fn count_not_kept(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if !self.spilled {
            // Everything so far is still in memory: the file gets it, and is then complete
            // up to the cut.
            self.spilled = true;
            self.spill(&[]);
        }
        self.total += n;
    }

    /// The last non-empty line the stream has printed (from the tail kept for the reply).
    pub fn last_line(&self) -> Option<String> {
        // Within the cap, head and tail are the whole stream; past it, the tail is its end.
        let mut bytes = match self.total > self.cap as u64 {
            true => Vec::with_capacity(self.tail.len()),
            false => self.head.clone(),
        };
        let (front, back) = self.tail.as_slices();
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        last_line_of(&bytes)
    }

    /// First overflow: the stream so far is exactly head + tail; write it and the new chunk.
    fn spill(&mut self, chunk: &[u8]) {
        // 0600: the output of a command can hold anything it printed.
        let opened = crate::store::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.log_path);
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                self.log_error = Some(e.to_string());
                return;
            }
        };
        self.log = Some(BufWriter::new(file));
        let head = std::mem::take(&mut self.head);
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let written = self
            .log_write(&head)
            .and_then(|_| self.log_write(&tail))
            .and_then(|_| self.log_write(chunk));
        self.head = head;
        if let Err(e) = written {
            self.log_error = Some(e.to_string());
        }
    }

    pub fn finish(mut self, stream_name: &str) -> CapturedStream {
        let truncated = self.total > self.cap as u64;
        if let Some(log) = &mut self.log
            && let Err(e) = log.flush().and_then(|_| log.get_ref().sync_data())
        {
            self.log_error.get_or_insert(e.to_string());
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        if !truncated {
            let mut all = self.head;
            all.extend_from_slice(&tail);
            return CapturedStream {
                text: String::from_utf8_lossy(&all).into_owned(),
                bytes: self.total,
                truncated: false,
                full_output: None,
                not_kept: 0,
            };
        }
        let cut = self.total - (self.head.len() + tail.len()) as u64;
        let not_kept = if self.log.is_some() {
            self.total - self.logged
        } else {
            0
        };
        let where_ = match &self.log_error {
            None if not_kept > 0 => format!(
                "the first {} bytes of {stream_name} in {}; the last {not_kept} bytes passed the spill limit and were not kept",
                self.logged,
                self.log_path.display()
            ),
            None => format!("full {stream_name} in {}", self.log_path.display()),
            Some(e) => format!("the full {stream_name} could not be saved: {e}"),
        };
        let text = format!(
            "{}\n[... taskbox: {cut} bytes of {stream_name} cut here ({} bytes in all); {where_} ...]\n{}",
            String::from_utf8_lossy(&self.head),
            self.total,
            String::from_utf8_lossy(&tail),
        );
        CapturedStream {
            text,
            bytes: self.total,
            truncated: true,
            full_output: self.log_error.is_none().then_some(self.log_path),
            not_kept,
        }
    }
}

/// The longest line `last_line_of` returns, in characters.
pub const LAST_LINE_MAX: usize = 500;

/// The last non-empty line of `bytes` (cut to `LAST_LINE_MAX` characters, control characters
/// dropped: it comes from a command in a container).
pub fn last_line_of(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(
        line.chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .take(LAST_LINE_MAX)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn capture(cap: usize, chunks: &[&[u8]]) -> (CapturedStream, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = StreamCapture::new(cap, dir.path().join("out.log"));
        for chunk in chunks {
            c.push(chunk);
        }
        (c.finish("stdout"), dir)
    }

    #[test]
    fn the_spill_file_stops_at_its_limit_and_the_cut_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut c = StreamCapture::new(10, path.clone()).with_spill_limit(25);
        for _ in 0..10 {
            c.push(b"0123456789");
        }
        let out = c.finish("stdout");
        assert_eq!(out.bytes, 100);
        assert_eq!(out.not_kept, 75);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789012345678901234");
        assert!(out.text.contains("the first 25 bytes of stdout in"), "{}", out.text);
        assert!(
            out.text.contains("the last 75 bytes passed the spill limit"),
            "{}",
            out.text
        );
    }

    #[test]
    fn output_within_the_cap_is_whole_and_not_written() {
        let (out, dir) = capture(10, &[b"hello", b"world"]);
        assert_eq!(
            out,
            CapturedStream {
                text: "helloworld".into(),
                bytes: 10,
                truncated: false,
                full_output: None,
                not_kept: 0
            }
        );
        assert!(!dir.path().join("out.log").exists());
    }

    #[test]
    fn long_output_keeps_head_and_tail_and_saves_everything() {
        let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let chunks: Vec<&[u8]> = data.chunks(7).collect();
        let (out, dir) = capture(100, &chunks);
        assert!(out.truncated);
        assert_eq!(out.bytes, 1000);
        let expected_head = String::from_utf8_lossy(&data[..50]);
        let expected_tail = String::from_utf8_lossy(&data[950..]);
        assert_eq!(
            out.text,
            format!(
                "{expected_head}\n[... taskbox: 900 bytes of stdout cut here (1000 bytes in all); full stdout in {} ...]\n{expected_tail}",
                dir.path().join("out.log").display()
            )
        );
        assert_eq!(out.full_output, Some(dir.path().join("out.log")));
        assert_eq!(std::fs::read(dir.path().join("out.log")).unwrap(), data);
    }

    #[test]
    fn one_huge_chunk_is_handled() {
        let data = vec![b'x'; 5000];
        let (out, dir) = capture(64, &[&data]);
        assert!(out.truncated);
        assert_eq!(std::fs::read(dir.path().join("out.log")).unwrap(), data);
        assert!(out.text.starts_with(&"x".repeat(32)));
        assert!(out.text.ends_with(&"x".repeat(32)));
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let (out, _dir) = capture(100, &[b"ok \xff\xfe done"]);
        assert_eq!(out.text, "ok \u{fffd}\u{fffd} done");
    }

    #[test]
    fn an_unwritable_log_is_reported_once_and_never_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("out.log");
        let mut c = StreamCapture::new(8, path.clone());
        c.push(b"0123456789");
        // The directory appears later: a retry would now write a log missing the middle.
        std::fs::create_dir(dir.path().join("missing-dir")).unwrap();
        c.push(b"abcdefghij");
        let out = c.finish("stdout");
        assert!(out.truncated);
        assert_eq!(out.full_output, None);
        assert!(out.text.contains("could not be saved"), "{}", out.text);
        assert!(!path.exists());
    }

    #[test]
    fn bytes_another_saw_but_did_not_keep_are_counted_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut c = StreamCapture::new(8, path.clone()).with_spill_limit(8);
        c.push(b"12345678");
        assert_eq!(c.last_line().as_deref(), Some("12345678"));
        c.count_not_kept(92);
        let out = c.finish("stdout");
        assert_eq!((out.bytes, out.not_kept, out.truncated), (100, 92, true));
        assert_eq!(std::fs::read(&path).unwrap(), b"12345678");
        assert!(
            out.text.contains("the last 92 bytes passed the spill limit"),
            "{}",
            out.text
        );
    }

    #[test]
    fn the_last_line_skips_blank_lines_and_control_characters() {
        assert_eq!(last_line_of(b"one\ntwo\x1b[0m\n\n  \n").as_deref(), Some("two[0m"));
        assert_eq!(last_line_of(b"Continue? [y/N] ").as_deref(), Some("Continue? [y/N] "));
        assert_eq!(last_line_of(b"\n\n"), None);
    }

    #[test]
    fn exactly_the_cap_is_not_truncated() {
        let (out, _dir) = capture(8, &[b"1234", b"5678"]);
        assert_eq!(out.text, "12345678");
        assert!(!out.truncated);
    }
}
