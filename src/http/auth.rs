//! Authentication, always before a body is read: the webhook
//! (Alertmanager's `http_config.authorization` bearer or `basic_auth`), the
//! operator API (admin token) and reads (read tokens, admin implied).
//! Compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::config::WebhookAuth;
use super::{ApiError, AppState};
use crate::primitives::Secret;

pub async fn webhook_auth(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let checked = check(&state.webhook.auth, authorization(&req));
    admit(&state, checked, "webhook request", req, next).await
}

/// Route layer for operator endpoints (reload, approve, deny): a route
/// layer runs before the handler's extractors, so a caller without the
/// admin token learns nothing from how its body would have been parsed.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let checked = admin(state.admin_token.as_ref(), authorization(&req));
    admit(&state, checked, "operator API request", req, next).await
}

/// Route layer for the incident API: a read token or the admin token.
pub async fn require_read(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let checked = bearer_in(&state.read_credentials(), authorization(&req));
    admit(&state, checked, "read API request", req, next).await
}

/// Passes the request on, or refuses it (counted and logged) untouched.
async fn admit(
    state: &AppState,
    checked: Result<(), ApiError>,
    what: &str,
    req: Request,
    next: Next,
) -> Response {
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => {
            e.record(&state.metrics, what);
            e.into_response()
        }
    }
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Operator endpoints: the admin bearer token, never the webhook's.
pub fn admin(expected: Option<&Secret>, header: Option<&str>) -> Result<(), ApiError> {
    let expected = expected.ok_or(ApiError::Forbidden(
        "the operator API is disabled: set api.admin_token (or DR_REACTOR_ADMIN_TOKEN)",
    ))?;
    bearer_in(&[expected], header)
}

/// A bearer token that is one of `accepted`. Every candidate is compared,
/// so timing does not tell which one (or whether any) came close. Taking
/// the set, not the config, lets other kinds of token join it later.
pub fn bearer_in(accepted: &[&Secret], header: Option<&str>) -> Result<(), ApiError> {
    if accepted.is_empty() {
        return Err(ApiError::Forbidden(
            "reading incidents is disabled: set api.read_tokens (or DR_REACTOR_READ_TOKEN) or api.admin_token",
        ));
    }
    let header = header.ok_or(ApiError::Unauthorized("missing_credentials"))?;
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(ApiError::Unauthorized("bad_credentials")),
    };
    let matched = accepted
        .iter()
        .fold(false, |any, s| any | ct_eq(token, s.expose()));
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("bad_credentials"))
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

pub fn check(auth: &WebhookAuth, header: Option<&str>) -> Result<(), ApiError> {
    if auth.insecure_no_auth && auth.bearer_token.is_none() && auth.basic.is_none() {
        return Ok(());
    }
    let header = header.ok_or(ApiError::Unauthorized("missing_credentials"))?;
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    let ok = if scheme.eq_ignore_ascii_case("bearer") {
        auth.bearer_token
            .as_ref()
            .is_some_and(|t| ct_eq(value.trim(), t.expose()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match (
            decoded.as_deref().and_then(|d| d.split_once(':')),
            &auth.basic,
        ) {
            (Some((user, pass)), Some(basic)) => {
                // Evaluate both so timing does not tell which one was wrong.
                let u = ct_eq(user, &basic.username);
                let p = ct_eq(pass, basic.password.expose());
                u & p
            }
            _ => false,
        }
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("bad_credentials"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::config::BasicAuth;

    fn auth() -> WebhookAuth {
        WebhookAuth {
            bearer_token: Some(Secret::new("tok")),
            basic: Some(BasicAuth {
                username: "am".into(),
                password: Secret::new("pw"),
            }),
            insecure_no_auth: false,
        }
    }

    #[test]
    fn bearer_and_basic() {
        let a = auth();
        assert!(check(&a, Some("Bearer tok")).is_ok());
        assert!(check(&a, Some("bearer tok")).is_ok());
        assert!(check(&a, Some("Bearer tok2")).is_err());
        assert!(check(&a, Some("Basic YW06cHc=")).is_ok()); // am:pw
        assert!(check(&a, Some("Basic YW06cHg=")).is_err()); // am:px
        assert!(check(&a, Some("Basic !!!")).is_err());
        assert!(check(&a, None).is_err());
        assert!(check(&a, Some("Token tok")).is_err());
    }

    #[test]
    fn bearer_in_accepts_any_listed_token_only() {
        let (a, b) = (Secret::new("read-1"), Secret::new("admin"));
        let set = [&a, &b];
        assert!(bearer_in(&set, Some("Bearer read-1")).is_ok());
        assert!(bearer_in(&set, Some("bearer admin")).is_ok());
        for bad in [
            Some("Bearer read-2"),
            Some("Basic cmVhZC0x"),
            Some("read-1"),
            None,
        ] {
            let e = bearer_in(&set, bad).unwrap_err();
            assert!(matches!(e, ApiError::Unauthorized(_)), "{bad:?}: {e}");
        }
        assert!(matches!(
            bearer_in(&[], Some("Bearer read-1")),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn bearer_only_refuses_basic() {
        let a = WebhookAuth {
            basic: None,
            ..auth()
        };
        assert!(check(&a, Some("Basic YW06cHc=")).is_err());
    }
}
