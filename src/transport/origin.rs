//! DNS-rebinding protection: a web page the user visits can make the browser send requests to
//! `127.0.0.1:8765` under the page's own host name. Refusing every request whose `Host` (or,
//! when present, `Origin`) names a host outside the allowed list stops that with 403, before
//! authentication or any other work.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The host names (lowercase, no port) requests may name; `*` allows any.
pub struct AllowedHosts {
    hosts: Vec<String>,
}

impl AllowedHosts {
    pub fn new(hosts: &[String]) -> Self {
        Self {
            hosts: hosts
                .iter()
                .map(|h| {
                    h.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_ascii_lowercase()
                })
                .collect(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == "*" || h == host)
    }

    /// Why the request is refused, if it is.
    fn check(&self, request: &Request) -> Result<(), String> {
        let headers = request.headers();
        // HTTP/1.1 requires Host; absolute-form URIs carry it in the URI instead.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(String::from)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .ok_or("the request names no host")?;
        let name = host_name(&host).ok_or_else(|| format!("Host '{host}' is not a host name"))?;
        if !self.allows(&name) {
            return Err(format!("Host '{host}' is not an allowed host"));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| "the Origin header is not text")?;
            let name = origin
                .split_once("://")
                .and_then(|(_, rest)| host_name(rest.split('/').next().unwrap_or_default()))
                .ok_or_else(|| format!("Origin '{origin}' is not an allowed origin"))?;
            if !self.allows(&name) {
                return Err(format!("Origin '{origin}' is not an allowed origin"));
            }
        }
        Ok(())
    }
}

/// The host of an authority (`host`, `host:port`, `[v6]:port`), lowercase, without brackets.
fn host_name(authority: &str) -> Option<String> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    valid.then(|| host.to_ascii_lowercase())
}

/// Middleware: 403 for a request whose Host or Origin is not allowed.
pub async fn check_origin(State(allowed): State<Arc<AllowedHosts>>, request: Request, next: Next) -> Response {
    match allowed.check(&request) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            tracing::warn!(%reason, "refused a request (DNS rebinding protection)");
            (
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden: {reason}; the server's allowed hosts are set by http.allowed_hosts / --allowed-host\n"
                ),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(host: &str, origin: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/mcp").header(header::HOST, host);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn hosts_and_origins_are_checked_without_ports() {
        let allowed = AllowedHosts::new(&["localhost".into(), "127.0.0.1".into(), "::1".into()]);
        for (host, origin) in [
            ("localhost:8765", None),
            ("127.0.0.1", Some("http://127.0.0.1:8765")),
            ("[::1]:8765", Some("http://[::1]:8765")),
            ("LOCALHOST:1", Some("https://localhost")),
        ] {
            assert!(allowed.check(&request(host, origin)).is_ok(), "{host} {origin:?}");
        }
        for (host, origin) in [
            ("evil.example", None),
            ("evil.example:8765", None),
            ("localhost:8765", Some("http://evil.example")),
            ("localhost:8765", Some("null")),
            ("127.0.0.1.evil.example", None),
            ("localhost@evil.example", None),
        ] {
            assert!(allowed.check(&request(host, origin)).is_err(), "{host} {origin:?}");
        }
        let any = AllowedHosts::new(&["*".into()]);
        assert!(any.check(&request("evil.example", Some("http://evil.example"))).is_ok());
    }
}
