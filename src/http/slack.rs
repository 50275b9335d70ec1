//! Slack's requests: the signature check every one of them passes first,
//! and slash commands (`/dr declare`, `/dr silence`). Button clicks are in
//! [`super::api::slack_interaction`].

use super::auth::Caller;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::silences::{NewSilence, build, save};
use super::{ApiError, AppState, ErrorBody};
use crate::approval::commands::{Command, USAGE, parse_command};
use crate::approval::slack::{Slack, VerifyError};
use crate::incident::Declaration;

/// Slack's signature, timestamp and replay checks; a refusal is counted
/// and logged before it is answered.
pub(super) async fn verified<'a>(
    app: &'a AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'a Slack, ApiError> {
    let slack = app
        .slack
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("slack is not configured".into()))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = slack
        .verify(
            &app.store,
            header("x-slack-signature"),
            header("x-slack-request-timestamp"),
            body,
            Utc::now(),
        )
        .await
    {
        let refused = match &e {
            VerifyError::Store(_) => ApiError::Unavailable(e.reason().into()),
            _ => ApiError::Unauthorized(e.reason()),
        };
        refused.record(&app.metrics, &format!("slack request ({e})"));
        return Err(refused);
    }
    Ok(slack)
}

/// An answer to Slack, shown only to the person who clicked or typed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlackReply {
    /// Always `ephemeral`.
    pub response_type: &'static str,
    /// Always false: a button's message stays as it is.
    pub replace_original: bool,
    pub text: String,
}

/// An answer only the person who asked sees; a button's message stays as
/// it is (the shared message is updated separately).
pub(super) fn ephemeral(text: impl Into<String>) -> Json<SlackReply> {
    Json(SlackReply {
        response_type: "ephemeral",
        replace_original: false,
        text: text.into(),
    })
}

/// `POST /api/v1/slack/commands`: `/dr declare …` and `/dr silence …`, as
/// the Slack user who typed them. Slack shows the answer to that user only;
/// mistakes are answered (200) with what was wrong, as Slack expects.
#[utoipa::path(post, path = "/api/v1/slack/commands", tag = "slack",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Slack's slash-command form (`command`, `text`, `user_id`, …)"),
    responses(
        (status = 200, description = "The answer only the person who typed sees (mistakes too)", body = SlackReply),
        (status = 404, description = "Slack is not configured", body = ErrorBody),
    ))]
pub async fn command(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<SlackReply>, ApiError> {
    verified(&app, &headers, &body).await?;
    let cmd = match parse_command(&body) {
        Ok(c) => c,
        Err(e) => return Ok(ephemeral(e)),
    };
    let user = cmd.user_id;
    let caller = Caller::User(user.clone());
    let now = Utc::now();
    let needs = match &cmd.command {
        Command::Help => None,
        Command::Declare { .. } => Some(crate::access::Action::Declare),
        // What the silence reaches decides: checked once it is built.
        Command::Silence { .. } => None,
        Command::KillSwitch { .. } => Some(crate::access::Action::KillSwitch),
    };
    if let Some(action) = needs
        && let Err(e) = super::authz::authorize(&app, &caller, action)
    {
        return Ok(ephemeral(format!("Not done: {e}")));
    }
    let text = match cmd.command {
        Command::Help => USAGE.to_owned(),
        Command::Declare {
            scenario,
            rule,
            labels,
            reason,
        } => {
            let d = Declaration {
                scenario,
                rule,
                labels,
                reason,
            };
            let rules = app.rules.get();
            match app.incidents.declare(&d, &user, &rules, now).await {
                Ok(inc) => format!(
                    "Declared incident `{}` ({}): it is planned, held and approved like a detected one.",
                    inc.id, inc.state
                ),
                Err(e) => format!("Not declared: {e}"),
            }
        }
        Command::Silence {
            duration,
            matchers,
            comment,
        } => {
            let ask = NewSilence {
                matchers,
                starts_at: None,
                ends_at: None,
                duration: Some(duration),
                comment,
            };
            match build(ask, user, "slack", now).and_then(|s| {
                super::authz::silence_allowed(&app, &caller, &s)?;
                Ok(s)
            }) {
                Ok(s) => match save(&app, &s, now).await {
                    Ok(()) => format!(
                        "Silence `{}` until {}: matching incidents open nothing.",
                        s.id,
                        s.ends_at.to_rfc3339()
                    ),
                    Err(e) => format!("Not silenced: {e}"),
                },
                Err(e) => format!("Not silenced: {e}"),
            }
        }
        Command::KillSwitch {
            engaged,
            abort_running,
            reason,
        } => match app
            .incidents
            .set_kill_switch(engaged, &user, &reason, abort_running, now)
            .await
        {
            Ok(change) if engaged => format!(
                "Kill switch ON: no plan step starts until it is off.{}",
                if change.aborted.is_empty() {
                    " Running steps finish.".to_owned()
                } else {
                    format!(" Asked to abort: {}.", change.aborted.join(", "))
                }
            ),
            Ok(_) => "Kill switch off: approved plans start again.".to_owned(),
            Err(e) => format!("Kill switch not changed: {e}"),
        },
    };
    Ok(ephemeral(text))
}
