//! Rate limits per client address and per user (governor token buckets), with bounded memory,
//! and the client address behind trusted proxies.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::identity::canonical;

/// The request classes backup-repository limits separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Logins and token refreshes (each costs an argon2 hash).
    Login,
    /// Authenticated API requests.
    Default,
    /// A collection's health endpoint.
    CollectionHealth,
    /// `/health` and `/ready`.
    Health,
}

impl Bucket {
    fn index(self) -> usize {
        self as usize
    }
}

/// The limits, as backup-repository's flags set them. Zero turns a bucket off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Logins per minute (`--rate-auth-limit`, default 10).
    pub login_per_minute: u32,
    /// Requests per second (`--rate-default-limit`, default 5).
    pub default_per_second: u32,
    /// Collection health checks per minute (`--rate-collection-health-limit`, default 10).
    pub collection_health_per_minute: u32,
    /// Server health checks per minute (`--rate-server-health-limit`, default 160).
    pub health_per_minute: u32,
    /// The most keys (addresses and users) tracked per bucket; past it, new keys share one
    /// bucket until old ones expire, so memory stays bounded whatever the traffic.
    pub max_tracked_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            login_per_minute: 10,
            default_per_second: 5,
            collection_health_per_minute: 10,
            health_per_minute: 160,
            max_tracked_keys: 100_000,
        }
    }
}

/// Who is limited: a client address or a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A client address.
    Addr(IpAddr),
    /// A user name.
    User(String),
}

/// What a request left of its bucket (for `X-RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    /// The bucket's size.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
}

type Keyed = RateLimiter<RateKey, DefaultKeyedStateStore<RateKey>, DefaultClock, StateInformationMiddleware>;
type Shared = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

#[derive(Debug)]
struct Limiter {
    keyed: Keyed,
    overflow: Shared,
    limit: u32,
    /// When the keys were last swept (a sweep walks every key: at most once a second).
    last_sweep: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Token buckets per [`Bucket`] and [`RateKey`].
///
/// ```
/// use backup_policy::{Bucket, RateKey, RateLimitConfig, RateLimits};
///
/// let limits = RateLimits::new(RateLimitConfig { login_per_minute: 2, ..RateLimitConfig::default() });
/// let me = RateKey::Addr("192.0.2.7".parse().unwrap());
/// assert!(limits.check(Bucket::Login, &me).is_ok());
/// assert!(limits.check(Bucket::Login, &me).is_ok());
/// assert!(limits.check(Bucket::Login, &me).is_err());
/// ```
#[derive(Debug)]
pub struct RateLimits {
    limiters: [Option<Limiter>; 4],
    max_keys: usize,
}

impl RateLimits {
    /// Limits as configured.
    pub fn new(config: RateLimitConfig) -> Self {
        let per = |n: u32, period: Duration| {
            NonZeroU32::new(n).map(|n| {
                let quota = Quota::with_period(period / n.get()).expect("non-zero period").allow_burst(n);
                Limiter {
                    keyed: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
                    overflow: RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>(),
                    limit: n.get(),
                    last_sweep: std::sync::Mutex::new(None),
                }
            })
        };
        let minute = Duration::from_secs(60);
        RateLimits {
            limiters: [
                per(config.login_per_minute, minute),
                per(config.default_per_second, Duration::from_secs(1)),
                per(config.collection_health_per_minute, minute),
                per(config.health_per_minute, minute),
            ],
            max_keys: config.max_tracked_keys.max(1),
        }
    }

    /// Takes one request from `key`'s bucket. IPv6 addresses count per /64, the block one
    /// subscriber usually holds: otherwise one client would have billions of buckets.
    ///
    /// # Errors
    /// [`backup_core::Error::RateLimited`] with how long to wait.
    pub fn check(&self, bucket: Bucket, key: &RateKey) -> Result<Option<RateInfo>> {
        let Some(l) = &self.limiters[bucket.index()] else { return Ok(None) };
        let key = match key {
            RateKey::Addr(a) => RateKey::Addr(subscriber(canonical(*a))),
            other => other.clone(),
        };
        if l.keyed.len() >= self.max_keys {
            // Forget keys whose buckets are full again before deciding there is no room; not
            // on every request of a flood, which would walk every key each time.
            let now = std::time::Instant::now();
            let mut last = l.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                *last = Some(now);
                drop(last);
                l.keyed.retain_recent();
                l.keyed.shrink_to_fit();
            }
        }
        let outcome = if l.keyed.len() < self.max_keys { l.keyed.check_key(&key) } else { l.overflow.check() };
        match outcome {
            Ok(snapshot) => Ok(Some(RateInfo { limit: l.limit, remaining: snapshot.remaining_burst_capacity() })),
            Err(not_until) => Err(Error::rate_limited(not_until.wait_time_from(DefaultClock::default().now()))),
        }
    }

    /// Forgets keys whose buckets are full again (run it periodically; [`RateLimits::check`]
    /// does it by itself when a bucket tracks too many keys).
    pub fn retain_recent(&self) {
        for l in self.limiters.iter().flatten() {
            l.keyed.retain_recent();
            l.keyed.shrink_to_fit();
        }
    }

    /// How many keys a bucket tracks now.
    pub fn tracked(&self, bucket: Bucket) -> usize {
        self.limiters[bucket.index()].as_ref().map_or(0, |l| l.keyed.len())
    }
}

/// The /64 an IPv6 address belongs to (IPv4 addresses are their own).
fn subscriber(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The client's address: the direct peer, unless the peer is a trusted proxy, in which case
/// the rightmost address of `X-Forwarded-For` that is not itself a trusted proxy (a client
/// can prepend anything to the header, but not append). Entries may carry a port
/// (`203.0.113.9:4711`, `[2001:db8::1]:4711`), as some proxies write them. When the entries
/// right of the trusted ones do not parse, the client is unknown: the unspecified address,
/// which no allow-list of addresses names (fail closed; the proxy's own address would pass
/// wherever the proxy is allowed).
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let trusted = |a: &IpAddr| trusted_proxies.iter().any(|n| n.contains(a));
    if !trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut chain: Vec<IpAddr> = Vec::new();
    let mut malformed = false;
    for part in header.split(',') {
        match forwarded_entry(part.trim()) {
            Some(a) => chain.push(canonical(a)),
            // A malformed entry: trust nothing to its left.
            None => {
                chain.clear();
                malformed = true;
            }
        }
    }
    match chain.into_iter().rev().find(|a| !trusted(a)) {
        Some(client) => client,
        None if malformed => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        None => peer,
    }
}

/// One entry of `X-Forwarded-For`: an address, with or without a port.
fn forwarded_entry(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// Addresses users logged in from successfully, remembered for a while: a login from one of
/// them skips the per-user limit on failed logins, so an attacker guessing a user's password
/// from elsewhere cannot lock the user out (see the server's security model). Bounded: past
/// `capacity` entries, expired ones are dropped, and if none are, new ones are not
/// remembered (those logins then count against the per-user limit, as from a new address).
#[derive(Debug)]
pub struct KnownLogins {
    entries: std::sync::Mutex<std::collections::HashMap<(String, IpAddr), std::time::Instant>>,
    ttl: Duration,
    capacity: usize,
}

impl KnownLogins {
    /// Remembers successful logins for `ttl`, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        KnownLogins { entries: std::sync::Mutex::default(), ttl, capacity: capacity.max(1) }
    }

    fn key(user: &str, addr: IpAddr) -> (String, IpAddr) {
        (user.to_owned(), subscriber(canonical(addr)))
    }

    /// Records a successful login of `user` from `addr`.
    pub fn remember(&self, user: &str, addr: IpAddr) {
        let now = std::time::Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, at| now.duration_since(*at) < self.ttl);
        }
        if entries.len() < self.capacity || entries.contains_key(&Self::key(user, addr)) {
            entries.insert(Self::key(user, addr), now);
        }
    }

    /// Whether `user` logged in successfully from `addr` within the time remembered.
    pub fn knows(&self, user: &str, addr: IpAddr) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&Self::key(user, addr)).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// How many logins are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let limits = RateLimits::new(RateLimitConfig { login_per_minute: 2, ..Default::default() });
        let a = RateKey::Addr("2001:db8:1:2::1".parse().unwrap());
        let b = RateKey::Addr("2001:db8:1:2:ffff::9".parse().unwrap());
        let other = RateKey::Addr("2001:db8:1:3::1".parse().unwrap());
        limits.check(Bucket::Login, &a).unwrap();
        limits.check(Bucket::Login, &b).unwrap();
        assert!(limits.check(Bucket::Login, &a).is_err(), "the same /64 shares its bucket");
        assert!(limits.check(Bucket::Login, &other).is_ok());
    }

    #[test]
    fn buckets_are_separate_per_key_and_per_bucket() {
        let limits =
            RateLimits::new(RateLimitConfig { login_per_minute: 2, health_per_minute: 0, ..Default::default() });
        let a = RateKey::Addr("192.0.2.1".parse().unwrap());
        let b = RateKey::Addr("192.0.2.2".parse().unwrap());
        let info = limits.check(Bucket::Login, &a).unwrap().unwrap();
        assert_eq!((info.limit, info.remaining), (2, 1));
        limits.check(Bucket::Login, &a).unwrap();
        let e = limits.check(Bucket::Login, &a).unwrap_err();
        assert!(
            matches!(e, Error::Core(backup_core::Error::RateLimited { retry_after: Some(retry_after) }) if retry_after > Duration::ZERO && retry_after <= Duration::from_secs(30)),
            "{e}"
        );
        assert!(limits.check(Bucket::Login, &b).is_ok(), "another address has its own bucket");
        assert!(limits.check(Bucket::Default, &a).is_ok(), "another bucket");
        assert!(limits.check(Bucket::Login, &RateKey::User("x".into())).is_ok(), "users are keys of their own");
        for _ in 0..1000 {
            assert_eq!(limits.check(Bucket::Health, &a).unwrap(), None, "a zero limit is off");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_share_the_ipv4_bucket() {
        let limits = RateLimits::new(RateLimitConfig { login_per_minute: 1, ..Default::default() });
        limits.check(Bucket::Login, &RateKey::Addr("192.0.2.9".parse().unwrap())).unwrap();
        assert!(limits.check(Bucket::Login, &RateKey::Addr("::ffff:192.0.2.9".parse().unwrap())).is_err());
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_addresses() {
        let limits =
            RateLimits::new(RateLimitConfig { default_per_second: 1000, max_tracked_keys: 100, ..Default::default() });
        for i in 0..10_000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limits.check(Bucket::Default, &RateKey::Addr(addr));
        }
        assert!(limits.tracked(Bucket::Default) <= 100, "{}", limits.tracked(Bucket::Default));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer_proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let peer_client: IpAddr = "198.51.100.7".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer spoofing the header is the client itself.
        assert_eq!(client_address(peer_client, Some("1.2.3.4"), &proxies), peer_client);
        // A trusted proxy's header is believed, rightmost untrusted entry first.
        assert_eq!(client_address(peer_proxy, Some("1.2.3.4, 203.0.113.9"), &proxies), ip("203.0.113.9"));
        assert_eq!(client_address(peer_proxy, Some("203.0.113.9, 10.0.0.7"), &proxies), ip("203.0.113.9"));
        // Nothing usable: the proxy itself.
        assert_eq!(client_address(peer_proxy, None, &proxies), peer_proxy);
        assert_eq!(client_address(peer_proxy, Some("10.1.1.1"), &proxies), peer_proxy);
        // Ports are read; what does not parse makes the client unknown, never the proxy.
        assert_eq!(client_address(peer_proxy, Some("203.0.113.9:4711"), &proxies), ip("203.0.113.9"));
        assert_eq!(client_address(peer_proxy, Some("[2001:db8::1]:80, 10.0.0.9"), &proxies), ip("2001:db8::1"));
        let unknown = ip("0.0.0.0");
        assert_eq!(client_address(peer_proxy, Some("garbage"), &proxies), unknown);
        assert_eq!(client_address(peer_proxy, Some("1.2.3.4, garbage"), &proxies), unknown);
        assert_eq!(client_address(peer_proxy, Some("1.2.3.4, 10.0.0.7 8"), &proxies), unknown);
    }

    #[test]
    fn known_logins_are_remembered_per_user_and_address_within_bounds() {
        let known = KnownLogins::new(Duration::from_secs(60), 2);
        let (a, b) = (ip_of("192.0.2.1"), ip_of("192.0.2.2"));
        known.remember("u", a);
        assert!(known.knows("u", a) && !known.knows("u", b) && !known.knows("v", a));
        known.remember("u", b);
        known.remember("v", a);
        assert_eq!(known.len(), 2, "bounded");
        assert!(!known.knows("v", a), "past the capacity, not remembered");
        let brief = KnownLogins::new(Duration::ZERO, 10);
        brief.remember("u", a);
        assert!(!brief.knows("u", a), "expired");
    }

    fn ip_of(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
}
