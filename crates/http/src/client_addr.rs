//! The client's address: the peer's, or, behind a trusted proxy, the one
//! the proxies name in `X-Forwarded-For`.

use std::net::IpAddr;

use ipnet::IpNet;

/// A trusted-proxy entry: an IP address or a CIDR range.
pub fn trusted_proxy(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client behind `peer`: when `peer` is a trusted proxy, the right-most
/// address in `forwarded` that is not itself a trusted proxy (each proxy
/// appends the address it saw, so only the trusted suffix can be believed).
pub(crate) fn client_ip(peer: IpAddr, forwarded: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(forwarded) = forwarded else {
        return peer;
    };
    let mut client = peer;
    for hop in forwarded.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Garbage in the chain: believe nothing left of it.
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_may_name_the_client() {
        let trusted = vec![
            trusted_proxy("10.0.0.0/8").unwrap(),
            trusted_proxy("::1").unwrap(),
        ];
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // A trusted peer: the right-most untrusted hop.
        assert_eq!(
            client_ip(
                ip("10.1.1.1"),
                Some("6.6.6.6, 198.51.100.7, 10.2.2.2"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("::1"), Some("198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        // No header, or garbage in it: the last address that can be believed.
        assert_eq!(client_ip(ip("10.1.1.1"), None, &trusted), ip("10.1.1.1"));
        assert_eq!(
            client_ip(ip("10.1.1.1"), Some("junk, 10.3.3.3"), &trusted),
            ip("10.3.3.3")
        );
        assert!(trusted_proxy("not an address").is_none());
        assert!(trusted_proxy("192.168.0.1").is_some());
    }
}
