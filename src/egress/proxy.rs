//! The HTTP(S) proxy an `allowlist` task reaches the outside through: `CONNECT host:port`
//! opens a tunnel (TLS stays end to end), a request with an absolute URI
//! (`GET http://host/path`) is forwarded. A host off the task's allowlist gets a 403 whose
//! reason phrase and body name the policy, never a hang. Every attempt, allowed or not, goes to
//! the `Recorder` with its bytes once it ends. All input comes from the container and is
//! treated as hostile: header sizes and read times are bounded by hyper, hosts are validated
//! before they are looked at or recorded.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::addresses::{Block, host_addresses, refused};
use super::policy::{Policy, normalize_host};

type Body = BoxBody<Bytes, hyper::Error>;

/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long resolving a name, or connecting to one address, may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Addresses of one name tried before giving up.
const MAX_ADDRESSES: usize = 4;
/// The longest host recorded for a request that named an invalid one.
const MAX_RECORDED_HOST: usize = 255;
/// hyper's read buffer per connection (its minimum is 8 KiB): the largest request head.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// One connection or request through the proxy, as the task's `egress` event records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// `CONNECT`, or the forwarded request's method.
    pub method: String,
    pub host: String,
    pub port: u16,
    pub allowed: bool,
    /// Why it was refused or failed.
    pub reason: Option<String>,
    /// The address connected to.
    pub upstream: Option<String>,
    /// The status the proxy answered (200 for an open tunnel; the upstream's for a request).
    pub status: u16,
    /// Bytes the task sent upstream and received from it (headers included for requests).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: u64,
}

/// Where attempts go (the task's event log).
pub trait Recorder: Send + Sync + 'static {
    fn record(&self, attempt: Attempt);
}

/// How the proxy finds upstreams: names the config maps (`network.resolve`, for tests), else
/// the host's resolver, with the addresses the task must not reach through it refused.
#[derive(Debug, Clone)]
pub struct Upstreams {
    overrides: HashMap<String, (IpAddr, Option<u16>)>,
    pool: Block,
}

/// Why an upstream was not reached.
#[derive(Debug, Clone, PartialEq)]
enum Unreachable {
    /// The name resolves only to addresses the proxy refuses (403).
    Refused(String),
    /// Resolution or connection failed (502).
    Failed(String),
}

impl Upstreams {
    /// `overrides`: host name to `IP` or `IP:port`.
    pub fn new(overrides: &BTreeMap<String, String>, pool: Block) -> Result<Self, String> {
        let mut parsed = HashMap::new();
        for (name, target) in overrides {
            let host = normalize_host(name).ok_or_else(|| format!("network.resolve: '{name}' is not a host name"))?;
            let target = match target.parse::<SocketAddr>() {
                Ok(addr) => (addr.ip(), Some(addr.port())),
                Err(_) => (
                    target.parse::<IpAddr>().map_err(|_| {
                        format!("network.resolve: '{target}' (for {name}) is not an IP address or IP:port")
                    })?,
                    None,
                ),
            };
            parsed.insert(host, target);
        }
        Ok(Self {
            overrides: parsed,
            pool,
        })
    }

    async fn connect(&self, host: &str, port: u16) -> Result<(TcpStream, SocketAddr), Unreachable> {
        let candidates: Vec<SocketAddr> = match self.overrides.get(host) {
            // The operator's own mapping: not checked against the refused addresses.
            Some((ip, fixed)) => vec![SocketAddr::new(*ip, fixed.unwrap_or(port))],
            None => {
                let resolved = tokio::time::timeout(UPSTREAM_TIMEOUT, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| Unreachable::Failed(format!("resolving {host} timed out")))?
                    .map_err(|e| Unreachable::Failed(format!("cannot resolve {host}: {e}")))?;
                let local = host_addresses();
                let mut allowed = Vec::new();
                let mut refusal = None;
                for addr in resolved {
                    match refused(addr.ip(), self.pool, &local) {
                        Some(why) => refusal = Some(format!("{host} resolves to {}, {why}", addr.ip())),
                        None => allowed.push(addr),
                    }
                }
                if allowed.is_empty() {
                    return Err(match refusal {
                        Some(why) => Unreachable::Refused(why),
                        None => Unreachable::Failed(format!("{host} has no address")),
                    });
                }
                allowed
            }
        };
        let mut last = String::new();
        for addr in candidates.into_iter().take(MAX_ADDRESSES) {
            match tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, addr)),
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        Err(Unreachable::Failed(format!("cannot connect to {host}:{port} ({last})")))
    }
}

/// What serving one task's connections needs.
pub struct Proxy {
    pub policy: Policy,
    pub upstreams: Arc<Upstreams>,
    pub recorder: Arc<dyn Recorder>,
}

/// Serves one client connection (HTTP/1.1, several requests when kept alive) until it ends.
pub async fn serve(stream: TcpStream, proxy: Arc<Proxy>) {
    let service = hyper::service::service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(handle(request, proxy).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "egress proxy: client connection ended with an error");
    }
}

/// One request: refused, tunnelled or forwarded.
async fn handle(request: Request<Incoming>, proxy: Arc<Proxy>) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().to_string();
    let (raw_host, port) = match target(&request) {
        Ok(target) => target,
        Err(response) => return response,
    };
    let mut attempt = Attempt {
        method,
        host: recordable(&raw_host),
        port,
        allowed: false,
        reason: None,
        upstream: None,
        status: 403,
        bytes_sent: 0,
        bytes_received: 0,
        duration_ms: 0,
    };
    let Some(host) = normalize_host(&raw_host) else {
        let reason = "not a host name (IPv6 literals are not supported)".to_string();
        return deny(&proxy, attempt, reason, started);
    };
    attempt.host = host.clone();
    if !proxy.policy.allows(&host, port) {
        let reason = format!("{host}:{port} is not on the task's allowlist");
        return deny(&proxy, attempt, reason, started);
    }
    attempt.allowed = true;
    let (stream, address) = match proxy.upstreams.connect(&host, port).await {
        Ok(connected) => connected,
        Err(Unreachable::Refused(reason)) => {
            let reason = format!(
                "{reason}; the proxy never connects to the host, loopback, link-local (metadata) or task addresses"
            );
            return deny(&proxy, attempt, reason, started);
        }
        Err(Unreachable::Failed(reason)) => {
            attempt.status = 502;
            attempt.reason = Some(reason.clone());
            attempt.duration_ms = started.elapsed().as_millis() as u64;
            proxy.recorder.record(attempt);
            return text_response(
                StatusCode::BAD_GATEWAY,
                None,
                format!("taskbox egress proxy: {reason}\n"),
            );
        }
    };
    attempt.upstream = Some(address.to_string());
    let upstream = Counted::new(stream);
    if request.method() == Method::CONNECT {
        tunnel(request, upstream, attempt, proxy, started)
    } else {
        forward(request, upstream, attempt, proxy, started).await
    }
}

/// The host and port a request asks for; an error response for a request that is not a proxy
/// request.
#[allow(clippy::result_large_err)]
fn target(request: &Request<Incoming>) -> Result<(String, u16), Response<Body>> {
    let uri = request.uri();
    let usage = || {
        text_response(
            StatusCode::BAD_REQUEST,
            None,
            "taskbox egress proxy: use it as an HTTP proxy (HTTP_PROXY/HTTPS_PROXY are set for every command): \
             CONNECT host:port for TLS, or a request with an absolute http:// URI\n"
                .into(),
        )
    };
    let authority = uri.authority().ok_or_else(usage)?;
    if request.method() == Method::CONNECT {
        let port = authority.port_u16().ok_or_else(usage)?;
        return Ok((authority.host().to_string(), port));
    }
    if uri.scheme_str() != Some("http") {
        return Err(usage());
    }
    Ok((authority.host().to_string(), authority.port_u16().unwrap_or(80)))
}

/// A 403 naming the policy, recorded.
fn deny(proxy: &Proxy, mut attempt: Attempt, reason: String, started: Instant) -> Response<Body> {
    attempt.allowed = false;
    attempt.status = 403;
    attempt.reason = Some(reason.clone());
    attempt.duration_ms = started.elapsed().as_millis() as u64;
    let allowed = proxy.policy.entries().join(", ");
    proxy.recorder.record(attempt);
    text_response(
        StatusCode::FORBIDDEN,
        // What clients that show only the status line (pip, curl's CONNECT error) print.
        Some("Forbidden by taskbox egress policy allowlist"),
        format!(
            "taskbox egress proxy: refused by the task's network policy \"allowlist\": {reason}. Allowed: [{allowed}]. \
             A host off the list needs a task created with it in `allow` (or with network \"egress\").\n"
        ),
    )
}

/// Answers 200 and, once hyper hands over the connection, copies both ways until either side
/// closes; then records the attempt with its bytes.
fn tunnel(
    request: Request<Incoming>,
    mut upstream: Counted,
    mut attempt: Attempt,
    proxy: Arc<Proxy>,
    started: Instant,
) -> Response<Body> {
    let (sent, received) = upstream.counters();
    tokio::spawn(async move {
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "egress proxy: tunnel ended with an error");
                }
            }
            Err(e) => attempt.reason = Some(format!("the client left before the tunnel opened: {e}")),
        }
        attempt.status = 200;
        attempt.bytes_sent = sent.load(Ordering::Relaxed);
        attempt.bytes_received = received.load(Ordering::Relaxed);
        attempt.duration_ms = started.elapsed().as_millis() as u64;
        proxy.recorder.record(attempt);
    });
    Response::new(empty())
}

/// Headers for one hop only, never passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Sends the request to the upstream on a connection of its own (origin-form URI, hop-by-hop
/// headers dropped) and streams the response back; the attempt is recorded when that
/// connection closes, after the response's body has passed.
async fn forward(
    mut request: Request<Incoming>,
    upstream: Counted,
    mut attempt: Attempt,
    proxy: Arc<Proxy>,
    started: Instant,
) -> Response<Body> {
    let (sent, received) = upstream.counters();
    let status = Arc::new(AtomicU16::new(502));
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
        Ok(pair) => pair,
        Err(e) => {
            attempt.status = 502;
            attempt.reason = Some(e.to_string());
            proxy.recorder.record(attempt);
            return text_response(StatusCode::BAD_GATEWAY, None, format!("taskbox egress proxy: {e}\n"));
        }
    };
    {
        let status = status.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                attempt.reason = Some(e.to_string());
            }
            attempt.status = status.load(Ordering::Relaxed);
            attempt.bytes_sent = sent.load(Ordering::Relaxed);
            attempt.bytes_received = received.load(Ordering::Relaxed);
            attempt.duration_ms = started.elapsed().as_millis() as u64;
            proxy.recorder.record(attempt);
        });
    }
    let authority = request.uri().authority().map(|a| match a.port() {
        Some(port) => format!("{}:{port}", a.host()),
        None => a.host().to_string(),
    });
    let origin_form = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .unwrap_or_default();
    *request.uri_mut() = origin_form;
    let headers = request.headers_mut();
    let listed: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    // The checked name, whatever Host the client sent: a different one would reach another
    // site served from the same address (a CDN's), past the allowlist.
    headers.remove(HOST);
    if let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
        headers.insert(HOST, value);
    }
    match sender.send_request(request).await {
        Ok(response) => {
            status.store(response.status().as_u16(), Ordering::Relaxed);
            response.map(BodyExt::boxed)
        }
        Err(e) => text_response(StatusCode::BAD_GATEWAY, None, format!("taskbox egress proxy: {e}\n")),
    }
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

fn text_response(status: StatusCode, reason: Option<&'static str>, text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(phrase) = reason.and_then(|r| hyper::ext::ReasonPhrase::try_from(r.as_bytes()).ok()) {
        response.extensions_mut().insert(phrase);
    }
    response
}

/// A host as a hostile request gave it, made safe to record: printable ASCII, bounded.
fn recordable(raw: &str) -> String {
    raw.chars()
        .take(MAX_RECORDED_HOST)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// A TCP stream that counts the bytes through it.
struct Counted {
    inner: TcpStream,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
}

impl Counted {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            sent: Arc::default(),
            received: Arc::default(),
        }
    }

    fn counters(&self) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
        (self.sent.clone(), self.received.clone())
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.received
                .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
