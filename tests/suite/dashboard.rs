//! The web dashboard (`/ui` of `serve --http`) in headless Chromium: the real binary, a task
//! made over MCP, the pages loaded by a real browser and their DOM checked against the task,
//! an event arriving live, the restore confirmation, markup from the task shown as text,
//! CSRF and owner rules. Screenshots are kept under `<target>/ui-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::http::*;
use crate::common::webdriver::{Browser, find_browser};
use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Where screenshots go: beside the tests' scratch directory in the target directory.
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots")
}

/// `taskbox ui --url BASE`: the printed link.
fn local_link(home: &std::path::Path, base: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["ui", "--url", base])
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(link.starts_with(&format!("{base}/ui/login#code=tbxui_")), "{link}");
    link
}

/// `POST /ui/login-link` with a bearer token: the link for the token's owner.
async fn token_link(server: &HttpServer, token: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/ui/login-link", server.base))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    body["url"].as_str().unwrap().to_string()
}

/// The browser's session cookie for this server, and its attributes.
async fn session_cookie(browser: &Browser) -> Value {
    browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with("taskbox_ui_")))
        .expect("a session cookie")
}

/// A request with the session's cookie and optional extra headers; (status, headers, body).
async fn with_cookie(
    method: &str,
    url: &str,
    cookie: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::new();
    let mut request = match method {
        "POST" => client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string()),
        _ => client.get(url),
    };
    request = request.header("cookie", cookie);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = tokio::time::timeout(Duration::from_secs(3), response.text())
        .await
        .map(|t| t.unwrap_or_default())
        .unwrap_or_default();
    (status, headers, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_a_task_live_and_restores_after_confirmation() {
    require!(docker);
    let (chromedriver, chromium) = require!(
        find_browser(),
        "chromium and chromedriver are not installed",
        "run scripts/test.sh (it installs Debian's chromium and chromium-driver), or apt-get install them"
    );
    let shots = screenshots();
    let home = Home::new();
    let (token, token_id) = create_token(&home.path(), "alice");
    let server = HttpServer::start(&home.path(), &[]);
    let client = connect_http(&server, Some(&token), "dashboard-agent").await;

    // A task whose description, output, file names and decisions hold markup.
    let description = "dashboard <i>test</i> & \"quotes\"";
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "dash", "description": description }),
    )
    .await["task"]
        .clone();
    let id = task["id"].as_str().unwrap().to_string();
    let hostile = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";
    exec(&client, "dash", &format!("printf '%s\\n' '{hostile}'")).await;
    exec(&client, "dash", "echo original > notes.txt && echo x > '<em>x&y\".txt'").await;
    call(
        &client,
        "record_decision",
        json!({ "task": "dash", "decision": "use <em>plain</em> files", "rationale": "simplest" }),
    )
    .await;
    call(
        &client,
        "create_checkpoint",
        json!({ "task": "dash", "label": "before <change>" }),
    )
    .await;
    exec(&client, "dash", "echo changed > notes.txt").await;

    // Sign in with a link asked for with alice's token.
    let browser = Browser::start(&chromedriver, &chromium).await;
    browser.goto(&token_link(&server, &token).await).await;
    assert!(
        browser.wait_for_text("#owner", "alice", Duration::from_secs(20)).await,
        "not signed in: {} {:?}",
        browser.url().await,
        browser
            .js("return document.documentElement.outerHTML;", json!([]))
            .await
    );
    assert_eq!(
        browser.url().await,
        format!("{}/ui/", server.base),
        "the code left the address bar"
    );
    let cookie = session_cookie(&browser).await;
    assert_eq!(
        (cookie["httpOnly"].clone(), cookie["sameSite"].clone()),
        (json!(true), json!("Strict"))
    );
    assert_eq!(cookie["path"], "/ui");
    let cookie_header = format!(
        "{}={}",
        cookie["name"].as_str().unwrap(),
        cookie["value"].as_str().unwrap()
    );
    // The list: the task with its status, the description as text.
    let rows = browser
        .js(
            "return Array.from(document.querySelectorAll('#tasks tr.task')).map(r => [r.dataset.id, \
             r.querySelector('.name').textContent, r.querySelector('.status').textContent, \
             r.querySelector('.description').textContent, r.querySelector('.description').children.length]);",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!([[id, "dash", "running", description, 0]]));
    browser.screenshot(&shots.join("tasks.png")).await;

    // The task page.
    browser.click("#tasks tr.task .name a").await;
    assert!(
        browser
            .wait_for_text("#task-name", "dash", Duration::from_secs(30))
            .await
    );
    assert_eq!(browser.text("#task-status").await.as_deref(), Some("running"));
    assert_eq!(browser.text("#task-id").await.as_deref(), Some(id.as_str()));
    assert_eq!(browser.text("#task-description").await.as_deref(), Some(description));
    // Output with markup is text: no script ran, no element was made from it.
    let outputs = browser
        .js(
            "return Array.from(document.querySelectorAll('#executions pre.stdout')).map(p => p.textContent);",
            json!([]),
        )
        .await;
    assert!(
        outputs
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o.as_str() == Some(&format!("{hostile}\n"))),
        "{outputs}"
    );
    let injected = browser
        .js(
            "return [window.pwned === undefined, document.querySelectorAll('main script, main img, main em, main b:not(#owner)').length];",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([true, 0]));
    let commands = browser
        .js(
            "return Array.from(document.querySelectorAll('#executions .command')).map(c => c.textContent);",
            json!([]),
        )
        .await;
    assert_eq!(commands.as_array().unwrap().len(), 3, "{commands}");
    assert_eq!(commands[0], "echo changed > notes.txt", "newest first");
    // The diff of its branch: the files, names as text, and the patch.
    let files = browser
        .js(
            "return Array.from(document.querySelectorAll('#diff-files td.path')).map(c => c.textContent).sort();",
            json!([]),
        )
        .await;
    assert_eq!(files, json!(["<em>x&y\".txt", "notes.txt"]));
    assert!(browser.text("#patch").await.unwrap().contains("+changed"));
    // Checkpoints, plan and decisions.
    assert_eq!(
        browser
            .js("return Array.from(document.querySelectorAll('#checkpoints tr.checkpoint')).map(r => [r.dataset.seq, r.querySelector('.label').textContent]);", json!([]))
            .await,
        json!([["1", "before <change>"]])
    );
    let plan = browser.text("#plan").await.unwrap();
    assert!(
        plan.starts_with("# Plan: dash\n") && plan.contains(description),
        "{plan}"
    );
    assert_eq!(
        browser.text("#decisions .decision-text").await.as_deref(),
        Some("use <em>plain</em> files")
    );
    browser.screenshot(&shots.join("task.png")).await;

    // An event arrives live: a command run through MCP appears without a reload.
    assert!(browser.wait_for_text("#live", "live", Duration::from_secs(20)).await);
    let before = browser
        .js(
            "return document.querySelectorAll('#events tr.event').length;",
            json!([]),
        )
        .await;
    exec(&client, "dash", "echo live-marker-42").await;
    assert!(
        browser
            .wait_for_text(
                "#events tr.event.new td.data",
                "live-marker-42",
                Duration::from_secs(20)
            )
            .await,
        "no live event"
    );
    let new_type = browser
        .js(
            "return Array.from(document.querySelectorAll('#events tr.event.new')).find(r => r.textContent.includes('live-marker-42')).querySelector('.type').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(new_type, "execution");
    let after = browser
        .js(
            "return document.querySelectorAll('#events tr.event').length;",
            json!([]),
        )
        .await;
    assert!(after.as_u64() > before.as_u64(), "{before} → {after}");
    assert!(
        !browser
            .js("return document.getElementById('reload-note').hidden;", json!([]))
            .await
            .as_bool()
            .unwrap()
    );
    browser.screenshot(&shots.join("live-event.png")).await;

    // Restore asks first; cancelling restores nothing.
    let notes = |r: Value| r["stdout"].as_str().unwrap().trim().to_string();
    browser.click("#checkpoints tr.checkpoint a.restore").await;
    assert!(
        browser
            .wait_for_text("#confirm-text", "go back to how they were", Duration::from_secs(20))
            .await
    );
    assert_eq!(
        browser.text("h1").await.as_deref(),
        Some("Restore checkpoint #1 of dash?")
    );
    browser.screenshot(&shots.join("restore-confirm.png")).await;
    browser.click("#cancel-restore").await;
    assert!(
        browser
            .wait_for_text("#task-name", "dash", Duration::from_secs(30))
            .await
    );
    assert_eq!(notes(exec(&client, "dash", "cat notes.txt").await), "changed");

    // A restore from another site, or without the form's token, is refused.
    let restore_url = format!("{}/ui/tasks/{id}/checkpoints/1/restore", server.base);
    let csrf = browser
        .js(
            "return document.querySelector('form.logout input[name=csrf]').value;",
            json!([]),
        )
        .await
        .as_str()
        .unwrap()
        .to_string();
    let origin = server.base.as_str();
    for (headers, body) in [
        (vec![("origin", origin)], String::new()),
        (vec![("origin", origin)], "csrf=wrong".to_string()),
        (vec![("origin", "http://evil.example")], format!("csrf={csrf}")),
        (vec![("origin", "http://localhost:1")], format!("csrf={csrf}")),
        (vec![], format!("csrf={csrf}")),
    ] {
        let (status, _, _) = with_cookie("POST", &restore_url, &cookie_header, &headers, &body).await;
        assert_eq!(status, 403, "{headers:?} {body}");
    }
    assert_eq!(notes(exec(&client, "dash", "cat notes.txt").await), "changed");

    // Confirmed, it restores.
    browser.click("#checkpoints tr.checkpoint a.restore").await;
    assert!(
        browser
            .wait_for_text("#confirm-text", "go back", Duration::from_secs(20))
            .await
    );
    browser.click("#confirm-restore").await;
    assert!(
        browser
            .wait_for_text("#flash", "Restored checkpoint #1.", Duration::from_secs(120))
            .await,
        "{:?}",
        browser.text("main").await
    );
    assert_eq!(notes(exec(&client, "dash", "cat notes.txt").await), "original");
    browser.screenshot(&shots.join("restored.png")).await;

    // Every page carries the policy: no inline script, no framing.
    for path in ["/ui/", &format!("/ui/tasks/{id}"), "/ui/login", "/ui/assets/task.js"] {
        let (status, headers, _) = with_cookie("GET", &format!("{}{path}", server.base), &cookie_header, &[], "").await;
        assert_eq!(status, 200, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
    let page = with_cookie(
        "GET",
        &format!("{}/ui/tasks/{id}", server.base),
        &cookie_header,
        &[],
        "",
    )
    .await
    .2;
    assert!(
        !page.contains("<script>") && !page.contains("onerror=\""),
        "inline script or raw markup in the page"
    );

    // Owners see only their tasks: the local owner, signed in with `taskbox ui`, has none,
    // and alice's task is not found for it.
    browser.click("form.logout button").await;
    assert!(browser.wait_for_text("h1", "Signed out", Duration::from_secs(20)).await);
    let (status, _, _) = with_cookie("GET", &format!("{}/ui/", server.base), &cookie_header, &[], "").await;
    assert_eq!(status, 401, "the signed-out session still works");
    let link = local_link(&home.path(), &server.base);
    browser.goto(&link).await;
    assert!(browser.wait_for_text("#owner", "local", Duration::from_secs(20)).await);
    assert_eq!(browser.text("#task-count").await.as_deref(), Some("0 task(s)"));
    browser.goto(&format!("{}/ui/tasks/{id}", server.base)).await;
    assert_eq!(browser.text("h1").await.as_deref(), Some("Not found"));
    let local_cookie = session_cookie(&browser).await;
    let local_header = format!(
        "{}={}",
        local_cookie["name"].as_str().unwrap(),
        local_cookie["value"].as_str().unwrap()
    );
    let (status, _, _) = with_cookie(
        "GET",
        &format!("{}/ui/tasks/{id}/events?after=0", server.base),
        &local_header,
        &[],
        "",
    )
    .await;
    assert_eq!(status, 404, "another owner's event stream");
    // A link signs in once.
    browser.goto(&link).await;
    assert!(
        browser
            .wait_for_text("h1", "Sign-in link not valid", Duration::from_secs(20))
            .await
    );
    browser.screenshot(&shots.join("link-used.png")).await;

    // A session made with a token ends when the token is revoked.
    browser.goto(&token_link(&server, &token).await).await;
    assert!(browser.wait_for_text("#owner", "alice", Duration::from_secs(20)).await);
    let alice = session_cookie(&browser).await;
    let alice_header = format!(
        "{}={}",
        alice["name"].as_str().unwrap(),
        alice["value"].as_str().unwrap()
    );
    assert_eq!(
        with_cookie("GET", &format!("{}/ui/", server.base), &alice_header, &[], "")
            .await
            .0,
        200
    );
    revoke_token(&home.path(), &token_id);
    assert_eq!(
        with_cookie("GET", &format!("{}/ui/", server.base), &alice_header, &[], "")
            .await
            .0,
        401
    );
    assert_eq!(server.stdout(), "");
}
