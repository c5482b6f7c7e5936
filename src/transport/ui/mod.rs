//! The web dashboard at `/ui` of `serve --http` (docs/dashboard.md): the owner's tasks, and
//! per task its live events, executions with their output, the diff of its branch, its
//! checkpoints (restore, after a confirmation page), plan and decisions.
//!
//! A browser signs in with a one-time link (`taskbox ui` for the local owner, or
//! `POST /ui/login-link` with a bearer token for that token's owner); the code is exchanged
//! for a session cookie (HttpOnly, SameSite=Strict). Every page is rendered on the server
//! with every value escaped (`html.rs`); the compiled-in scripts (`ui/*.js`) only add live
//! events, with `textContent`. Every response carries a Content-Security-Policy that allows
//! no inline script and no framing. Requests pass the body cap and the Host/Origin check as
//! `/mcp` does; state-changing ones (POST) must also come from this origin and carry the
//! session's CSRF token.

mod events;
mod html;
mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use super::auth::{self, Auth, Principal};
use super::limits::{self, RateLimiter};
use super::origin::{self, AllowedHosts};
use crate::mcp::ExecLimit;
use crate::task::TaskService;
use session::{Session, Sessions};

/// Every dashboard response's policy: scripts, styles and connections from this origin only,
/// no inline script or style, no plugins, no framing, forms posting only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The compiled-in assets: plain files under `ui/`, no build step.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/dashboard.css"),
    ),
    (
        "task.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/task.js"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/login.js"),
    ),
];

/// What the dashboard's routes share.
pub struct Ui {
    service: Arc<TaskService>,
    sessions: Sessions,
    /// The session cookie's name (one per port).
    cookie: String,
    /// Cancelled at the end of shutdown: live event streams end.
    stop: CancellationToken,
}

/// What the dashboard needs of the HTTP server.
pub struct UiParts {
    pub service: Arc<TaskService>,
    pub port: u16,
    pub stop: CancellationToken,
    pub auth: Arc<Auth>,
    pub limiter: Arc<RateLimiter>,
    pub allowed: Arc<AllowedHosts>,
    pub max_body_bytes: usize,
}

/// The `/ui` routes, with their layers: security headers on every response, then the body
/// cap, the Host/Origin check, the session (or, for `/ui/login-link`, the bearer token) and
/// the rate limit.
pub fn router(parts: UiParts) -> Router {
    let ui = Arc::new(Ui {
        service: parts.service,
        sessions: Sessions::default(),
        cookie: session::cookie_name(parts.port),
        stop: parts.stop,
    });
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::tasks))
        .route("/ui/login", get(pages::login_page).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/tasks/{id}", get(pages::task))
        .route("/ui/tasks/{id}/events", get(events::stream))
        .route(
            "/ui/tasks/{id}/checkpoints/{seq}/restore",
            get(pages::confirm_restore).post(pages::restore),
        )
        .route("/ui/assets/{name}", get(asset))
        .with_state(ui.clone())
        .layer(middleware::from_fn_with_state(
            parts.limiter.clone(),
            limits::rate_limit,
        ))
        .layer(middleware::from_fn_with_state(ui.clone(), require_session));
    // A person or script holding a bearer token asks for a sign-in link for its owner.
    let link = Router::new()
        .route("/ui/login-link", post(pages::login_link))
        .with_state(ui)
        .layer(middleware::from_fn_with_state(parts.limiter, limits::rate_limit))
        .layer(middleware::from_fn_with_state(parts.auth, auth::authenticate));
    pages
        .merge(link)
        .layer(middleware::from_fn_with_state(parts.allowed, origin::check_origin))
        .layer(middleware::from_fn_with_state(parts.max_body_bytes, limits::body_limit))
        .layer(middleware::from_fn(security_headers))
}

/// Middleware: the headers every dashboard response carries, error pages included.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: under it browsers send `Origin: null` on same-origin form posts,
        // which the origin checks must refuse. Other sites get no Referer either way.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    response
}

/// Middleware: every route but the sign-in page, its script and the assets needs a live
/// session (and, when it came from a bearer token, that token still live); the session and
/// its principal (for the rate limit) go into the request's extensions.
async fn require_session(State(ui): State<Arc<Ui>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/ui/login" || path == "/ui/login-link" || path.starts_with("/ui/assets/") {
        return next.run(request).await;
    }
    let session = session::cookie_value(request.headers(), &ui.cookie).and_then(|id| ui.live_session(&id));
    let Some(session) = session else {
        return pages::not_signed_in();
    };
    request.extensions_mut().insert(Principal {
        owner: session.owner.clone(),
        key: format!("ui:{}", session.owner),
        // The dashboard runs no command.
        exec_limit: ExecLimit::new(0),
    });
    request.extensions_mut().insert(session);
    next.run(request).await
}

impl Ui {
    /// The session the cookie's id names, if it is live and the token it came from is too.
    fn live_session(&self, id: &str) -> Option<Session> {
        let session = self.sessions.get(id)?;
        if let Some(token) = &session.token_id {
            match self.service.token_is_live(token) {
                Ok(true) => {}
                Ok(false) => {
                    self.sessions.remove(id);
                    return None;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot check a dashboard session's token");
                    return None;
                }
            }
        }
        Some(session)
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => ([(header::CONTENT_TYPE, *content_type)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}
