//! The API's tokens as the service holds them: SHA-256 digests only, each
//! with its expiry and who it names. The set is swapped whole when config
//! is re-read (SIGHUP, `POST /-/reload`), so rotating a token needs no
//! restart, and a token that was removed or has expired is refused at
//! once, with a 401 that says which.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::ApiError;
use super::config::ApiUser;
use crate::access::Role;
use crate::primitives::TokenDigest;

/// Who a token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin token: break-glass.
    Admin,
    /// A person's own token (`api.users`), by directory user id.
    User(String),
    /// A read token: reads, names nobody.
    Reader,
}

impl Principal {
    /// How a console session records it.
    pub fn key(&self) -> String {
        match self {
            Principal::Admin => "admin".into(),
            Principal::Reader => "reader".into(),
            Principal::User(id) => format!("user:{id}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Principal> {
        match key {
            "admin" => Some(Principal::Admin),
            "reader" => Some(Principal::Reader),
            _ => key
                .strip_prefix("user:")
                .map(|id| Principal::User(id.into())),
        }
    }
}

/// The tokens config gives, before they are held (see [`Credentials`]).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub admin: Option<TokenDigest>,
    pub admin_expires: Option<DateTime<Utc>>,
    pub users: Vec<ApiUser>,
    pub read: Vec<TokenDigest>,
}

/// A token matched, and what it is.
#[derive(Debug, Clone)]
pub struct Identified {
    pub who: Principal,
    /// Names the token (not usable as one): what a console session records
    /// of the token that opened it.
    pub fingerprint: String,
}

struct Entry {
    digest: TokenDigest,
    expires: Option<DateTime<Utc>>,
    who: Principal,
}

#[derive(Default)]
struct Set {
    entries: Vec<Entry>,
    users: Vec<ApiUser>,
    /// Tokens that a re-read removed, since start: told apart from a wrong
    /// token, so the holder learns it was rotated rather than mistyped.
    retired: HashSet<TokenDigest>,
}

/// Re-reads the tokens from config (file and environment).
pub type Source = Arc<dyn Fn() -> Result<Tokens, String> + Send + Sync>;

/// The tokens in force, shared by every handler.
pub struct Credentials {
    set: RwLock<Arc<Set>>,
    source: Option<Source>,
}

impl Credentials {
    /// Holds `tokens`; `source` re-reads them on [`Credentials::reload`].
    pub fn new(tokens: Tokens, source: Option<Source>) -> Credentials {
        Credentials {
            set: RwLock::new(Arc::new(Set::from_tokens(tokens, HashSet::new()))),
            source,
        }
    }

    fn current(&self) -> Arc<Set> {
        Arc::clone(&self.set.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Re-reads the tokens. A config that does not load leaves the tokens in
    /// force as they are (its error is returned, for the log and the
    /// caller). Returns how many tokens are now in force.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(source) = &self.source else {
            return Ok(self.current().entries.len());
        };
        let tokens = source()?;
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        let mut retired = set.retired.clone();
        let next: HashSet<TokenDigest> = tokens
            .admin
            .iter()
            .chain(tokens.users.iter().map(|u| &u.token))
            .chain(tokens.read.iter())
            .copied()
            .collect();
        retired.extend(
            set.entries
                .iter()
                .map(|e| e.digest)
                .filter(|d| !next.contains(d)),
        );
        retired.retain(|d| !next.contains(d));
        let fresh = Set::from_tokens(tokens, retired);
        let count = fresh.entries.len();
        *set = Arc::new(fresh);
        Ok(count)
    }

    /// [`Credentials::reload`], logged and counted: what SIGHUP and
    /// `POST /-/reload` do.
    pub fn reload_counted(&self, metrics: &crate::telemetry::Metrics, trigger: &str) {
        match self.reload() {
            Ok(tokens) => {
                metrics
                    .credential_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(target: "audit", trigger, tokens, "API tokens re-read");
            }
            Err(e) => {
                metrics
                    .credential_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(trigger, "API tokens not re-read, the old ones stay: {e}");
            }
        }
    }

    /// Whether any token could name an operator (the admin token or a
    /// person's own), and any could read.
    pub fn has_operators(&self) -> bool {
        self.current()
            .entries
            .iter()
            .any(|e| e.who != Principal::Reader)
    }

    pub fn has_any(&self) -> bool {
        !self.current().entries.is_empty()
    }

    /// The roles `api.users` gives `id` (none for someone it does not list).
    pub fn roles(&self, id: &str) -> Vec<Role> {
        self.current()
            .users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.roles.clone())
            .unwrap_or_default()
    }

    /// The bearer token of an `Authorization` header, matched against every
    /// token in force (each compared in constant time, so timing does not
    /// tell which came close).
    pub fn identify(
        &self,
        header: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Identified, ApiError> {
        let header = header.ok_or(ApiError::Unauthorized("missing_credentials"))?;
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(ApiError::Unauthorized("bad_credentials")),
        };
        self.identify_token(token, now)
    }

    /// As [`Credentials::identify`], for a token on its own.
    pub fn identify_token(&self, token: &str, now: DateTime<Utc>) -> Result<Identified, ApiError> {
        let digest = TokenDigest::of(token);
        let set = self.current();
        let mut found = None;
        for e in &set.entries {
            if e.digest.ct_eq(&digest) {
                found = Some(e);
            }
        }
        let Some(entry) = found else {
            return Err(if set.retired.contains(&digest) {
                ApiError::CredentialEnded(
                    "this token was removed from the configuration: ask for the new one".into(),
                    "token_revoked",
                )
            } else {
                ApiError::Unauthorized("bad_credentials")
            });
        };
        if let Some(at) = entry.expires.filter(|at| *at <= now) {
            return Err(ApiError::CredentialEnded(
                format!(
                    "this token expired at {}: ask for a new one",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                "token_expired",
            ));
        }
        Ok(Identified {
            who: entry.who.clone(),
            fingerprint: digest.fingerprint(),
        })
    }

    /// Whether the token `fingerprint` names is still in force for `who`
    /// (a console session ends when its token is removed or expires).
    pub fn still_valid(&self, fingerprint: &str, who: &Principal, now: DateTime<Utc>) -> bool {
        self.current().entries.iter().any(|e| {
            &e.who == who
                && e.digest.fingerprint() == fingerprint
                && e.expires.is_none_or(|at| at > now)
        })
    }
}

impl Set {
    fn from_tokens(tokens: Tokens, retired: HashSet<TokenDigest>) -> Set {
        let mut entries = Vec::new();
        if let Some(digest) = tokens.admin {
            entries.push(Entry {
                digest,
                expires: tokens.admin_expires,
                who: Principal::Admin,
            });
        }
        for u in &tokens.users {
            entries.push(Entry {
                digest: u.token,
                expires: u.expires,
                who: Principal::User(u.id.clone()),
            });
        }
        for digest in tokens.read {
            entries.push(Entry {
                digest,
                expires: None,
                who: Principal::Reader,
            });
        }
        Set {
            entries,
            users: tokens.users,
            retired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn user(id: &str, token: &str, expires: Option<DateTime<Utc>>) -> ApiUser {
        ApiUser {
            id: id.into(),
            token: TokenDigest::of(token),
            roles: vec![Role::Operator],
            expires,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn each_token_names_its_holder_and_an_expired_one_says_so() {
        let tokens = Tokens {
            admin: Some(TokenDigest::of("adm")),
            users: vec![
                user("U1", "alice-tok", None),
                user("U2", "bob-tok", Some(now())),
            ],
            read: vec![TokenDigest::of("reader")],
            ..Tokens::default()
        };
        let c = Credentials::new(tokens, None);
        let who = |h: &str| c.identify(Some(h), now()).map(|i| i.who);
        assert_eq!(who("Bearer adm").unwrap(), Principal::Admin);
        assert_eq!(
            who("bearer alice-tok").unwrap(),
            Principal::User("U1".into())
        );
        assert_eq!(who("Bearer reader").unwrap(), Principal::Reader);
        let e = who("Bearer bob-tok").unwrap_err();
        assert_eq!(e.reason(), "token_expired", "{e}");
        assert!(e.to_string().contains("expired at"), "{e}");
        for bad in ["Bearer alice-to", "Basic alice-tok", "alice-tok"] {
            assert_eq!(who(bad).unwrap_err().reason(), "bad_credentials", "{bad}");
        }
        assert_eq!(
            c.identify(None, now()).unwrap_err().reason(),
            "missing_credentials"
        );
        assert_eq!(c.roles("U1"), vec![Role::Operator]);
        assert!(c.roles("nobody").is_empty());
    }

    #[test]
    fn a_reload_rotates_tokens_and_a_removed_one_is_told_apart() {
        let next = Arc::new(Mutex::new(Tokens {
            users: vec![user("U1", "old", None)],
            ..Tokens::default()
        }));
        let source: Source = {
            let next = Arc::clone(&next);
            Arc::new(move || Ok(next.lock().unwrap().clone()))
        };
        let c = Credentials::new(next.lock().unwrap().clone(), Some(source));
        let old = c.identify_token("old", now()).unwrap();
        *next.lock().unwrap() = Tokens {
            users: vec![user("U1", "new", None)],
            ..Tokens::default()
        };
        assert_eq!(c.reload().unwrap(), 1);
        assert_eq!(
            c.identify_token("old", now()).unwrap_err().reason(),
            "token_revoked"
        );
        assert_eq!(
            c.identify_token("new", now()).unwrap().who,
            Principal::User("U1".into())
        );
        let u1 = Principal::User("U1".into());
        assert!(
            !c.still_valid(&old.fingerprint, &u1, now()),
            "the old token's sessions end"
        );
        // Put back, it is a token again.
        *next.lock().unwrap() = Tokens {
            users: vec![user("U1", "old", None)],
            ..Tokens::default()
        };
        c.reload().unwrap();
        assert!(c.identify_token("old", now()).is_ok());
        assert_eq!(
            c.identify_token("new", now()).unwrap_err().reason(),
            "token_revoked"
        );
    }

    #[test]
    fn a_config_that_does_not_load_keeps_the_tokens_in_force() {
        let source: Source = Arc::new(|| Err("config.yaml:3: bad".to_string()));
        let c = Credentials::new(
            Tokens {
                admin: Some(TokenDigest::of("adm")),
                ..Tokens::default()
            },
            Some(source),
        );
        assert!(c.reload().unwrap_err().contains("config.yaml:3"));
        assert!(c.identify_token("adm", now()).is_ok());
    }
}
