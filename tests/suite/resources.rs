//! MCP resources through the real binary: templates listed, task files and kept execution
//! output read back byte for byte (text, or base64 for what is not UTF-8).

use crate::common::*;
use base64::Engine;
use pretty_assertions::assert_eq;
use rmcp::model::{ReadResourceRequestParams, ResourceContents};
use serde_json::json;

async fn read(client: &Client, uri: &str) -> Vec<(String, Vec<u8>)> {
    let result = client.read_resource(ReadResourceRequestParams::new(uri)).await.unwrap();
    result
        .contents
        .into_iter()
        .map(|c| match c {
            ResourceContents::TextResourceContents { uri, text, .. } => (uri, text.into_bytes()),
            ResourceContents::BlobResourceContents { uri, blob, .. } => {
                (uri, base64::engine::general_purpose::STANDARD.decode(blob).unwrap())
            }
            #[allow(unreachable_patterns)]
            other => panic!("unexpected contents {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn task_files_and_execution_output_read_back_byte_for_byte() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "resources-test").await;
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "res", "network": "none" }),
    )
    .await["task"]
        .clone();
    let id = task["id"].as_str().unwrap();
    call(
        &client,
        "record_decision",
        json!({ "decision": "Use resources", "rationale": "clients attach them" }),
    )
    .await;
    // 200 KB of stdout that is not UTF-8, and 100 KB of text on stderr.
    let r = exec(&client, "res", "head -c 200000 /dev/urandom; seq 1 20000 >&2").await;
    assert_eq!(r["truncated"], true);
    let execution = r["execution_id"].as_str().unwrap();

    let templates = client.list_all_resource_templates().await.unwrap();
    let uris: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        uris,
        [
            "taskbox://tasks/{task}/state",
            "taskbox://tasks/{task}/events",
            "taskbox://tasks/{task}/decisions",
            "taskbox://tasks/{task}/plan",
            "taskbox://tasks/{task}/executions/{execution}/output",
        ]
    );
    let listed = client.list_all_resources().await.unwrap();
    assert!(
        listed.iter().any(|r| r.uri == "taskbox://tasks/res/state"),
        "{listed:?}"
    );

    let dir = home.path().join("tasks").join(id);
    for (name, file) in [
        ("state", "state.json"),
        ("events", "events.jsonl"),
        ("decisions", "decisions.md"),
    ] {
        let uri = format!("taskbox://tasks/res/{name}");
        let contents = read(&client, &uri).await;
        assert_eq!(contents.len(), 1);
        assert_eq!(contents[0].0, uri);
        // The event log grows with every call (this read included), so compare what was
        // written up to the read.
        let on_disk = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(&on_disk[..contents[0].1.len()], contents[0].1.as_slice(), "{name}");
    }
    let output = read(&client, &format!("taskbox://tasks/{id}/executions/{execution}/output")).await;
    assert_eq!(output.len(), 2);
    assert_eq!(
        output[0].1,
        std::fs::read(dir.join("outputs").join(format!("{execution}.log"))).unwrap()
    );
    assert_eq!(output[0].1.len(), 200_000);
    let expected_stderr: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8(output[1].1.clone()).unwrap(), expected_stderr);

    // The plan hooks wrote the plan; the decision is in it.
    let plan = read(&client, "taskbox://tasks/res/plan").await;
    let plan = String::from_utf8(plan[0].1.clone()).unwrap();
    assert_eq!(plan, std::fs::read_to_string(dir.join("plan.md")).unwrap());
    assert!(plan.starts_with("# Plan: res\n"), "{plan}");

    // What is not there says so.
    for (uri, needle) in [
        ("taskbox://tasks/nope/state".to_string(), "no task"),
        (
            format!("taskbox://tasks/res/executions/{execution}x/output"),
            "not an execution id",
        ),
        ("file:///etc/passwd".to_string(), "not a taskbox resource"),
    ] {
        let err = client
            .read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{uri}: {err}");
    }
}

/// A kept output larger than a page is read in 1 MiB pages: each read says where it is and
/// names the next page, and the pages put together are the file. Without paging, one read
/// would load and encode the whole file.
#[tokio::test(flavor = "multi_thread")]
async fn large_outputs_are_read_in_pages() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "resources-pages").await;
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "pages", "network": "none" }),
    )
    .await["task"]
        .clone();
    let id = task["id"].as_str().unwrap();
    // 2.5 MiB of text on stdout: three pages.
    let r = exec(&client, "pages", "seq 1 400000 | head -c 2621440").await;
    let execution = r["execution_id"].as_str().unwrap();
    let on_disk = std::fs::read(
        home.path()
            .join("tasks")
            .join(id)
            .join("outputs")
            .join(format!("{execution}.log")),
    )
    .unwrap();
    assert_eq!(on_disk.len(), 2_621_440);

    let mut uri = format!("taskbox://tasks/{id}/executions/{execution}/output");
    let mut whole = Vec::new();
    let mut pages = 0;
    loop {
        let result = client
            .read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
            .unwrap();
        let (text, meta) = match &result.contents[0] {
            ResourceContents::TextResourceContents { text, meta, .. } => (text.clone(), meta.clone().unwrap()),
            other => panic!("expected text: {other:?}"),
        };
        assert!(text.len() <= 1 << 20, "a page is at most 1 MiB: {}", text.len());
        assert_eq!(meta.0["offset"], whole.len() as u64);
        assert_eq!(meta.0["size"], 2_621_440);
        whole.extend_from_slice(text.as_bytes());
        pages += 1;
        match meta.0["next"].as_str() {
            Some(next) => uri = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(whole, on_disk);

    // A query other than the offset is refused, saying what is understood.
    let err = client
        .read_resource(ReadResourceRequestParams::new(format!(
            "taskbox://tasks/{id}/executions/{execution}/output?page=2"
        )))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("?offset="), "{err}");
}
