//! An exposed port's own HTTP listener under `serve --http`: the port, for a person who is
//! not on the machine, authenticated as the task's owner. Each forward listens on a port of
//! its own, so a page the agent's server sends is on an origin of its own, never on the
//! server's (docs/security.md, "Exposed ports").
//!
//! A request passes with the owner's bearer token (`Authorization: Bearer tbx_…`), or with
//! the session cookie a first visit with `?taskbox_token=tbx_…` sets (then redirected without
//! it, so the token stays out of the address bar and the history). Anyone else's token gets
//! 404, as for a task that does not exist; no credential, or a revoked one, 401. The
//! credential never reaches the container: the `Authorization` header that carried a taskbox
//! token and every `taskbox_port_*` cookie are removed before the request is relayed. The
//! request's `Host` becomes `localhost:<port>` (the original in `X-Forwarded-Host`), which dev
//! servers that check host names accept.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Connector, ForwardKey, MAX_CONNECTIONS, accept_within, bridge};
use crate::domain::Owner;
use crate::task::service::{TOKEN_PREFIX, token_hash};

/// The query parameter a first visit carries the token in.
const TOKEN_PARAM: &str = "taskbox_token";
/// Every forward's session cookie starts with this (cookies are not kept apart by port).
const COOKIE_PREFIX: &str = "taskbox_port_";
/// Browser sessions one forward keeps (the oldest go first).
const MAX_SESSIONS: usize = 256;

/// Where the ports' own listeners listen, and how their URLs name the host.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicSettings {
    /// The address `serve --http` listens on.
    pub bind: IpAddr,
    /// The host in their URLs.
    pub host: String,
    /// `--no-auth`: every request acts as the local owner (loopback only).
    pub no_auth: bool,
}

impl PublicSettings {
    pub fn url(host: &str, port: u16) -> String {
        if host.contains(':') && !host.starts_with('[') {
            format!("http://[{host}]:{port}/")
        } else {
            format!("http://{host}:{port}/")
        }
    }
}

pub(super) struct Target {
    pub connector: Connector,
    pub key: ForwardKey,
    pub owner: Owner,
    pub no_auth: bool,
    /// This forward's session cookie.
    pub cookie: String,
}

struct Shared {
    target: Target,
    /// Session id → the token it was opened with (checked again on every request, so a
    /// revoked token ends its sessions).
    sessions: Mutex<Vec<(String, String)>>,
}

pub(super) async fn serve(listener: TcpListener, target: Target, stop: CancellationToken) {
    let shared = Arc::new(Shared {
        target,
        sessions: Mutex::new(Vec::new()),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    while let Some((stream, permit)) = accept_within(&listener, &slots, &stop, "port listener").await {
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            // Closing the forward ends its connections too, kept-alive ones included.
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

async fn handle(shared: &Shared, mut request: Request<Incoming>) -> Response<Body> {
    if let Some(answer) = shared.admit(&mut request) {
        return answer;
    }
    proxy(&shared.target, request).await
}

/// Whether a credential names the task's owner.
enum Check {
    Owner,
    /// A live token of another owner: the port does not exist for it.
    OtherOwner,
    Invalid,
}

impl Shared {
    /// `None` lets the request through (its credentials removed); else the answer.
    fn admit(&self, request: &mut Request<Incoming>) -> Option<Response<Body>> {
        let target = &self.target;
        let presented_cookie = own_cookie(request, &target.cookie);
        strip_cookies(request);
        if target.no_auth {
            return (!target.owner.is_local()).then(not_found);
        }
        if let Some(token) = bearer(request) {
            request.headers_mut().remove(header::AUTHORIZATION);
            return match self.check_token(&token) {
                Check::Owner => None,
                Check::OtherOwner => Some(not_found()),
                Check::Invalid => Some(unauthorized("the bearer token is unknown or revoked")),
            };
        }
        if let Some((token, rest)) = query_token(request) {
            return Some(match self.check_token(&token) {
                Check::Owner => self.start_session(&token, request.uri().path(), &rest),
                Check::OtherOwner => not_found(),
                Check::Invalid => unauthorized("the token in the address is unknown or revoked"),
            });
        }
        if let Some(session) = presented_cookie {
            return match self.check_session(&session) {
                Check::Owner => None,
                Check::OtherOwner => Some(not_found()),
                Check::Invalid => Some(unauthorized("this browser's session has ended")),
            };
        }
        Some(unauthorized("no credential was given"))
    }

    fn check_token(&self, token: &str) -> Check {
        if !token.starts_with(TOKEN_PREFIX) {
            return Check::Invalid;
        }
        match self.target.connector.registry().authenticate_token(&token_hash(token)) {
            Ok(Some(record)) if record.owner == self.target.owner => Check::Owner,
            Ok(Some(_)) => Check::OtherOwner,
            Ok(None) => Check::Invalid,
            Err(e) => {
                tracing::warn!(error = %e, "port listener: cannot check a token");
                Check::Invalid
            }
        }
    }

    fn check_session(&self, session: &str) -> Check {
        let token_id = {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions
                .iter()
                .find(|(id, _)| id == session)
                .map(|(_, token)| token.clone())
        };
        let Some(token_id) = token_id else {
            return Check::Invalid;
        };
        match self.target.connector.registry().get_token(&token_id) {
            Ok(Some(record)) if record.revoked_at.is_none() && record.owner == self.target.owner => Check::Owner,
            Ok(Some(record)) if record.revoked_at.is_none() => Check::OtherOwner,
            _ => Check::Invalid,
        }
    }

    /// A session for the token's owner: the cookie, and a redirect to the same address
    /// without the token.
    fn start_session(&self, token: &str, path: &str, rest_of_query: &str) -> Response<Body> {
        let token_id = match self.target.connector.registry().authenticate_token(&token_hash(token)) {
            Ok(Some(record)) => record.id,
            _ => return unauthorized("the token in the address is unknown or revoked"),
        };
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no randomness for a session; retry".into(),
            );
        }
        let session = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if sessions.len() >= MAX_SESSIONS {
                sessions.remove(0);
            }
            sessions.push((session.clone(), token_id));
        }
        let location = if rest_of_query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{rest_of_query}")
        };
        let cookie = format!("{}={session}; HttpOnly; SameSite=Strict; Path=/", self.target.cookie);
        let mut response = text(StatusCode::SEE_OTHER, "signed in; redirecting\n".into());
        if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie)) {
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response
    }
}

/// A taskbox token in `Authorization: Bearer …` (another scheme or token is the app's).
fn bearer(request: &Request<Incoming>) -> Option<String> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    token.starts_with(TOKEN_PREFIX).then(|| token.to_string())
}

/// The token in `?taskbox_token=…`, and the rest of the query.
fn query_token(request: &Request<Incoming>) -> Option<(String, String)> {
    let query = request.uri().query()?;
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix(TOKEN_PARAM).and_then(|v| v.strip_prefix('=')) {
            Some(value) if token.is_none() => token = Some(value.to_string()),
            Some(_) => {}
            None => rest.push(pair),
        }
    }
    token.map(|t| (t, rest.join("&")))
}

/// The value of this forward's session cookie, if the request has one.
fn own_cookie(request: &Request<Incoming>, name: &str) -> Option<String> {
    crate::task::cookies::value(request.headers(), name).map(String::from)
}

/// Removes every taskbox session cookie (this forward's and other ports' on the same host):
/// the app in the container must not see them.
fn strip_cookies(request: &mut Request<Incoming>) {
    let kept: Vec<String> = crate::task::cookies::pairs(request.headers())
        .filter(|pair| !pair.starts_with(COOKIE_PREFIX))
        .map(String::from)
        .collect();
    request.headers_mut().remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        request.headers_mut().insert(header::COOKIE, value);
    }
}

/// Sends the request to the port through a relay of its own, and its answer back; a
/// protocol switch (WebSocket) is bridged both ways after.
async fn proxy(target: &Target, mut request: Request<Incoming>) -> Response<Body> {
    let port = target.key.port;
    // Dev servers refuse host names they do not know (Vite's and webpack's guard against DNS
    // rebinding): the request reaches them as if sent to their own port on localhost, with
    // the name the person used in X-Forwarded-Host.
    let headers = request.headers_mut();
    if let Some(original) = headers.remove(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), original);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Ok(host) = HeaderValue::from_str(&format!("localhost:{port}")) {
        headers.insert(header::HOST, host);
    }
    let relay = match target.connector.relay(&target.key.task_id, port).await {
        Ok(relay) => relay,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach port {port} in the task's container: {e}\n"),
            );
        }
    };
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (said_tx, said_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = said_tx.send(bridge(far, relay).await);
    });
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(near)).await {
        Ok(pair) => pair,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("relay: {e}\n")),
    };
    tokio::spawn(connection.with_upgrades());
    let client_upgrade = hyper::upgrade::on(&mut request);
    match sender.send_request(request).await {
        Ok(mut response) => {
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                let server_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(server)) = (client_upgrade.await, server_upgrade.await) {
                        let _ =
                            tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(server)).await;
                    }
                });
            }
            response.map(Body::new)
        }
        Err(e) => {
            let said = tokio::time::timeout(std::time::Duration::from_secs(2), said_rx)
                .await
                .ok()
                .and_then(Result::ok)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| e.to_string());
            text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "nothing answered on port {port} in the task's container ({said}); start the server \
                     (execute_in_task with background: true) and check that it listens on port {port}\n"
                ),
            )
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n".into())
}

fn unauthorized(why: &str) -> Response<Body> {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        format!(
            "{why}: this port belongs to a taskbox task; open it once as {path}?{TOKEN_PARAM}=<your taskbox token> \
             (a session cookie is set and the token removed from the address), or send \
             `Authorization: Bearer <your taskbox token>`\n",
            path = "/"
        ),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"taskbox port\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6_hosts() {
        assert_eq!(PublicSettings::url("example.org", 80), "http://example.org:80/");
        assert_eq!(PublicSettings::url("::1", 81), "http://[::1]:81/");
    }
}
