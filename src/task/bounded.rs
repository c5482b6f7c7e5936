//! Bounded sinks for bytes that come out of a container, where nothing bounds them but us:
//! `Head` keeps the first bytes in memory and counts the rest, `FileSink` streams them to a
//! file and stops at a limit. Both decide while reading, chunk by chunk, so memory never
//! holds more than the limit plus one chunk (docs/security.md, "Memory budget").

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The first `limit` bytes of a stream, and how many it had.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Head {
    limit: usize,
    kept: Vec<u8>,
    total: u64,
}

impl Head {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            kept: Vec::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }

    /// Whether bytes were dropped.
    pub fn cut(&self) -> bool {
        self.total > self.kept.len() as u64
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.kept
    }
}

/// A new private (0600) file that takes at most `limit` bytes.
pub struct FileSink {
    path: PathBuf,
    file: BufWriter<File>,
    limit: u64,
    written: u64,
}

impl FileSink {
    pub fn create(path: &Path, limit: u64) -> std::io::Result<Self> {
        let file = crate::store::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(64 * 1024, file),
            limit,
            written: 0,
        })
    }

    /// Writes what the limit still allows; `Ok(false)` once the chunk did not fit (what did
    /// fit was written).
    pub fn push(&mut self, chunk: &[u8]) -> std::io::Result<bool> {
        let room = self.limit.saturating_sub(self.written);
        let fits = chunk.len() as u64 <= room;
        let kept = &chunk[..usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len())];
        self.file.write_all(kept)?;
        self.written += kept.len() as u64;
        Ok(fits)
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the file; returns its path and size.
    pub fn finish(mut self) -> std::io::Result<(PathBuf, u64)> {
        self.file.flush()?;
        Ok((self.path, self.written))
    }
}

/// Removes a file when dropped (a sync's pack, once indexed or refused).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_keeps_the_start_and_counts_the_rest() {
        let mut head = Head::new(5);
        for _ in 0..1000 {
            head.push(b"abc");
        }
        assert!(head.cut());
        assert_eq!(head.total(), 3000);
        assert_eq!(head.into_bytes(), b"abcab");
        let mut exact = Head::new(3);
        exact.push(b"abc");
        assert!(!exact.cut());
    }

    #[test]
    fn a_file_sink_stops_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        let mut sink = FileSink::create(&path, 10).unwrap();
        assert!(sink.push(b"0123456").unwrap());
        assert!(!sink.push(b"789abc").unwrap());
        assert_eq!(sink.written(), 10);
        let (path, size) = sink.finish().unwrap();
        assert_eq!((std::fs::read(&path).unwrap(), size), (b"0123456789".to_vec(), 10));
        drop(RemoveOnDrop(path.clone()));
        assert!(!path.exists());
    }
}
