//! Where the proxy never connects, whatever a name resolves to: the host itself (loopback and
//! every address of its interfaces, the task bridges' gateways among them), link-local
//! addresses (cloud metadata, 169.254.169.254), the task subnet pool (other tasks), and
//! addresses that are not a single host. Without this, an allowed name that resolves to
//! 127.0.0.1 (`*.nip.io`-style DNS does it on request) would take a task through the proxy to
//! the host's services, which the firewall keeps it from directly (docs/security.md).

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `/proc/net/fib_trie` on a host with many bridges is a few tens of KiB.
const MAX_PROC_FILE: u64 = 4 * 1024 * 1024;

/// An IPv4 block (the task subnet pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Block {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        };
        u32::from(ip) & mask == u32::from(self.base) & mask
    }
}

/// Why the proxy refuses to connect to `ip`, or `None` when it may.
pub fn refused(ip: IpAddr, pool: Block, host_addresses: &HashSet<IpAddr>) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let refusal = match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_link_local() {
                Some("a link-local (metadata) address")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                Some("not a single host")
            } else if pool.contains(v4) {
                Some("a task network")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a single host")
            } else if is_link_local_v6(v6) {
                Some("a link-local (metadata) address")
            } else {
                None
            }
        }
    };
    refusal.or_else(|| host_addresses.contains(&ip).then_some("an address of the taskbox host"))
}

fn is_link_local_v6(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The addresses of the host's interfaces, read from `/proc` (IPv4: the `/32 host LOCAL`
/// entries of `fib_trie`; IPv6: `if_inet6`). Read per connection: bridges come and go.
pub fn host_addresses() -> HashSet<IpAddr> {
    let mut addresses = HashSet::new();
    if let Some(trie) = read_bounded("/proc/net/fib_trie") {
        addresses.extend(local_v4_from_fib_trie(&trie).into_iter().map(IpAddr::V4));
    }
    if let Some(inet6) = read_bounded("/proc/net/if_inet6") {
        addresses.extend(local_v6_from_if_inet6(&inet6).into_iter().map(IpAddr::V6));
    }
    addresses
}

fn read_bounded(path: &str) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PROC_FILE).read_to_string(&mut text))
        .ok()?;
    Some(text)
}

/// In `fib_trie`, each `|-- <address>` line is followed by the kinds of routes to it; a
/// `/32 host LOCAL` one means the address is the host's own.
fn local_v4_from_fib_trie(trie: &str) -> Vec<Ipv4Addr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut local = Vec::new();
    for line in trie.lines() {
        let line = line.trim();
        if let Some(address) = line.strip_prefix("|-- ") {
            last = address.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(address) = last
            && !local.contains(&address)
        {
            local.push(address);
        }
    }
    local
}

/// `if_inet6`: the address as 32 hex digits, first on each line.
fn local_v6_from_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            (hex.len() == 32).then(|| u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: Block = Block {
        base: Ipv4Addr::new(10, 213, 0, 0),
        prefix: 16,
    };

    #[test]
    fn the_host_metadata_and_other_tasks_are_refused() {
        let host: HashSet<IpAddr> = ["192.0.2.2".parse().unwrap()].into();
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("10.213.4.1", "task network"),
            ("192.0.2.2", "taskbox host"),
            ("0.0.0.0", "single host"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("fe80::1", "link-local"),
        ] {
            let reason = refused(ip.parse().unwrap(), POOL, &host).unwrap_or_default();
            assert!(reason.contains(why), "{ip}: {reason:?}");
        }
        assert_eq!(refused("203.0.113.80".parse().unwrap(), POOL, &host), None);
        assert_eq!(refused("10.214.0.1".parse().unwrap(), POOL, &host), None);
        assert_eq!(refused("2001:db8::1".parse().unwrap(), POOL, &host), None);
    }

    #[test]
    fn local_addresses_are_read_from_proc_formats() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     \
                    +-- 10.213.193.0/28 2 0 2\n        |-- 10.213.193.0\n           /28 link UNICAST\n        \
                    |-- 10.213.193.1\n           /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(
            local_v4_from_fib_trie(trie),
            [Ipv4Addr::new(10, 213, 193, 1), Ipv4Addr::new(127, 0, 0, 1)]
        );
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\nfe80000000000000fc00fffffe000001 02 40 20 80     eth0\n";
        assert_eq!(
            local_v6_from_if_inet6(inet6),
            [
                Ipv6Addr::LOCALHOST,
                "fe80::fc00:ffff:fe00:1".parse::<Ipv6Addr>().unwrap()
            ]
        );
        // This host has loopback at least.
        assert!(host_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
