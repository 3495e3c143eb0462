//! An address range from the settings (`web.trusted_proxies`): one address, or a
//! network in CIDR form.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// `192.0.2.10`, `10.8.0.0/16`, `::1` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this range. An IPv4 address reached over IPv6
    /// (`::ffff:a.b.c.d`) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// Why a range could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IpNetError {
    #[error("not an IP address or a network like 10.0.0.0/8")]
    Address,
    #[error("the prefix length must be at most {0}")]
    Prefix(u8),
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| IpNetError::Address)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().map_err(|_| IpNetError::Address)?,
        };
        if prefix > max {
            return Err(IpNetError::Prefix(max));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("127.0.0.0/8").contains(ip("127.4.5.6")));
        assert!(!net("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(net("10.8.0.0/13").contains(ip("10.15.255.255")));
        assert!(!net("10.8.0.0/13").contains(ip("10.16.0.0")));
        assert!(net("192.0.2.10").contains(ip("192.0.2.10")));
        assert!(!net("192.0.2.10").contains(ip("192.0.2.11")));
        assert!(net("::1").contains(ip("::1")));
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(!net("::1").contains(ip("127.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("proxy".parse::<IpNet>().is_err());
    }
}
