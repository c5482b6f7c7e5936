//! Dashboard sessions: made when a one-time sign-in code is redeemed, named by a random id
//! in an HttpOnly, SameSite=Strict cookie, and kept in this server's memory only (a restart
//! signs everyone out; `taskbox ui` makes a new link). Each session has its own CSRF token,
//! which every state-changing form carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::domain::Owner;

/// How long a session lasts from sign-in, used or not.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at once; past it, the oldest goes (a flood of sign-ins cannot grow memory).
const MAX_SESSIONS: usize = 1024;

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub owner: Owner,
    /// The bearer token the sign-in link was asked for with; the session ends with it.
    pub token_id: Option<String>,
    /// Sent back by every form that changes something (restore, sign-out).
    pub csrf: String,
    created: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[derive(Default)]
pub struct Sessions {
    /// SHA-256 of the cookie's id → the session: a dump of memory does not hold ids that
    /// could be replayed.
    map: Mutex<HashMap<String, Session>>,
}

pub fn random_id() -> Option<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret))
}

fn hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `owner`; returns the id for the cookie.
    pub fn create(&self, owner: Owner, token_id: Option<String>) -> Option<String> {
        let id = random_id()?;
        let session = Session {
            owner,
            token_id,
            csrf: random_id()?,
            created: Instant::now(),
        };
        let mut map = self.lock();
        map.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(hash(&id), session);
        Some(id)
    }

    /// The live session the id names.
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = hash(id);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.created.elapsed() < SESSION_LIFETIME => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(&hash(id));
    }
}

/// The cookie's name: one per port, since browsers share cookies across the ports of a host,
/// and two servers on one machine must not overwrite each other's session.
pub fn cookie_name(port: u16) -> String {
    format!("taskbox_ui_{port}")
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(name: &str, id: &str) -> String {
    format!(
        "{name}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session's cookie.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id the request's cookie carries, if any.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    crate::task::cookies::value(headers, name)
        .filter(|v| is_token(v))
        .map(String::from)
}

/// Whether a value is of the base64url alphabet (ids, codes, CSRF tokens), 1 to 128 chars.
pub fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The fields of a small `application/x-www-form-urlencoded` body whose values are tokens
/// (the dashboard's forms send nothing else, so no percent-decoding is needed); a field
/// with any other value is left out.
pub fn form_tokens(body: &[u8]) -> HashMap<String, String> {
    let text = std::str::from_utf8(body).unwrap_or_default();
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, v)| is_token(k) && is_token(v))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether a request that changes something comes from a page of this server: its `Origin`
/// must be present and name the same host and port as its `Host`. Browsers always send
/// `Origin` on cross-origin and on POST requests, so a form another site submits is refused
/// even before its (unknowable) CSRF token is checked.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_are_found_by_their_id_only_and_removed() {
        let sessions = Sessions::default();
        let alice = Owner::new("alice").unwrap();
        let id = sessions.create(alice.clone(), None).unwrap();
        let session = sessions.get(&id).unwrap();
        assert_eq!(session.owner, alice);
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches("x") && !session.csrf_matches(""));
        assert!(sessions.get("nope").is_none());
        assert!(!sessions.lock().keys().any(|k| k == &id), "ids are kept hashed");
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn sessions_are_capped() {
        let sessions = Sessions::default();
        let first = sessions.create(Owner::local(), None).unwrap();
        for _ in 0..MAX_SESSIONS {
            sessions.create(Owner::local(), None).unwrap();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert!(sessions.get(&first).is_none(), "the oldest went");
    }

    #[test]
    fn cookies_forms_and_origins_are_read_strictly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; taskbox_ui_80=abc_-9; b=2"),
        );
        assert_eq!(cookie_value(&headers, "taskbox_ui_80").as_deref(), Some("abc_-9"));
        assert_eq!(cookie_value(&headers, "taskbox_ui_81"), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("taskbox_ui_80=a\"b"));
        assert_eq!(cookie_value(&headers, "taskbox_ui_80"), None);

        let form = form_tokens(b"csrf=abc&code=tbxui_x-y&bad=%3Cx%3E&x");
        assert_eq!(form.get("csrf").map(String::as_str), Some("abc"));
        assert_eq!(form.get("code").map(String::as_str), Some("tbxui_x-y"));
        assert!(!form.contains_key("bad") && form.len() == 2);

        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8765"));
        assert!(!same_origin(&headers), "no Origin: refused");
        for (origin, ok) in [
            ("http://127.0.0.1:8765", true),
            ("http://127.0.0.1:9999", false),
            ("http://evil.example", false),
            ("null", false),
        ] {
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            assert_eq!(same_origin(&headers), ok, "{origin}");
        }
    }
}
