//! The `webhook:` section of the config file (how Alertmanager
//! authenticates, and how large a delivery may be), the `server:` section
//! (the HTTP server's limits), and the operator API's per-user tokens.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::primitives::Secret;

/// The `webhook:` section of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    /// Larger bodies get 413. Alertmanager batches are small; 1 MiB holds
    /// well over a thousand alerts.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

/// At least one of bearer token or basic auth is required; running without
/// authentication has to be asked for by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuth {
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    #[serde(default)]
    pub insecure_no_auth: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

fn default_max_body() -> usize {
    1 << 20
}

/// The `server:` section: limits that keep slow or too many clients from
/// holding the service. Defaults suit Alertmanager, Slack and operators;
/// none of them sends slowly or opens hundreds of connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// A client must send a request's headers within this, or the
    /// connection is closed (also how long an idle keep-alive connection
    /// may wait for its next request).
    #[serde(
        default = "default_header_timeout",
        with = "crate::primitives::duration"
    )]
    pub header_read_timeout: Duration,
    /// A request's whole body must arrive within this, or it gets 408.
    #[serde(default = "default_body_timeout", with = "crate::primitives::duration")]
    pub body_read_timeout: Duration,
    /// Open connections at most; one more is answered 503 and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests handled at once (health, readiness and metrics not
    /// counted, so probes still answer); one more is answered 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Serve `/metrics` on this address only (and not on `listen`), so the
    /// scrape port can stay on an internal network while the webhook and
    /// API face wider ones.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: default_header_timeout(),
            body_read_timeout: default_body_timeout(),
            max_connections: default_max_connections(),
            max_in_flight: default_max_in_flight(),
            metrics_listen: None,
        }
    }
}

impl ServerConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.header_read_timeout.is_zero() || self.body_read_timeout.is_zero() {
            return Err("server: read timeouts must be greater than 0".into());
        }
        if self.max_connections == 0 || self.max_in_flight == 0 {
            return Err("server: max_connections and max_in_flight must be at least 1".into());
        }
        Ok(())
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_in_flight() -> usize {
    256
}

/// One person's own credential for the operator API (`api.users`). Votes
/// cast with it are recorded as `id`, which names the person in the
/// approver directory (and in Slack, so a Slack click and an API vote by
/// the same person are one person).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiUser {
    pub id: String,
    /// The token, or its digest (`sha256:…`, from `dr-reactor token
    /// hash`); only the digest is kept in memory either way.
    pub token: crate::primitives::TokenDigest,
    /// `operator` and/or `admin` (see `access`); approver roles come from
    /// the approver directory, and a directory member is an operator too.
    #[serde(default)]
    pub roles: Vec<crate::access::Role>,
    /// When the token stops working (RFC 3339); refused from then on with
    /// a 401 that says it expired, and its console sessions end.
    #[serde(default)]
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// The `console:` section: the operator console served at `/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console (its pages need a read credential all the same).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often the incident pages reload themselves.
    #[serde(default = "default_refresh", with = "crate::primitives::duration")]
    pub refresh: Duration,
    /// Alertmanager's external URL, for links from evidence to its alerts.
    #[serde(default)]
    pub alertmanager_url: Option<String>,
    /// Set the session cookie's `Secure` attribute: on whenever the console
    /// is reached over HTTPS (a TLS-terminating ingress or proxy).
    #[serde(default = "default_true")]
    pub secure_cookies: bool,
    /// Identity from an authenticating reverse proxy (oauth2-proxy and
    /// the like), believed only from its addresses.
    #[serde(default)]
    pub auth_proxy: Option<AuthProxyConfig>,
    /// A signed-in session ends after this long without a page.
    #[serde(default = "default_session_idle", with = "crate::primitives::duration")]
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however active.
    #[serde(
        default = "default_session_lifetime",
        with = "crate::primitives::duration"
    )]
    pub session_lifetime: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            refresh: default_refresh(),
            alertmanager_url: None,
            secure_cookies: true,
            auth_proxy: None,
            session_idle: default_session_idle(),
            session_lifetime: default_session_lifetime(),
        }
    }
}

/// Long enough to step away from an incident and come back to it.
fn default_session_idle() -> Duration {
    Duration::from_secs(2 * 3600)
}

/// A night's shift.
fn default_session_lifetime() -> Duration {
    Duration::from_secs(12 * 3600)
}

/// `console.auth_proxy`: which header names the signed-in person, which
/// peers may set it, and how its names map to approver-directory ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthProxyConfig {
    /// e.g. `X-Forwarded-User` or `X-Auth-Request-User` (oauth2-proxy).
    pub header: String,
    /// The proxy's source addresses or networks; the header from anyone
    /// else is ignored, so a client cannot name itself. An address
    /// (`10.0.0.7`) or a network (`10.0.0.0/8`).
    #[serde(deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Proxy identity (an email, say) → approver-directory user id. A name
    /// not listed is used as it is.
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, String>,
    /// A header listing the person's groups, comma-separated (oauth2-proxy's
    /// `X-Auth-Request-Groups`); believed from the proxy's addresses only.
    #[serde(default)]
    pub groups_header: Option<String>,
    /// Proxy group → the roles it grants (`viewer`, `operator`, `admin`).
    /// Approver membership is not granted here: it stays with the approver
    /// directory, reviewed in git with the rules.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, Vec<crate::access::Role>>,
}

impl AuthProxyConfig {
    /// The roles the groups header grants; unknown groups grant nothing.
    pub fn granted(&self, groups: &str) -> Vec<crate::access::Role> {
        let mut roles: Vec<crate::access::Role> = groups
            .split(',')
            .filter_map(|g| self.roles.get(g.trim()))
            .flatten()
            .copied()
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

impl ConsoleConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.refresh.is_zero() {
            return Err("console.refresh must be greater than 0".into());
        }
        if self.session_idle.is_zero() || self.session_lifetime < self.session_idle {
            return Err(
                "console.session_idle must be greater than 0 and at most console.session_lifetime"
                    .into(),
            );
        }
        if let Some(p) = &self.auth_proxy {
            if axum::http::HeaderName::from_bytes(p.header.as_bytes()).is_err() {
                return Err(format!(
                    "console.auth_proxy.header {:?} is not a header name",
                    p.header
                ));
            }
            if p.trusted_proxies.is_empty() {
                return Err(
                    "console.auth_proxy.trusted_proxies must list the proxy's addresses: \
                     without them anyone could send the header"
                        .into(),
                );
            }
            match &p.groups_header {
                Some(h) if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
                    return Err(format!(
                        "console.auth_proxy.groups_header {h:?} is not a header name"
                    ));
                }
                None if !p.roles.is_empty() => {
                    return Err(
                        "console.auth_proxy.roles needs console.auth_proxy.groups_header: \
                         the header the groups come in"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}

fn default_refresh() -> Duration {
    Duration::from_secs(10)
}

fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{s:?} is neither an IP address nor a network (10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}
