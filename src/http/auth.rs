//! Webhook authentication: Alertmanager's `http_config.authorization`
//! (bearer) or `basic_auth`. Compared in constant time.

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

/// Operator endpoints: the admin bearer token, never the webhook's.
pub fn admin(expected: Option<&Secret>, header: Option<&str>) -> Result<(), ApiError> {
    let expected = expected.ok_or(ApiError::Forbidden(
        "the operator API is disabled: set api.admin_token (or DR_REACTOR_ADMIN_TOKEN)",
    ))?;
    let header = header.ok_or(ApiError::Unauthorized("missing_credentials"))?;
    match header.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && ct_eq(token.trim(), expected.expose()) =>
        {
            Ok(())
        }
        _ => Err(ApiError::Unauthorized("bad_credentials")),
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
    fn bearer_only_refuses_basic() {
        let a = WebhookAuth {
            basic: None,
            ..auth()
        };
        assert!(check(&a, Some("Basic YW06cHc=")).is_err());
    }
}
