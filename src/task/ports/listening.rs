//! The ports listening inside a container, from its `/proc/net/tcp` and `/proc/net/tcp6`
//! (read by a command in the container, so hostile input): every line is checked against the
//! kernel's format, anything else is skipped, and the result is bounded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use schemars::JsonSchema;
use serde::Serialize;

/// The most listening sockets reported (a container can open thousands).
pub const MAX_LISTENING: usize = 256;
/// The most lines looked at; the rest of the input is ignored.
const MAX_LINES: usize = 20_000;
/// `TCP_LISTEN` in the kernel's `st` column.
const LISTEN: &str = "0A";

/// A TCP port something listens on in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ListeningPort {
    pub port: u16,
    /// The addresses it listens on (`0.0.0.0` or `::` for every address, `127.0.0.1` or
    /// `::1` for the container's loopback only). An exposed port reaches both kinds.
    pub addresses: Vec<String>,
}

/// What `/proc/net/tcp` and `/proc/net/tcp6` (concatenated, headers included) say listens,
/// by port; at most `MAX_LISTENING` ports, and whether more were left out.
pub fn parse(text: &str) -> (Vec<ListeningPort>, bool) {
    let mut ports: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut more = false;
    for line in text.lines().take(MAX_LINES) {
        let Some((address, port)) = listening_socket(line) else {
            continue;
        };
        if !ports.contains_key(&port) && ports.len() >= MAX_LISTENING {
            more = true;
            continue;
        }
        let addresses = ports.entry(port).or_default();
        let address = address.to_string();
        if !addresses.contains(&address) && addresses.len() < 8 {
            addresses.push(address);
        }
    }
    let ports = ports
        .into_iter()
        .map(|(port, addresses)| ListeningPort { port, addresses })
        .collect();
    (ports, more)
}

/// The local address and port of a line in state LISTEN, or `None` for anything else (the
/// header, another state, a malformed line).
fn listening_socket(line: &str) -> Option<(IpAddr, u16)> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') || !slot[..slot.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = fields.next()?;
    let _remote = fields.next()?;
    if fields.next()? != LISTEN {
        return None;
    }
    let (address, port) = local.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok().filter(|&p| p > 0)?;
    Some((parse_address(address)?, port))
}

/// The kernel prints an address as 32-bit words, each as the number its bytes make in host
/// byte order (little-endian on the machines taskbox runs on).
fn parse_address(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) || !matches!(hex.len(), 8 | 32) {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    for i in 0..hex.len() / 8 {
        let word = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    Some(match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0
   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12346 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F40 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000  1000        0 12347 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 3 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_by_port_with_their_addresses() {
        let (ports, more) = parse(&format!("{TCP}{TCP6}"));
        assert!(!more);
        assert_eq!(
            ports,
            vec![
                ListeningPort {
                    port: 3000,
                    addresses: vec!["0.0.0.0".into()]
                },
                ListeningPort {
                    port: 5000,
                    addresses: vec!["::1".into()]
                },
                ListeningPort {
                    port: 8000,
                    addresses: vec!["127.0.0.1".into(), "::".into()]
                },
            ]
        );
    }

    #[test]
    fn hostile_lines_are_skipped_and_the_result_is_bounded() {
        let junk = "0: ZZZZZZZZ:1F40 0 0A\n x: 0100007F:1F40 0 0A\n0: 0100007F:0000 0 0A\n0: 0100007F:1F4000 0 0A\n\
                    0: 0100007F 0 0A\n0: 01007F:1F40 0 0A\n\u{0}\u{1}\n0: 0100007F:1F40";
        assert_eq!(parse(junk), (vec![], false));
        let many: String = (1..=1000)
            .map(|p| format!("{p}: 0100007F:{p:04X} 00000000:0000 0A x\n"))
            .collect();
        let (ports, more) = parse(&many);
        assert_eq!(ports.len(), MAX_LISTENING);
        assert!(more);
    }
}
