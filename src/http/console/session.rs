//! Who is looking at the console, and whether a form they post is theirs.
//!
//! Read access is the API's: any token in force, sent as a bearer header,
//! or given once to the sign-in form, which opens a session. A person's
//! own token (`api.users`) also lets them act as themself; so does the
//! identity a trusted authenticating proxy puts in its header, and only
//! when it comes from one of the proxy's addresses.
//!
//! A session lives in the store: the cookie carries only its random id
//! (the store keeps that id's digest), so a stolen cookie is no API token,
//! and a sign-out ends it on every replica at once. It ends too after
//! `console.session_idle` without a page, after `console.session_lifetime`
//! in any case, and as soon as the token that opened it is removed from
//! config or expires.
//!
//! Forms are protected against cross-site posts three times: every cookie
//! is `SameSite=Strict`; a post whose `Sec-Fetch-Site` or `Origin` names
//! another site is refused; and every form carries a random token that must
//! equal the `drr_csrf` cookie (a page of another site can neither read
//! nor set it).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::http::auth::Caller;
use crate::http::config::AuthProxyConfig;
use crate::http::credentials::{Identified, Principal};
use crate::http::{ApiError, AppState};
use crate::primitives::TokenDigest;
use crate::store::ConsoleSession;

pub const SESSION_COOKIE: &str = "drr_session";
pub const CSRF_COOKIE: &str = "drr_csrf";

/// The signed-in viewer of a console page.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Who acts when this viewer presses a button: a person (their own
    /// token, or the proxy's identity); `None` for read and admin tokens
    /// (break-glass votes stay with the API and CLI, which name the user).
    pub person: Option<String>,
    /// How they signed in, for the page header.
    pub via: &'static str,
    /// The form token every form of the page carries.
    pub csrf: String,
    /// The stored session (its id's digest), when signed in by the form:
    /// what the sign-out button ends.
    pub session: Option<String>,
    /// Roles the auth proxy's groups header granted.
    pub granted: Vec<crate::access::Role>,
}

impl Viewer {
    /// The caller the API would see for this viewer's actions.
    pub fn caller(&self) -> Option<Caller> {
        let id = self.person.clone()?;
        Some(if self.granted.is_empty() {
            Caller::User(id)
        } else {
            Caller::Proxied(id, self.granted.clone())
        })
    }
}

/// Route layer for console pages: resolves the viewer or answers with the
/// sign-in page (401); issues the form token cookie when there is none.
pub async fn require_viewer(
    State(app): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let (csrf, fresh) = match cookie(req.headers(), CSRF_COOKIE) {
        Some(c) if c.len() >= 32 => (c.to_owned(), false),
        _ => (new_csrf(), true),
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let resolved = identify(&app, req.headers(), peer, csrf.clone()).await;
    let mut resp = match resolved {
        Ok(viewer) => {
            req.extensions_mut().insert(viewer);
            next.run(req).await
        }
        Err(e) => {
            e.record(&app.metrics, "console request");
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            super::sign_in_page(&app, &csrf, &path, e.to_string())
        }
    };
    if fresh {
        set_cookie(&mut resp, &app, CSRF_COOKIE, &csrf, None);
    }
    resp
}

async fn identify(
    app: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    csrf: String,
) -> Result<Viewer, ApiError> {
    if let Some(proxy) = &app.console.auth_proxy
        && let Some(name) = proxied(proxy, peer, headers)
    {
        let person = proxy.users.get(&name).cloned().unwrap_or(name);
        let granted = proxy
            .groups_header
            .as_deref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .map(|groups| proxy.granted(groups))
            .unwrap_or_default();
        return Ok(Viewer {
            person: Some(person),
            via: "auth proxy",
            csrf,
            session: None,
            granted,
        });
    }
    let viewer = |who: &Principal, session: Option<String>| {
        let (person, via) = match who {
            Principal::User(id) => (Some(id.clone()), "own token"),
            Principal::Admin => (None, "admin token"),
            Principal::Reader => (None, "read token"),
        };
        Viewer {
            person,
            via,
            csrf: csrf.clone(),
            session,
            granted: Vec::new(),
        }
    };
    let now = Utc::now();
    if let Some(header) = headers.get(AUTHORIZATION) {
        let who = crate::http::auth::reader(&app.credentials, header.to_str().ok())?;
        return Ok(viewer(&who, None));
    }
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Err(ApiError::Unauthorized("missing_credentials"));
    };
    let key = session_key(id);
    let Some(stored) = app.store.console_session(&key).await? else {
        return Err(ApiError::Unauthorized("bad_credentials"));
    };
    let who = Principal::from_key(&stored.principal);
    let ended = match &who {
        _ if stored.revoked_at.is_some() => Some("signed out"),
        _ if now >= stored.expires_at => Some("past its lifetime"),
        _ if now - stored.last_seen >= chrono_span(app.console.session_idle) => {
            Some("idle too long")
        }
        Some(who) if app.credentials.still_valid(&stored.credential, who, now) => None,
        _ => Some("its token was removed or expired"),
    };
    if let Some(why) = ended {
        if stored.revoked_at.is_none() {
            app.store.revoke_console_session(&key, now, why).await?;
        }
        return Err(ApiError::CredentialEnded(
            format!("your console session ended ({why}): sign in again"),
            "session_ended",
        ));
    }
    // Written at most once a minute, so a page's refreshes do not each write.
    if now - stored.last_seen >= chrono::Duration::seconds(60) {
        app.store.touch_console_session(&key, now).await?;
    }
    let who = who.unwrap_or(Principal::Reader);
    Ok(viewer(&who, Some(key)))
}

/// Opens a session for a token the sign-in form was given: the cookie value
/// to set, or why the token is refused.
pub async fn open(app: &AppState, token: &str) -> Result<String, ApiError> {
    let Identified { who, fingerprint } = app.credentials.identify_token(token, Utc::now())?;
    let now = Utc::now();
    let id = new_csrf();
    app.store
        .create_console_session(&ConsoleSession {
            id: session_key(&id),
            principal: who.key(),
            credential: fingerprint,
            created_at: now,
            last_seen: now,
            expires_at: now + chrono_span(app.console.session_lifetime),
            revoked_at: None,
        })
        .await?;
    // Sessions that ended a day ago are only clutter.
    if let Err(e) = app
        .store
        .prune_console_sessions(now - chrono::Duration::days(1))
        .await
    {
        tracing::warn!("pruning ended console sessions: {e}");
    }
    tracing::info!(target: "audit", who = %who.key(), "console session opened");
    Ok(id)
}

/// Ends `viewer`'s session, for every replica.
pub async fn close(app: &AppState, viewer: &Viewer) -> Result<(), ApiError> {
    if let Some(key) = &viewer.session {
        app.store
            .revoke_console_session(key, Utc::now(), "signed out")
            .await?;
        tracing::info!(target: "audit", who = ?viewer.person, "console session closed");
    }
    Ok(())
}

/// What the store keys a session by: the digest of the cookie's id, so
/// reading the table gives no cookie.
fn session_key(id: &str) -> String {
    TokenDigest::of(id).to_config()
}

fn chrono_span(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The proxy's identity header, if the request came from one of its
/// addresses and carries a usable name.
fn proxied(
    proxy: &AuthProxyConfig,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Option<String> {
    let peer = peer?.ip();
    // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
    let peer = match peer {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
        v4 => v4,
    };
    if !proxy.trusted_proxies.iter().any(|n| n.contains(&peer)) {
        return None;
    }
    let name = headers.get(proxy.header.as_str())?.to_str().ok()?.trim();
    (!name.is_empty() && name.len() <= 256).then(|| name.to_owned())
}

/// Whether a posted form is this site's own: not sent from another site
/// (`Sec-Fetch-Site`, else `Origin` against `Host`), and carrying the
/// form token that equals the cookie's (compared in constant time). A
/// client that sends neither header (curl, an old browser) is judged by
/// the form token alone.
pub fn form_ok(headers: &HeaderMap, posted: Option<&str>) -> Result<(), &'static str> {
    use subtle::ConstantTimeEq as _;
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let same_site = match (header("sec-fetch-site"), header(ORIGIN.as_str())) {
        (Some(site), _) => matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => {
            let authority = origin.split_once("://").map(|(_, a)| a);
            authority
                .is_some_and(|a| header(HOST.as_str()).is_some_and(|h| a.eq_ignore_ascii_case(h)))
        }
        (None, None) => true,
    };
    if !same_site {
        return Err("this form was posted from another site");
    }
    let token_ok = match (cookie(headers, CSRF_COOKIE), posted) {
        (Some(c), Some(p)) if c.len() >= 32 => c.as_bytes().ct_eq(p.as_bytes()).into(),
        _ => false,
    };
    if token_ok {
        Ok(())
    } else {
        Err("form token missing or wrong: reload the page and try again")
    }
}

fn new_csrf() -> String {
    uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string()
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Adds a `SameSite=Strict`, `HttpOnly` cookie; `max_age` 0 deletes it.
pub fn set_cookie(
    resp: &mut Response,
    app: &AppState,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) {
    let secure = if app.console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}");
    if let Ok(v) = HeaderValue::from_str(&text) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

/// What a refused form post answers (403, counted and logged).
pub fn refused(app: &AppState, what: &str, why: &'static str) -> Response {
    let e = ApiError::Forbidden(why);
    e.record(&app.metrics, what);
    e.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_form_from_another_site_is_refused_even_with_its_token() {
        let token = "a".repeat(64);
        let cookie = format!("{CSRF_COOKIE}={token}");
        let ok = |pairs: &[(&'static str, &str)]| {
            let mut all = vec![("cookie", cookie.as_str()), ("host", "dr.example:8080")];
            all.extend_from_slice(pairs);
            form_ok(&headers(&all), Some(&token))
        };
        assert!(
            ok(&[]).is_ok(),
            "no browser headers: the form token decides"
        );
        assert!(ok(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(ok(&[("origin", "https://dr.example:8080")]).is_ok());
        for hostile in [
            [
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://dr.example:8080"),
            ],
            [
                ("sec-fetch-site", "same-site"),
                ("origin", "https://dr.example:8080"),
            ],
            [("origin", "https://evil.example"), ("x-none", "")],
            [("origin", "null"), ("x-none", "")],
        ] {
            let e = ok(&hostile).unwrap_err();
            assert!(e.contains("another site"), "{hostile:?}: {e}");
        }
        let wrong = form_ok(
            &headers(&[
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "same-origin"),
            ]),
            Some("b"),
        );
        assert!(wrong.unwrap_err().contains("form token"));
    }
}
