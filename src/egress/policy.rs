//! Which hosts an `allowlist` task may reach through the proxy: patterns (`pypi.org`,
//! `*.npmjs.org`, `example.com:8443`, `203.0.113.7`) and the check of a requested host and
//! port against them. Names are compared lowercase, without a trailing dot.

use std::fmt;
use std::net::Ipv4Addr;

/// The longest host name DNS allows.
const MAX_HOST: usize = 253;

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    host: HostPattern,
    /// Only this port; `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// This name (or IPv4 address) only.
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix`, at any depth, but not `suffix` itself.
    Subdomains(String),
}

impl Pattern {
    /// Parses an entry; the error says what a valid one looks like.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "'{entry}' is not a host pattern ({why}); use a host name (\"pypi.org\"), \"*.\" and a domain \
                 for its subdomains (\"*.npmjs.org\"), or either with \":port\" (\"example.com:8443\")"
            )
        };
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) => {
                let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
                if port == 0 {
                    return Err(bad("port 0"));
                }
                (host, Some(port))
            }
            None => (entry, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(suffix) => {
                let suffix = normalize_host(suffix).ok_or_else(|| bad("not a host name after \"*.\""))?;
                if !suffix.contains('.') || suffix.parse::<Ipv4Addr>().is_ok() {
                    return Err(bad("\"*.\" needs a domain of at least two labels"));
                }
                HostPattern::Subdomains(suffix)
            }
            None => HostPattern::Exact(normalize_host(&host).ok_or_else(|| bad("not a host name"))?),
        };
        Ok(Self { host, port })
    }

    /// Whether a normalized host (`normalize_host`) and port match.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostPattern::Exact(name) => host == name,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(name) => write!(f, "{name}")?,
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A host as a request names it, lowercase and without a trailing dot; `None` when it is not
/// a host name (letters, digits, '-' and '_' in dot-separated labels of 1 to 63 characters) or
/// an IPv4 address. IPv6 literals are not accepted.
pub fn normalize_host(raw: &str) -> Option<String> {
    let host = raw.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.len() > MAX_HOST {
        return None;
    }
    let labels_ok = host.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    labels_ok.then_some(host)
}

/// A task's allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    patterns: Vec<Pattern>,
}

impl Policy {
    /// The policy of these entries; the first invalid one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let patterns = entries
            .iter()
            .map(|e| Pattern::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether the (normalized) host and port are allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.patterns.iter().any(|p| p.matches(host, port))
    }

    /// The entries, as they would be written (normalized).
    pub fn entries(&self) -> Vec<String> {
        self.patterns.iter().map(ToString::to_string).collect()
    }
}

/// `entries` normalized, with duplicates dropped and the order kept (the config's list first,
/// then the task's own).
pub fn merge<S: AsRef<str>>(defaults: &[S], extra: &[S]) -> Result<Vec<String>, String> {
    let mut merged: Vec<String> = Vec::new();
    for entry in defaults.iter().chain(extra) {
        let normalized = Pattern::parse(entry.as_ref())?.to_string();
        if !merged.contains(&normalized) {
            merged.push(normalized);
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_subdomains_and_ports() {
        let policy = Policy::parse(&["PyPI.org.", "*.npmjs.org", "example.com:8443", "203.0.113.7"]).unwrap();
        assert!(policy.allows("pypi.org", 443));
        assert!(policy.allows("pypi.org", 80));
        assert!(
            !policy.allows("files.pypi.org", 443),
            "an exact name is not its subdomains"
        );
        assert!(policy.allows("registry.npmjs.org", 443));
        assert!(policy.allows("a.b.npmjs.org", 443));
        assert!(!policy.allows("npmjs.org", 443), "*.x is not x itself");
        assert!(!policy.allows("evilnpmjs.org", 443));
        assert!(policy.allows("example.com", 8443));
        assert!(!policy.allows("example.com", 443));
        assert!(policy.allows("203.0.113.7", 22));
        assert_eq!(
            policy.entries(),
            ["pypi.org", "*.npmjs.org", "example.com:8443", "203.0.113.7"]
        );
    }

    #[test]
    fn bad_patterns_and_hosts_are_refused_with_what_to_write() {
        for bad in [
            "",
            "*",
            "*.com",
            "a b.org",
            "x.org:0",
            "x.org:http",
            "[::1]",
            "-x.org",
            "*.1.2.3.4",
        ] {
            let error = Pattern::parse(bad).unwrap_err();
            assert!(error.contains("pypi.org"), "{bad}: {error}");
        }
        assert_eq!(normalize_host("Example.COM."), Some("example.com".into()));
        assert_eq!(normalize_host("a..b"), None);
        assert_eq!(normalize_host(&"a".repeat(254)), None);
        assert_eq!(normalize_host("evil\r\nhost"), None);
    }

    #[test]
    fn merge_keeps_order_and_drops_duplicates() {
        assert_eq!(
            merge(&["pypi.org", "*.npmjs.org"], &["PYPI.org", "crates.io"]).unwrap(),
            ["pypi.org", "*.npmjs.org", "crates.io"]
        );
        assert!(merge(&["ok.org"], &["bad host"]).is_err());
    }
}
