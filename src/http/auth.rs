//! Authentication, always before a body is read: the webhook
//! (Alertmanager's `http_config.authorization` bearer or `basic_auth`), the
//! operator API (admin token; votes and aborts also each person's own
//! token) and reads (read tokens, admin implied).
//! Compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::config::{ApiUser, WebhookAuth};
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

/// Who an operator request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token: break-glass, vouching for whoever it names.
    Admin,
    /// A person's own token (`api.users`), by directory user id.
    User(String),
}

/// Route layer for what a person may do with their own token (vote,
/// abort): the admin token or an `api.users` token. The handler finds who
/// it was as a [`Caller`] extension.
pub async fn require_operator(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    match operator(
        state.admin_token.as_ref(),
        &state.api_users,
        authorization(&req),
    ) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            e.record(&state.metrics, "operator API request");
            e.into_response()
        }
    }
}

/// The admin token or one of `users`, and which. Every token is compared,
/// in constant time, so the time taken does not tell which one came close.
pub fn operator(
    admin: Option<&Secret>,
    users: &[ApiUser],
    header: Option<&str>,
) -> Result<Caller, ApiError> {
    if admin.is_none() && users.is_empty() {
        return Err(ApiError::Forbidden(
            "the operator API is disabled: set api.admin_token (or DR_REACTOR_ADMIN_TOKEN) \
             or api.users",
        ));
    }
    let header = header.ok_or(ApiError::Unauthorized("missing_credentials"))?;
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(ApiError::Unauthorized("bad_credentials")),
    };
    let mut caller = None;
    if admin.is_some_and(|a| ct_eq(token, a.expose())) {
        caller = Some(Caller::Admin);
    }
    for u in users {
        if ct_eq(token, u.token.expose()) {
            caller = Some(Caller::User(u.id.clone()));
        }
    }
    caller.ok_or(ApiError::Unauthorized("bad_credentials"))
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
    fn operator_tokens_name_their_caller() {
        let admin = Secret::new("adm");
        let users = [ApiUser {
            id: "U1ALICE".into(),
            token: Secret::new("alice-tok"),
            roles: Vec::new(),
        }];
        let who = |h: &str| operator(Some(&admin), &users, Some(h));
        assert_eq!(who("Bearer adm").unwrap(), Caller::Admin);
        assert_eq!(
            who("bearer alice-tok").unwrap(),
            Caller::User("U1ALICE".into())
        );
        assert!(who("Bearer alice-to").is_err());
        assert!(who("Basic alice-tok").is_err());
        assert!(operator(Some(&admin), &users, None).is_err());
        assert!(matches!(
            operator(None, &[], Some("Bearer x")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(
            super::admin(Some(&admin), Some("Bearer alice-tok")).is_err(),
            "a user token is not the admin token"
        );
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
