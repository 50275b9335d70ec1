//! Who is looking at the console, and whether a form they post is theirs.
//!
//! Read access is the API's: a read token (or the admin token), sent as a
//! bearer header or kept in a cookie by the sign-in form. A person's own
//! token (`api.users`) reads too and lets them act as themself; so does
//! the identity a trusted authenticating proxy puts in its header, and
//! only when it comes from one of the proxy's addresses.
//!
//! Forms are protected against cross-site posts twice: every cookie is
//! `SameSite=Strict`, and every form carries a random token that must equal
//! the `drr_csrf` cookie (a page of another site can neither read nor set
//! it).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::auth::{self, Caller};
use crate::http::config::AuthProxyConfig;
use crate::http::{ApiError, AppState};

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
    /// Whether the sign-out button applies (a cookie session).
    pub cookie_session: bool,
}

impl Viewer {
    /// The caller the API would see for this viewer's actions.
    pub fn caller(&self) -> Option<Caller> {
        self.person.clone().map(Caller::User)
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
    let resolved = identify(&app, &req, csrf.clone());
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

fn identify(app: &AppState, req: &Request, csrf: String) -> Result<Viewer, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(proxy) = &app.console.auth_proxy
        && let Some(name) = proxied(proxy, peer, req.headers())
    {
        let person = proxy.users.get(&name).cloned().unwrap_or(name);
        return Ok(Viewer {
            person: Some(person),
            via: "auth proxy",
            csrf,
            cookie_session: false,
        });
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let from_cookie = cookie(req.headers(), SESSION_COOKIE).map(|t| format!("Bearer {t}"));
    let cookie_session = header.is_none() && from_cookie.is_some();
    let header = header.or(from_cookie.as_deref());
    let viewer = |person, via| Viewer {
        person,
        via,
        csrf: csrf.clone(),
        cookie_session,
    };
    // A person's own token first: it both reads and acts.
    if !app.api_users.is_empty()
        && let Ok(Caller::User(id)) = auth::operator(None, &app.api_users, header)
    {
        return Ok(viewer(Some(id), "own token"));
    }
    auth::bearer_in(&app.read_credentials(), header)?;
    Ok(viewer(None, "read token"))
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

/// Whether `token` is a credential the console accepts (checked before a
/// sign-in sets it as the session cookie).
pub fn accepts(app: &AppState, token: &str) -> bool {
    let header = format!("Bearer {token}");
    auth::bearer_in(&app.read_credentials(), Some(&header)).is_ok()
        || (!app.api_users.is_empty()
            && auth::operator(None, &app.api_users, Some(&header)).is_ok())
}

/// A form's token against the cookie's, in constant time.
pub fn csrf_ok(headers: &HeaderMap, posted: Option<&str>) -> bool {
    use subtle::ConstantTimeEq as _;
    match (cookie(headers, CSRF_COOKIE), posted) {
        (Some(c), Some(p)) if c.len() >= 32 => c.as_bytes().ct_eq(p.as_bytes()).into(),
        _ => false,
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

/// A session token is kept as it is in the cookie: it must be a cookie
/// value (no separators, no spaces).
pub fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// What a refused form post answers.
pub fn refused(app: &AppState, what: &str) -> Response {
    let e = ApiError::Forbidden("form token missing or wrong: reload the page and try again");
    e.record(&app.metrics, what);
    e.into_response()
}
