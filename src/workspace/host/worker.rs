//! The git work over a sync's pack and a diff, run by the server in a process of its own
//! (`taskbox git-worker <request>`). libgit2 reads packs through memory maps of up to 1 GiB
//! per window, and every page it touches counts in the resident set of the process that maps
//! it: a 4 GiB pack indexed in the server would make the server's RSS grow by the pack's size,
//! whatever the other limits. In a worker those pages belong to a process that ends with the
//! operation (docs/security.md, "Memory budget"). The request and reply are JSON.

use std::io::Write;
use std::path::PathBuf;

use git2::Oid;
use serde::{Deserialize, Serialize};

use super::{DiffLimits, FileDiff, diff, index_pack_file, verify_closure};
use crate::workspace::{Result, WorkspaceError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WorkerRequest {
    /// `index_pack_file` then `verify_closure`.
    IndexPack {
        repo: PathBuf,
        pack: PathBuf,
        max_objects: u32,
        head: String,
        known: Vec<String>,
    },
    /// A pack of `commit` and its tree (`pack_commit`), written to the file `pack`.
    PackCommit {
        repo: PathBuf,
        commit: String,
        pack: PathBuf,
    },
    /// `diff` with the default limits, the patch written to `patch` up to `patch_limit` bytes.
    Diff {
        repo: PathBuf,
        base: String,
        head: String,
        patch: PathBuf,
        patch_limit: u64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReply {
    pub files: Vec<FileDiff>,
    pub more_files: bool,
    /// The whole patch's size, and how much of it the file holds.
    pub patch_bytes: u64,
    pub patch_kept: u64,
}

fn oid(text: &str) -> Result<Oid> {
    Ok(Oid::from_str(text)?)
}

pub fn run(request: &WorkerRequest) -> Result<WorkerReply> {
    match request {
        WorkerRequest::IndexPack {
            repo,
            pack,
            max_objects,
            head,
            known,
        } => {
            index_pack_file(repo, pack, *max_objects)?;
            let known = known.iter().map(|k| oid(k)).collect::<Result<Vec<_>>>()?;
            verify_closure(repo, oid(head)?, &known)?;
            Ok(WorkerReply::default())
        }
        WorkerRequest::PackCommit { repo, commit, pack } => {
            super::packs::pack_commit_to(repo, oid(commit)?, pack)?;
            Ok(WorkerReply::default())
        }
        WorkerRequest::Diff {
            repo,
            base,
            head,
            patch,
            patch_limit,
        } => {
            let io = |source| WorkspaceError::Io {
                path: patch.clone(),
                source,
            };
            let file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(patch)
                    .map_err(io)?
            };
            let mut out = CappedFile {
                file: std::io::BufWriter::with_capacity(64 * 1024, file),
                limit: *patch_limit,
                kept: 0,
                total: 0,
            };
            let summary = diff(repo, oid(base)?, oid(head)?, DiffLimits::default(), &mut out)?;
            out.file.flush().map_err(io)?;
            Ok(WorkerReply {
                files: summary.files,
                more_files: summary.more_files,
                patch_bytes: out.total,
                patch_kept: out.kept,
            })
        }
    }
}

/// A file that keeps the first `limit` bytes written to it and counts the rest.
struct CappedFile {
    file: std::io::BufWriter<std::fs::File>,
    limit: u64,
    kept: u64,
    total: u64,
}

impl Write for CappedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.total += buf.len() as u64;
        let room = usize::try_from(self.limit - self.kept).unwrap_or(usize::MAX);
        let kept = &buf[..room.min(buf.len())];
        self.file.write_all(kept)?;
        self.kept += kept.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
