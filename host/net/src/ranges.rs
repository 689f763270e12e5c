//! Which IP addresses an outbound HTTP connection may reach without an explicit grant: a table
//! of the ranges that are not the public internet, and [`classify`], which also looks inside
//! the IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4).
//!
//! The tables are ordered most specific first, so `169.254.169.254` is reported as cloud
//! metadata rather than link-local. IPv6 is checked as an allow-list: only global unicast
//! (`2000::/3`) outside the special ranges is public, so a range IANA assigns later is refused
//! until it is added here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of non-public address an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, unique local `fc00::/7`, site-local `fec0::/10`, local-use NAT64.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, `100.64.0.0/10`.
    SharedNat,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// TEST-NETs, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// Multicast.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// A cloud provider's instance metadata or host service (credentials live there).
    Metadata,
    /// Reserved, deprecated, tunnels and anything else that is not public unicast.
    Reserved,
}

impl AddressClass {
    /// Lowercase words for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::SharedNat => "shared (carrier-grade NAT)",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Documentation => "documentation",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Why [`classify`] refused an address: its class, the range it is in, and the IPv6 form it
/// was embedded in, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forbidden {
    /// The class of the (embedded) address.
    pub class: AddressClass,
    /// The range, e.g. `127.0.0.0/8`.
    pub range: &'static str,
    /// The IPv6 form that carried an IPv4 address, e.g. `IPv4-mapped ::ffff:0:0/96`.
    pub via: Option<&'static str>,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} address ({}", self.class.as_str(), self.range)?;
        if let Some(via) = self.via {
            write!(f, ", embedded in {via}")?;
        }
        f.write_str(")")
    }
}

struct V4Range {
    base: u32,
    len: u8,
    class: AddressClass,
    cidr: &'static str,
}

const fn v4(o: [u8; 4], len: u8, class: AddressClass, cidr: &'static str) -> V4Range {
    V4Range {
        base: u32::from_be_bytes(o),
        len,
        class,
        cidr,
    }
}

use AddressClass as C;

/// IPv4 ranges that are not the public internet, most specific first.
const V4_RANGES: &[V4Range] = &[
    v4([169, 254, 169, 254], 32, C::Metadata, "169.254.169.254/32"),
    // AWS ECS task metadata and credentials.
    v4([169, 254, 170, 2], 32, C::Metadata, "169.254.170.2/32"),
    // Alibaba Cloud metadata (inside carrier-grade NAT space).
    v4([100, 100, 100, 200], 32, C::Metadata, "100.100.100.200/32"),
    // Azure WireServer: a public-looking address that serves the host agent.
    v4([168, 63, 129, 16], 32, C::Metadata, "168.63.129.16/32"),
    v4([255, 255, 255, 255], 32, C::Broadcast, "255.255.255.255/32"),
    v4([0, 0, 0, 0], 32, C::Unspecified, "0.0.0.0/32"),
    v4([0, 0, 0, 0], 8, C::Reserved, "0.0.0.0/8"),
    v4([10, 0, 0, 0], 8, C::Private, "10.0.0.0/8"),
    v4([100, 64, 0, 0], 10, C::SharedNat, "100.64.0.0/10"),
    v4([127, 0, 0, 0], 8, C::Loopback, "127.0.0.0/8"),
    v4([169, 254, 0, 0], 16, C::LinkLocal, "169.254.0.0/16"),
    v4([172, 16, 0, 0], 12, C::Private, "172.16.0.0/12"),
    v4([192, 0, 0, 0], 24, C::Reserved, "192.0.0.0/24"),
    v4([192, 0, 2, 0], 24, C::Documentation, "192.0.2.0/24"),
    v4([192, 88, 99, 0], 24, C::Reserved, "192.88.99.0/24"),
    v4([192, 168, 0, 0], 16, C::Private, "192.168.0.0/16"),
    v4([198, 18, 0, 0], 15, C::Benchmarking, "198.18.0.0/15"),
    v4([198, 51, 100, 0], 24, C::Documentation, "198.51.100.0/24"),
    v4([203, 0, 113, 0], 24, C::Documentation, "203.0.113.0/24"),
    v4([224, 0, 0, 0], 4, C::Multicast, "224.0.0.0/4"),
    v4([240, 0, 0, 0], 4, C::Reserved, "240.0.0.0/4"),
];

struct V6Range {
    base: u128,
    len: u8,
    class: AddressClass,
    cidr: &'static str,
}

const fn v6(s: [u16; 8], len: u8, class: AddressClass, cidr: &'static str) -> V6Range {
    let mut base = 0u128;
    let mut i = 0;
    while i < 8 {
        base = (base << 16) | s[i] as u128;
        i += 1;
    }
    V6Range {
        base,
        len,
        class,
        cidr,
    }
}

/// IPv6 ranges inside `2000::/3` (or otherwise not handled as an embedding) that are not
/// public, most specific first.
const V6_RANGES: &[V6Range] = &[
    v6(
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254],
        128,
        C::Metadata,
        "fd00:ec2::254/128",
    ),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, C::Unspecified, "::/128"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, C::Loopback, "::1/128"),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        C::Private,
        "64:ff9b:1::/48",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, C::Reserved, "100::/64"),
    // Teredo tunnels: the client address is obfuscated and no service is reached this way.
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        C::Reserved,
        "2001::/32 (Teredo)",
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        C::Benchmarking,
        "2001:2::/48",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        C::Documentation,
        "2001:db8::/32",
    ),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, C::Reserved, "2001::/23"),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        C::Documentation,
        "3fff::/20",
    ),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, C::Reserved, "5f00::/16"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, C::Private, "fc00::/7"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, C::LinkLocal, "fe80::/10"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, C::Private, "fec0::/10"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, C::Multicast, "ff00::/8"),
];

fn in_v4(a: u32, r: &V4Range) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(r.len)).unwrap_or(0);
    a & mask == r.base
}

fn in_v6(a: u128, r: &V6Range) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(r.len)).unwrap_or(0);
    a & mask == r.base
}

/// `None` if `addr` is a public unicast address; otherwise why not.
pub fn classify(addr: IpAddr) -> Option<Forbidden> {
    match addr {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

fn classify_v4(a: Ipv4Addr) -> Option<Forbidden> {
    let a = u32::from(a);
    V4_RANGES.iter().find(|r| in_v4(a, r)).map(|r| Forbidden {
        class: r.class,
        range: r.cidr,
        via: None,
    })
}

fn embedded(v4: u32, via: &'static str) -> Option<Forbidden> {
    classify_v4(Ipv4Addr::from(v4)).map(|f| Forbidden {
        via: Some(via),
        ..f
    })
}

fn classify_v6(a: Ipv6Addr) -> Option<Forbidden> {
    let bits = u128::from(a);
    let low32 = bits as u32;
    if let Some(r) = V6_RANGES.iter().find(|r| in_v6(bits, r)) {
        return Some(Forbidden {
            class: r.class,
            range: r.cidr,
            via: None,
        });
    }
    // Forms that carry an IPv4 address: the connection reaches that address, so it decides.
    if bits >> 32 == 0xffff {
        return embedded(low32, "IPv4-mapped ::ffff:0:0/96");
    }
    if bits >> 32 == 0 {
        // Deprecated since 2006 and not the IPv4 address on the wire: refused whatever it
        // embeds, but named after the embedded address when that is the worse reason.
        return embedded(low32, "IPv4-compatible ::/96").or(Some(Forbidden {
            class: AddressClass::Reserved,
            range: "::/96 (IPv4-compatible)",
            via: None,
        }));
    }
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return embedded(low32, "NAT64 64:ff9b::/96");
    }
    if bits >> 112 == 0x2002 {
        return embedded((bits >> 80) as u32, "6to4 2002::/16");
    }
    if bits >> 125 != 0b001 {
        return Some(Forbidden {
            class: AddressClass::Reserved,
            range: "outside 2000::/3",
            via: None,
        });
    }
    None
}
