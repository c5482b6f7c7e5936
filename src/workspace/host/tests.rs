use std::path::Path;

use git2::Oid;
use pretty_assertions::assert_eq;

use super::clone::clone_with_libgit2;
use super::*;
use crate::workspace::WorkspaceError;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn repo_with_commit() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
    std::fs::write(dir.path().join(".gitignore"), "*.log\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-qm", "first"]);
    dir
}

#[test]
fn uncommitted_changes_become_a_commit_without_touching_the_work_tree() {
    let dir = repo_with_commit();
    let root = dir.path();
    std::fs::write(root.join("a.txt"), "two\n").unwrap();
    std::fs::write(root.join("new.txt"), "new\n").unwrap();
    std::fs::write(root.join("noise.log"), "ignored\n").unwrap();
    std::fs::remove_file(root.join(".gitignore")).unwrap();
    std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
    git(root, &["rm", "-q", "--cached", ".gitignore"]);
    let changes = uncommitted(root).unwrap();
    assert_eq!(
        changes.iter().map(|c| (c.path.as_str(), c.deleted)).collect::<Vec<_>>(),
        [(".gitignore", false), ("a.txt", false), ("new.txt", false)]
    );
    let base = resolve_commit(root, "HEAD").unwrap();
    let commit = commit_changes(root, base, &changes, "wip").unwrap();
    assert_eq!(git(root, &["show", &format!("{commit}:a.txt")]), "two");
    assert_eq!(git(root, &["show", &format!("{commit}:new.txt")]), "new");
    // The developer's branch and index are untouched.
    assert_eq!(resolve_commit(root, "HEAD").unwrap(), base);
    assert!(git(root, &["status", "--porcelain"]).contains("?? new.txt"));
}

#[test]
fn branches_are_created_once_and_moved_only_when_expected() {
    let dir = repo_with_commit();
    let root = dir.path();
    let base = resolve_commit(root, "HEAD").unwrap();
    create_branch(root, "taskbox/x", base).unwrap();
    assert!(matches!(
        create_branch(root, "taskbox/x", base),
        Err(WorkspaceError::BranchExists { .. })
    ));
    let next = commit_changes(root, base, &[], "empty").unwrap();
    move_branch(root, "taskbox/x", next, Some(base)).unwrap();
    assert_eq!(resolve_commit(root, "taskbox/x").unwrap(), next);
    // Someone else moved it: taskbox leaves it alone.
    assert!(matches!(
        move_branch(root, "taskbox/x", base, Some(base)),
        Err(WorkspaceError::BranchMoved { .. })
    ));
    // Never under a checked-out work tree.
    git(root, &["checkout", "-q", "taskbox/x"]);
    assert!(matches!(
        move_branch(root, "taskbox/x", base, Some(next)),
        Err(WorkspaceError::BranchCheckedOut { .. })
    ));
}

#[test]
fn a_pack_missing_objects_is_caught_before_the_branch_moves() {
    let source = repo_with_commit();
    let target = repo_with_commit();
    let base = resolve_commit(source.path(), "HEAD").unwrap();
    std::fs::write(source.path().join("new.txt"), "new\n").unwrap();
    git(source.path(), &["add", "."]);
    git(source.path(), &["commit", "-qm", "second"]);
    let head: Oid = git(source.path(), &["rev-parse", "HEAD"]).parse().unwrap();
    // A pack with the commit alone: no tree, no blob, no parent.
    let pack = std::process::Command::new("sh")
        .args(["-c", &format!("echo {head} | git pack-objects --stdout -q")])
        .current_dir(source.path())
        .output()
        .unwrap()
        .stdout;
    index_pack(target.path(), &pack).unwrap();
    assert!(has_commit(target.path(), head).unwrap());
    let err = verify_closure(target.path(), head, &[base]).unwrap_err();
    assert!(matches!(err, WorkspaceError::IncompletePack { .. }), "{err}");
    // The whole history makes it complete.
    let pack = std::process::Command::new("sh")
        .args(["-c", "git rev-list --objects --all | git pack-objects --stdout -q"])
        .current_dir(source.path())
        .output()
        .unwrap()
        .stdout;
    index_pack(target.path(), &pack).unwrap();
    verify_closure(target.path(), head, &[]).unwrap();
}

#[test]
fn other_owners_work_is_neither_a_base_nor_in_a_reachable_only_clone() {
    let dir = repo_with_commit();
    let root = dir.path();
    let base = resolve_commit(root, "HEAD").unwrap();
    // Alice's task branch has a commit no branch of the developer reaches.
    git(root, &["checkout", "-q", "-b", "taskbox-alice/secret"]);
    std::fs::write(root.join("secret.txt"), "alice's\n").unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "secret"]);
    git(root, &["checkout", "-q", "-"]);
    let secret = resolve_commit(root, "taskbox-alice/secret").unwrap();
    set_ref(root, "refs/taskbox/t-1/checkpoints/1", secret).unwrap();
    assert!(reachable_outside_tasks(root, base, "taskbox-bob/").unwrap());
    assert!(!reachable_outside_tasks(root, secret, "taskbox-bob/").unwrap());
    assert!(!reachable_outside_tasks(root, secret, "taskbox/").unwrap());
    assert!(reachable_outside_tasks(root, secret, "taskbox-alice/").unwrap());

    create_branch(root, "taskbox-bob/mine", base).unwrap();
    for libgit2 in [false, true] {
        let ws = tempfile::tempdir().unwrap();
        let dest = ws.path().join("ws");
        if libgit2 {
            clone_with_libgit2(root, "taskbox-bob/mine", &dest, true).unwrap();
        } else {
            clone_workspace(root, "taskbox-bob/mine", &dest, true).unwrap();
        }
        assert!(has_commit(&dest, base).unwrap());
        assert!(!has_commit(&dest, secret).unwrap(), "libgit2: {libgit2}");
    }
}

#[test]
fn the_libgit2_fallback_clones_the_same_way() {
    let dir = repo_with_commit();
    let root = dir.path();
    let base = resolve_commit(root, "HEAD").unwrap();
    create_branch(root, "taskbox/l", base).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let dest = ws.path().join("ws");
    clone_with_libgit2(root, "taskbox/l", &dest, false).unwrap();
    assert_eq!(git(&dest, &["rev-parse", "--abbrev-ref", "HEAD"]), "taskbox/l");
    assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "one\n");
}

#[test]
fn workspace_clones_have_no_way_back_and_packs_round_trip() {
    let dir = repo_with_commit();
    let root = dir.path();
    let base = resolve_commit(root, "HEAD").unwrap();
    create_branch(root, "taskbox/w", base).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let ws_path = ws.path().join("ws");
    clone_workspace(root, "taskbox/w", &ws_path, false).unwrap();
    assert_eq!(git(&ws_path, &["remote"]), "");
    assert_eq!(git(&ws_path, &["rev-parse", "--abbrev-ref", "HEAD"]), "taskbox/w");
    assert_eq!(std::fs::read_to_string(ws_path.join("a.txt")).unwrap(), "one\n");

    // A commit made in the workspace reaches the host only as a pack.
    std::fs::write(ws_path.join("b.txt"), "b\n").unwrap();
    git(&ws_path, &["add", "."]);
    git(&ws_path, &["commit", "-qm", "agent work"]);
    let head: Oid = git(&ws_path, &["rev-parse", "HEAD"]).parse().unwrap();
    assert!(!has_commit(root, head).unwrap());
    let pack = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("git rev-list --objects HEAD --not {base} | git pack-objects --stdout -q"),
        ])
        .current_dir(&ws_path)
        .output()
        .unwrap()
        .stdout;
    index_pack(root, &pack).unwrap();
    assert!(has_commit(root, head).unwrap());
    move_branch(root, "taskbox/w", head, Some(base)).unwrap();
    let mut patch = Vec::new();
    let summary = diff(root, base, head, DiffLimits::default(), &mut patch).unwrap();
    assert_eq!(
        summary.files,
        [FileDiff {
            path: "b.txt".into(),
            status: "added".into(),
            added: 1,
            removed: 0,
            not_diffed: None,
        }]
    );
    assert!(String::from_utf8_lossy(&patch).contains("+b\n"));

    // A private repository starts with an empty commit on its branch.
    let private = ws.path().join("repo.git");
    let first = init_private(&private, "taskbox/p", "start").unwrap();
    assert_eq!(resolve_commit(&private, "taskbox/p").unwrap(), first);
    let pack = pack_commit(root, head).unwrap();
    index_pack(&private, &pack).unwrap();
    assert!(has_commit(&private, head).unwrap());
}

/// A repository with `base` and `head` commits; `change` makes head's changes in the work tree.
fn two_commits(change: impl FnOnce(&Path)) -> (tempfile::TempDir, Oid, Oid) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    std::fs::create_dir_all(root.join("src/deep/er")).unwrap();
    std::fs::write(root.join("src/a.rs"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(root.join("src/deep/er/gone.txt"), "bye\n").unwrap();
    std::fs::write(root.join("same.txt"), "same\n").unwrap();
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "base"]);
    let base: Oid = git(root, &["rev-parse", "HEAD"]).parse().unwrap();
    change(root);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "head"]);
    let head: Oid = git(root, &["rev-parse", "HEAD"]).parse().unwrap();
    (dir, base, head)
}

#[test]
fn a_diff_matches_git_and_streams_its_patch() {
    let (dir, base, head) = two_commits(|root| {
        std::fs::write(root.join("src/a.rs"), "one\n2\nthree\nfour\n").unwrap();
        std::fs::remove_file(root.join("src/deep/er/gone.txt")).unwrap();
        std::fs::create_dir_all(root.join("new/dir")).unwrap();
        std::fs::write(root.join("new/dir/b.txt"), "b\n").unwrap();
        std::fs::write(root.join("bin.dat"), b"\0\x01\x02").unwrap();
    });
    let mut patch = Vec::new();
    let summary = diff(dir.path(), base, head, DiffLimits::default(), &mut patch).unwrap();
    let ours: Vec<String> = summary
        .files
        .iter()
        .map(|f| match f.not_diffed {
            None => format!("{}\t{}\t{}", f.added, f.removed, f.path),
            Some(_) => format!("-\t-\t{}", f.path),
        })
        .collect();
    let numstat = git(dir.path(), &["diff", "--numstat", &base.to_string(), &head.to_string()]);
    assert_eq!(ours.join("\n"), numstat);
    assert!(!summary.more_files);
    let patch = String::from_utf8(patch).unwrap();
    assert!(
        patch.contains("diff --git a/src/a.rs b/src/a.rs\n--- a/src/a.rs\n+++ b/src/a.rs\n@@"),
        "{patch}"
    );
    assert!(patch.contains("-two\n+2\n"), "{patch}");
    assert!(
        patch.contains("deleted file mode 100644\n--- a/src/deep/er/gone.txt\n+++ /dev/null\n"),
        "{patch}"
    );
    assert!(patch.contains("Binary files a/bin.dat and b/bin.dat differ"), "{patch}");
}

#[test]
fn a_diff_stops_at_its_limits() {
    let (dir, base, head) = two_commits(|root| {
        std::fs::write(root.join("big.txt"), "x".repeat(5000)).unwrap();
        std::fs::write(root.join("a-lines.txt"), "\n".repeat(300)).unwrap();
        for i in 0..10 {
            std::fs::write(root.join(format!("f{i}.txt")), "f\n").unwrap();
        }
    });
    let limits = DiffLimits {
        max_files: 5,
        max_file_bytes: 1000,
        max_file_lines: 100,
        ..DiffLimits::default()
    };
    let mut patch = Vec::new();
    let summary = diff(dir.path(), base, head, limits, &mut patch).unwrap();
    assert!(summary.more_files);
    assert_eq!(summary.files.len(), 5);
    let big = &summary.files[1];
    assert_eq!((big.path.as_str(), big.added), ("big.txt", 0));
    assert!(
        big.not_diffed.as_deref().unwrap().contains("over the 1000-byte limit"),
        "{big:?}"
    );
    let lines = summary.files.iter().find(|f| f.path == "a-lines.txt").unwrap();
    assert!(lines.not_diffed.as_deref().unwrap().contains("300 lines"), "{lines:?}");

    // Trees bigger than the budget for open trees are refused before they are read.
    let tight = DiffLimits {
        max_open_tree_bytes: 10,
        ..DiffLimits::default()
    };
    let err = diff(dir.path(), base, head, tight, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, WorkspaceError::DiffTooLarge { .. }), "{err}");
}

#[test]
fn a_pack_file_is_indexed_in_pieces_and_its_object_count_is_capped() {
    let (dir, base, head) = two_commits(|root| std::fs::write(root.join("c.txt"), "c\n").unwrap());
    let pack = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("git rev-list --objects {head} --not {base} | git pack-objects --stdout -q"),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap()
        .stdout;
    let file = dir.path().join("sync.pack");
    std::fs::write(&file, &pack).unwrap();
    let target = tempfile::tempdir().unwrap();
    git(target.path(), &["init", "-q", "--bare"]);
    let err = index_pack_file(target.path(), &file, 2).unwrap_err();
    assert!(
        matches!(err, WorkspaceError::PackTooManyObjects { limit: 2, .. }),
        "{err}"
    );
    index_pack_file(target.path(), &file, 100).unwrap();
    assert!(
        open(target.path())
            .unwrap()
            .find_blob(git2::Oid::hash_object(git2::ObjectType::Blob, b"c\n").unwrap())
            .is_ok()
    );
    std::fs::write(&file, b"").unwrap();
    index_pack_file(target.path(), &file, 100).unwrap();
    std::fs::write(&file, b"NOTAPACKxxxxxxx").unwrap();
    assert!(index_pack_file(target.path(), &file, 100).is_err());
}
