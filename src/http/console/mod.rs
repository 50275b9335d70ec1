//! The operator console: server-rendered pages at `/` on the API's
//! listener, read-authenticated like the API (see [`session`]). No
//! JavaScript build, nothing from a CDN: the templates under `templates/`
//! are compiled into the binary, the CSS is inline, and one small inline
//! script counts the RTO budget down.
//!
//! - [`incidents`]: the incident list and one incident, with the Approve,
//!   Deny and Abort forms (the API's own code path and checks);
//! - [`overview`]: the catalogue as a graph, the rules and their open
//!   groups, health;
//! - [`graph`]: the dependency graph laid out in layers, as SVG.

mod graph;
pub(super) mod incidents;
pub(super) mod overview;
pub(super) mod session;

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use minijinja::Environment;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{AppState, ErrorBody};

/// The templates, compiled in.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("sign_in.html", include_str!("templates/sign_in.html")),
        ("incidents.html", include_str!("templates/incidents.html")),
        ("incident.html", include_str!("templates/incident.html")),
        ("catalogue.html", include_str!("templates/catalogue.html")),
        ("rules.html", include_str!("templates/rules.html")),
        ("health.html", include_str!("templates/health.html")),
    ] {
        // The templates are part of the source: a syntax error in one is
        // caught by the tests, which render every page.
        if let Err(e) = env.add_template(name, text) {
            tracing::error!("console template {name}: {e}");
        }
    }
    env
});

/// Renders `template` with `ctx` as an HTML page, never cached (it shows
/// live state and who is signed in). Its one `<style>` and one `<script>`
/// carry a nonce fresh for this page, which the Content-Security-Policy
/// names: nothing else runs or styles the page, so markup that slipped
/// through escaping would do nothing.
fn page(status: StatusCode, template: &str, ctx: Value) -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let ctx = with(ctx, serde_json::json!({ "nonce": nonce }));
    let rendered = TEMPLATES.get_template(template).and_then(|t| t.render(ctx));
    match rendered {
        Ok(html) => (
            status,
            [
                (CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                (CACHE_CONTROL, "no-store".to_owned()),
                (CONTENT_SECURITY_POLICY, page_policy(&nonce)),
            ],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("rendering console page {template}: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rendering {template} failed: {e}"),
            )
                .into_response()
        }
    }
}

/// The policy of a console page: its own nonce for its style and script,
/// forms only to this site, never framed.
fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// The policy of every other answer (JSON, redirects, errors): nothing to
/// run, nothing to frame.
const DEFAULT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Route layer for every answer the listener gives: a policy for answers
/// that set none (a page sets its own), no type sniffing, no framing (for
/// browsers that predate `frame-ancestors`), and no referrer, since a
/// console URL names incidents.
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(DEFAULT_POLICY));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// What every page's frame shows: who is signed in, the form token, which
/// tab is open, and the kill switch when it is on (a store that does not
/// answer shows that it could not be read, never "off").
async fn frame(app: &AppState, viewer: &session::Viewer, tab: &str) -> Value {
    let kill_switch = match app.incidents.kill_switch().await {
        Ok(s) if s.engaged => serde_json::json!(s),
        Ok(_) => Value::Null,
        Err(e) => serde_json::json!({"unknown": e.to_string()}),
    };
    serde_json::json!({
        "kill_switch": kill_switch,
        "tab": tab,
        "viewer": {
            "person": viewer.person,
            "via": viewer.via,
            "signed_out_possible": viewer.session.is_some(),
        },
        "csrf": viewer.csrf,
        "refresh": app.console.refresh.as_secs().max(1),
    })
}

/// Merges `extra` into `base` (both objects).
fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// The sign-in page, answered with 401 to a request without a usable
/// credential; signing in returns to `next`.
pub(super) fn sign_in_page(app: &AppState, csrf: &str, next: &str, error: String) -> Response {
    let proxy = app.console.auth_proxy.as_ref().map(|p| p.header.clone());
    page(
        StatusCode::UNAUTHORIZED,
        "sign_in.html",
        serde_json::json!({
            "tab": "",
            "csrf": csrf,
            "next": local_path(next),
            "error": error,
            "proxy_header": proxy,
        }),
    )
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    token: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /sign-in`: keeps an accepted token in the session cookie.
#[utoipa::path(post, path = "/sign-in", tag = "console",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`token`, `csrf`, and `next`: where to go after"),
    responses(
        (status = 303, description = "Signed in: on to `next` (a path of this site)"),
        (status = 400, description = "An unreadable form", body = ErrorBody),
        (status = 401, description = "The token is not accepted: the sign-in page again", body = String, content_type = "text/html"),
        (status = 403, description = "A bad form token, or a form from another site", body = ErrorBody),
        (status = 503, description = "The store did not answer: no session opened", body = ErrorBody),
    ))]
pub(super) async fn sign_in(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(form) = form::<SignInForm>(&body) else {
        return bad_form();
    };
    if let Err(why) = session::form_ok(&headers, Some(&form.csrf)) {
        return session::refused(&app, "console sign-in", why);
    }
    let id = match session::open(&app, form.token.trim()).await {
        Ok(id) => id,
        Err(e @ crate::http::ApiError::Unavailable(_)) => return e.into_response(),
        Err(e) => {
            e.record(&app.metrics, "console sign-in");
            let said = match e {
                crate::http::ApiError::CredentialEnded(why, _) => why,
                _ => "that token is not accepted: use a read token or your own token".into(),
            };
            return sign_in_page(&app, &form.csrf, &form.next, said);
        }
    };
    let mut resp = Redirect::to(&local_path(&form.next)).into_response();
    session::set_cookie(&mut resp, &app, session::SESSION_COOKIE, &id, None);
    resp
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /sign-out`: ends the session, on every replica, and forgets its
/// cookie.
#[utoipa::path(post, path = "/sign-out", tag = "console",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`csrf`"),
    responses(
        (status = 303, description = "Signed out: back to `/`"),
        (status = 403, description = "A bad form token, or a form from another site", body = ErrorBody),
        (status = 503, description = "The store did not answer: the session is not ended yet", body = ErrorBody),
    ))]
pub(super) async fn sign_out(
    State(app): State<Arc<AppState>>,
    axum::Extension(viewer): axum::Extension<session::Viewer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let posted = form::<CsrfForm>(&body).map(|f| f.csrf);
    if let Err(why) = session::form_ok(&headers, posted.as_deref()) {
        return session::refused(&app, "console sign-out", why);
    }
    if let Err(e) = session::close(&app, &viewer).await {
        return e.into_response();
    }
    let mut resp = Redirect::to("/").into_response();
    session::set_cookie(&mut resp, &app, session::SESSION_COOKIE, "", Some(0));
    resp
}

/// A form body (`application/x-www-form-urlencoded`) as `T`.
fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let pairs: serde_json::Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(Value::Object(pairs)).ok()
}

fn bad_form() -> Response {
    crate::http::ApiError::BadRequest("unreadable form".into(), "bad_body").into_response()
}

/// Only a path of this site: anything else (`//evil`, `https://…`)
/// becomes `/`, so the sign-in form cannot send anyone elsewhere.
fn local_path(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

/// A time for people: `2026-11-30 13:45:00Z`.
fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `3m ago`, `in 12m`: coarse, for scanning a list.
fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let span = crate::primitives::duration::coarse(secs.unsigned_abs());
    if secs >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// Percent-encodes one query value.
fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path("/incidents/x?y=1"), "/incidents/x?y=1");
        for away in ["//evil.example/", "https://evil.example/", "/\\evil", ""] {
            assert_eq!(local_path(away), "/", "{away}");
        }
    }

    #[test]
    fn every_template_compiles() {
        for name in [
            "base.html",
            "sign_in.html",
            "incidents.html",
            "incident.html",
            "catalogue.html",
            "rules.html",
            "health.html",
        ] {
            TEMPLATES.get_template(name).unwrap();
        }
    }

    #[test]
    fn times_read_relative_to_now() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(relative(now - chrono::Duration::seconds(90), now), "1m ago");
        assert_eq!(relative(now + chrono::Duration::hours(2), now), "in 2h");
    }
}
