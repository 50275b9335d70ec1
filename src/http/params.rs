//! Every path and query value checked once, at the edge, for what an id,
//! a cursor or a filter can be: at most [`MAX_VALUE`] bytes, no control
//! character (NUL above all: PostgreSQL refuses it in text, and a refusal
//! from the store must never look like a store outage). A bad one is a 400
//! that names the parameter, before any handler or store sees it.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Longer than any id, cursor or filter value this API hands out.
pub const MAX_VALUE: usize = 512;

/// What is wrong with `value` as the value of parameter `name`, if anything.
fn check(name: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_VALUE || value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            format!(
                "parameter {name}: expected at most {MAX_VALUE} bytes with no control \
                 characters (NUL included)"
            ),
            "bad_parameter",
        ));
    }
    Ok(())
}

/// Percent-decodes one path segment (as the router does before a handler
/// sees it); bytes that are not UTF-8 are themselves a bad value.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = segment.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Route layer: the route's `{params}` and every query value, checked.
pub async fn checked(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    if let Err(e) = check_request(matched.as_ref().map(MatchedPath::as_str), &req) {
        return e.into_response();
    }
    next.run(req).await
}

fn check_request(template: Option<&str>, req: &Request) -> Result<(), ApiError> {
    if let Some(template) = template {
        for (t, actual) in template.split('/').zip(req.uri().path().split('/')) {
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                let value = decode(actual).ok_or_else(|| {
                    ApiError::BadRequest(format!("parameter {name}: not UTF-8"), "bad_parameter")
                })?;
                check(name, &value)?;
            }
        }
    }
    if let Some(query) = req.uri().query() {
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            check(&k, &k).and_then(|()| check(&k, &v))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn nul_and_control_characters_are_refused_naming_the_parameter() {
        let t = Some("/api/v1/incidents/{id}");
        assert!(check_request(t, &req("/api/v1/incidents/0193-abc")).is_ok());
        let e = check_request(t, &req("/api/v1/incidents/ab%00cd")).unwrap_err();
        assert!(e.to_string().starts_with("parameter id:"), "{e}");
        let e = check_request(None, &req("/api/v1/incidents?scenario=zone%00")).unwrap_err();
        assert!(e.to_string().starts_with("parameter scenario:"), "{e}");
        let long = format!("/api/v1/incidents/{}", "a".repeat(MAX_VALUE + 1));
        assert!(check_request(t, &req(&long)).is_err());
        assert!(
            check_request(t, &req("/api/v1/incidents/%FF%FE")).is_err(),
            "not UTF-8"
        );
        assert!(check_request(None, &req("/api/v1/incidents?cursor=a%0Ab")).is_err());
    }
}
