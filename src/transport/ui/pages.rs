//! The dashboard's pages and forms. Each handler resolves the task for the session's owner
//! first (another owner's task is "not found", like one that does not exist), then renders
//! with every value escaped.

use std::fmt::Write;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Ui;
use super::auth::Principal;
use super::html::{cut, esc, page};
use super::session::{self, Session};
use crate::domain::{Checkpoint, Event, Execution, Task};
use crate::error::Error;
use crate::task::service::{LOGIN_TTL, SHOWN_OUTPUT_BYTES, TaskDiff};

/// Events shown when a task page loads (newer ones arrive live).
const EVENTS_SHOWN: u32 = 200;
/// Executions shown on a task page, newest first.
const EXECUTIONS_SHOWN: u32 = 30;
/// Decisions shown on a task page.
const DECISIONS_SHOWN: u32 = 200;
/// Longest event summary shown, in bytes.
pub const SUMMARY_BYTES: usize = 400;
/// Most of a plan shown, and of one decision or rationale (both come from agents).
const PLAN_BYTES: usize = 256 * 1024;
const DECISION_BYTES: usize = 4 * 1024;
/// Most changed files listed (a branch's diff lists up to 20 000).
const DIFF_FILES_SHOWN: usize = 1000;

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// A page that says what went wrong and what to do, with a way back.
fn message(status: StatusCode, session: Option<&Session>, title: &str, text: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"message\">{}</p><p><a href=\"/ui/\">Back to the tasks</a></p>",
        esc(title),
        esc(text)
    );
    html(
        status,
        page(
            title,
            session.map(|s| s.owner.as_str()),
            session.map(|s| s.csrf.as_str()),
            &[],
            &body,
        ),
    )
}

pub fn not_signed_in() -> Response {
    message(
        StatusCode::UNAUTHORIZED,
        None,
        "Not signed in",
        "Sign in with a one-time link: run `taskbox ui` on the server's machine (for the local owner), or \
         POST /ui/login-link with your bearer token, and open the link it prints.",
    )
}

fn not_found(session: &Session, what: &str) -> Response {
    message(StatusCode::NOT_FOUND, Some(session), "Not found", what)
}

/// The owner's task by id or name, or the "not found" page.
fn task_for(ui: &Ui, session: &Session, id: &str) -> Result<Task, Box<Response>> {
    ui.service
        .resolve_for(&session.owner, id)
        .map_err(|_| Box::new(not_found(session, &format!("You have no task '{id}'."))))
}

// ---- Sign-in ----

/// `GET /ui/login`: a page whose script takes the code from the link's fragment (which never
/// reaches a server log or a Referer), removes it from the address bar and posts it.
pub async fn login_page() -> Response {
    let body = "<h1>Sign in</h1>\
        <form id=\"login\" method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"code\" value=\"\">\
        <noscript><p>The dashboard needs JavaScript.</p></noscript></form>\
        <p id=\"login-note\" class=\"message\">Signing in…</p>";
    html(StatusCode::OK, page("Sign in", None, None, &["login.js"], body))
}

/// `POST /ui/login` (`code=…`): redeems the one-time code for a session cookie. Only from a
/// page of this server (Origin), so another site cannot sign a browser into its own session.
pub async fn login(State(ui): State<Arc<Ui>>, headers: HeaderMap, body: Bytes) -> Response {
    if !session::same_origin(&headers) {
        return message(
            StatusCode::FORBIDDEN,
            None,
            "Refused",
            "Sign-in requests must come from the dashboard's own sign-in page.",
        );
    }
    let form = session::form_tokens(&body);
    let login = match form.get("code").map(|code| ui.service.redeem_ui_login(code)) {
        Some(Ok(Some(login))) => login,
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot redeem a dashboard sign-in code");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Try again",
                "The registry cannot be read right now; open the link again shortly.",
            );
        }
        _ => {
            // The sign-in page's form is here too: a new link opened over this page (the
            // same URL with another fragment) signs in without a reload.
            let body = "<h1>Sign-in link not valid</h1><p class=\"message\">This sign-in link was used already, \
                        has expired or is unknown. Run `taskbox ui` for a new one.</p>\
                        <form id=\"login\" method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"code\" value=\"\"></form>";
            return html(
                StatusCode::UNAUTHORIZED,
                page("Sign-in link not valid", None, None, &["login.js"], body),
            );
        }
    };
    tracing::info!(owner = %login.owner, token = ?login.token_id, "dashboard sign-in");
    let Some(id) = ui.sessions.create(login.owner, login.token_id) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = Redirect::to("/ui/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&ui.cookie, &id)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /ui/logout`: ends the session (CSRF-checked, so another site cannot sign you out).
pub async fn logout(
    State(ui): State<Arc<Ui>>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refuse_cross_site(&session, &headers, &body) {
        return refused;
    }
    if let Some(id) = session::cookie_value(&headers, &ui.cookie) {
        ui.sessions.remove(&id);
    }
    let mut response = message(StatusCode::OK, None, "Signed out", "Run `taskbox ui` to sign in again.");
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie(&ui.cookie)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /ui/login-link` with a bearer token: a one-time sign-in link for the token's owner,
/// as JSON `{url, expires_in_s}`; the session it makes ends when the token is revoked.
pub async fn login_link(
    State(ui): State<Arc<Ui>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let token = principal.key.starts_with("tok-").then_some(principal.key.as_str());
    let code = match ui.service.create_ui_login(&principal.owner, token) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "cannot make a dashboard sign-in code");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot make a sign-in link; retry shortly\n",
            )
                .into_response();
        }
    };
    // The Host passed the allowed-hosts check.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let body = serde_json::json!({
        "url": format!("http://{host}/ui/login#code={code}"),
        "expires_in_s": LOGIN_TTL.num_seconds(),
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Refuses a state-changing request that is not from a page of this server: its Origin must
/// be this server's, and its body must carry the session's CSRF token.
fn refuse_cross_site(session: &Session, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let form = session::form_tokens(body);
    let token_ok = form.get("csrf").is_some_and(|t| session.csrf_matches(t));
    if session::same_origin(headers) && token_ok {
        return None;
    }
    tracing::warn!(owner = %session.owner, "refused a dashboard request from another origin or without its CSRF token");
    Some(message(
        StatusCode::FORBIDDEN,
        Some(session),
        "Refused",
        "This request did not come from a dashboard page (its origin or form token is wrong). Reload the page and try again.",
    ))
}

// ---- The task list ----

/// `GET /ui/`: the owner's tasks, newest first, with their status.
pub async fn tasks(State(ui): State<Arc<Ui>>, Extension(session): Extension<Session>) -> Response {
    let listed = match ui.service.list(&session.owner, None, 500, 0) {
        Ok(page) => page,
        Err(e) => return service_error(&session, &e),
    };
    let mut body = format!(
        "<h1>Tasks</h1><p class=\"count\" id=\"task-count\">{} task(s)</p>",
        listed.total
    );
    if listed.tasks.is_empty() {
        body.push_str("<p class=\"empty\">No tasks yet. Agents create them with create_task_sandbox.</p>");
    } else {
        body.push_str(
            "<table id=\"tasks\"><thead><tr><th>Name</th><th>Status</th><th>Description</th><th>Image</th>\
             <th>Created</th><th>Updated</th></tr></thead><tbody>",
        );
        for task in &listed.tasks {
            let _ = write!(
                body,
                "<tr class=\"task\" data-id=\"{id}\"><td class=\"name\"><a href=\"/ui/tasks/{id}\">{name}</a></td>\
                 <td><span class=\"status status-{status}\">{status}</span></td><td class=\"description\">{desc}</td>\
                 <td>{image}</td><td>{created}</td><td>{updated}</td></tr>",
                id = esc(&task.id),
                name = esc(&task.name),
                status = esc(task.status.as_str()),
                desc = esc(&cut(task.description.as_deref().unwrap_or(""), 200)),
                image = esc(&task.image),
                created = esc(&time(&task.created_at)),
                updated = esc(&time(&task.updated_at)),
            );
        }
        body.push_str("</tbody></table>");
    }
    html(
        StatusCode::OK,
        page("Tasks", Some(session.owner.as_str()), Some(&session.csrf), &[], &body),
    )
}

fn time(at: &crate::domain::Timestamp) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn service_error(session: &Session, error: &Error) -> Response {
    tracing::warn!(error = %error, "a dashboard page failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(session),
        "Something went wrong",
        &error.to_string(),
    )
}

// ---- A task ----

#[derive(Deserialize)]
pub struct TaskQuery {
    restored: Option<i64>,
}

/// `GET /ui/tasks/{id}`: the task, its checkpoints, plan, decisions, executions with their
/// output, the diff of its branch, and its events (live).
pub async fn task(
    State(ui): State<Arc<Ui>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(query): Query<TaskQuery>,
) -> Response {
    let task = match task_for(&ui, &session, &id) {
        Ok(task) => task,
        Err(response) => return *response,
    };
    let service = &ui.service;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1 id=\"task-name\">{}</h1><p><span id=\"task-status\" class=\"status status-{s}\">{s}</span> {reason}</p>",
        esc(&task.name),
        reason = task
            .status_reason
            .as_deref()
            .map(|r| format!("<span class=\"reason\">{}</span>", esc(r)))
            .unwrap_or_default(),
        s = esc(task.status.as_str()),
    );
    if let Some(seq) = query.restored {
        let _ = write!(body, "<p class=\"flash\" id=\"flash\">Restored checkpoint #{seq}.</p>");
    }
    let _ = write!(
        body,
        "<dl class=\"facts\"><dt>Id</dt><dd id=\"task-id\">{}</dd><dt>Description</dt><dd id=\"task-description\">{}</dd>\
         <dt>Image</dt><dd>{}</dd><dt>Branch</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd></dl>",
        esc(&task.id),
        esc(task.description.as_deref().unwrap_or("")),
        esc(&task.image),
        esc(task.repo.branch.as_deref().unwrap_or("-")),
        esc(&time(&task.created_at)),
    );
    body.push_str(
        "<nav class=\"sections\"><a href=\"#events-section\">Events</a> <a href=\"#executions-section\">Executions</a> \
                   <a href=\"#diff-section\">Diff</a> <a href=\"#checkpoints-section\">Checkpoints</a> \
                   <a href=\"#plan-section\">Plan</a> <a href=\"#decisions-section\">Decisions</a></nav>",
    );

    // The diff first: on a running task it syncs the workspace, which records events, and
    // those belong in the list read below (not as "new" ones on arrival).
    let mut diff_section = String::new();
    match service.diff(&task.id).await {
        Ok(diff) => render_diff(&mut diff_section, &diff),
        Err(e) => section_error(&mut diff_section, "diff-section", "Diff", &e),
    }
    let mut executions_section = String::new();
    match service.recent_executions(&task.id, EXECUTIONS_SHOWN).await {
        Ok((executions, total)) => render_executions(&ui, &mut executions_section, &executions, total),
        Err(e) => section_error(&mut executions_section, "executions-section", "Executions", &e),
    }
    // Events first on the page: they are what changes while one watches.
    match service.recent_events(&task.id, EVENTS_SHOWN) {
        Ok(events) => render_events(&mut body, &task, &events),
        Err(e) => section_error(&mut body, "events-section", "Events", &e),
    }
    body.push_str(&executions_section);
    body.push_str(&diff_section);
    match service.list_checkpoints(&task.id) {
        Ok((_, checkpoints)) => render_checkpoints(&mut body, &task, &checkpoints),
        Err(e) => section_error(&mut body, "checkpoints-section", "Checkpoints", &e),
    }
    match service.plan(&task.id) {
        Ok(Some(plan)) => {
            let _ = write!(
                body,
                "<section id=\"plan-section\"><h2>Plan</h2><pre id=\"plan\">{}</pre></section>",
                esc(&cut(&plan.text, PLAN_BYTES))
            );
        }
        Ok(None) => {
            body.push_str("<section id=\"plan-section\"><h2>Plan</h2><p class=\"empty\">No plan yet.</p></section>")
        }
        Err(e) => section_error(&mut body, "plan-section", "Plan", &e),
    }
    match service.decisions(&task.id, DECISIONS_SHOWN, 0) {
        Ok(page) => {
            body.push_str("<section id=\"decisions-section\"><h2>Decisions</h2>");
            if page.items.is_empty() {
                body.push_str("<p class=\"empty\">No decisions recorded.</p>");
            }
            body.push_str("<ol id=\"decisions\">");
            for d in &page.items {
                let _ = write!(
                    body,
                    "<li class=\"decision\"><span class=\"decision-text\">{}</span>{}<span class=\"meta\">{} {}</span></li>",
                    esc(&cut(&d.decision, DECISION_BYTES)),
                    d.rationale
                        .as_deref()
                        .map(|r| format!("<span class=\"rationale\">{}</span>", esc(&cut(r, DECISION_BYTES))))
                        .unwrap_or_default(),
                    esc(d.agent.as_deref().unwrap_or("")),
                    esc(&time(&d.created_at)),
                );
            }
            body.push_str("</ol></section>");
        }
        Err(e) => section_error(&mut body, "decisions-section", "Decisions", &e),
    }
    html(
        StatusCode::OK,
        page(
            &task.name,
            Some(session.owner.as_str()),
            Some(&session.csrf),
            &["task.js"],
            &body,
        ),
    )
}

fn section_error(body: &mut String, id: &str, title: &str, error: &Error) {
    let _ = write!(
        body,
        "<section id=\"{}\"><h2>{}</h2><p class=\"error\">{}</p></section>",
        esc(id),
        esc(title),
        esc(&error.to_string())
    );
}

/// One line about an event's data: its JSON, cut.
pub fn summary(event: &Event) -> String {
    let text = match &event.data {
        serde_json::Value::Null => String::new(),
        data => data.to_string(),
    };
    cut(&text, SUMMARY_BYTES)
}

fn render_events(body: &mut String, task: &Task, events: &[(i64, Event)]) {
    let after = events.first().map_or(0, |(id, _)| *id);
    let _ = write!(
        body,
        "<section id=\"events-section\"><h2>Events <span id=\"live\" class=\"live off\">connecting…</span></h2>\
         <p id=\"reload-note\" class=\"note\" hidden>New executions or checkpoints: <a href=\"/ui/tasks/{id}\">reload</a> to see them.</p>\
         <table><thead><tr><th>At</th><th>Type</th><th>Data</th></tr></thead>\
         <tbody id=\"events\" data-stream=\"/ui/tasks/{id}/events?after={after}\">",
        id = esc(&task.id),
    );
    for (id, event) in events {
        let _ = write!(
            body,
            "<tr class=\"event\" data-id=\"{id}\"><td class=\"at\">{}</td><td class=\"type\">{}</td><td class=\"data\">{}</td></tr>",
            esc(&time(&event.at)),
            esc(event.kind.as_str()),
            esc(&summary(event)),
        );
    }
    body.push_str("</tbody></table></section>");
}

fn render_executions(ui: &Ui, body: &mut String, executions: &[Execution], total: u64) {
    let _ = write!(
        body,
        "<section id=\"executions-section\"><h2>Executions <span class=\"count\">{total}</span></h2>"
    );
    if executions.is_empty() {
        body.push_str("<p class=\"empty\">No commands run yet.</p>");
    }
    body.push_str("<div id=\"executions\">");
    for execution in executions {
        let shown = ui.service.shown_output(execution);
        let exit = execution.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let duration = execution
            .duration_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            body,
            "<article class=\"execution\" data-id=\"{id}\"><h3><code class=\"command\">{command}</code></h3>\
             <p class=\"meta\"><span class=\"status status-{status}\">{status}</span> exit {exit} · {duration} · {bg}{started}</p>",
            id = esc(&execution.id),
            command = esc(&execution.command),
            status = esc(execution.status.as_str()),
            exit = esc(&exit),
            duration = esc(&duration),
            bg = if execution.background { "background · " } else { "" },
            started = esc(&time(&execution.started_at)),
        );
        for (name, text, bytes) in [
            ("stdout", &shown.stdout, execution.stdout_bytes),
            ("stderr", &shown.stderr, execution.stderr_bytes),
        ] {
            if bytes > 0 || !text.is_empty() {
                let _ = write!(
                    body,
                    "<details open><summary>{name} ({bytes} bytes)</summary><pre class=\"output {name}\">{}</pre></details>",
                    esc(text)
                );
            }
        }
        if shown.cut {
            let _ = write!(
                body,
                "<p class=\"note\">Only the first {} KiB of each stream are shown.</p>",
                SHOWN_OUTPUT_BYTES / 1024
            );
        }
        if let Some(note) = &shown.note {
            let _ = write!(body, "<p class=\"note\">{}</p>", esc(note));
        }
        body.push_str("</article>");
    }
    body.push_str("</div></section>");
}

fn render_diff(body: &mut String, diff: &TaskDiff) {
    let _ = write!(
        body,
        "<section id=\"diff-section\"><h2>Diff of <code>{}</code></h2><p class=\"meta\">{} … {}</p>",
        esc(&diff.branch),
        esc(&short(&diff.base)),
        esc(&short(&diff.head)),
    );
    if let Some(warning) = &diff.warning {
        let _ = write!(body, "<p class=\"note\">{}</p>", esc(warning));
    }
    if diff.files.is_empty() {
        body.push_str("<p class=\"empty\">No changes on the branch.</p>");
    } else {
        body.push_str(
            "<table id=\"diff-files\"><thead><tr><th>File</th><th>Change</th><th>+</th><th>−</th></tr></thead><tbody>",
        );
        for file in diff.files.iter().take(DIFF_FILES_SHOWN) {
            let _ = write!(
                body,
                "<tr><td class=\"path\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&file.path),
                esc(&match &file.not_diffed {
                    Some(why) => format!("{} ({why})", file.status),
                    None => file.status.clone(),
                }),
                file.added,
                file.removed,
            );
        }
        body.push_str("</tbody></table>");
    }
    if diff.files_truncated || diff.files.len() > DIFF_FILES_SHOWN {
        body.push_str("<p class=\"note\">More files changed than are listed.</p>");
    }
    if !diff.patch.is_empty() {
        let _ = write!(body, "<pre id=\"patch\" class=\"patch\">{}</pre>", esc(&diff.patch));
    }
    if diff.truncated {
        body.push_str("<p class=\"note\">The patch is cut here; task_diff's full_patch holds the rest.</p>");
    }
    body.push_str("</section>");
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

fn render_checkpoints(body: &mut String, task: &Task, checkpoints: &[Checkpoint]) {
    body.push_str("<section id=\"checkpoints-section\"><h2>Checkpoints</h2>");
    if checkpoints.is_empty() {
        body.push_str("<p class=\"empty\">No checkpoints.</p>");
    } else {
        body.push_str(
            "<table id=\"checkpoints\"><thead><tr><th>#</th><th>Label</th><th>Kind</th><th>Commit</th><th>Taken</th><th></th></tr></thead><tbody>",
        );
        for c in checkpoints {
            let _ = write!(
                body,
                "<tr class=\"checkpoint\" data-seq=\"{seq}\"><td>{seq}</td><td class=\"label\">{label}</td><td>{kind}</td>\
                 <td><code>{commit}</code></td><td>{at}</td>\
                 <td><a class=\"button restore\" href=\"/ui/tasks/{id}/checkpoints/{seq}/restore\">Restore…</a></td></tr>",
                seq = c.seq,
                label = esc(c.label.as_deref().unwrap_or("")),
                kind = if c.automatic { "automatic" } else { "asked for" },
                commit = esc(&short(c.git_commit.as_deref().unwrap_or(""))),
                at = esc(&time(&c.created_at)),
                id = esc(&task.id),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");
}

// ---- Restore ----

/// The owner's task and its checkpoint `seq`, or the page saying why not.
fn checkpoint_for(ui: &Ui, session: &Session, id: &str, seq: &str) -> Result<(Task, Checkpoint), Box<Response>> {
    let task = task_for(ui, session, id)?;
    let missing = || not_found(session, &format!("Task '{}' has no checkpoint #{seq}.", task.name));
    let Ok(seq) = seq.parse::<i64>() else {
        return Err(Box::new(missing()));
    };
    match ui
        .service
        .resolve_checkpoint(&session.owner, &format!("{}:{seq}", task.id), None)
    {
        Ok((_, checkpoint)) => Ok((task, checkpoint)),
        Err(_) => Err(Box::new(missing())),
    }
}

/// `GET …/checkpoints/{seq}/restore`: what a restore does, and the form that confirms it.
pub async fn confirm_restore(
    State(ui): State<Arc<Ui>>,
    Extension(session): Extension<Session>,
    Path((id, seq)): Path<(String, String)>,
) -> Response {
    let (task, checkpoint) = match checkpoint_for(&ui, &session, &id, &seq) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let body = format!(
        "<h1>Restore checkpoint #{seq} of {name}?</h1>\
         <p class=\"message\" id=\"confirm-text\">The workspace and the container of <b>{name}</b> go back to how they were at \
         {at}{label}. Commands running in the task are stopped. A checkpoint of the task as it is now is taken first, \
         so this can be undone by restoring that one.</p>\
         <form method=\"post\" action=\"/ui/tasks/{id}/checkpoints/{seq}/restore\" id=\"restore-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" id=\"confirm-restore\" class=\"danger\">Restore checkpoint #{seq}</button> \
         <a href=\"/ui/tasks/{id}#checkpoints-section\" id=\"cancel-restore\" class=\"button\">Cancel</a></form>",
        seq = checkpoint.seq,
        name = esc(&task.name),
        at = esc(&time(&checkpoint.created_at)),
        label = checkpoint
            .label
            .as_deref()
            .map(|l| format!(" (“{}”)", esc(l)))
            .unwrap_or_default(),
        id = esc(&task.id),
        csrf = esc(&session.csrf),
    );
    html(
        StatusCode::OK,
        page(
            "Restore?",
            Some(session.owner.as_str()),
            Some(&session.csrf),
            &[],
            &body,
        ),
    )
}

/// `POST …/checkpoints/{seq}/restore` (CSRF token, same origin): restores, then shows the
/// task.
pub async fn restore(
    State(ui): State<Arc<Ui>>,
    Extension(session): Extension<Session>,
    Path((id, seq)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refuse_cross_site(&session, &headers, &body) {
        return refused;
    }
    let (task, checkpoint) = match checkpoint_for(&ui, &session, &id, &seq) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    tracing::info!(owner = %session.owner, task = %task.id, checkpoint = %checkpoint.id, "restore from the dashboard");
    match ui.service.restore_checkpoint(&session.owner, &checkpoint.id).await {
        Ok(_) => Redirect::to(&format!("/ui/tasks/{}?restored={}", task.id, checkpoint.seq)).into_response(),
        Err(e) => message(StatusCode::CONFLICT, Some(&session), "Restore failed", &e.to_string()),
    }
}
