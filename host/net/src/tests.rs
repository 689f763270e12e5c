//! Tables for every range, URL spelling, grant form, resolver answer and redirect the outbound
//! policy decides, and a property test that no forbidden address passes without a grant.

use super::ranges::{AddressClass, classify};
use super::*;
use colony_caps::{Capability, GrantSet};
use proptest::prelude::*;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

fn ip(s: &str) -> IpAddr {
    match s.parse() {
        Ok(a) => a,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn policy(grants: &[&str]) -> OutboundPolicy {
    let caps = grants.iter().map(|g| {
        let s = format!("http.outbound:{g}");
        match s.parse::<Capability>() {
            Ok(c) => c,
            Err(e) => panic!("{s}: {e}"),
        }
    });
    OutboundPolicy::new(GrantSet::new(caps), HttpLimits::default())
}

fn target(p: &OutboundPolicy, url: &str) -> Target {
    match p.check_url(url) {
        Ok(t) => t,
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Answers from a table; a name not in it fails to resolve.
#[derive(Default)]
struct FakeResolver(HashMap<&'static str, Vec<IpAddr>>);

impl FakeResolver {
    fn with(mut self, host: &'static str, addrs: &[&str]) -> Self {
        self.0.insert(host, addrs.iter().map(|a| ip(a)).collect());
        self
    }
}

impl Resolver for FakeResolver {
    async fn lookup(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
    }
}

/// A resolver that never answers.
struct Hang;

impl Resolver for Hang {
    async fn lookup(&self, _host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        std::future::pending().await
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("runtime: {e}"),
    }
}

use AddressClass as C;

/// (address, class or `None` for public). Boundaries on both sides of every range.
const ADDRESSES: &[(&str, Option<AddressClass>)] = &[
    // this network, unspecified
    ("0.0.0.0", Some(C::Unspecified)),
    ("0.1.2.3", Some(C::Reserved)),
    ("0.255.255.255", Some(C::Reserved)),
    ("1.0.0.0", None),
    ("1.1.1.1", None),
    ("8.8.8.8", None),
    // private 10/8
    ("9.255.255.255", None),
    ("10.0.0.0", Some(C::Private)),
    ("10.255.255.255", Some(C::Private)),
    ("11.0.0.0", None),
    // CGNAT 100.64/10 and Alibaba metadata inside it
    ("100.63.255.255", None),
    ("100.64.0.0", Some(C::SharedNat)),
    ("100.127.255.255", Some(C::SharedNat)),
    ("100.128.0.0", None),
    ("100.100.100.200", Some(C::Metadata)),
    ("100.100.100.201", Some(C::SharedNat)),
    // loopback 127/8
    ("126.255.255.255", None),
    ("127.0.0.0", Some(C::Loopback)),
    ("127.0.0.1", Some(C::Loopback)),
    ("127.255.255.255", Some(C::Loopback)),
    ("128.0.0.0", None),
    // Azure WireServer
    ("168.63.129.16", Some(C::Metadata)),
    ("168.63.129.17", None),
    // link-local 169.254/16 and metadata
    ("169.253.255.255", None),
    ("169.254.0.0", Some(C::LinkLocal)),
    ("169.254.169.253", Some(C::LinkLocal)),
    ("169.254.169.254", Some(C::Metadata)),
    ("169.254.170.2", Some(C::Metadata)),
    ("169.254.255.255", Some(C::LinkLocal)),
    ("169.255.0.0", None),
    // private 172.16/12
    ("172.15.255.255", None),
    ("172.16.0.0", Some(C::Private)),
    ("172.31.255.255", Some(C::Private)),
    ("172.32.0.0", None),
    // 192.0.0/24, TEST-NET-1, 6to4 relay, 192.168/16
    ("191.255.255.255", None),
    ("192.0.0.0", Some(C::Reserved)),
    ("192.0.0.255", Some(C::Reserved)),
    ("192.0.1.0", None),
    ("192.0.2.0", Some(C::Documentation)),
    ("192.0.2.255", Some(C::Documentation)),
    ("192.0.3.0", None),
    ("192.88.98.255", None),
    ("192.88.99.1", Some(C::Reserved)),
    ("192.88.100.0", None),
    ("192.167.255.255", None),
    ("192.168.0.0", Some(C::Private)),
    ("192.168.255.255", Some(C::Private)),
    ("192.169.0.0", None),
    // benchmarking 198.18/15, TEST-NET-2 and 3
    ("198.17.255.255", None),
    ("198.18.0.0", Some(C::Benchmarking)),
    ("198.19.255.255", Some(C::Benchmarking)),
    ("198.20.0.0", None),
    ("198.51.99.255", None),
    ("198.51.100.0", Some(C::Documentation)),
    ("198.51.101.0", None),
    ("203.0.112.255", None),
    ("203.0.113.7", Some(C::Documentation)),
    ("203.0.114.0", None),
    // multicast, reserved, broadcast
    ("223.255.255.255", None),
    ("224.0.0.0", Some(C::Multicast)),
    ("239.255.255.255", Some(C::Multicast)),
    ("240.0.0.0", Some(C::Reserved)),
    ("255.255.255.254", Some(C::Reserved)),
    ("255.255.255.255", Some(C::Broadcast)),
    // IPv6 basics
    ("::", Some(C::Unspecified)),
    ("::1", Some(C::Loopback)),
    ("::2", Some(C::Reserved)),
    ("2001:4860:4860::8888", None),
    ("2606:4700:4700::1111", None),
    ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(C::Reserved)),
    ("2000::", None),
    (
        "3fff:0fff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(C::Documentation),
    ),
    ("3fff:1000::", None),
    ("4000::", Some(C::Reserved)),
    ("5f00::1", Some(C::Reserved)),
    // ULA, metadata, link-local, site-local, multicast
    ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(C::Reserved)),
    ("fc00::", Some(C::Private)),
    ("fd12:3456::1", Some(C::Private)),
    ("fd00:ec2::254", Some(C::Metadata)),
    ("fd00:ec2::253", Some(C::Private)),
    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(C::Private)),
    ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(C::Reserved)),
    ("fe80::", Some(C::LinkLocal)),
    ("fe80::1", Some(C::LinkLocal)),
    (
        "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(C::LinkLocal),
    ),
    ("fec0::1", Some(C::Private)),
    ("ff02::1", Some(C::Multicast)),
    (
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(C::Multicast),
    ),
    // IETF protocol assignments, Teredo, benchmarking, documentation
    ("2001::1", Some(C::Reserved)),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some(C::Reserved)),
    ("2001:2::1", Some(C::Benchmarking)),
    ("2001:10::1", Some(C::Reserved)),
    ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Some(C::Reserved)),
    ("2001:200::1", None),
    ("2001:db8::1", Some(C::Documentation)),
    ("2001:db9::1", None),
    ("100::1", Some(C::Reserved)),
    // IPv4-mapped: the embedded address decides
    ("::ffff:127.0.0.1", Some(C::Loopback)),
    ("::ffff:10.1.2.3", Some(C::Private)),
    ("::ffff:169.254.169.254", Some(C::Metadata)),
    ("::ffff:172.15.255.255", None),
    ("::ffff:172.16.0.0", Some(C::Private)),
    ("::ffff:8.8.8.8", None),
    ("::ffff:0.0.0.0", Some(C::Unspecified)),
    // IPv4-compatible: always refused, named after the embedded address when it is worse
    ("::127.0.0.1", Some(C::Loopback)),
    ("::10.0.0.1", Some(C::Private)),
    ("::8.8.8.8", Some(C::Reserved)),
    // SIIT IPv4-translated ::ffff:0:a.b.c.d
    ("::ffff:0:8.8.8.8", Some(C::Reserved)),
    // NAT64
    ("64:ff9b::7f00:1", Some(C::Loopback)),
    ("64:ff9b::a9fe:a9fe", Some(C::Metadata)),
    ("64:ff9b::c0a8:101", Some(C::Private)),
    ("64:ff9b::808:808", None),
    ("64:ff9b:1::808:808", Some(C::Private)),
    ("64:ff9b::1:0:808:808", Some(C::Reserved)),
    // 6to4: 2002:AABB:CCDD:: embeds AA.BB.CC.DD
    ("2002:7f00:1::", Some(C::Loopback)),
    ("2002:a00:1::1", Some(C::Private)),
    ("2002:a9fe:a9fe::", Some(C::Metadata)),
    ("2002:c0a8:101:1::1", Some(C::Private)),
    ("2002:808:808::1", None),
];

#[test]
fn net_every_range_and_boundary_is_classified() {
    for &(addr, want) in ADDRESSES {
        let got = classify(ip(addr)).map(|f| f.class);
        assert_eq!(got, want, "{addr}: {:?}", classify(ip(addr)));
    }
}

#[test]
fn net_check_addr_refuses_every_forbidden_address_of_a_granted_name() {
    let p = policy(&["https://api.example.com"]);
    let t = target(&p, "https://api.example.com/v1");
    for &(addr, want) in ADDRESSES {
        let r = p.check_addr(&t, ip(addr));
        match want {
            None => assert_eq!(r, Ok(()), "{addr}"),
            Some(C::Metadata) => assert_eq!(
                r.as_ref().map_err(HttpRefusal::code),
                Err("http.metadata"),
                "{addr}"
            ),
            Some(_) => assert_eq!(
                r.as_ref().map_err(HttpRefusal::code),
                Err("http.private-address"),
                "{addr}"
            ),
        }
    }
}

#[test]
fn net_refusal_messages_name_host_range_and_the_grant_needed() {
    let p = policy(&["http://internal.example:8080"]);
    let t = target(&p, "http://internal.example:8080/x?token=s3cret");
    let e = p.check_addr(&t, ip("10.0.0.5")).map_err(|e| e.to_string());
    assert_eq!(
        e,
        Err(
            "host \"internal.example\" resolves to 10.0.0.5, a private address (10.0.0.0/8); \
             refused (needs http.outbound:http://10.0.0.5:8080 to allow that address)"
                .into()
        )
    );
    let e = p
        .check_addr(&t, ip("::ffff:127.0.0.1"))
        .map_err(|e| e.to_string());
    assert_eq!(
        e,
        Err(
            "host \"internal.example\" resolves to ::ffff:127.0.0.1, a loopback address \
             (127.0.0.0/8, embedded in IPv4-mapped ::ffff:0:0/96); refused \
             (needs http.outbound:http://127.0.0.1:8080 to allow that address)"
                .into()
        )
    );
    let e = p.check_url("https://other.example/a?key=s3cret");
    assert_eq!(
        e.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        Err(
            "https://other.example:443 is not granted (needs http.outbound:https://other.example)"
                .to_owned()
        )
    );
    assert_eq!(e.map_err(|e| e.code()), Err("http.not-granted"));
}

/// (grants, url, expected: Ok(origin) or Err(code)).
#[rustfmt::skip]
const URLS: &[(&[&str], &str, Result<&str, &str>)] = &[
    // scheme and default ports
    (&["https://api.example.com"], "https://api.example.com/v1?x=1", Ok("https://api.example.com:443")),
    (&["https://api.example.com"], "HTTPS://API.Example.COM/v1", Ok("https://api.example.com:443")),
    (&["https://api.example.com"], "https://api.example.com:443/", Ok("https://api.example.com:443")),
    (&["https://api.example.com"], "https://api.example.com:8443/", Err("http.not-granted")),
    (&["https://api.example.com"], "http://api.example.com/", Err("http.not-granted")),
    (&["http://api.example.com"], "http://api.example.com/", Ok("http://api.example.com:80")),
    (&["http://api.example.com"], "http://api.example.com:443/", Err("http.not-granted")),
    (&["https://api.example.com:8443"], "https://api.example.com:8443/", Ok("https://api.example.com:8443")),
    (&["https://api.example.com:8443"], "https://api.example.com/", Err("http.not-granted")),
    (&["https://api.example.com"], "ftp://api.example.com/", Err("http.scheme")),
    (&["https://api.example.com"], "file:///etc/passwd", Err("http.scheme")),
    (&["https://api.example.com"], "gopher://127.0.0.1:6379/_", Err("http.scheme")),
    (&["https://api.example.com"], "api.example.com", Err("http.invalid-url")),
    (&["https://api.example.com"], "https:api.example.com", Err("http.invalid-url")),
    (&["https://api.example.com"], "https:/api.example.com", Err("http.invalid-url")),
    (&["https://api.example.com"], "https:///api.example.com", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://api.example.com:0/", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://api.example.com:65536/", Err("http.invalid-url")),
    (&["https://api.example.com"], " https://api.example.com/", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://api.exa\tmple.com/", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://api.example.com\\@evil.com/", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://api.example.com/\n", Err("http.invalid-url")),
    // userinfo
    (&["https://api.example.com"], "https://user:pw@api.example.com/", Err("http.userinfo")),
    (&["https://api.example.com"], "https://user@api.example.com/", Err("http.userinfo")),
    (&["https://api.example.com"], "https://api.example.com@evil.com/", Err("http.userinfo")),
    (&["https://api.example.com"], "https://:@api.example.com/", Err("http.userinfo")),
    // the `@` after the path is not userinfo
    (&["https://api.example.com"], "https://api.example.com/a@b", Ok("https://api.example.com:443")),
    // host normalisation: case, trailing dot, IDNA, percent-encoding
    (&["https://api.example.com"], "https://api.example.com./", Ok("https://api.example.com:443")),
    (&["https://api.example.com"], "https://API.EXAMPLE.COM./", Ok("https://api.example.com:443")),
    (&["https://api.example.com"], "https://api.example.com../", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://api..example.com/", Err("http.invalid-url")),
    (&["https://api.example.com"], "https://api.ex%61mple.com/", Ok("https://api.example.com:443")),
    (&["https://api.example.com"], "https://api。example。com/", Ok("https://api.example.com:443")),
    (&["https://xn--bcher-kva.example"], "https://BÜCHER.example/", Ok("https://xn--bcher-kva.example:443")),
    (&["https://xn--bcher-kva.example"], "https://xn--bcher-kva.example/", Ok("https://xn--bcher-kva.example:443")),
    // subdomain grants
    (&["https://*.example.com"], "https://a.b.example.com/", Ok("https://a.b.example.com:443")),
    (&["https://*.example.com"], "https://example.com/", Err("http.not-granted")),
    (&["https://*.example.com"], "https://example.com.evil.io/", Err("http.not-granted")),
    // IPv4 literals: only the canonical spelling
    (&["http://127.0.0.1:8080"], "http://127.0.0.1:8080/", Ok("http://127.0.0.1:8080")),
    (&["http://127.0.0.1:8080"], "http://127.0.0.1:8081/", Err("http.not-granted")),
    (&["http://127.0.0.1:8080"], "http://127.0.0.1/", Err("http.not-granted")),
    (&["http://127.0.0.1:8080"], "http://localhost:8080/", Err("http.not-granted")),
    (&["http://127.0.0.1:8080"], "http://0x7f.1:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://0x7f000001:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://2130706433:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://0177.0.0.1:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://017700000001:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://127.1:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://127.0.1:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://127.0.0.1.:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://127.0.0.%31:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://１２７.0.0.1:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://0127.0.0.1:8080/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://127.0.0.0x1:8080/", Err("http.ip-literal")),
    (&["http://169.254.169.254"], "http://0xa9fea9fe/", Err("http.ip-literal")),
    (&["http://127.0.0.1:8080"], "http://127.0.0.256:8080/", Err("http.invalid-url")),
    (&["http://127.0.0.1:8080"], "http://1.2.3.4.5:8080/", Err("http.invalid-url")),
    // IPv6 literals
    (&["http://[::1]:8080"], "http://[::1]:8080/", Ok("http://[::1]:8080")),
    (&["http://[::1]:8080"], "http://[0:0:0:0:0:0:0:1]:8080/", Ok("http://[::1]:8080")),
    (&["http://[::1]:8080"], "http://[::1%25eth0]:8080/", Err("http.invalid-url")),
    (&["http://127.0.0.1:8080"], "http://[::ffff:127.0.0.1]:8080/", Err("http.not-granted")),
    // no grants at all
    (&[], "https://api.example.com/", Err("http.not-granted")),
];

#[test]
fn net_urls_are_normalised_and_checked_against_grants() {
    for &(grants, url, want) in URLS {
        let got = policy(grants).check_url(url);
        let got = got.map(|t| t.origin()).map_err(|e| e.code());
        assert_eq!(
            got.as_deref().map_err(|e| *e),
            want,
            "{grants:?} {url:?}: {:?}",
            policy(grants).check_url(url)
        );
    }
}

#[test]
fn net_target_drops_userinfo_and_fragment_and_keeps_path_and_query() {
    let p = policy(&["https://api.example.com"]);
    let t = target(&p, "https://API.example.com./v1/x?a=1#frag");
    assert_eq!(t.url().as_str(), "https://api.example.com/v1/x?a=1");
    assert_eq!(t.host(), "api.example.com");
    assert_eq!(t.port(), 443);
    assert_eq!(t.ip(), None);
    assert_eq!(t.capability(), "http.outbound:https://api.example.com");
    assert_eq!(
        p.check_url("http://0x7f.1/").map_err(|e| e.to_string()),
        Err("host \"0x7f.1\" is an IPv4 address in a non-canonical form (write 127.0.0.1)".into())
    );
    assert_eq!(
        p.check_url("https://alice:hunter2@api.example.com/")
            .map_err(|e| e.to_string()),
        Err("url for \"api.example.com\" carries userinfo (user:password@); send credentials in a header".into())
    );
}

#[test]
fn net_explicit_ip_grants_allow_exactly_that_address_scheme_and_port() {
    let p = policy(&["http://127.0.0.1:8080", "https://[fd00::5]"]);
    let t = target(&p, "http://127.0.0.1:8080/health");
    assert_eq!(t.ip(), Some(ip("127.0.0.1")));
    assert_eq!(p.check_addr(&t, ip("127.0.0.1")), Ok(()));
    assert_eq!(p.check_addr(&t, ip("::ffff:127.0.0.1")), Ok(()));
    assert!(p.check_addr(&t, ip("127.0.0.2")).is_err());
    assert!(p.check_addr(&t, ip("::1")).is_err());
    let v6 = target(&p, "https://[fd00::5]/");
    assert_eq!(p.check_addr(&v6, ip("fd00::5")), Ok(()));
    assert!(p.check_addr(&v6, ip("fd00::6")).is_err());

    let r = block_on(p.resolve_and_check("http://127.0.0.1:8080/", &FakeResolver::default()));
    assert_eq!(
        r.map(|r| r.addrs),
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 8080))])
    );
    // Without the grant, the literal is refused by the grant check before any address check.
    let none = policy(&[]);
    assert_eq!(
        block_on(none.resolve_and_check("http://127.0.0.1:8080/", &FakeResolver::default()))
            .map_err(|e| e.code()),
        Err("http.not-granted")
    );
}

#[test]
fn net_a_granted_name_resolving_to_a_private_address_is_refused_unless_the_ip_is_granted() {
    let resolver = FakeResolver::default()
        .with("public.example", &["93.184.216.34", "2606:2800:220:1::1"])
        .with("rebind.example", &["93.184.216.34", "127.0.0.1"])
        .with("meta.example", &["169.254.169.254"])
        .with("mapped.example", &["::ffff:10.0.0.1"])
        .with("internal.example", &["10.0.0.5"])
        .with("twice.example", &["93.184.216.34", "93.184.216.34"])
        .with("empty.example", &[]);
    let p = policy(&[
        "https://public.example",
        "https://rebind.example",
        "https://meta.example",
        "https://mapped.example",
        "https://twice.example",
        "https://empty.example",
        "http://internal.example:8080",
        "https://internal.example",
        "http://10.0.0.5:8080",
    ]);
    let run = |url: &str| block_on(p.resolve_and_check(url, &resolver));

    assert_eq!(
        run("https://public.example/").map(|r| r.addrs),
        Ok(vec![
            SocketAddr::from(([93, 184, 216, 34], 443)),
            SocketAddr::new(ip("2606:2800:220:1::1"), 443),
        ])
    );
    assert_eq!(run("https://twice.example/").map(|r| r.addrs.len()), Ok(1));
    // One private answer refuses the whole request, public answers included.
    assert_eq!(
        run("https://rebind.example/").map_err(|e| e.code()),
        Err("http.private-address")
    );
    assert_eq!(
        run("https://meta.example/").map_err(|e| e.code()),
        Err("http.metadata")
    );
    assert_eq!(
        run("https://mapped.example/").map_err(|e| e.code()),
        Err("http.private-address")
    );
    // The IP grant covers http on 8080 only.
    assert_eq!(
        run("http://internal.example:8080/").map(|r| r.addrs),
        Ok(vec![SocketAddr::from(([10, 0, 0, 5], 8080))])
    );
    assert_eq!(
        run("https://internal.example/").map_err(|e| e.code()),
        Err("http.private-address")
    );
    assert_eq!(
        run("https://empty.example/").map_err(|e| e.code()),
        Err("http.resolve")
    );
    assert_eq!(
        run("https://unknown.example/").map_err(|e| e.code()),
        Err("http.not-granted")
    );
}

#[test]
fn net_resolution_failures_and_hangs_are_refused() {
    let p = policy(&["https://gone.example"]);
    assert_eq!(
        block_on(p.resolve_and_check("https://gone.example/", &FakeResolver::default()))
            .map_err(|e| e.to_string()),
        Err("host \"gone.example\" did not resolve: no such host".into())
    );
    let limits = HttpLimits {
        timeout: Duration::from_millis(50),
        ..HttpLimits::default()
    };
    let p = OutboundPolicy::new(
        GrantSet::new(
            ["http.outbound:https://slow.example"
                .parse::<Capability>()
                .ok()]
            .into_iter()
            .flatten(),
        ),
        limits,
    );
    assert_eq!(
        block_on(p.resolve_and_check("https://slow.example/", &Hang)),
        Err(HttpRefusal::Timeout {
            what: "name resolution",
            limit: Duration::from_millis(50)
        })
    );
}

#[test]
fn net_redirects_are_checked_like_requests() {
    let resolver = FakeResolver::default()
        .with("api.example.com", &["93.184.216.34"])
        .with("cdn.example.com", &["93.184.216.35"])
        .with("evil.example.com", &["10.0.0.1"]);
    let p = policy(&[
        "https://api.example.com",
        "https://*.example.com",
        "http://127.0.0.1:8080",
    ]);
    let from = target(&p, "https://api.example.com/v1/items?page=1");

    // (location, expected origin and path+query, or the code of the root cause)
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("/v2/items", Ok("https://api.example.com/v2/items")),
        ("next?page=2", Ok("https://api.example.com/v1/next?page=2")),
        ("?page=2", Ok("https://api.example.com/v1/items?page=2")),
        ("../up", Ok("https://api.example.com/up")),
        ("//cdn.example.com/x", Ok("https://cdn.example.com/x")),
        ("https://cdn.example.com/x", Ok("https://cdn.example.com/x")),
        (
            "HTTPS://CDN.example.com./x",
            Ok("https://cdn.example.com/x"),
        ),
        ("https://other.org/", Err("http.not-granted")),
        ("http://api.example.com/", Err("http.not-granted")),
        ("https://api.example.com:8443/", Err("http.not-granted")),
        ("http://127.0.0.1/", Err("http.not-granted")),
        ("http://0x7f.1:8080/", Err("http.ip-literal")),
        ("//0x7f.1:8080/", Err("http.ip-literal")),
        (
            "http://169.254.169.254/latest/meta-data/",
            Err("http.not-granted"),
        ),
        ("file:///etc/passwd", Err("http.scheme")),
        ("https://u:p@cdn.example.com/", Err("http.userinfo")),
        ("/\\evil.org/", Err("http.invalid-url")),
        ("/\t/evil.org/", Err("http.invalid-url")),
        ("https:evil.org", Err("http.invalid-url")),
        ("", Ok("https://api.example.com/v1/items?page=1")),
    ];
    for &(location, want) in cases {
        let got = p.check_redirect(&from, location);
        match (&got, want) {
            (Ok(t), Ok(url)) => {
                assert_eq!(t.url().as_str(), url, "{location}");
                assert_eq!(t.redirects(), 1);
            }
            (Err(e), Err(code)) => {
                assert_eq!(e.code(), "http.redirect", "{location}: {e}");
                assert_eq!(e.root_cause().code(), code, "{location}: {e}");
            }
            _ => panic!("{location}: {got:?}, wanted {want:?}"),
        }
    }

    // A granted redirect target that resolves to a private address is refused as a redirect.
    let hop = match p.check_redirect(&from, "https://evil.example.com/") {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    assert!(!from.same_origin(&hop));
    let e = block_on(p.resolve_target(hop, &resolver));
    assert_eq!(e.as_ref().map_err(HttpRefusal::code), Err("http.redirect"));
    assert_eq!(
        e.as_ref().map_err(|e| e.root_cause().code()),
        Err("http.private-address")
    );
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err(
            "redirect to https://evil.example.com:443 refused: host \"evil.example.com\" \
             resolves to 10.0.0.1, a private address (10.0.0.0/8); refused \
             (needs http.outbound:https://10.0.0.1 to allow that address)"
                .into()
        )
    );
    // A redirect to the explicitly granted loopback address and port is followed.
    let local = p.check_redirect(&from, "http://127.0.0.1:8080/cb");
    let local = local.and_then(|t| block_on(p.resolve_target(t, &resolver)));
    assert_eq!(
        local.map(|r| r.addrs),
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 8080))])
    );
}

#[test]
fn net_redirect_messages_never_carry_paths_queries_or_credentials() {
    let p = policy(&["https://api.example.com"]);
    let from = target(&p, "https://api.example.com/");
    for location in [
        "https://u:secret@other.org/?token=secret",
        "https://other.org/secret?token=secret",
        "ftp://other.org/secret",
        "/\\secret",
    ] {
        let e = p.check_redirect(&from, location).map_err(|e| e.to_string());
        let msg = e.err().unwrap_or_default();
        assert!(!msg.is_empty(), "{location}");
        assert!(!msg.contains("secret"), "{location}: {msg}");
    }
}

#[test]
fn net_redirect_hops_are_counted() {
    let p = OutboundPolicy::new(
        GrantSet::new(
            ["http.outbound:https://a.example".parse::<Capability>().ok()]
                .into_iter()
                .flatten(),
        ),
        HttpLimits {
            max_redirects: 2,
            ..HttpLimits::default()
        },
    );
    let mut t = target(&p, "https://a.example/0");
    for hop in 1..=2 {
        t = match p.check_redirect(&t, "/next") {
            Ok(t) => t,
            Err(e) => panic!("hop {hop}: {e}"),
        };
        assert_eq!(t.redirects(), hop);
    }
    assert_eq!(
        p.check_redirect(&t, "/next"),
        Err(HttpRefusal::TooManyRedirects { max: 2 })
    );
}

#[test]
fn net_limits_and_audit_entries() {
    let l = HttpLimits::default();
    assert_eq!(l.check_request_bytes(1 << 20), Ok(()));
    assert_eq!(
        l.check_request_bytes((1 << 20) + 1)
            .map_err(|e| e.to_string()),
        Err("request body is larger than 1048576 bytes".into())
    );
    assert_eq!(l.check_response_bytes(8 << 20), Ok(()));
    assert_eq!(
        l.check_response_bytes((8 << 20) + 1).map_err(|e| e.code()),
        Err("http.too-large")
    );

    let p = policy(&["https://api.example.com"]);
    let t = target(
        &p,
        "https://api.example.com/bot123:SECRET/send?api_key=SECRET#SECRET",
    );
    let mut entry = HttpAuditEntry::new("POST", &t);
    entry.status = Some(200);
    entry.bytes_in = 512;
    entry.bytes_out = 31;
    assert_eq!(
        entry.detail(),
        "POST https://api.example.com:443 status 200, 512 bytes in, 31 bytes out"
    );
    let mut refused = HttpAuditEntry::new("GET\r\nX-Injected: 1", &t);
    refused.refusal = Some("http.too-large");
    assert_eq!(
        refused.detail(),
        "? https://api.example.com:443 no status, 0 bytes in, 0 bytes out, refused http.too-large"
    );
}

#[test]
fn net_refusal_codes_are_stable() {
    let f = classify(ip("10.0.0.1")).unwrap_or_else(|| panic!("10.0.0.1 is private"));
    let cases = [
        (
            HttpRefusal::InvalidUrl {
                reason: String::new(),
            },
            "http.invalid-url",
        ),
        (
            HttpRefusal::Scheme {
                scheme: String::new(),
            },
            "http.scheme",
        ),
        (
            HttpRefusal::Userinfo {
                host: String::new(),
            },
            "http.userinfo",
        ),
        (
            HttpRefusal::IpLiteral {
                host: String::new(),
                canonical: String::new(),
            },
            "http.ip-literal",
        ),
        (
            HttpRefusal::NotGranted {
                host: String::new(),
                needs: String::new(),
            },
            "http.not-granted",
        ),
        (
            HttpRefusal::PrivateAddress {
                host: String::new(),
                addr: ip("10.0.0.1"),
                why: f,
                needs: String::new(),
            },
            "http.private-address",
        ),
        (
            HttpRefusal::Metadata {
                host: String::new(),
                addr: ip("10.0.0.1"),
                why: f,
                needs: String::new(),
            },
            "http.metadata",
        ),
        (
            HttpRefusal::Resolve {
                host: String::new(),
                reason: String::new(),
            },
            "http.resolve",
        ),
        (HttpRefusal::TooManyRedirects { max: 0 }, "http.redirect"),
        (
            HttpRefusal::TooLarge {
                what: "request body",
                limit: 0,
            },
            "http.too-large",
        ),
        (
            HttpRefusal::Timeout {
                what: "request",
                limit: Duration::ZERO,
            },
            "http.timeout",
        ),
    ];
    for (r, code) in cases {
        assert_eq!(r.code(), code);
    }
}

/// Every forbidden range as (first address, prefix length), written independently of the
/// module's tables so a typo in one does not hide in the other.
const FORBIDDEN_V4: &[(&str, u8)] = &[
    ("0.0.0.0", 8),
    ("10.0.0.0", 8),
    ("100.64.0.0", 10),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("172.16.0.0", 12),
    ("192.0.0.0", 24),
    ("192.0.2.0", 24),
    ("192.88.99.0", 24),
    ("192.168.0.0", 16),
    ("198.18.0.0", 15),
    ("198.51.100.0", 24),
    ("203.0.113.0", 24),
    ("224.0.0.0", 4),
    ("240.0.0.0", 4),
    ("168.63.129.16", 32),
];

const FORBIDDEN_V6: &[(&str, u8)] = &[
    ("::", 3),
    ("100::", 64),
    ("2001::", 23),
    ("2001:db8::", 32),
    ("3fff::", 20),
    ("4000::", 2),
    ("5f00::", 16),
    ("64:ff9b:1::", 48),
    ("8000::", 1),
];

fn v4_in(addr: u32, base: &str, len: u8) -> bool {
    let base = u32::from(base.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::BROADCAST));
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    addr & mask == base & mask
}

fn v6_in(addr: u128, base: &str, len: u8) -> bool {
    let base = u128::from(base.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::LOCALHOST));
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    addr & mask == base & mask
}

fn forbidden_v4(a: u32) -> bool {
    FORBIDDEN_V4.iter().any(|&(b, l)| v4_in(a, b, l))
}

/// An address in a random forbidden range, host bits random.
fn forbidden_v4_addr() -> impl Strategy<Value = u32> {
    (0..FORBIDDEN_V4.len(), any::<u32>()).prop_map(|(i, bits)| {
        let (base, len) = FORBIDDEN_V4[i];
        let base = u32::from(base.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::BROADCAST));
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        (base & mask) | (bits & !mask)
    })
}

/// An address within 256 of the first or last address of a forbidden range, where an
/// off-by-one prefix length would show.
fn near_a_v4_boundary() -> impl Strategy<Value = u32> {
    (0..FORBIDDEN_V4.len(), any::<bool>(), -256i64..256).prop_map(|(i, end, delta)| {
        let (base, len) = FORBIDDEN_V4[i];
        let base = u32::from(base.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::BROADCAST));
        let size = 1i64 << (32 - u32::from(len));
        let edge = i64::from(base) + if end { size } else { 0 };
        (edge + delta).clamp(0, i64::from(u32::MAX)) as u32
    })
}

fn name_policy() -> OutboundPolicy {
    policy(&[
        "https://api.example.com",
        "https://*.example.com",
        "http://localhost:8080",
        "http://api.example.com:8080",
    ])
}

proptest! {
    #[test]
    fn net_prop_no_forbidden_v4_is_allowed_without_an_ip_grant(a in forbidden_v4_addr(), port_8080 in any::<bool>()) {
        let p = name_policy();
        let url = if port_8080 { "http://api.example.com:8080/" } else { "https://api.example.com/" };
        let t = target(&p, url);
        let v4 = Ipv4Addr::from(a);
        prop_assert!(p.check_addr(&t, IpAddr::V4(v4)).is_err(), "{}", v4);
        // Every IPv6 form that reaches the same address is refused too.
        let mapped = v4.to_ipv6_mapped();
        let compat = v4.to_ipv6_compatible();
        let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(a));
        let six_to_four = Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(a) << 80) | 1);
        for v6 in [mapped, compat, nat64, six_to_four] {
            prop_assert!(p.check_addr(&t, IpAddr::V6(v6)).is_err(), "{} ({})", v6, v4);
        }
    }

    #[test]
    fn net_prop_v4_classification_matches_the_independent_table(
        a in prop_oneof![any::<u32>(), near_a_v4_boundary()],
    ) {
        let v4 = Ipv4Addr::from(a);
        let metadata = [[169, 254, 169, 254], [169, 254, 170, 2], [100, 100, 100, 200]];
        let want = forbidden_v4(a) || metadata.contains(&v4.octets());
        prop_assert_eq!(classify(IpAddr::V4(v4)).is_some(), want, "{}", v4);
    }

    #[test]
    fn net_prop_v6_classification_matches_the_independent_table(a in any::<u128>()) {
        let v6 = Ipv6Addr::from(a);
        let got = classify(IpAddr::V6(v6));
        // Mapped, NAT64 and 6to4 follow their embedded address; everything else in an
        // independent range is refused.
        let embedded = if a >> 32 == 0xffff || a >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
            Some(a as u32)
        } else if a >> 112 == 0x2002 {
            Some((a >> 80) as u32)
        } else {
            None
        };
        match embedded {
            Some(v4) => prop_assert_eq!(got.is_some(), classify(IpAddr::V4(Ipv4Addr::from(v4))).is_some(), "{}", v6),
            None => {
                let want = FORBIDDEN_V6.iter().any(|&(b, l)| v6_in(a, b, l))
                    || v6_in(a, "fc00::", 7)
                    || v6_in(a, "fe80::", 10)
                    || v6_in(a, "fec0::", 10)
                    || v6_in(a, "ff00::", 8);
                prop_assert_eq!(got.is_some(), want, "{}", v6);
            }
        }
    }

    #[test]
    fn net_prop_forbidden_v6_ranges_are_refused_without_an_ip_grant(
        i in 0usize..8,
        bits in any::<u128>(),
    ) {
        let ranges = [("::1", 128u8), ("fc00::", 7), ("fe80::", 10), ("fec0::", 10), ("ff00::", 8), ("2001:db8::", 32), ("2001::", 32), ("100::", 64)];
        let (base, len) = ranges[i];
        let base = u128::from(base.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::LOCALHOST));
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        let addr = Ipv6Addr::from((base & mask) | (bits & !mask));
        let p = name_policy();
        let t = target(&p, "https://api.example.com/");
        prop_assert!(p.check_addr(&t, IpAddr::V6(addr)).is_err(), "{}", addr);
    }
}
