//! Which address a request comes from, behind load balancers we trust: a pure decision over
//! the socket peer and `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// `X-Forwarded-For` entries looked at, from the right: more hops than any real chain of
/// proxies, and a bound on the work a long header can cause.
const MAX_HOPS: usize = 16;

/// The proxies whose `X-Forwarded-For` entries are believed (`AIDLC_TRUSTED_PROXIES`): CIDRs,
/// e.g. the VPC range the ALB's nodes live in. Empty: nobody is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// True when `ip` is inside one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, as configured.
    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated CIDRs (`10.0.0.0/16, fd00::/8`); a bare address is a single host.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => part
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("{part:?} is not a CIDR such as 10.0.0.0/16"))?,
            };
            nets.push(net.trunc());
        }
        Ok(Self(nets.into()))
    }
}

/// The client of a request that reached us from `peer` carrying the `X-Forwarded-For`
/// header values `forwarded_for` (in order). The peer is the client unless it is a trusted
/// proxy; then each entry, right to left, is the peer of the hop after it, so the walk goes on
/// only while the hop is trusted, and the first untrusted entry is the client. Entries left of
/// it were written by the client and are never believed. A malformed entry ends the walk at
/// the last trusted hop (a client can only make itself share a key with the proxy's, never
/// escape its own), as does a chain longer than [`MAX_HOPS`].
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = canonical(peer);
    if !trusted.contains(client) {
        return client;
    }
    let entries = forwarded_for.rev().flat_map(|value| value.rsplit(','));
    for entry in entries.take(MAX_HOPS) {
        let Some(hop) = parse_entry(entry) else {
            return client;
        };
        client = hop;
        if !trusted.contains(hop) {
            return hop;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or("")
                .parse::<IpAddr>()
        })
        .ok()?;
    Some(canonical(ip))
}

/// IPv4 in IPv6 clothing (`::ffff:1.2.3.4`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The name rate limits know a client by: the IPv4 address, or the /64 of an IPv6 one (one
/// subscriber usually holds a whole /64, so counting single addresses would let it rotate).
pub fn limit_subject(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mask = u128::MAX << 64;
            format!("{}/64", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolve(peer: &str, xff: &[&str], trusted: &str) -> IpAddr {
        client_ip(ip(peer), xff.iter().copied(), &trusted.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(
            resolve("198.51.100.7", &["1.1.1.1"], ""),
            ip("198.51.100.7")
        );
        assert_eq!(resolve("10.0.1.5", &["1.1.1.1"], ""), ip("10.0.1.5"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_even_when_proxies_are_configured() {
        assert_eq!(
            resolve("198.51.100.7", &["10.0.0.1"], "10.0.0.0/16"),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn behind_the_alb_the_right_most_untrusted_entry_is_the_client() {
        // The client wrote "6.6.6.6" itself; the ALB appended the address it saw.
        assert_eq!(
            resolve("10.0.3.9", &["6.6.6.6, 203.0.113.4"], "10.0.0.0/16"),
            ip("203.0.113.4")
        );
        // Two trusted hops, and the header split over two lines.
        assert_eq!(
            resolve(
                "10.0.3.9",
                &["6.6.6.6, 203.0.113.4", "10.0.2.2"],
                "10.0.0.0/16"
            ),
            ip("203.0.113.4")
        );
    }

    #[test]
    fn a_trusted_peer_without_a_header_is_the_client() {
        assert_eq!(resolve("10.0.3.9", &[], "10.0.0.0/16"), ip("10.0.3.9"));
    }

    #[test]
    fn a_malformed_entry_ends_the_walk_at_the_last_trusted_hop() {
        assert_eq!(
            resolve("10.0.3.9", &["203.0.113.4, garbage"], "10.0.0.0/16"),
            ip("10.0.3.9")
        );
        assert_eq!(
            resolve("10.0.3.9", &["203.0.113.4, "], "10.0.0.0/16"),
            ip("10.0.3.9")
        );
        assert_eq!(
            resolve("10.0.3.9", &["garbage, 10.0.2.2"], "10.0.0.0/16"),
            ip("10.0.2.2")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        assert_eq!(
            resolve("10.0.3.9", &["203.0.113.4:5555"], "10.0.0.0/16"),
            ip("203.0.113.4")
        );
        assert_eq!(
            resolve("10.0.3.9", &["[2001:db8::1]:443"], "10.0.0.0/16"),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve("::ffff:10.0.3.9", &["::ffff:203.0.113.4"], "10.0.0.0/16"),
            ip("203.0.113.4")
        );
    }

    #[test]
    fn an_all_trusted_chain_stops_at_its_far_end_and_is_bounded() {
        assert_eq!(
            resolve("10.0.3.9", &["10.0.0.7, 10.0.0.8"], "10.0.0.0/16"),
            ip("10.0.0.7")
        );
        let long = vec!["10.0.0.1"; 100].join(",");
        assert_eq!(
            resolve("10.0.3.9", &[&format!("1.2.3.4,{long}")], "10.0.0.0/16"),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_single_hosts() {
        let t: TrustedProxies = " 10.0.0.0/16, 127.0.0.1 ,fd00::/8".parse().unwrap();
        assert_eq!(t.ranges().len(), 3);
        assert!(t.contains(ip("10.0.255.1")) && t.contains(ip("127.0.0.1")));
        assert!(t.contains(ip("fd12::1")) && !t.contains(ip("10.1.0.1")));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("vpc".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(
            limit_subject(ip("2001:db8:1:2:aaaa::1")),
            limit_subject(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            limit_subject(ip("2001:db8:1:2::1")),
            limit_subject(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_subject(ip("::ffff:1.2.3.4")), "1.2.3.4");
    }
}
