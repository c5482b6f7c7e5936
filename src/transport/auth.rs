//! Who an HTTP request acts for: the owner of its bearer token (`Authorization: Bearer …`),
//! or the local owner under `--no-auth`. Requests without a live token get 401. Tokens are
//! never logged; a request is identified in logs by its token's id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::domain::Owner;
use crate::mcp::ExecLimit;
use crate::task::TaskService;

/// The caller of one HTTP request, put in the request's extensions by [`authenticate`].
#[derive(Clone)]
pub struct Principal {
    pub owner: Owner,
    /// The token's id (`tok-…`), or `no-auth`: the key of rate limits and execution caps.
    pub key: String,
    /// Shared by every session of the same token.
    pub exec_limit: ExecLimit,
}

/// How requests are authenticated, and the per-token execution caps.
pub struct Auth {
    service: Arc<TaskService>,
    /// `--no-auth`: every request acts as the local owner.
    no_auth: bool,
    max_executions: usize,
    limits: Mutex<HashMap<String, ExecLimit>>,
}

impl Auth {
    pub fn new(service: Arc<TaskService>, no_auth: bool, max_executions: usize) -> Self {
        Self {
            service,
            no_auth,
            max_executions,
            limits: Mutex::new(HashMap::new()),
        }
    }

    fn principal(&self, owner: Owner, key: String) -> Principal {
        let exec_limit = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_insert_with(|| ExecLimit::new(self.max_executions))
            .clone();
        Principal { owner, key, exec_limit }
    }

    /// The request's principal, or why it has none.
    fn check(&self, request: &Request) -> Result<Principal, Refusal> {
        if self.no_auth {
            return Ok(self.principal(Owner::local(), "no-auth".into()));
        }
        let header = request.headers().get(header::AUTHORIZATION).ok_or(Refusal::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(Refusal::Invalid)?;
        match self.service.authenticate(token) {
            Ok(Some(record)) => Ok(self.principal(record.owner, record.id)),
            Ok(None) => Err(Refusal::Invalid),
            Err(e) => {
                tracing::error!(error = %e, "cannot check a token");
                Err(Refusal::Unavailable)
            }
        }
    }
}

enum Refusal {
    Missing,
    Invalid,
    Unavailable,
}

/// Middleware: 401 unless the request carries a live token; else records its [`Principal`].
pub async fn authenticate(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    match auth.check(&request) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => {
            let (status, error, description) = match refusal {
                Refusal::Missing => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_request",
                    "this server needs a bearer token: send `Authorization: Bearer <token>` (make one with `taskbox token create --owner NAME`)",
                ),
                Refusal::Invalid => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the bearer token is unknown or revoked; ask the server's operator for a new one",
                ),
                Refusal::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the token registry cannot be read; retry shortly",
                ),
            };
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "error": error, "error_description": description }).to_string(),
            )
                .into_response();
            if status == StatusCode::UNAUTHORIZED {
                let challenge = format!("Bearer realm=\"taskbox\", error=\"{error}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
            }
            response
        }
    }
}
