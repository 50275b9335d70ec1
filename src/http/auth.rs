//! Authentication, always before a body is read: the webhook
//! (Alertmanager's `http_config.authorization` bearer or `basic_auth`), the
//! operator API (the admin token or a person's own token) and reads (any
//! token in force). The API's tokens are held as digests
//! ([`super::credentials`]); everything is compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::config::WebhookAuth;
use super::credentials::{Credentials, Principal};
use super::{ApiError, AppState};

pub async fn webhook_auth(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let checked = check(&state.webhook.auth, authorization(&req));
    admit(&state, checked, "webhook request", req, next).await
}

/// Route layer for admin-only endpoints: a route layer runs before the
/// handler's extractors, so a caller without the admin token learns
/// nothing from how its body would have been parsed.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let checked = if state.credentials.has_operators() {
        match state
            .credentials
            .identify(authorization(&req), chrono::Utc::now())
        {
            Ok(i) if i.who == Principal::Admin => Ok(()),
            Ok(_) => Err(ApiError::Unauthorized("bad_credentials")),
            Err(e) => Err(e),
        }
    } else {
        Err(disabled())
    };
    admit(&state, checked, "operator API request", req, next).await
}

/// Who an operator request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token: break-glass, vouching for whoever it names.
    Admin,
    /// A person's own token (`api.users`) or Slack user id, by directory
    /// user id.
    User(String),
    /// A person the console's auth proxy named, with the roles its groups
    /// header granted (`console.auth_proxy.roles`).
    Proxied(String, Vec<crate::access::Role>),
}

impl Caller {
    /// Who the event log names.
    pub fn actor(&self) -> String {
        match self {
            Caller::User(id) | Caller::Proxied(id, _) => id.clone(),
            Caller::Admin => "admin".to_owned(),
        }
    }
}

/// Route layer for what a person may do with their own token (vote,
/// abort): the admin token or an `api.users` token. The handler finds who
/// it was as a [`Caller`] extension.
pub async fn require_operator(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    match operator(&state.credentials, authorization(&req)) {
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

fn disabled() -> ApiError {
    ApiError::Forbidden(
        "the operator API is disabled: set api.admin_token (or DR_REACTOR_ADMIN_TOKEN) \
         or api.users",
    )
}

/// The admin token or one of `api.users`, and which (a read token is not
/// an operator's).
pub fn operator(credentials: &Credentials, header: Option<&str>) -> Result<Caller, ApiError> {
    if !credentials.has_operators() {
        return Err(disabled());
    }
    match credentials.identify(header, chrono::Utc::now())?.who {
        Principal::Admin => Ok(Caller::Admin),
        Principal::User(id) => Ok(Caller::User(id)),
        Principal::Reader => Err(ApiError::Unauthorized("bad_credentials")),
    }
}

/// Route layer for the incident API: any token in force (a read token,
/// a person's own, the admin token).
pub async fn require_read(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let checked = reader(&state.credentials, authorization(&req)).map(|_| ());
    admit(&state, checked, "read API request", req, next).await
}

/// Any token in force, and whom it names.
pub fn reader(credentials: &Credentials, header: Option<&str>) -> Result<Principal, ApiError> {
    if !credentials.has_any() {
        return Err(ApiError::Forbidden(
            "reading incidents is disabled: set api.read_tokens (or DR_REACTOR_READ_TOKEN), \
             api.users or api.admin_token",
        ));
    }
    Ok(credentials.identify(header, chrono::Utc::now())?.who)
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
    use crate::http::config::{ApiUser, BasicAuth};
    use crate::http::credentials::Tokens;
    use crate::primitives::{Secret, TokenDigest};

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
        let creds = Credentials::new(
            Tokens {
                admin: Some(TokenDigest::of("adm")),
                users: vec![ApiUser {
                    id: "U1ALICE".into(),
                    token: TokenDigest::of("alice-tok"),
                    roles: Vec::new(),
                    expires: None,
                }],
                read: vec![TokenDigest::of("reader")],
                ..Tokens::default()
            },
            None,
        );
        let who = |h: &str| operator(&creds, Some(h));
        assert_eq!(who("Bearer adm").unwrap(), Caller::Admin);
        assert_eq!(
            who("bearer alice-tok").unwrap(),
            Caller::User("U1ALICE".into())
        );
        assert!(who("Bearer alice-to").is_err());
        assert!(who("Basic alice-tok").is_err());
        assert!(
            who("Bearer reader").is_err(),
            "a read token is no operator's"
        );
        assert_eq!(
            reader(&creds, Some("Bearer reader")).unwrap(),
            Principal::Reader
        );
        assert!(operator(&creds, None).is_err());
        let none = Credentials::new(Tokens::default(), None);
        assert!(matches!(
            operator(&none, Some("Bearer x")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            reader(&none, Some("Bearer x")),
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
