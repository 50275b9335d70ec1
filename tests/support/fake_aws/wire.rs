//! The fake's wire format: answers as SSM (AWS JSON 1.1) and Lambda
//! (REST-JSON) shape them, and the region a SigV4-signed request is for.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ACCESS_KEY_ID, Op, SSM_JSON};

/// What one request gets: status, headers, body, and how long to hold it.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Vec<u8>,
    pub(super) delay: Option<Duration>,
}

impl Answer {
    pub(super) fn json(status: StatusCode, content_type: &str, body: &Value) -> Answer {
        Answer {
            status,
            headers: vec![
                ("content-type", content_type.into()),
                ("x-amzn-requestid", uuid::Uuid::now_v7().to_string()),
            ],
            body: serde_json::to_vec(body).expect("JSON serializes"),
            delay: None,
        }
    }

    pub(super) fn ssm_error(status: StatusCode, error_type: &str, message: &str) -> Answer {
        Answer::json(
            status,
            SSM_JSON,
            &json!({"__type": error_type, "message": message}),
        )
    }

    pub(super) fn lambda_error(status: StatusCode, error_type: &str, message: &str) -> Answer {
        let mut a = Answer::json(
            status,
            "application/json",
            &json!({"Type": "User", "message": message}),
        );
        a.headers.push(("x-amzn-errortype", error_type.into()));
        a
    }

    pub(super) fn error(op: Op, status: StatusCode, error_type: &str, message: &str) -> Answer {
        if op.is_lambda() {
            Answer::lambda_error(status, error_type, message)
        } else {
            Answer::ssm_error(status, error_type, message)
        }
    }

    pub(super) async fn send(self) -> Response {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let mut resp = (self.status, self.body).into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(
                name,
                HeaderValue::from_str(&value).expect("header values are ASCII"),
            );
        }
        resp
    }
}

/// The region of a SigV4-signed request for `service`, or the 403 AWS
/// would give. Checks the shape of the signature, not its value.
pub(super) fn signed_region(headers: &HeaderMap, op: Op) -> Result<String, Answer> {
    let deny = |kind: &str, msg: String| Answer::error(op, StatusCode::FORBIDDEN, kind, &msg);
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(deny(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".into(),
        ));
    };
    let scope = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .and_then(|rest| rest.split(", ").find_map(|p| p.strip_prefix("Credential=")))
        .ok_or_else(|| {
            deny(
                "IncompleteSignature",
                format!("not a SigV4 Authorization header: {auth}"),
            )
        })?;
    let has_signature = auth.split(", ").any(|p| {
        p.strip_prefix("Signature=")
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !has_signature || !headers.contains_key("x-amz-date") {
        return Err(deny(
            "IncompleteSignature",
            "Signature and X-Amz-Date are required".into(),
        ));
    }
    match scope.split('/').collect::<Vec<_>>().as_slice() {
        [key, _date, region, service, "aws4_request"] => {
            if *key != ACCESS_KEY_ID {
                Err(deny(
                    "UnrecognizedClientException",
                    format!("The security token included in the request is invalid ({key})"),
                ))
            } else if *service != op.service() {
                Err(deny(
                    "InvalidSignatureException",
                    format!(
                        "Credential should be scoped to correct service: '{}'.",
                        op.service()
                    ),
                ))
            } else {
                Ok(region.to_string())
            }
        }
        _ => Err(deny(
            "IncompleteSignature",
            format!("malformed credential scope {scope}"),
        )),
    }
}
