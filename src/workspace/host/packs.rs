//! Objects coming into a host repository as packs, and going out of it: indexing a pack from
//! the container, checking the new commits are complete, packing a commit for a workspace.

use std::io::{Read, Write};
use std::path::Path;

use git2::Oid;

use super::open;
use crate::workspace::{Result, WorkspaceError};

/// Writes a pack (from `git pack-objects` in the container) into the host repository's
/// object database; libgit2 checks every object as it indexes the pack.
pub fn index_pack(repo_path: &Path, pack: &[u8]) -> Result<()> {
    if pack.is_empty() {
        return Ok(());
    }
    let repo = open(repo_path)?;
    let odb = repo.odb()?;
    let mut writer = odb.packwriter()?;
    writer.write_all(pack).map_err(|source| WorkspaceError::Io {
        path: repo_path.to_path_buf(),
        source,
    })?;
    writer.commit()?;
    Ok(())
}

/// Indexes a pack from the container, read from `pack_file` in 64 KiB pieces, so memory does
/// not grow with the pack. Its header is checked first: at most `max_objects` objects, since
/// libgit2's indexer keeps an entry per object in memory. libgit2 hashes whole (non-delta)
/// objects as it streams them; a delta is resolved against its base in memory.
pub fn index_pack_file(repo_path: &Path, pack_file: &Path, max_objects: u32) -> Result<()> {
    let io = |source| WorkspaceError::Io {
        path: pack_file.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(pack_file).map_err(io)?;
    let mut header = [0u8; 12];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]).map_err(io)? {
            0 => break,
            n => read += n,
        }
    }
    if read == 0 {
        return Ok(()); // nothing was new
    }
    if read < header.len() || &header[..4] != b"PACK" {
        return Err(WorkspaceError::IncompletePack {
            what: "the pack's header".into(),
        });
    }
    let count = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if count > max_objects {
        return Err(WorkspaceError::PackTooManyObjects {
            count,
            limit: max_objects,
        });
    }
    let repo = open(repo_path)?;
    let odb = repo.odb()?;
    let mut writer = odb.packwriter()?;
    let to_repo = |source| WorkspaceError::Io {
        path: repo_path.to_path_buf(),
        source,
    };
    writer.write_all(&header).map_err(to_repo)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).map_err(to_repo)?;
    }
    writer.commit()?;
    Ok(())
}

/// Checks that every object `head` needs is in the repository, down to the `known` commits:
/// the parents of each new commit, and every tree and blob its tree names. A pack from the
/// container is only hash-checked when indexed; a hand-made one could leave the branch on a
/// commit whose tree or parent is missing, which breaks `git log`, `gc` and pushes.
pub fn verify_closure(repo_path: &Path, head: Oid, known: &[Oid]) -> Result<()> {
    let repo = open(repo_path)?;
    let odb = repo.odb()?;
    let missing = |what: String| WorkspaceError::IncompletePack { what };
    let mut walk = repo.revwalk()?;
    walk.push(head).map_err(|_| missing(format!("commit {head}")))?;
    for known in known {
        if repo.find_commit(*known).is_ok() {
            walk.hide(*known)?;
        }
    }
    let mut seen_trees = std::collections::HashSet::new();
    for commit in walk {
        let commit = repo.find_commit(commit.map_err(|e| missing(e.message().to_string()))?)?;
        for parent in commit.parent_ids() {
            if !odb.exists(parent) {
                return Err(missing(format!("commit {parent}, a parent of {}", commit.id())));
            }
        }
        let mut trees = vec![commit.tree_id()];
        while let Some(tree_id) = trees.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = repo
                .find_tree(tree_id)
                .map_err(|_| missing(format!("tree {tree_id}")))?;
            for entry in tree.iter() {
                match entry.kind() {
                    Some(git2::ObjectType::Tree) => trees.push(entry.id()),
                    Some(git2::ObjectType::Blob) if !odb.exists(entry.id()) => {
                        return Err(missing(format!(
                            "blob {} ({})",
                            entry.id(),
                            entry.name().unwrap_or("?")
                        )));
                    }
                    _ => {} // blobs present, gitlinks (submodule commits live elsewhere)
                }
            }
        }
    }
    Ok(())
}

/// Whether `commit` is a commit the host repository has.
pub fn has_commit(repo_path: &Path, commit: Oid) -> Result<bool> {
    Ok(open(repo_path)?.find_commit(commit).is_ok())
}

/// A pack holding `commit` and its tree, to give a workspace a commit it lost.
pub fn pack_commit(repo_path: &Path, commit: Oid) -> Result<Vec<u8>> {
    let repo = open(repo_path)?;
    let mut builder = repo.packbuilder()?;
    builder.insert_commit(commit)?;
    let mut buf = git2::Buf::new();
    builder.write_buf(&mut buf)?;
    Ok(buf.to_vec())
}

/// `pack_commit`, streamed into a new 0600 file at `to` as libgit2 produces it.
pub fn pack_commit_to(repo_path: &Path, commit: Oid, to: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| WorkspaceError::Io {
        path: to.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)
        .map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
    let repo = open(repo_path)?;
    let mut builder = repo.packbuilder()?;
    builder.insert_commit(commit)?;
    let mut written = Ok(());
    let built = builder.foreach(|chunk| {
        written = out.write_all(chunk);
        written.is_ok()
    });
    written.map_err(io)?;
    built?;
    out.flush().map_err(io)?;
    Ok(())
}
