//! Webhook authentication: Alertmanager's `http_config.authorization`
//! (bearer) or `basic_auth`. Compared in constant time.

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
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match check(&state.webhook.auth, header) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            e.record(&state.metrics, "webhook request");
            e.into_response()
        }
    }
}

/// Who an operator request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token: break-glass, vouching for whoever it names.
    Admin,
    /// A person's own token (`api.users`), by directory user id.
    User(String),
}

/// Operator endpoints: the admin bearer token, never the webhook's.
pub fn admin(expected: Option<&Secret>, header: Option<&str>) -> Result<(), ApiError> {
    match operator(expected, &[], header)? {
        Caller::Admin => Ok(()),
        Caller::User(_) => Err(ApiError::Unauthorized("bad_credentials")),
    }
}

/// Operator endpoints a person may use with their own token (votes): the
/// admin token or one of `users`. Every token is compared, in constant
/// time, so the time taken does not tell which one was close.
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
    fn bearer_only_refuses_basic() {
        let a = WebhookAuth {
            basic: None,
            ..auth()
        };
        assert!(check(&a, Some("Basic YW06cHc=")).is_err());
    }
}
