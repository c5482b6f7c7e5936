//! A walk of a tree the agent controls, from the host, that trusts nothing in it
//! (docs/security.md, "Set-id files"):
//!
//! - every open is relative to a directory already open and never follows a link
//!   (`O_NOFOLLOW`), so a link swapped in mid-walk leads nowhere, and no path is ever longer
//!   than one name: a tree deeper than PATH_MAX is walked like any other;
//! - going back up never uses `..`: the walk keeps the descriptors of every `ANCHOR_EVERY`-th
//!   level and reopens the levels between by name from the nearest kept one, so it never
//!   leaves the tree however the agent moves directories meanwhile, and a deep tree costs
//!   depth / `ANCHOR_EVERY` descriptors.
//!
//! Memory: the names of the subdirectories still to visit, per level on the way down.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, openat, statat};
use rustix::io::Errno;

/// Levels between the directory descriptors the walk keeps open.
const ANCHOR_EVERY: usize = 64;

/// One directory on the way down: its descriptor (kept for anchors and the current level),
/// its name in its parent, and the subdirectories still to visit.
struct Level {
    fd: Option<OwnedFd>,
    name: CString,
    pending: Vec<CString>,
}

/// One entry the walk meets (never `.` or `..`).
pub struct Entry<'a> {
    /// The directory holding it, open: act on the entry only relative to it, with no-follow.
    pub dir: &'a OwnedFd,
    pub name: &'a CStr,
    pub kind: FileType,
    levels: &'a [Level],
}

impl Entry<'_> {
    /// The entry's path relative to the root, for reports.
    pub fn relative_path(&self) -> PathBuf {
        let mut path: PathBuf = self.levels[1..]
            .iter()
            .map(|l| l.name.to_string_lossy().into_owned())
            .collect();
        path.push(self.name.to_string_lossy().as_ref());
        path
    }
}

pub(crate) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Calls `visit` on every entry under `root`, directories before what they hold; returns the
/// number of directories walked (the root included).
pub fn walk(root: &Path, mut visit: impl FnMut(&Entry) -> std::io::Result<()>) -> std::io::Result<u64> {
    let root_fd = openat(rustix::fs::CWD, root, dir_flags(), Mode::empty())?;
    let mut stack = vec![Level {
        fd: Some(root_fd),
        name: CString::default(),
        pending: Vec::new(),
    }];
    let mut directories = 1;
    scan(&mut stack, &mut visit)?;
    while let Some(top) = stack.last_mut() {
        let Some(child) = top.pending.pop() else {
            stack.pop();
            continue;
        };
        let depth = stack.len();
        let parent = descriptor(&mut stack, depth - 1)?;
        let fd = match openat(&parent, child.as_c_str(), dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            // Gone, or swapped for a link or a file since it was listed: nothing to walk.
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
            Err(e) => return Err(e.into()),
        };
        drop(parent);
        // Keep the parent's descriptor only on anchor levels.
        if depth > 1 && (depth - 1) % ANCHOR_EVERY != 0 {
            stack[depth - 1].fd = None;
        }
        stack.push(Level {
            fd: Some(fd),
            name: child,
            pending: Vec::new(),
        });
        directories += 1;
        scan(&mut stack, &mut visit)?;
    }
    Ok(directories)
}

/// A descriptor for level `index`: its own, or reopened by name from the nearest kept level
/// above it (never through `..`).
fn descriptor(stack: &mut [Level], index: usize) -> std::io::Result<OwnedFd> {
    if let Some(fd) = &stack[index].fd {
        return fd.try_clone();
    }
    let anchor = (0..index).rev().find(|&i| stack[i].fd.is_some()).unwrap_or(0);
    let mut fd = match &stack[anchor].fd {
        Some(fd) => fd.try_clone()?,
        None => return Err(std::io::Error::other("the walk lost its root descriptor")),
    };
    for level in &stack[anchor + 1..=index] {
        fd = openat(&fd, level.name.as_c_str(), dir_flags(), Mode::empty())?;
    }
    Ok(fd)
}

/// Lists the directory on top of the stack: visits each entry, queues its subdirectories.
fn scan(stack: &mut [Level], visit: &mut impl FnMut(&Entry) -> std::io::Result<()>) -> std::io::Result<()> {
    let index = stack.len() - 1;
    let fd = descriptor(stack, index)?;
    let mut subdirectories = Vec::new();
    let mut dir = Dir::read_from(&fd)?;
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => match statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => FileType::from_raw_mode(stat.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            },
            kind => kind,
        };
        visit(&Entry {
            dir: &fd,
            name,
            kind,
            levels: stack,
        })?;
        if kind == FileType::Directory {
            subdirectories.push(name.to_owned());
        }
    }
    stack[index].pending = subdirectories;
    Ok(())
}

/// Bytes the tree under `root` takes on disk (allocated blocks; links not followed; a file
/// with several links in the tree counted once per link).
pub fn disk_usage(root: &Path) -> std::io::Result<u64> {
    let own = rustix::fs::stat(root)?.st_blocks as u64 * 512;
    let mut total = own;
    walk(root, |entry| {
        match statat(entry.dir, entry.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => total += stat.st_blocks as u64 * 512,
            // Removed while we walked: it takes nothing now.
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_files_and_directories_and_never_follows_a_link() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1u8; 1 << 20]).unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("a/b")).unwrap();
        std::fs::write(ws.path().join("a/b/file"), vec![1u8; 64 * 1024]).unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("a/link")).unwrap();
        let used = disk_usage(ws.path()).unwrap();
        assert!((64 * 1024..(1 << 20)).contains(&used), "{used}");
    }

    #[test]
    fn entries_know_their_path_from_the_root() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("a/b")).unwrap();
        std::fs::write(ws.path().join("a/b/f"), "x").unwrap();
        let mut seen = Vec::new();
        let directories = walk(ws.path(), |e| {
            seen.push(e.relative_path());
            Ok(())
        })
        .unwrap();
        seen.sort();
        assert_eq!(seen, [PathBuf::from("a"), PathBuf::from("a/b"), PathBuf::from("a/b/f")]);
        assert_eq!(directories, 3);
    }
}
