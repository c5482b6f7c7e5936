//! Git-backed workspaces through the real binary and rmcp's client, on real Docker and real
//! repositories in temp dirs: the task branch, file tools, commits inside the container,
//! checkpoints, restore, fork, diff, and the host repository's safety.

use std::path::{Path, PathBuf};

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn host_state(repo: &Path) -> (String, String, String, String) {
    let hooks = std::fs::read_dir(repo.join(".git/hooks"))
        .map(|d| {
            let mut names: Vec<String> = d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.join(",")
        })
        .unwrap_or_default();
    (
        hooks,
        std::fs::read_to_string(repo.join(".git/config")).unwrap(),
        git(repo, &["rev-parse", "--abbrev-ref", "HEAD"]),
        git(repo, &["status", "--porcelain"]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_flow_over_a_repository_ends_as_commits_on_the_task_branch() {
    require!(docker);
    let flow = create_a_task_over_a_repository_with_a_local_edit().await;
    the_workspace_holds_the_branch_without_the_local_edit(&flow).await;
    file_tools_agree_with_what_commands_see(&flow).await;
    let tip = an_agent_commit_and_a_checkpoint_land_on_the_task_branch(&flow).await;
    task_diff_shows_the_branch_against_its_base(&flow).await;
    let restored = restore_undoes_changed_files_and_an_installed_package(&flow, tip).await;
    let list = restoring_the_pre_restore_checkpoint_undoes_the_restore(&flow, restored).await;
    stop_resume_and_complete_commit_to_the_task_branch(&flow).await;
    nothing_else_in_the_developers_repository_changed(&flow).await;
    delete_keeps_the_branch_and_removes_checkpoint_images_and_refs(&flow, list).await;
}

/// What the steps share: the developer's repository and how it looked before, the session,
/// and the created task.
struct Flow {
    home: Home,
    repo: PathBuf,
    client: Client,
    created: Value,
    before: (String, String, String, String),
    main_before: String,
}

/// Creates the task over a repository with an uncommitted edit: a warning names the edit, and
/// the task branch starts at HEAD.
async fn create_a_task_over_a_repository_with_a_local_edit() -> Flow {
    let (home, repos) = home_with_repos();
    let repo = dev_repo(&repos, "project");
    std::fs::write(repo.join("a.txt"), "one\nlocal edit\n").unwrap(); // the developer's own, uncommitted
    let before = host_state(&repo);
    let main_before = git(&repo, &["rev-parse", "main"]);
    let client = connect(&home.path(), "workspace-flow").await;

    let created = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "flow", "repo_path": repo.display().to_string() }),
    )
    .await;
    let warning = created["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("1 uncommitted change") && warning.contains("a.txt"),
        "{warning}"
    );
    assert_eq!(created["task"]["repo"]["branch"], "taskbox/flow");
    assert_eq!(
        git(&repo, &["rev-parse", "taskbox/flow"]),
        main_before,
        "branch starts at HEAD"
    );
    Flow {
        home,
        repo,
        client,
        created,
        before,
        main_before,
    }
}

/// The workspace holds the task branch, without the developer's uncommitted edit.
async fn the_workspace_holds_the_branch_without_the_local_edit(flow: &Flow) {
    let Flow { client, .. } = flow;
    let r = exec(
        client,
        "flow",
        "git rev-parse --abbrev-ref HEAD; cat a.txt; git status --porcelain",
    )
    .await;
    assert_eq!(r["stdout"], "taskbox/flow\none\n");
}

/// write_file, read_file, edit_file and list_files agree with what commands see.
async fn file_tools_agree_with_what_commands_see(flow: &Flow) {
    let Flow { client, .. } = flow;
    call(
        client,
        "write_file",
        json!({ "path": "docs/notes.md", "content": "line 1\nline 2\nline 3\n" }),
    )
    .await;
    let read = call(
        client,
        "read_file",
        json!({ "path": "docs/notes.md", "start_line": 2, "end_line": 3 }),
    )
    .await;
    assert_eq!(read["content"], "line 2\nline 3\n");
    assert_eq!(read["total_lines"], 3);
    let edit = call(
        client,
        "edit_file",
        json!({ "path": "a.txt", "old_text": "one", "new_text": "ONE" }),
    )
    .await;
    assert_eq!(edit["replacements"], 1);
    let (kind, message) = call_err(
        client,
        "edit_file",
        json!({ "path": "a.txt", "old_text": "nope", "new_text": "x" }),
    )
    .await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("not found"), "{message}");
    call(client, "write_file", json!({ "path": "twice.txt", "content": "x x\n" })).await;
    let (kind, message) = call_err(
        client,
        "edit_file",
        json!({ "path": "twice.txt", "old_text": "x", "new_text": "y" }),
    )
    .await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("found 2 times"), "{message}");
    let all = call(
        client,
        "edit_file",
        json!({ "path": "twice.txt", "old_text": "x", "new_text": "y", "replace_all": true }),
    )
    .await;
    assert_eq!(all["replacements"], 2);
    let r = exec(
        client,
        "flow",
        "cat a.txt twice.txt docs/notes.md | head -3; echo noise > build.log",
    )
    .await;
    assert_eq!(r["stdout"], "ONE\ny y\nline 1\n");
    let listing = call(client, "list_files", json!({ "depth": 1 })).await;
    let paths: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [".gitignore", "a.txt", "docs/", "src/", "twice.txt"],
        "build.log is ignored"
    );
    let binary = call(client, "read_file", json!({ "path": "/workspace/.git/index" })).await;
    assert_eq!(binary["binary"], true);
}

/// A commit made inside the container and a checkpoint land on the task branch; returns the
/// checkpoint's commit.
async fn an_agent_commit_and_a_checkpoint_land_on_the_task_branch(flow: &Flow) -> String {
    let Flow {
        home,
        repo,
        client,
        created,
        ..
    } = flow;
    exec(client, "flow", "git add docs && git commit -qm 'agent: notes'").await;
    let cp = call(client, "create_checkpoint", json!({ "label": "first" })).await;
    assert_eq!(cp["checkpoint"]["seq"], 1);
    assert_eq!(cp["reference"], "flow:1");
    let log = git(repo, &["log", "--format=%s", "taskbox/flow"]);
    assert_eq!(log, "taskbox: checkpoint: first\nagent: notes\nadd lib\ninitial");
    let tip = git(repo, &["rev-parse", "taskbox/flow"]);
    assert_eq!(cp["checkpoint"]["git_commit"], tip.as_str());
    assert_eq!(git(repo, &["show", &format!("{tip}:a.txt")]), "ONE");
    assert!(
        git(repo, &["ls-tree", "-r", "--name-only", &tip])
            .lines()
            .all(|f| f != "build.log")
    );
    let manifest = home
        .path()
        .join("tasks")
        .join(created["task"]["id"].as_str().unwrap())
        .join("checkpoints/1.json");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    assert_eq!(manifest["checkpoint"]["git_commit"], tip.as_str());
    tip
}

/// task_diff: the branch against its base, per file and as a patch.
async fn task_diff_shows_the_branch_against_its_base(flow: &Flow) {
    let Flow { client, .. } = flow;
    let diff = call(client, "task_diff", json!({})).await;
    let files: Vec<String> = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {} +{} -{}",
                f["status"].as_str().unwrap(),
                f["path"].as_str().unwrap(),
                f["added"],
                f["removed"]
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            "modified a.txt +1 -1",
            "added docs/notes.md +3 -0",
            "added twice.txt +1 -0"
        ]
    );
    assert!(diff["patch"].as_str().unwrap().contains("-one\n+ONE\n"));
}

/// Break things (files deleted, added and changed, a package installed), then restore the
/// checkpoint: all of it is undone and the branch follows. Returns the restore's reply.
async fn restore_undoes_changed_files_and_an_installed_package(flow: &Flow, tip: String) -> Value {
    let Flow { repo, client, .. } = flow;
    let r = call(
        client,
        "execute_in_task",
        json!({
            "command": "rm docs/notes.md && echo junk > junk.txt && echo broken > a.txt && \
                        apt-get update -qq && apt-get install -y -qq --no-install-recommends jq >/dev/null && command -v jq",
            "user": "root", "timeout_s": 600, "yield_after_s": 0,
        }),
    )
    .await;
    assert_eq!(r["exit_code"], 0, "{r}");

    let restored = call(client, "restore_checkpoint", json!({ "checkpoint": "1" })).await;
    assert_eq!(restored["task"]["status"], "running");
    assert_eq!(restored["pre_restore"]["label"], "pre-restore");
    assert_eq!(restored["pre_restore"]["automatic"], true);
    let r = exec(
        client,
        "flow",
        "cat a.txt docs/notes.md; ls junk.txt 2>&1; command -v jq || echo no-jq; git status --porcelain",
    )
    .await;
    assert_eq!(
        r["stdout"],
        "ONE\nline 1\nline 2\nline 3\nls: cannot access 'junk.txt': No such file or directory\nno-jq\n"
    );
    assert_eq!(
        git(repo, &["rev-parse", "taskbox/flow"]),
        tip,
        "the branch follows the restore"
    );
    restored
}

/// Restoring the automatic pre-restore checkpoint undoes the restore; returns the checkpoint list.
async fn restoring_the_pre_restore_checkpoint_undoes_the_restore(flow: &Flow, restored: Value) -> Value {
    let Flow { client, .. } = flow;
    let pre = restored["pre_restore"]["seq"].as_i64().unwrap();
    call(
        client,
        "restore_checkpoint",
        json!({ "checkpoint": format!("flow:{pre}") }),
    )
    .await;
    let r = exec(client, "flow", "cat a.txt junk.txt; command -v jq").await;
    assert_eq!(r["stdout"], "broken\njunk\n/usr/bin/jq\n");
    let list = call(client, "list_checkpoints", json!({})).await;
    let seqs: Vec<i64> = list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2, 1]);
    list
}

/// Back to the good state, stop and resume (stop syncs too), then complete: each is a commit.
async fn stop_resume_and_complete_commit_to_the_task_branch(flow: &Flow) {
    let Flow { repo, client, .. } = flow;
    call(client, "restore_checkpoint", json!({ "checkpoint": "flow:1" })).await;
    exec(client, "flow", "echo final > final.txt").await;
    let stopped = call(client, "stop_task", json!({})).await;
    assert_eq!(stopped["warnings"], json!([]));
    call(client, "resume_task", json!({})).await;
    exec(client, "flow", "echo done >> final.txt").await;
    let completed = call(client, "complete_task", json!({})).await;
    assert_eq!(completed["task"]["status"], "completed");
    let (kind, message) = call_err(client, "resume_task", json!({ "task": "flow" })).await;
    assert_eq!(kind, "wrong_status", "{message}");
    assert!(message.contains("completed"), "{message}");
    let log = git(repo, &["log", "--format=%s", "taskbox/flow"]);
    assert_eq!(
        log,
        "taskbox: complete task\ntaskbox: sync on stop\ntaskbox: checkpoint: first\nagent: notes\nadd lib\ninitial"
    );
    let tip = git(repo, &["rev-parse", "taskbox/flow"]);
    assert_eq!(completed["task"]["repo"]["synced_commit"], tip.as_str());
    assert_eq!(git(repo, &["show", "taskbox/flow:final.txt"]), "final\ndone");
}

/// The developer's repository has only the new branch: same HEAD, hooks, config and edit.
async fn nothing_else_in_the_developers_repository_changed(flow: &Flow) {
    let Flow {
        repo,
        before,
        main_before,
        ..
    } = flow;
    assert_eq!(host_state(repo), *before);
    assert_eq!(git(repo, &["rev-parse", "main"]), *main_before);
    assert_eq!(
        std::fs::read_to_string(repo.join("a.txt")).unwrap(),
        "one\nlocal edit\n"
    );
    assert_eq!(
        git(repo, &["branch", "--format=%(refname:short)"]),
        "main\ntaskbox/flow"
    );
}

/// Deleting the task keeps its branch and removes its checkpoint images and refs.
async fn delete_keeps_the_branch_and_removes_checkpoint_images_and_refs(flow: &Flow, list: Value) {
    let Flow { repo, client, .. } = flow;
    let images: Vec<String> = list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image_id"].as_str().unwrap().to_string())
        .collect();
    call(client, "delete_task", json!({ "task": "flow", "confirm": true })).await;
    assert_eq!(git(repo, &["rev-parse", "taskbox/flow"]).len(), 40);
    assert_eq!(git(repo, &["for-each-ref", "refs/taskbox"]), "");
    for image in images {
        assert!(
            docker_inspect("image", &image).is_none(),
            "checkpoint image {image} left behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn source_repository_options_and_refusals() {
    require!(docker);
    let (home, repos) = home_with_repos();
    let repo = dev_repo(&repos, "project");
    let first = git(&repo, &["rev-parse", "HEAD~1"]);
    std::fs::write(repo.join("a.txt"), "edited\n").unwrap();
    std::fs::write(repo.join("untracked.txt"), "new\n").unwrap();
    let client = connect(&home.path(), "repo-options").await;
    let path = repo.display().to_string();

    // include_uncommitted: the changes become the task's first commit; the work tree keeps them.
    let created = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "with-wip", "repo_path": path, "include_uncommitted": true }),
    )
    .await;
    assert_eq!(created["warnings"], json!([]));
    let r = exec(
        &client,
        "with-wip",
        "cat a.txt untracked.txt; git log --format=%s -1; git status --porcelain",
    )
    .await;
    let stdout = r["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("edited\nnew\ntaskbox: uncommitted changes from"),
        "{stdout}"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), " M a.txt\n?? untracked.txt");

    // base_ref: an older commit.
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "old", "repo_path": path, "base_ref": first }),
    )
    .await;
    let r = exec(&client, "old", "ls; git log --format=%s").await;
    assert_eq!(r["stdout"], "a.txt\ninitial\n");
    assert_eq!(git(&repo, &["rev-parse", "taskbox/old"]), first);

    // Refusals, each with a way forward.
    git(&repo, &["branch", "taskbox/taken"]);
    let cases = [
        (
            json!({ "name": "taken", "repo_path": path }),
            "workspace_error",
            "git branch -D taskbox/taken",
        ),
        (
            json!({ "name": "etc", "repo_path": "/etc" }),
            "workspace_error",
            "not inside a git repository",
        ),
        (
            json!({ "name": "bad-ref", "repo_path": path, "base_ref": "nope" }),
            "workspace_error",
            "does not name a commit",
        ),
        (
            json!({ "name": "both", "repo_path": path, "base_ref": first, "include_uncommitted": true }),
            "invalid_argument",
            "omit one of the two",
        ),
    ];
    for (args, expected, needle) in cases {
        let (kind, message) = call_err(&client, "create_task_sandbox", args.clone()).await;
        assert_eq!(kind, expected, "{args}: {message}");
        assert!(message.contains(needle), "{args}: {message}");
    }
    // A task's own workspace is never a source, even inside the allowed roots.
    let with_wip = created["task"]["workspace"].as_str().unwrap().to_string();
    write_config(
        &home.path(),
        &format!("[workspace]\nallowed_repo_roots = [\"{}\"]\n", home.path().display()),
    );
    let client2 = connect(&home.path(), "repo-options-2").await;
    let (kind, message) = call_err(
        &client2,
        "create_task_sandbox",
        json!({ "name": "inception", "repo_path": with_wip }),
    )
    .await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("taskbox workspace or task repository"), "{message}");
    client2.cancel().await.unwrap();
    write_config(
        &home.path(),
        &format!("[workspace]\nallowed_repo_roots = [\"{}\"]\n", repos.display()),
    );
    // A repository outside the allowed roots, even a real one, is refused.
    let outside = tempfile::tempdir().unwrap();
    let other = dev_repo(outside.path(), "elsewhere");
    let (kind, message) = call_err(
        &client,
        "create_task_sandbox",
        json!({ "name": "outside", "repo_path": other.display().to_string() }),
    )
    .await;
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("allowed repository roots"), "{message}");
    // Nothing was left behind by the refusals.
    assert_eq!(
        git(&repo, &["branch", "--format=%(refname:short)"]),
        "main\ntaskbox/old\ntaskbox/taken\ntaskbox/with-wip"
    );
    assert_eq!(call(&client, "list_tasks", json!({})).await["total"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_in_the_container_can_write_the_host_git_directory() {
    require!(docker);
    let (home, repos) = home_with_repos();
    let repo = dev_repo(&repos, "project");
    let before = host_state(&repo);
    let marker = home.path().join("pwned");
    let client = connect(&home.path(), "git-safety").await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "evil", "repo_path": repo.display().to_string() }),
    )
    .await;

    // The host repository is not visible in the container at all.
    let r = exec(
        &client,
        "evil",
        &format!("ls {} 2>&1; grep -c ' /workspace ' /proc/mounts", repo.display()),
    )
    .await;
    assert!(
        r["stdout"].as_str().unwrap().contains("No such file or directory"),
        "{r}"
    );

    // Plant hooks and config in the workspace's .git that would run commands if the host used them.
    let plant = format!(
        "set -e; cd /workspace/.git
         printf '#!/bin/sh\\ntouch {m}\\n' > hooks/post-commit; cp hooks/post-commit hooks/pre-commit
         cp hooks/post-commit hooks/reference-transaction; chmod +x hooks/*
         git config core.fsmonitor 'touch {m}'; git config core.hooksPath /workspace/.git/hooks
         git config core.worktree {root}; ln -sf {root}/.git/config evil-link
         echo change > /workspace/file.txt",
        m = marker.display(),
        root = repo.display()
    );
    let r = exec(&client, "evil", &plant).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let cp = call(&client, "create_checkpoint", json!({ "label": "after planting" })).await;
    assert!(cp["checkpoint"]["git_commit"].as_str().unwrap().len() == 40);
    call(&client, "stop_task", json!({})).await;

    assert!(!marker.exists(), "a planted hook or fsmonitor ran on the host");
    assert_eq!(
        host_state(&repo),
        before,
        "the host repository's hooks, config, HEAD or work tree changed"
    );
    assert_eq!(git(&repo, &["show", "taskbox/evil:file.txt"]), "change");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_starts_at_a_checkpoint_and_is_independent() {
    require!(docker);
    let (home, repos) = home_with_repos();
    let repo = dev_repo(&repos, "project");
    let client = connect(&home.path(), "fork-test").await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "parent", "repo_path": repo.display().to_string() }),
    )
    .await;
    exec(
        &client,
        "parent",
        "echo parent > work.txt && echo outside > /home/agent/state",
    )
    .await;
    let cp = call(&client, "create_checkpoint", json!({ "label": "base" })).await;

    let fork = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "child", "from_checkpoint": "parent:1" }),
    )
    .await;
    assert_eq!(fork["task"]["forked_from"], "parent:1");
    assert_eq!(fork["task"]["repo"]["branch"], "taskbox/child");
    assert_eq!(
        git(&repo, &["rev-parse", "taskbox/child"]),
        cp["checkpoint"]["git_commit"].as_str().unwrap()
    );
    // The workspace and the container's own files come from the checkpoint.
    let r = exec(
        &client,
        "child",
        "cat work.txt /home/agent/state; git rev-parse --abbrev-ref HEAD",
    )
    .await;
    assert_eq!(r["stdout"], "parent\noutside\ntaskbox/child\n");

    // Independent afterwards, both ways.
    exec(&client, "child", "echo child > work.txt && echo child-only > only.txt").await;
    exec(&client, "parent", "echo parent-2 > work.txt").await;
    let r = exec(&client, "parent", "cat work.txt; ls only.txt 2>/dev/null || echo none").await;
    assert_eq!(r["stdout"], "parent-2\nnone\n");
    let r = exec(&client, "child", "cat work.txt only.txt").await;
    assert_eq!(r["stdout"], "child\nchild-only\n");
    call(&client, "create_checkpoint", json!({ "task": "child" })).await;
    assert_eq!(git(&repo, &["show", "taskbox/child:work.txt"]), "child");
    assert_eq!(git(&repo, &["show", "taskbox/parent:work.txt"]), "parent");

    // Deleting the parent leaves the fork working (its container runs from the parent's image).
    call(&client, "delete_task", json!({ "task": "parent", "confirm": true })).await;
    let r = exec(&client, "child", "cat only.txt").await;
    assert_eq!(r["stdout"], "child-only\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn submodules_are_checked_out_in_the_workspace() {
    require!(docker);
    let (home, repos) = home_with_repos();
    let lib = dev_repo(&repos, "lib");
    let other = dev_repo(&repos, "other");
    let repo = dev_repo(&repos, "app");
    git(
        &repo,
        &["submodule", "add", "-q", &lib.display().to_string(), "vendor/lib"],
    );
    // A submodule with a local path and no copy of its own in .git/modules: it could as well
    // have come from an agent's commit naming any repository on the host, so it is skipped.
    git(
        &repo,
        &["submodule", "add", "-q", &other.display().to_string(), "vendor/other"],
    );
    git(&repo, &["commit", "-qm", "add submodules"]);
    git(&repo, &["submodule", "deinit", "-q", "-f", "vendor/other"]);
    std::fs::remove_dir_all(repo.join(".git/modules/vendor/other")).unwrap();
    let client = connect(&home.path(), "submodule-test").await;
    let created = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "subs", "repo_path": repo.display().to_string() }),
    )
    .await;
    let warning = created["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("vendor/other") && !warning.contains("vendor/lib "),
        "{warning}"
    );
    let r = exec(
        &client,
        "subs",
        "cat vendor/lib/src/lib.rs; git -C vendor/lib log --format=%s -1; ls -A vendor/other | wc -l",
    )
    .await;
    assert_eq!(r["stdout"], "pub fn answer() -> u32 { 42 }\nadd lib\n0\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_tool_refuses_paths_outside_the_workspace() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "escape-test").await;
    create(&client, "escapes").await;
    // Links made inside the container that point out of /workspace.
    exec(
        &client,
        "escapes",
        "ln -s /etc out-dir && ln -s /etc/passwd out-file && mkdir -p sub",
    )
    .await;
    let escapes = [
        "../etc/passwd",
        "/etc/passwd",
        "sub/../../etc/passwd",
        "out-file",
        "out-dir/hostname",
        "/workspace/../etc",
    ];
    for path in escapes {
        let calls = [
            ("read_file", json!({ "path": path })),
            ("write_file", json!({ "path": path, "content": "x" })),
            (
                "edit_file",
                json!({ "path": path, "old_text": "root", "new_text": "toor" }),
            ),
            ("list_files", json!({ "path": path })),
        ];
        for (tool, args) in calls {
            let (kind, message) = call_err(&client, tool, args.clone()).await;
            assert_eq!(kind, "invalid_argument", "{tool}({args}): {message}");
            assert!(message.contains("outside /workspace"), "{tool}({args}): {message}");
        }
    }
    // Nothing was written anywhere.
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "grep -c toor /etc/passwd; ls /etc/x 2>&1 | head -1", "user": "root" }),
    )
    .await;
    assert_eq!(r["stdout"].as_str().unwrap().lines().next(), Some("0"));
    // Inside, everything works, including through a link that stays inside.
    exec(&client, "escapes", "ln -s sub inner").await;
    call(
        &client,
        "write_file",
        json!({ "path": "inner/ok.txt", "content": "fine" }),
    )
    .await;
    let read = call(&client, "read_file", json!({ "path": "sub/ok.txt" })).await;
    assert_eq!(read["content"], "fine");
    let (kind, message) = call_err(&client, "read_file", json!({ "path": "missing.txt" })).await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("does not exist"), "{message}");
    let (kind, message) = call_err(&client, "read_file", json!({ "path": "sub" })).await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("is a directory"), "{message}");
    // A pipe would block a read or write forever: refused instead.
    exec(&client, "escapes", "mkfifo pipe").await;
    for (tool, args) in [
        ("read_file", json!({ "path": "pipe" })),
        ("write_file", json!({ "path": "pipe", "content": "x" })),
    ] {
        let (kind, message) = call_err(&client, tool, args).await;
        assert_eq!(kind, "invalid_argument", "{tool}: {message}");
        assert!(message.contains("not a regular file"), "{tool}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn old_automatic_checkpoints_are_pruned_and_labelled_ones_kept() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[checkpoints]\nkeep_automatic = 2\n");
    let client = connect(&home.path(), "retention-test").await;
    create(&client, "keeper").await; // no source repository: a private one
    call(&client, "create_checkpoint", json!({ "label": "keep me" })).await;
    // Each restore takes an automatic pre-restore checkpoint.
    let mut pre_images = Vec::new();
    for _ in 0..4 {
        let restored = call(&client, "restore_checkpoint", json!({ "checkpoint": "keeper:1" })).await;
        pre_images.push(restored["pre_restore"]["image_id"].as_str().unwrap().to_string());
    }
    let list = call(&client, "list_checkpoints", json!({})).await;
    let kept: Vec<(i64, bool)> = list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["seq"].as_i64().unwrap(), c["automatic"].as_bool().unwrap()))
        .collect();
    assert_eq!(kept, [(5, true), (4, true), (1, false)]);
    // The pruned checkpoints' images go too (removal runs in the background).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pre_images[..2].iter().any(|i| docker_inspect("image", i).is_some()) {
        assert!(std::time::Instant::now() < deadline, "pruned checkpoint images remain");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(docker_inspect("image", &pre_images[3]).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_works_after_the_agent_destroyed_its_git_history() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "pruned-test").await;
    create(&client, "pruned").await;
    exec(&client, "pruned", "echo precious > keep.txt").await;
    let cp = call(&client, "create_checkpoint", json!({ "label": "precious" })).await;
    let commit = cp["checkpoint"]["git_commit"].as_str().unwrap().to_string();
    // The agent rewrites history and prunes every object the checkpoint needs.
    let r = exec(
        &client,
        "pruned",
        &format!(
            "git checkout -q --orphan scratch && git rm -rqf . && echo other > other.txt && git add . && \
             git commit -qm scratch && git branch -D taskbox/pruned >/dev/null && \
             git reflog expire --expire=now --all && git gc -q --prune=now && \
             (git cat-file -e {commit} 2>/dev/null && echo still-there || echo gone)"
        ),
    )
    .await;
    assert_eq!(r["stdout"], "gone\n", "{r}");
    call(&client, "restore_checkpoint", json!({ "checkpoint": "pruned:1" })).await;
    let r = exec(
        &client,
        "pruned",
        "cat keep.txt; ls other.txt 2>/dev/null || echo no-other; git rev-parse HEAD",
    )
    .await;
    assert_eq!(r["stdout"], format!("precious\nno-other\n{commit}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn files_root_left_unreadable_are_still_checkpointed() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "root-files-test").await;
    let task = create(&client, "rootfiles").await;
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "echo secret > /workspace/root-only.txt && chmod 600 /workspace/root-only.txt", "user": "root" }),
    )
    .await;
    assert_eq!(r["exit_code"], 0);
    let cp = call(&client, "create_checkpoint", json!({})).await;
    let repo = home
        .path()
        .join("tasks")
        .join(task["id"].as_str().unwrap())
        .join("repo.git");
    let commit = cp["checkpoint"]["git_commit"].as_str().unwrap();
    assert_eq!(git(&repo, &["show", &format!("{commit}:root-only.txt")]), "secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn restoring_a_failed_task_saves_its_uncommitted_work_first() {
    require!(docker);
    let home = Home::new();
    // container-enforcer would recreate the container from the checkpoint (suite/hooks.rs).
    write_config(&home.path(), "[hooks.container-enforcer]\nresume_stopped = false\n");
    let client = connect(&home.path(), "phoenix-test").await;
    let task = create(&client, "phoenix").await;
    call(&client, "create_checkpoint", json!({ "label": "start" })).await;
    exec(&client, "phoenix", "echo precious > precious.txt").await;
    // The container dies behind the server's back; the task fails, the workspace is intact.
    docker(&["rm", "-f", task["container_id"].as_str().unwrap()]);
    let (kind, _) = call_err(&client, "execute_in_task", json!({ "command": "true" })).await;
    assert_eq!(kind, "wrong_status");

    let restored = call(&client, "restore_checkpoint", json!({ "checkpoint": "phoenix:1" })).await;
    assert_eq!(restored["task"]["status"], "running");
    assert_eq!(restored["pre_restore"], serde_json::Value::Null);
    let warnings: Vec<&str> = restored["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let kept = warnings
        .iter()
        .find(|w| w.contains("kept as commit"))
        .unwrap_or_else(|| panic!("{warnings:?}"));
    let commit = kept.split("commit ").nth(1).unwrap().split_whitespace().next().unwrap();
    let repo = home
        .path()
        .join("tasks")
        .join(task["id"].as_str().unwrap())
        .join("repo.git");
    assert_eq!(git(&repo, &["show", &format!("{commit}:precious.txt")]), "precious");
    // The workspace itself is back at the checkpoint.
    let r = exec(&client, "phoenix", "ls precious.txt 2>/dev/null || echo gone").await;
    assert_eq!(r["stdout"], "gone\n");
}
