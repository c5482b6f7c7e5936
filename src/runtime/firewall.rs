//! Host firewall rules that keep task networks away from the host, from cloud metadata and
//! from each other (docs/security.md, "Network"). Task networks are carved from one pool
//! (`network.subnet_pool`), so a handful of rules on that pool cover every task:
//!
//! - `DOCKER-USER` (forwarded traffic, which Docker sends through this chain first and never
//!   flushes): from the pool to link-local addresses (169.254.169.254, the metadata service,
//!   among them) and to the pool itself (another task's network) is rejected;
//! - `INPUT` (traffic to the host's own addresses, the bridge gateways included, which Docker
//!   does not manage): new connections from the pool are rejected.
//!
//! Named exceptions from the config come before those: accepted in `INPUT`, and in
//! `DOCKER-USER` passed on (`RETURN`) to Docker's own rules rather than accepted, so an
//! `allowlist` task's internal network keeps Docker's isolation (its only way out stays the
//! egress proxy). The egress proxy's port on the host's addresses in the pool is a built-in
//! exception, in `INPUT` only. Every rule carries a comment
//! naming taskbox and the pool, and is checked with `iptables -C` before it is inserted, so
//! servers and daemon restarts never duplicate or lose one.

use std::process::Command;

use super::subnets::Cidr;

/// Link-local IPv4: the metadata service of every major cloud (169.254.169.254) lives here.
const LINK_LOCAL: &str = "169.254.0.0/16";

/// A destination tasks may reach although the rules above would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallException {
    /// Why the exception exists, shown in the rule's comment.
    pub name: String,
    /// An IPv4 address or CIDR block.
    pub address: String,
    /// Only this TCP port (default: every port and protocol).
    pub port: Option<u16>,
}

/// One rule: the chain, and the match and target after `-I <chain> 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: &'static str,
    pub args: Vec<String>,
}

/// The rules for a pool, exceptions first (rules are inserted at the top, in reverse order, so
/// the chain ends up in this order). `proxy_port`: the egress proxy's port, which tasks reach
/// on the host's addresses in the pool (their bridges' gateways, where the server listens);
/// `INPUT` only, so it never opens that port of another task's container.
pub fn rules(pool: Cidr, exceptions: &[FirewallException], proxy_port: u16) -> Vec<Rule> {
    let pool = pool.to_string();
    let comment = |what: &str| {
        vec![
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            format!("taskbox {pool}: {what}"),
        ]
    };
    let mut rules = Vec::new();
    let mut proxy = vec![
        "-s".to_string(),
        pool.clone(),
        "-d".into(),
        pool.clone(),
        "-p".into(),
        "tcp".into(),
        "--dport".into(),
        proxy_port.to_string(),
    ];
    proxy.extend(comment("egress proxy"));
    proxy.extend(["-j".into(), "ACCEPT".into()]);
    rules.push(Rule {
        chain: "INPUT",
        args: proxy,
    });
    for exception in exceptions {
        let mut args = vec!["-s".to_string(), pool.clone(), "-d".into(), exception.address.clone()];
        if let Some(port) = exception.port {
            args.extend(["-p".into(), "tcp".into(), "--dport".into(), port.to_string()]);
        }
        args.extend(comment(&format!("exception {}", exception.name)));
        for (chain, target) in [("INPUT", "ACCEPT"), ("DOCKER-USER", "RETURN")] {
            let mut args = args.clone();
            args.extend(["-j".into(), target.into()]);
            rules.push(Rule { chain, args });
        }
    }
    let reject = |mut args: Vec<String>, what: &str| {
        args.extend(comment(what));
        args.extend(["-j".into(), "REJECT".into()]);
        args
    };
    rules.push(Rule {
        chain: "DOCKER-USER",
        args: reject(
            vec!["-s".into(), pool.clone(), "-d".into(), LINK_LOCAL.into()],
            "no link-local or metadata",
        ),
    });
    rules.push(Rule {
        chain: "DOCKER-USER",
        args: reject(
            vec!["-s".into(), pool.clone(), "-d".into(), pool.clone()],
            "no other task's network",
        ),
    });
    rules.push(Rule {
        chain: "INPUT",
        args: reject(
            vec![
                "-s".into(),
                pool.clone(),
                "-m".into(),
                "conntrack".into(),
                "!".into(),
                "--ctstate".into(),
                "ESTABLISHED,RELATED".into(),
            ],
            "no host address",
        ),
    });
    rules
}

/// What `ensure` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallReport {
    pub present: usize,
    pub inserted: usize,
}

/// Makes sure every rule is in place: checks each with `iptables -C`, inserts the missing
/// ones at the top of their chain. Fails (saying what to run) when iptables is missing or the
/// server may not change the rules (not root: `taskbox firewall` as root, once).
pub fn ensure(rules: &[Rule]) -> Result<FirewallReport, String> {
    let mut report = FirewallReport::default();
    // Inserted at position 1 in reverse, so the chain reads in the order of `rules`.
    let missing: Vec<&Rule> = rules.iter().filter(|rule| !present(rule)).collect();
    report.present = rules.len() - missing.len();
    for rule in missing.iter().rev() {
        let mut args = vec!["-w".to_string(), "-I".into(), rule.chain.into(), "1".into()];
        args.extend(rule.args.iter().cloned());
        let out = Command::new("iptables")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run iptables: {e}; install it (Debian: iptables)"))?;
        if !out.status.success() {
            return Err(format!(
                "iptables {}: {}; run `taskbox firewall` as root once (it installs the rules that keep tasks \
                 from the host and metadata addresses)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        report.inserted += 1;
    }
    Ok(report)
}

/// Whether the rule is in its chain.
pub fn present(rule: &Rule) -> bool {
    Command::new("iptables")
        .args(["-w", "-C", rule.chain])
        .args(&rule.args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_cover_host_metadata_and_other_tasks_with_exceptions_first() {
        let pool: Cidr = "10.213.0.0/16".parse().unwrap();
        let exception = FirewallException {
            name: "db".into(),
            address: "10.0.0.5".into(),
            port: Some(5432),
        };
        let rules = rules(pool, &[exception], 13128);
        let text: Vec<String> = rules
            .iter()
            .map(|r| format!("{} {}", r.chain, r.args.join(" ")))
            .collect();
        assert!(
            text[0].starts_with("INPUT -s 10.213.0.0/16 -d 10.213.0.0/16 -p tcp --dport 13128")
                && text[0].ends_with("-j ACCEPT"),
            "{text:?}"
        );
        assert!(
            !text.iter().any(|t| t.starts_with("DOCKER-USER") && t.contains("13128")),
            "the proxy port is opened on the host only, never between tasks"
        );
        let text = &text[1..];
        assert!(
            text[0].starts_with("INPUT -s 10.213.0.0/16 -d 10.0.0.5 -p tcp --dport 5432"),
            "{text:?}"
        );
        assert!(text[0].ends_with("-j ACCEPT"));
        assert!(text[1].starts_with("DOCKER-USER -s 10.213.0.0/16 -d 10.0.0.5"));
        assert!(
            text[1].ends_with("-j RETURN"),
            "forwarded traffic goes on to Docker's own rules, which keep internal (allowlist) networks in"
        );
        assert!(text[2].contains("-d 169.254.0.0/16") && text[2].ends_with("-j REJECT"));
        assert!(text[3].contains("-d 10.213.0.0/16") && text[3].starts_with("DOCKER-USER"));
        assert!(text[4].starts_with("INPUT -s 10.213.0.0/16 -m conntrack ! --ctstate ESTABLISHED,RELATED"));
        assert!(text.iter().all(|t| t.contains("--comment taskbox 10.213.0.0/16: ")));
    }
}
