//! Secrets by reference (issue 14 points 1, 2 and 5), on the real binary over MCP, real Docker
//! and real git: values from `env:` and `file:` reach commands; what commands print is
//! redacted (plain, base64, URL-encoded, split across reads, foreground and background); the
//! values land nowhere taskbox writes (registry and its WAL, task files, background output,
//! container and checkpoint image configuration, the task branch); another owner cannot tell
//! a secret it may not use from one that does not exist.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::*;
use base64::Engine;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use sha2::Digest;

/// The `env:` secret's value: characters that URL encoding changes, so its encoded form differs.
const TOKEN: &str = "tbx-Secret/v@lue+9f3K2q";
/// The `file:` secret's value (the file ends with a newline, which is not part of it).
const FILE_KEY: &str = "file-key-Q7pz9XwLm4";

fn sha256(text: &str) -> String {
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir` (recursively, not following links) but `skip`, with its bytes.
fn files_under(dir: &Path, skip: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            files_under(&path, skip, out);
        } else if kind.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            out.push((path, bytes));
        }
    }
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Reads a background execution by cursor until it ends; returns the last reply and stdout.
async fn read_to_end(client: &Client, id: &str) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = String::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({ "execution_id": id, "wait_s": 2 });
        if let Some(c) = &cursor {
            args["since"] = json!(c);
        }
        let r = call(client, "execution_output", args).await;
        out.push_str(r["stdout"].as_str().unwrap());
        cursor = Some(r["cursor"].as_str().unwrap().to_string());
        if r["status"] != "running" && r["more"] == false {
            return (r, out);
        }
        assert!(Instant::now() < deadline, "still running: {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_commands_redacted_and_land_nowhere_taskbox_writes() {
    require!(docker);
    let home = Home::new();
    // The secret's file lives outside the data directory, as an operator's would.
    let outside = tempfile::tempdir().unwrap();
    let key_file = outside.path().join("key");
    std::fs::write(&key_file, format!("{FILE_KEY}\n")).unwrap();
    write_config(
        &home.path(),
        &format!(
            "[secrets.TOKEN]\nfrom = \"env:SECRETS_TEST_TOKEN\"\n[secrets.FILE_KEY]\nfrom = \"file:{}\"\n",
            key_file.display()
        ),
    );
    let client = connect_with_env(&home.path(), "secrets", &[("SECRETS_TEST_TOKEN", TOKEN)]).await;
    let created = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "sec", "secrets": ["TOKEN"] }),
    )
    .await;
    assert_eq!(created["task"]["secrets"], json!(["TOKEN"]));
    let added = call(&client, "add_task_secret", json!({ "name": "FILE_KEY" })).await;
    assert_eq!(added["task"]["secrets"], json!(["FILE_KEY", "TOKEN"]));
    let task = added["task"].clone();

    // Both values reach the command's environment (compared by hash: the reply redacts them).
    let r = exec(
        &client,
        "sec",
        "printf %s \"$TOKEN\" | sha256sum | cut -c1-64; printf %s \"$FILE_KEY\" | sha256sum | cut -c1-64",
    )
    .await;
    assert_eq!(r["stdout"], format!("{}\n{}\n", sha256(TOKEN), sha256(FILE_KEY)));

    // A value the agent typed into a command works, and is recorded redacted (the registry
    // and the events are searched below).
    let typed = exec(&client, "sec", &format!("test \"$TOKEN\" = '{TOKEN}' && echo same")).await;
    assert_eq!(typed["stdout"], "same\n");

    // Printed, encoded, or split across two reads of the stream: redacted.
    assert_eq!(exec(&client, "sec", "echo $TOKEN").await["stdout"], "[secret:TOKEN]\n");
    assert_eq!(
        exec(&client, "sec", "echo \"$FILE_KEY\" >&2").await["stderr"],
        "[secret:FILE_KEY]\n"
    );
    let b64 = exec(&client, "sec", "echo $TOKEN | base64").await["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}\n"));
    assert!(b64.contains("[secret:TOKEN]") && !b64.contains(&encoded[..24]), "{b64}");
    let url = exec(
        &client,
        "sec",
        "printf '%s\\n' \"$TOKEN\" | sed 's|/|%2F|g; s|@|%40|g; s|+|%2B|g'",
    )
    .await;
    assert_eq!(url["stdout"], "[secret:TOKEN]\n");
    let split = exec(
        &client,
        "sec",
        "printf %s \"${TOKEN:0:5}\"; sleep 1; printf '%s\\n' \"${TOKEN:5}\"",
    )
    .await;
    assert_eq!(split["stdout"], "[secret:TOKEN]\n");
    // Past the reply's cap, the spill file is redacted too.
    let big = exec(
        &client,
        "sec",
        "head -c 100000 /dev/zero | tr '\\0' x; echo; echo $TOKEN; head -c 100000 /dev/zero | tr '\\0' y",
    )
    .await;
    assert_eq!(big["truncated"], true, "{big}");
    let spill = std::fs::read_to_string(big["full_output"]["stdout"].as_str().unwrap()).unwrap();
    assert!(spill.contains("\n[secret:TOKEN]\n") && !spill.contains(TOKEN));

    // A background execution: the supervisor redacts its files, a split value included.
    let bg = call(
        &client,
        "execute_in_task",
        json!({ "task": "sec", "background": true, "command":
            "echo start; printf %s \"${FILE_KEY:0:4}\"; sleep 1; printf '%s\\n' \"${FILE_KEY:4}\"; echo $TOKEN | base64" }),
    )
    .await;
    let (last, out) = read_to_end(&client, bg["execution_id"].as_str().unwrap()).await;
    assert_eq!(last["status"], "finished", "{last}");
    assert!(out.starts_with("start\n[secret:FILE_KEY]\n[secret:TOKEN]"), "{out}");

    // A foreground command's supervisor reads the patterns ahead of the command's own input,
    // which reaches the command untouched.
    let piped = call(
        &client,
        "execute_in_task",
        json!({ "task": "sec", "command": "cat; echo $TOKEN", "stdin": "line one\nline two\n" }),
    )
    .await;
    assert_eq!(piped["stdout"], "line one\nline two\n[secret:TOKEN]\n", "{piped}");
    // Yielded to the background, its run files stay on the host's disk: redacted as written
    // (the scan below reads them).
    let yielded = call(
        &client,
        "execute_in_task",
        json!({ "task": "sec", "yield_after_s": 1, "command": "echo $TOKEN; sleep 3; echo done" }),
    )
    .await;
    assert_eq!(yielded["yielded"], true, "{yielded}");
    let (last, out) = read_to_end(&client, yielded["execution_id"].as_str().unwrap()).await;
    assert_eq!(last["status"], "finished", "{last}");
    assert_eq!(out, "[secret:TOKEN]\ndone\n");

    // A file holding a value is left out of the commit, with a warning naming it (not the value).
    exec(
        &client,
        "sec",
        "printf 'token=%s\\n' \"$TOKEN\" > leak.txt; echo fine > ok.txt; mkdir -p sub; echo \"$FILE_KEY\" | base64 > sub/encoded.txt",
    )
    .await;
    let checkpoint = call(&client, "create_checkpoint", json!({})).await;
    let warnings = checkpoint["warnings"].to_string();
    assert!(
        warnings.contains("'leak.txt'") && warnings.contains("'sub/encoded.txt'") && !warnings.contains("ok.txt"),
        "{checkpoint}"
    );
    assert!(!warnings.contains(TOKEN), "{warnings}");
    // The file stays in the workspace, uncommitted.
    let status = exec(&client, "sec", "git status --porcelain").await["stdout"].clone();
    assert!(status.as_str().unwrap().contains("?? leak.txt"), "{status}");

    // Status shows the names, never the values.
    let report = call_raw(&client, "get_task_status", json!({})).await;
    let report_text = text(&report);
    assert!(report_text.contains("FILE_KEY, TOKEN"), "{report_text}");
    assert!(!report_text.contains(TOKEN) && !report_text.contains(FILE_KEY));

    // Nowhere in Docker's configuration of the container or the checkpoint image.
    let container = task["container_id"].as_str().unwrap();
    let image = checkpoint["checkpoint"]["image_id"].as_str().unwrap();
    for (kind, id) in [("container", container), ("image", image)] {
        let inspected = docker_inspect(kind, id).unwrap().to_string();
        assert!(
            !inspected.contains(TOKEN) && !inspected.contains(FILE_KEY),
            "{kind}: {inspected}"
        );
    }

    // The stop syncs again: the branch gets ok.txt, never leak.txt, and no commit holds a value.
    let stopped = call(&client, "stop_task", json!({})).await;
    assert!(stopped["warnings"].to_string().contains("'leak.txt'"), "{stopped}");
    let repo = Path::new(task["repo"]["path"].as_str().unwrap()).to_path_buf();
    let branch = task["repo"]["branch"].as_str().unwrap();
    assert_eq!(git(&repo, &["show", &format!("{branch}:ok.txt")]), "fine");
    let tree = git(&repo, &["ls-tree", "-r", "--name-only", branch]);
    assert!(!tree.contains("leak.txt") && !tree.contains("encoded.txt"), "{tree}");
    let history = git(&repo, &["log", "-p", "--all", "--format=%H %s"]);
    assert!(!history.contains(TOKEN) && !history.contains(FILE_KEY), "{history}");

    // Nothing taskbox wrote under the data directory holds a value: registry.db and its WAL
    // (the server still runs), state, events, manifests, outputs, background files.
    let mut files = Vec::new();
    files_under(&home.path(), &home.path().join("workspaces"), &mut files);
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    for expected in ["registry.db", "registry.db-wal", "events.jsonl", "state.json", "/run/"] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "no {expected} among {names:?}"
        );
    }
    for (path, bytes) in &files {
        for value in [TOKEN, FILE_KEY] {
            assert!(!holds(bytes, value), "{} holds a secret's value", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_owner_cannot_tell_a_secret_it_may_not_use_from_an_unknown_one() {
    require!(docker);
    let home = Home::new();
    write_config(
        &home.path(),
        "[secrets.LOCAL_ONLY]\nfrom = \"env:SECRETS_TEST_LOCAL\"\n\
         [secrets.SHARED]\nfrom = \"env:SECRETS_TEST_SHARED\"\nowners = [\"alice\"]\n",
    );
    let (alice_token, _) = create_token(&home.path(), "alice");
    let server = HttpServer::start_with_env(
        &home.path(),
        &[],
        &[
            ("SECRETS_TEST_LOCAL", "local-only-value-1"),
            ("SECRETS_TEST_SHARED", "shared-value-22"),
        ],
    );
    let alice = connect_http(&server, Some(&alice_token), "alice").await;

    // Asked at creation: the same error, but for the name.
    let refused = |(kind, message): (String, String), name: &str| (kind, message.replace(name, "NAME"));
    let forbidden = refused(
        call_err(
            &alice,
            "create_task_sandbox",
            json!({ "name": "a", "secrets": ["LOCAL_ONLY"] }),
        )
        .await,
        "LOCAL_ONLY",
    );
    let unknown = refused(
        call_err(
            &alice,
            "create_task_sandbox",
            json!({ "name": "a", "secrets": ["NO_SUCH"] }),
        )
        .await,
        "NO_SUCH",
    );
    assert_eq!(forbidden, unknown);
    assert_eq!(forbidden.0, "invalid_argument", "{forbidden:?}");

    // A secret open to her works; added later, the same refusal as an unknown name.
    call(
        &alice,
        "create_task_sandbox",
        json!({ "name": "a", "secrets": ["SHARED"] }),
    )
    .await;
    assert_eq!(exec(&alice, "a", "echo $SHARED").await["stdout"], "[secret:SHARED]\n");
    let forbidden = refused(
        call_err(&alice, "add_task_secret", json!({ "name": "LOCAL_ONLY" })).await,
        "LOCAL_ONLY",
    );
    let unknown = refused(
        call_err(&alice, "add_task_secret", json!({ "name": "NO_SUCH" })).await,
        "NO_SUCH",
    );
    assert_eq!(forbidden, unknown);
    let status = call(&alice, "get_task_status", json!({})).await;
    assert_eq!(status["task"]["secrets"], json!(["SHARED"]));
}
