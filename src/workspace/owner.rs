//! Handing a freshly filled workspace to the agent's uid:gid from the host: what the prepare
//! step's `chown` does inside a new container, without an exec, for a warm-pool entry's
//! workspace, which the server fills only when a task claims it (the container already runs).
//!
//! At that moment nothing but the server has written the tree (no agent code has run in the
//! container), but the walk trusts nothing all the same: `workspace::walk` opens every
//! directory relative to its parent without following links, and each entry is changed by
//! `fchownat` relative to its directory with `AT_SYMLINK_NOFOLLOW` (a link itself changes
//! owner, never its target).

use std::path::Path;

use rustix::fs::{AtFlags, Mode, chownat, fchown, openat};
use rustix::process::{Gid, Uid};

use super::walk::{dir_flags, walk};

/// Gives every entry under `root`, and `root` itself, to `uid:gid`; returns the entries
/// changed (the root included).
pub fn hand_over(root: &Path, uid: u32, gid: u32) -> std::io::Result<u64> {
    let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    let root_fd = openat(rustix::fs::CWD, root, dir_flags(), Mode::empty())?;
    fchown(&root_fd, uid, gid)?;
    let mut changed = 1;
    walk(root, |entry| {
        chownat(entry.dir, entry.name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
        changed += 1;
        Ok(())
    })?;
    Ok(changed)
}

/// Whether this process may give files away (it runs as root): only then does the server
/// hand a workspace over from the host; otherwise the container's root does it.
pub fn can_hand_over() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_whole_tree_changes_owner_and_links_are_not_followed() {
        if !can_hand_over() {
            return; // needs root; the suite's containers tests run as root
        }
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        std::fs::write(&target, "host file").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), "x").unwrap();
        std::os::unix::fs::symlink(&target, root.join("a/link")).unwrap();
        assert_eq!(hand_over(&root, 4321, 4322).unwrap(), 5);
        for path in ["", "a", "a/b", "a/b/file"] {
            let meta = std::fs::symlink_metadata(root.join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4321, 4322), "{path}");
        }
        let link = std::fs::symlink_metadata(root.join("a/link")).unwrap();
        assert_eq!((link.uid(), link.gid()), (4321, 4322));
        let host = std::fs::metadata(&target).unwrap();
        assert_eq!((host.uid(), host.gid()), (0, 0), "the link's target stays the host's");
    }
}
