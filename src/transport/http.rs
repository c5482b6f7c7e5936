//! MCP over HTTP, for agents and people sharing one server: Streamable HTTP at `/mcp` (rmcp's
//! `StreamableHttpService`) and the legacy HTTP+SSE transport at `/sse` + `/message`; the web
//! dashboard at `/ui` (`ui/`, with its own sessions and layers) is merged into the router here.
//!
//! Every request passes, in order: the body-size cap (413), the Host/Origin check against DNS
//! rebinding (403), authentication by bearer token (401), and the per-token rate limit (429).
//! Each MCP session acts for the owner of the token that opened it and sees only that owner's
//! tasks; a session cannot be used with another owner's token (404, as for an unknown one).
//!
//! On SIGTERM/SIGINT the server stops accepting connections and new work, lets running
//! executions finish for `http.shutdown_grace_s`, kills and records what is left, ends the
//! sessions (detaching their agents) and exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::auth::{self, Auth, Principal};
use super::limits::{self, RateLimiter};
use super::origin::{self, AllowedHosts};
use super::sse::{self, SseSessions};
use super::stdio::shutdown_signal;
use crate::config::HttpConfig;
use crate::domain::Owner;
use crate::error::{Error, Result};
use crate::mcp::prompts::Command;
use crate::mcp::{TaskboxServer, load_commands};
use crate::task::{Health, TaskService};

/// After the grace period, how long killed executions get to be recorded.
const KILL_WAIT: Duration = Duration::from_secs(15);
/// How long open connections get to close once the sessions are ended.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Session bindings kept before the ones of closed sessions are pruned.
const BINDINGS_PRUNE_AT: usize = 1024;

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// How `serve --http` was asked to run.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Accepted only on a loopback address: every request acts as the local owner.
    pub no_auth: bool,
    pub config: HttpConfig,
}

tokio::task_local! {
    /// The caller of the request rmcp is handling: its service factory runs inside the
    /// request's future and builds the session's server for this principal.
    static PRINCIPAL: Principal;
}

/// What the routes share.
pub struct Shared {
    service: Arc<TaskService>,
    commands: Arc<Vec<Command>>,
    pub(super) sse: Arc<SseSessions>,
    /// Cancelled at the end of shutdown: ends every session and stream.
    pub(super) sessions_stop: CancellationToken,
    mcp: StreamableHttpService<TaskboxServer, LocalSessionManager>,
    mcp_sessions: Arc<LocalSessionManager>,
    /// The last `/healthz` check, and when it was made.
    health: Mutex<Option<(Instant, Health)>>,
    /// Streamable HTTP session id → the owner and token it belongs to.
    bindings: Mutex<HashMap<String, Binding>>,
}

struct Binding {
    owner: Owner,
    /// The token's key, for the per-token session quota.
    key: String,
    bound_at: Instant,
}

impl Shared {
    /// A new MCP session's server, acting for the principal.
    pub(super) fn server_for(&self, principal: &Principal) -> TaskboxServer {
        TaskboxServer::for_owner(
            self.service.clone(),
            self.commands.clone(),
            principal.owner.clone(),
            Some(principal.exec_limit.clone()),
        )
    }

    fn bindings(&self) -> std::sync::MutexGuard<'_, HashMap<String, Binding>> {
        self.bindings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The 429 to answer when the principal's token already holds as many open sessions
    /// (Streamable HTTP and legacy SSE together) as `quotas.http_sessions` allows.
    pub(super) async fn refuse_session_past_quota(&self, principal: &Principal) -> Option<Response> {
        let limit = self.service.http_session_quota(&principal.owner)?;
        let live = self.mcp_sessions.sessions.read().await;
        let streamable = self
            .bindings()
            .iter()
            .filter(|(id, b)| b.key == principal.key && live.keys().any(|live_id| live_id.as_ref() == id.as_str()))
            .count();
        drop(live);
        let open = streamable + self.sse.count_for(&principal.key);
        if (open as u64) < limit {
            return None;
        }
        let message = format!(
            "this token already has {open} MCP sessions open, its quota (quotas.http_sessions) is {limit}; close one \
             (DELETE /mcp with its Mcp-Session-Id, or end its SSE stream), or wait for idle ones to expire"
        );
        Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, "5")],
                message,
            )
                .into_response(),
        )
    }
}

/// Serves MCP over HTTP until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn serve(service: Arc<TaskService>, options: HttpOptions) -> Result<()> {
    options.config.validate()?;
    check_no_auth(&options)?;
    if options.no_auth {
        tracing::warn!(
            "--no-auth: no token is asked for; every local process that reaches the port acts as the local owner"
        );
    }
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| Error::Transport(format!("cannot listen on {}: {e}", options.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Transport(format!("cannot read the listening address: {e}")))?;
    let (app, shared) = router(service.clone(), &options, addr.port());
    // Tests and scripts read the address (a port of 0 picks a free one) from this line.
    eprintln!("taskbox: listening on http://{addr} (Streamable HTTP at /mcp, legacy SSE at /sse, dashboard at /ui)");
    tracing::info!(%addr, auth = !options.no_auth, home = %service.home().display(), "taskbox serving MCP over HTTP");

    let stop_accepting = CancellationToken::new();
    let server = axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
        .into_future();
    let mut server = tokio::spawn(server);
    let signal = tokio::select! {
        signal = shutdown_signal() => signal,
        ended = &mut server => {
            return match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Transport(format!("HTTP server failed: {e}"))),
                Err(e) => Err(Error::Transport(format!("HTTP server failed: {e}"))),
            };
        }
    };
    let grace = Duration::from_secs(options.config.shutdown_grace_s);
    tracing::info!(
        signal,
        ?grace,
        "shutting down: no new connections or work; running executions may finish"
    );
    stop_accepting.cancel();
    // Sessions stay open while executions finish, so their results still reach the clients.
    service.drain(grace, KILL_WAIT).await;
    shared.sessions_stop.cancel();
    shared.mcp.config.cancellation_token.cancel();
    match tokio::time::timeout(CLOSE_WAIT, server).await {
        Ok(_) => tracing::info!("HTTP server stopped"),
        Err(_) => tracing::warn!("connections still open after {CLOSE_WAIT:?}; exiting anyway"),
    }
    // Sessions whose workers have not noticed the cancellation yet end their attachments when
    // dropped; give them a moment, then the event logs are complete (each append is fsync'd).
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(shared);
    // Their detach hooks may be taking a checkpoint.
    service
        .wait_for_ended_sessions(grace.max(Duration::from_secs(30)))
        .await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// `--no-auth` is refused unless the address is a loopback one.
pub fn check_no_auth(options: &HttpOptions) -> Result<()> {
    if options.no_auth && !options.addr.ip().is_loopback() {
        return Err(Error::Config(format!(
            "--no-auth is accepted only on a loopback address (127.0.0.1, ::1), not {}: anyone who can reach the port would act as the local owner",
            options.addr
        )));
    }
    if options.no_auth && options.config.allowed_hosts.iter().any(|h| h == "*") {
        return Err(Error::Config(
            "--no-auth with http.allowed_hosts = [\"*\"] would let any web page the browser loads drive the server \
             (DNS rebinding); list the host names instead, or use tokens"
                .into(),
        ));
    }
    Ok(())
}

fn router(service: Arc<TaskService>, options: &HttpOptions, port: u16) -> (Router, Arc<Shared>) {
    let config = &options.config;
    let sessions_stop = CancellationToken::new();
    let mcp_sessions = Arc::new(LocalSessionManager::default());
    let commands = load_commands(&service);
    let factory_service = service.clone();
    let factory_commands = commands.clone();
    let mcp = StreamableHttpService::new(
        move || {
            PRINCIPAL
                .try_with(|principal| {
                    TaskboxServer::for_owner(
                        factory_service.clone(),
                        factory_commands.clone(),
                        principal.owner.clone(),
                        Some(principal.exec_limit.clone()),
                    )
                })
                .map_err(|_| std::io::Error::other("no authenticated caller for this MCP session"))
        },
        mcp_sessions.clone(),
        // Host/Origin checks and the body cap are applied to every route by the layers below.
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_max_request_body_bytes(config.max_body_bytes)
            .with_cancellation_token(sessions_stop.child_token()),
    );
    let shared = Arc::new(Shared {
        service: service.clone(),
        commands,
        sse: Arc::new(SseSessions::default()),
        sessions_stop,
        mcp,
        mcp_sessions,
        bindings: Mutex::new(HashMap::new()),
        health: Mutex::new(None),
    });
    let auth = Arc::new(Auth::new(
        service.clone(),
        options.no_auth,
        config.max_executions_per_token,
    ));
    let limiter = Arc::new(RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst));
    let allowed = Arc::new(AllowedHosts::new(&config.allowed_hosts));
    // The dashboard: its own sessions (cookies, not bearer tokens) and layers (ui/mod.rs).
    let dashboard = super::ui::router(super::ui::UiParts {
        service,
        port,
        stop: shared.sessions_stop.clone(),
        auth: auth.clone(),
        limiter: limiter.clone(),
        allowed: allowed.clone(),
        max_body_bytes: config.max_body_bytes,
    });
    // Layers run outermost last-added first: body cap, Host/Origin, auth, rate limit.
    let app = Router::new()
        .route("/mcp", any(streamable))
        .route("/sse", get(sse::open))
        .route("/message", post(sse::post))
        .route("/metrics", get(metrics))
        .with_state(shared.clone())
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(limiter, limits::rate_limit))
        .layer(middleware::from_fn_with_state(auth, auth::authenticate))
        .layer(middleware::from_fn_with_state(allowed, origin::check_origin))
        .layer(middleware::from_fn_with_state(
            config.max_body_bytes,
            limits::body_limit,
        ));
    // Outside the layers: a load balancer's or supervisor's probe carries no token.
    let app = Router::new()
        .route("/healthz", get(healthz))
        .with_state(shared.clone())
        .merge(app)
        .merge(dashboard);
    (app, shared)
}

/// `GET /healthz`: 200 when Docker answers, the registry takes writes and the data directory
/// has room; 503 naming the failing parts otherwise. Answered from a check at most a second
/// old, so probes cannot load the daemon.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let cached = shared.health.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let health = match cached {
        Some((at, health)) if at.elapsed() < Duration::from_secs(1) => health,
        _ => {
            let health = shared.service.health().await;
            *shared.health.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), health.clone()));
            health
        }
    };
    let status = if health.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "status": if health.ok() { "ok" } else { "unhealthy" }, "checks": health });
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus' text format, for any valid token (or under `--no-auth`).
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.service.metrics_text() {
        Ok(text) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot gather the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `/mcp`: rmcp's Streamable HTTP service, run with the caller as the task-local principal,
/// and with each session bound to the owner that opened it.
async fn streamable(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let session = request
        .headers()
        .get(&SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if let Some(id) = &session {
        let bound = shared.bindings().get(id).map(|b| b.owner.clone());
        // rmcp answers 404 for an unknown session; another owner's session looks the same, and
        // so does a session with no recorded owner (fail closed: its client starts a new one).
        if bound.is_none_or(|owner| owner != principal.owner) {
            return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
        }
    }
    if session.is_none()
        && request.method() == Method::POST
        && let Some(refusal) = shared.refuse_session_past_quota(&principal).await
    {
        return refusal;
    }
    let is_delete = request.method() == Method::DELETE;
    let mut service = shared.mcp.clone();
    let response = PRINCIPAL
        .scope(principal.clone(), tower_call(&mut service, request))
        .await;
    match (&session, response.headers().get(&SESSION_HEADER)) {
        (None, Some(new_id)) => {
            if let Ok(new_id) = new_id.to_str() {
                bind(&shared, new_id, principal.owner, principal.key).await;
            }
        }
        (Some(id), _) if is_delete && response.status().is_success() => {
            shared.bindings().remove(id);
        }
        _ => {}
    }
    response
}

async fn tower_call(
    service: &mut StreamableHttpService<TaskboxServer, LocalSessionManager>,
    request: Request,
) -> Response {
    use tower_service::Service;
    match service.call(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

/// Records which owner a new Streamable HTTP session belongs to; now and then forgets the
/// sessions rmcp has closed (expired or deleted).
async fn bind(shared: &Shared, id: &str, owner: Owner, key: String) {
    let prune = {
        let mut bindings = shared.bindings();
        let binding = Binding {
            owner,
            key,
            bound_at: Instant::now(),
        };
        bindings.insert(id.to_string(), binding);
        bindings.len() > BINDINGS_PRUNE_AT
    };
    if prune {
        let live: std::collections::HashSet<String> = shared
            .mcp_sessions
            .sessions
            .read()
            .await
            .keys()
            .map(ToString::to_string)
            .collect();
        // Recent bindings stay even when the snapshot missed them: a session created and bound
        // on another thread since the snapshot was taken is live.
        shared
            .bindings()
            .retain(|id, b| live.contains(id) || b.bound_at.elapsed() < Duration::from_secs(60));
    }
}
