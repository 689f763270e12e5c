//! [`OutboundPolicy`]: a plugin's `http.outbound` grants applied to URLs, resolved addresses
//! and redirects (the rules are in the module doc of [`crate::net`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use url::Url;

use super::ranges::{self, AddressClass};
use super::{HttpLimits, HttpRefusal, MAX_URL_LEN};
use colony_caps::{GrantSet, HostPattern, Scheme};

/// A plugin's outbound HTTP grants and limits. Build one per request from
/// `colony_host::policy::Policy::grants` so a revocation applies to the next request.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    grants: Arc<GrantSet>,
    limits: HttpLimits,
}

/// A URL that passed [`OutboundPolicy::check_url`]: normalised, granted, not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: Url,
    scheme: Scheme,
    ip: Option<IpAddr>,
    port: u16,
    redirects: u32,
}

impl Target {
    /// The URL to send: normalised host, no userinfo, no fragment.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host as granted and as sent in `Host` and SNI: a lowercase ASCII name without a
    /// trailing dot, a dotted IPv4 address or a bracketed IPv6 address.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The address, when the URL names one instead of a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The port connected to (the scheme's default when the URL has none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many redirects led here (0 for the guest's own request).
    pub fn redirects(&self) -> u32 {
        self.redirects
    }

    /// `scheme://host:port`, for the audit and messages.
    pub fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme.as_str(), self.host(), self.port)
    }

    /// Whether `other` is the same scheme, host and port: a redirect that is not must not carry
    /// the `Authorization` or `Cookie` headers of this request.
    pub fn same_origin(&self, other: &Target) -> bool {
        self.scheme == other.scheme && self.host() == other.host() && self.port == other.port
    }

    /// The capability that allows this target, port omitted when it is the default.
    pub fn capability(&self) -> String {
        needs(self.scheme, self.host(), self.port)
    }
}

/// A checked target and the addresses to connect to, in the resolver's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What was checked.
    pub target: Target,
    /// Every address the name resolved to (each allowed), with the target's port.
    pub addrs: Vec<SocketAddr>,
}

/// Name resolution, injectable so tests can answer with any addresses.
pub trait Resolver {
    /// The addresses `host` (a DNS name, never an IP literal) resolves to.
    fn lookup(&self, host: &str, port: u16)
    -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send;
}

/// The system resolver, through `tokio::net::lookup_host`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

fn invalid(reason: impl Into<String>) -> HttpRefusal {
    HttpRefusal::InvalidUrl {
        reason: reason.into(),
    }
}

/// `http.outbound:scheme://host[:port]`, the port left out when it is the default.
fn needs(scheme: Scheme, host: &str, port: u16) -> String {
    if port == scheme.default_port() {
        format!("http.outbound:{}://{host}", scheme.as_str())
    } else {
        format!("http.outbound:{}://{host}:{port}", scheme.as_str())
    }
}

/// The host as a grant would name it: dotted IPv4 or bracketed IPv6.
fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// Refuses whitespace, control characters and `\`, where WHATWG parsing silently repairs
/// (tabs and newlines are dropped, `\` is read as `/`) and other parsers would not.
fn check_chars(s: &str, what: &str) -> Result<(), HttpRefusal> {
    if s.len() > MAX_URL_LEN {
        return Err(invalid(format!(
            "{what} is longer than {MAX_URL_LEN} bytes"
        )));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(invalid(format!(
            "{what} has {c:?} at byte {i} (no whitespace, control characters or '\\\\')"
        )));
    }
    Ok(())
}

/// Whether `s` starts with `scheme:` (RFC 3986), i.e. is an absolute URL.
fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut b = scheme.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        }
        None => false,
    }
}

impl OutboundPolicy {
    /// The policy of `grants` (only its `http.outbound` grants matter) under `limits`.
    pub fn new(grants: impl Into<Arc<GrantSet>>, limits: HttpLimits) -> OutboundPolicy {
        OutboundPolicy {
            grants: grants.into(),
            limits,
        }
    }

    /// The limits every request under this policy gets.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// Parses, normalises and checks a URL against the grants (not its addresses: see
    /// [`OutboundPolicy::resolve_and_check`]).
    pub fn check_url(&self, input: &str) -> Result<Target, HttpRefusal> {
        check_chars(input, "url")?;
        let Some((scheme, rest)) = input.split_once(':') else {
            return Err(invalid("has no scheme (expected http:// or https://)"));
        };
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            let cut = scheme
                .char_indices()
                .nth(16)
                .map_or(scheme.len(), |(i, _)| i);
            return Err(HttpRefusal::Scheme {
                scheme: scheme[..cut].to_owned(),
            });
        };
        // WHATWG reads `http:host`, `http:/host` and `http:///host` as `http://host`; nobody
        // else does, so only the one spelling is accepted.
        let Some(after) = rest.strip_prefix("//").filter(|a| !a.starts_with('/')) else {
            return Err(invalid(format!("expected {}://host", scheme.as_str())));
        };
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some((_, host)) = authority.rsplit_once('@') {
            return Err(HttpRefusal::Userinfo {
                host: host.to_owned(),
            });
        }
        let mut url = Url::parse(input).map_err(|e| invalid(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpRefusal::Userinfo {
                host: url.host_str().unwrap_or_default().to_owned(),
            });
        }
        let ip = match url.host() {
            None => return Err(invalid("has no host")),
            Some(url::Host::Ipv4(a)) => {
                // The authority without a port: an IPv4 host has no brackets.
                let raw = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
                if raw != a.to_string() {
                    return Err(HttpRefusal::IpLiteral {
                        host: raw.to_owned(),
                        canonical: a.to_string(),
                    });
                }
                Some(IpAddr::V4(a))
            }
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(url::Host::Domain(d)) => {
                let name = d.strip_suffix('.').unwrap_or(d);
                if name.is_empty() || name.split('.').any(str::is_empty) {
                    return Err(invalid(format!("host {d:?} has an empty label")));
                }
                if name.len() != d.len() {
                    let name = name.to_owned();
                    url.set_host(Some(&name))
                        .map_err(|e| invalid(e.to_string()))?;
                }
                None
            }
        };
        let port = url.port_or_known_default().unwrap_or(scheme.default_port());
        if port == 0 {
            return Err(invalid("port 0"));
        }
        url.set_fragment(None);
        let target = Target {
            url,
            scheme,
            ip,
            port,
            redirects: 0,
        };
        let host = target.host();
        if !self
            .grants
            .http_targets()
            .iter()
            .any(|g| g.allows(scheme.as_str(), host, port))
        {
            return Err(HttpRefusal::NotGranted {
                host: target.origin(),
                needs: target.capability(),
            });
        }
        Ok(target)
    }

    /// Checks one address `target` is about to connect to: a public address is allowed; any
    /// other only when a grant names that address (for the target's scheme and port).
    pub(crate) fn check_addr(&self, target: &Target, addr: IpAddr) -> Result<(), HttpRefusal> {
        let Some(why) = ranges::classify(addr) else {
            return Ok(());
        };
        if self.names_ip(target, addr) {
            return Ok(());
        }
        let canonical = addr.to_canonical();
        let (host, needs) = (
            target.host().to_owned(),
            needs(target.scheme, &ip_host(canonical), target.port),
        );
        Err(if why.class == AddressClass::Metadata {
            HttpRefusal::Metadata {
                host,
                addr,
                why,
                needs,
            }
        } else {
            HttpRefusal::PrivateAddress {
                host,
                addr,
                why,
                needs,
            }
        })
    }

    /// Whether a grant names `addr` (or the IPv4 address an IPv4-mapped `addr` is) as an IP
    /// literal, for the target's scheme and port.
    fn names_ip(&self, target: &Target, addr: IpAddr) -> bool {
        let canonical = addr.to_canonical();
        let forms = [addr, canonical];
        let forms = if canonical == addr {
            &forms[..1]
        } else {
            &forms[..]
        };
        forms.iter().any(|&ip| {
            let host = ip_host(ip);
            self.grants.http_targets().iter().any(|g| {
                matches!(g.host, HostPattern::Ipv4(_) | HostPattern::Ipv6(_))
                    && g.allows(target.scheme.as_str(), &host, target.port)
            })
        })
    }

    /// [`OutboundPolicy::check_url`], then [`OutboundPolicy::resolve_target`].
    pub async fn resolve_and_check<R: Resolver>(
        &self,
        url: &str,
        resolver: &R,
    ) -> Result<Resolved, HttpRefusal> {
        let target = self.check_url(url)?;
        self.resolve_target(target, resolver).await
    }

    /// Resolves a checked target (an IP literal is not resolved) and checks every address; any
    /// refused address refuses the request. The result is what to connect to. On a redirect
    /// hop, a refused address is reported as [`HttpRefusal::Redirect`].
    pub async fn resolve_target<R: Resolver>(
        &self,
        target: Target,
        resolver: &R,
    ) -> Result<Resolved, HttpRefusal> {
        let ips = match target.ip {
            Some(ip) => vec![ip],
            None => {
                let host = target.host();
                let lookup = resolver.lookup(host, target.port);
                let ips = tokio::time::timeout(self.limits.timeout, lookup)
                    .await
                    .map_err(|_| HttpRefusal::Timeout {
                        what: "name resolution",
                        limit: self.limits.timeout,
                    })?
                    .map_err(|e| HttpRefusal::Resolve {
                        host: host.to_owned(),
                        reason: e.to_string(),
                    })?;
                if ips.is_empty() {
                    return Err(HttpRefusal::Resolve {
                        host: host.to_owned(),
                        reason: "no addresses".into(),
                    });
                }
                ips
            }
        };
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(ips.len());
        for ip in ips {
            if let Err(refusal) = self.check_addr(&target, ip) {
                return Err(if target.redirects > 0 {
                    HttpRefusal::Redirect {
                        to: target.origin(),
                        cause: Box::new(refusal),
                    }
                } else {
                    refusal
                });
            }
            let addr = SocketAddr::new(ip, target.port);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        Ok(Resolved { target, addrs })
    }

    /// Checks the target of a redirect from `from` to `location` (absolute, scheme-relative or
    /// relative to `from`) exactly as a new request, and counts the hop against
    /// [`HttpLimits::max_redirects`]. Resolve the result with
    /// [`OutboundPolicy::resolve_target`].
    pub fn check_redirect(&self, from: &Target, location: &str) -> Result<Target, HttpRefusal> {
        if from.redirects >= self.limits.max_redirects {
            return Err(HttpRefusal::TooManyRedirects {
                max: self.limits.max_redirects,
            });
        }
        let bad = |cause: HttpRefusal, to: String| HttpRefusal::Redirect {
            to,
            cause: Box::new(cause),
        };
        let unknown = || "a bad location".to_owned();
        check_chars(location, "location").map_err(|e| bad(e, unknown()))?;
        // An absolute or scheme-relative location is checked as written, so an odd host
        // spelling is refused rather than normalised by the join; a relative one keeps the
        // already checked host.
        let absolute = if has_scheme(location) {
            location.to_owned()
        } else if location.starts_with("//") {
            format!("{}:{location}", from.scheme.as_str())
        } else {
            from.url
                .join(location)
                .map_err(|e| bad(invalid(e.to_string()), unknown()))?
                .into()
        };
        let mut target = self.check_url(&absolute).map_err(|e| {
            let to = Url::parse(&absolute)
                .ok()
                .and_then(|u| {
                    let host = u.host_str()?.to_owned();
                    Some(format!(
                        "{}://{host}:{}",
                        u.scheme(),
                        u.port_or_known_default()?
                    ))
                })
                .unwrap_or_else(unknown);
            bad(e, to)
        })?;
        target.redirects = from.redirects + 1;
        Ok(target)
    }
}
