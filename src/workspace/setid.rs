//! Clearing set-user-id and set-group-id bits in a workspace, from the host. Root in a task's
//! container is root on the workspace's files, so it can leave a root-owned mode-4755 shell
//! there; nothing from the container (its `find`, `chmod`, `/etc/passwd`) can be trusted to
//! remove it. This walk trusts nothing inside either (docs/security.md, "Set-id files"):
//!
//! - the walk (`workspace::walk`) opens every directory relative to one already open, never
//!   following a link, so a tree deeper than PATH_MAX or changed mid-walk cannot lead it out;
//! - a file is changed only through a descriptor opened on it (`fchmod`), after `fstat` on that
//!   descriptor shows a regular file with the bits, so the change cannot land elsewhere.

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, fchmod, fstat, openat};
use rustix::io::Errno;

use super::walk::walk;

/// Paths of cleared files kept for the report (the count is always whole).
const REPORTED: usize = 20;

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetidSweep {
    /// Files whose set-id bits were cleared.
    pub cleared: u64,
    /// The first of them, relative to the workspace.
    pub examples: Vec<PathBuf>,
    pub directories: u64,
}

/// Clears the set-id bits of every regular file under `root`.
pub fn clear_setid_bits(root: &Path) -> std::io::Result<SetidSweep> {
    let mut sweep = SetidSweep::default();
    sweep.directories = walk(root, |entry| {
        if entry.kind == FileType::RegularFile && clear_file(entry.dir, entry.name)? {
            sweep.cleared += 1;
            if sweep.examples.len() < REPORTED {
                sweep.examples.push(entry.relative_path());
            }
        }
        Ok(())
    })?;
    Ok(sweep)
}

/// Clears the bits of one file through a descriptor on it; `true` when it had them.
fn clear_file(dir: &OwnedFd, name: &CStr) -> std::io::Result<bool> {
    // O_NONBLOCK and O_NOCTTY: a FIFO or terminal swapped in cannot block or become ours; a
    // link is refused by O_NOFOLLOW.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match openat(dir, name, flags, Mode::empty()) {
        Ok(file) => file,
        Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let stat = fstat(&file)?;
    let setid = Mode::SUID.bits() | Mode::SGID.bits();
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile || stat.st_mode & setid == 0 {
        return Ok(false);
    }
    fchmod(&file, Mode::from_raw_mode(stat.st_mode & 0o7777 & !setid))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rustix::fs::{AtFlags, statat};

    use super::super::walk::dir_flags;
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn set_id_files_lose_the_bits_links_and_what_they_point_to_do_not_change() {
        let outside = tempfile::tempdir().unwrap();
        let host_file = outside.path().join("host-setuid");
        std::fs::write(&host_file, "host").unwrap();
        std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o4755)).unwrap();

        let ws = tempfile::tempdir().unwrap();
        let root = ws.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for (name, bits) in [("a/suid", 0o4755), ("a/b/sgid", 0o2750), ("plain", 0o755)] {
            std::fs::write(root.join(name), "x").unwrap();
            std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(bits)).unwrap();
        }
        std::os::unix::fs::symlink(&host_file, root.join("link-to-host")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a/dir-link")).unwrap();

        let sweep = clear_setid_bits(root).unwrap();
        assert_eq!(sweep.cleared, 2, "{sweep:?}");
        assert_eq!(mode(&root.join("a/suid")), 0o755);
        assert_eq!(mode(&root.join("a/b/sgid")), 0o750);
        assert_eq!(mode(&root.join("plain")), 0o755);
        assert_eq!(mode(&host_file), 0o4755, "a link must never be followed");
        let mut examples = sweep.examples.clone();
        examples.sort();
        assert_eq!(examples, [PathBuf::from("a/b/sgid"), PathBuf::from("a/suid")]);
    }

    #[test]
    fn a_tree_deeper_than_path_max_is_swept_to_the_bottom() {
        let ws = tempfile::tempdir().unwrap();
        // 2,100 levels of 2-byte names: far past PATH_MAX (4096), made with relative opens.
        let depth = 2100;
        let mut fd = openat(rustix::fs::CWD, ws.path(), dir_flags(), Mode::empty()).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
            fd = openat(&fd, "d", dir_flags(), Mode::empty()).unwrap();
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC;
        let file = openat(&fd, "deep-suid", flags, Mode::from_raw_mode(0o755)).unwrap();
        fchmod(&file, Mode::from_raw_mode(0o4755)).unwrap();
        drop(file);

        let sweep = clear_setid_bits(ws.path()).unwrap();
        assert_eq!(sweep.cleared, 1);
        assert_eq!(sweep.directories, depth as u64 + 1);
        let stat = statat(&fd, "deep-suid", AtFlags::SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(stat.st_mode & 0o7777, 0o755);
    }
}
