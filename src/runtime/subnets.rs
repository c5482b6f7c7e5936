//! Subnets for per-task networks. Docker's default address pools hold about thirty bridge
//! networks, so with one network per task the thirty-first task would fail to start; taskbox
//! instead carves small subnets (default /28) out of a pool of its own (default 10.213.0.0/16,
//! 4096 networks), skipping every subnet an existing network already uses.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Cidr {
    fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn last(self) -> u32 {
        (u64::from(self.base) + self.size() - 1) as u32
    }

    pub fn overlaps(self, other: Cidr) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not an IPv4 CIDR block like 10.213.0.0/16");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 30 {
            return Err(format!("'{s}': the prefix must be at most /30"));
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        Ok(Self {
            base: u32::from(addr) & mask,
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The subnets of `size` in `pool` that overlap none of `used`, starting at the one `seed`
/// picks and wrapping around, so servers allocating at once rarely try the same one first.
pub fn free_subnets(pool: Cidr, size: u8, used: &[Cidr], seed: u64) -> impl Iterator<Item = Cidr> + '_ {
    let size = size.max(pool.prefix);
    let count = 1u64 << (u32::from(size) - u32::from(pool.prefix));
    let step = 1u64 << (32 - u32::from(size));
    let start = seed % count;
    (0..count)
        .map(move |i| Cidr {
            base: (u64::from(pool.base) + ((start + i) % count) * step) as u32,
            prefix: size,
        })
        .filter(move |candidate| !used.iter().any(|u| u.overlaps(*candidate)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(cidr("10.213.7.9/16").to_string(), "10.213.0.0/16");
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/31".parse::<Cidr>().is_err());
        assert!("300.0.0.0/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn overlap_is_symmetric_and_exact_at_the_edges() {
        assert!(cidr("10.0.0.0/8").overlaps(cidr("10.1.2.0/24")));
        assert!(cidr("10.1.2.0/24").overlaps(cidr("10.0.0.0/8")));
        assert!(!cidr("10.0.0.0/28").overlaps(cidr("10.0.0.16/28")));
        assert!(cidr("10.0.0.0/27").overlaps(cidr("10.0.0.16/28")));
    }

    #[test]
    fn free_subnets_skip_used_ones_and_wrap() {
        let pool = cidr("10.213.0.0/26");
        let used = [cidr("10.213.0.16/28")];
        let got: Vec<String> = free_subnets(pool, 28, &used, 1).map(|c| c.to_string()).collect();
        assert_eq!(got, ["10.213.0.32/28", "10.213.0.48/28", "10.213.0.0/28"]);
        // A used block larger than the subnets hides all it covers.
        let used = [cidr("10.213.0.0/27")];
        assert_eq!(free_subnets(pool, 28, &used, 0).count(), 2);
        // The default pool holds 4096 /28 networks.
        assert_eq!(free_subnets(cidr("10.213.0.0/16"), 28, &[], 7).count(), 4096);
    }
}
