//! The client address for throttling and connection caps: the peer's, or, when the peer is a
//! trusted proxy (`TRUSTED_PROXIES`: comma-separated IPs or CIDRs), the right-most
//! `X-Forwarded-For` entry that is not a trusted proxy.

use std::net::IpAddr;
use std::str::FromStr;

/// One IP network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a `TRUSTED_PROXIES` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid TRUSTED_PROXIES entry '{0}': expected an IP address or CIDR")]
pub struct IpNetError(String);

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || IpNetError(s.chars().take(64).collect());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl IpNet {
    /// True when `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The parsed `TRUSTED_PROXIES` list (empty: trust no proxy, use the peer address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list; empty items are skipped.
    pub fn parse(list: &str) -> Result<Self, IpNetError> {
        list.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// True when `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client address of a request from `peer` carrying `forwarded_for` (all
    /// `X-Forwarded-For` header values, in order, joined with commas).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let Some(list) = forwarded_for else {
            return peer;
        };
        let mut last = peer;
        for item in list.rsplit(',') {
            let Ok(ip) = item.trim().parse::<IpAddr>() else {
                // Garbage from the far side of the proxy: the last trusted hop is all we know.
                return last;
            };
            let ip = canonical(ip);
            if !self.trusts(ip) {
                return ip;
            }
            last = ip;
        }
        last
    }
}

/// [`TrustedProxies::client_ip`] for an actix request.
pub fn client_ip(req: &actix_web::HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    head_client_ip(req.head(), trusted)
}

/// [`TrustedProxies::client_ip`] for a request head (an upgrade taken before actix-web).
pub fn head_client_ip(
    head: &actix_web::dev::RequestHead,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = head.peer_addr?.ip();
    let joined: Vec<&str> = head
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = (!joined.is_empty()).then(|| joined.join(","));
    Some(trusted.client_ip(peer, joined.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let t = TrustedProxies::default();
        assert_eq!(t.client_ip(ip("1.2.3.4"), Some("9.9.9.9")), ip("1.2.3.4"));
    }

    #[test]
    fn trusted_proxy_takes_the_rightmost_untrusted_hop() {
        let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").expect("parses");
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), Some("6.6.6.6, 5.5.5.5, 10.1.2.3")),
            ip("5.5.5.5")
        );
        assert_eq!(t.client_ip(ip("127.0.0.1"), None), ip("127.0.0.1"));
        assert_eq!(
            t.client_ip(ip("::ffff:127.0.0.1"), Some("8.8.8.8")),
            ip("8.8.8.8")
        );
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), Some("junk, 10.0.0.9")),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn parses_and_rejects() {
        assert!(TrustedProxies::parse("").expect("empty").0.is_empty());
        assert!(TrustedProxies::parse("::1/128,fd00::/8").is_ok());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("example.com").is_err());
        let net: IpNet = "192.168.0.0/16".parse().expect("net");
        assert!(net.contains(ip("192.168.4.5")));
        assert!(!net.contains(ip("192.169.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().expect("net");
        assert!(all.contains(ip("8.8.8.8")));
    }
}
