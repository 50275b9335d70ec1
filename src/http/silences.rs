//! The silences API: create, list, expire early. Who may write is checked
//! by the route layer as for abort (a person's own token, or the admin
//! token); reading needs a read token, as for incidents.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::{ApiError, AppState, ErrorBody};
use crate::rules::silence::Silence;

/// The longest a silence may last: a forgotten one must not hide a real
/// outage for ever.
const MAX_SILENCE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Alertmanager matchers, all of which must match (`zone="a"`).
    pub(super) matchers: Vec<String>,
    /// Defaults to now.
    pub(super) starts_at: Option<DateTime<Utc>>,
    /// Either `ends_at` or `duration` (`2h`), not both.
    pub(super) ends_at: Option<DateTime<Utc>>,
    pub(super) duration: Option<String>,
    /// Why, and for what work: shown on every incident it silences.
    pub(super) comment: String,
}

/// A silence and whether it is in force now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceView {
    #[serde(flatten)]
    pub silence: Silence,
    /// `active`, `pending` or `expired`.
    pub state: &'static str,
}

/// One silence, created or expired.
#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceAnswer {
    /// Always `ok`.
    pub status: &'static str,
    pub silence: SilenceView,
}

/// The silences in force or pending.
#[derive(Debug, Serialize, ToSchema)]
pub struct SilenceList {
    /// Always `ok`.
    pub status: &'static str,
    pub silences: Vec<SilenceView>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into(), "bad_silence")
}

fn state_of(s: &Silence, now: DateTime<Utc>) -> &'static str {
    if s.ends_at <= now {
        "expired"
    } else if s.starts_at > now {
        "pending"
    } else {
        "active"
    }
}

fn render(silence: Silence, now: DateTime<Utc>) -> SilenceView {
    SilenceView {
        state: state_of(&silence, now),
        silence,
    }
}

/// Silences matching incidents for planned work: they are recorded, and
/// nothing acts.
#[utoipa::path(post, path = "/api/v1/silences", tag = "silences",
    request_body = NewSilence,
    responses(
        (status = 201, description = "The silence is in force (or pending)", body = SilenceAnswer),
        (status = 400, description = "No comment, bad matchers, a bad or too long time span", body = ErrorBody),
        (status = 409, description = "A silence with this id exists", body = ErrorBody),
    ))]
pub async fn create(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewSilence>,
) -> Result<(StatusCode, Json<SilenceAnswer>), ApiError> {
    let now = Utc::now();
    let silence = build(body, caller.actor(), "api", now)?;
    super::authz::silence_allowed(&app, &caller, &silence)?;
    save(&app, &silence, now).await?;
    Ok((
        StatusCode::CREATED,
        Json(SilenceAnswer {
            status: "ok",
            silence: render(silence, now),
        }),
    ))
}

/// A new silence from what a person asked for, checked: a comment, one
/// way to say when it ends, at most [`MAX_SILENCE`], valid matchers that do
/// not match everything.
pub(super) fn build(
    body: NewSilence,
    created_by: String,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Silence, ApiError> {
    if body.comment.trim().is_empty() {
        return Err(bad("a silence needs a comment: why, and for what work"));
    }
    let starts_at = body.starts_at.unwrap_or(now);
    let ends_at = match (body.ends_at, body.duration.as_deref()) {
        (Some(end), None) => end,
        (None, Some(d)) => {
            let d = crate::primitives::duration::parse_within(
                d,
                std::time::Duration::from_secs(1),
                MAX_SILENCE,
            )
            .map_err(|e| bad(format!("duration: {e}")))?;
            crate::primitives::duration::after(starts_at, d)
        }
        _ => return Err(bad("give exactly one of ends_at and duration")),
    };
    if ends_at <= now {
        return Err(bad("ends_at is in the past"));
    }
    if (ends_at - starts_at).to_std().unwrap_or_default() > MAX_SILENCE {
        return Err(bad("a silence may last at most 30 days"));
    }
    let silence = Silence {
        id: uuid::Uuid::now_v7().to_string(),
        matchers: body.matchers,
        starts_at,
        ends_at,
        created_by,
        comment: body.comment,
        source: source.to_owned(),
        expired_by: None,
    };
    silence.check().map_err(|e| bad(e.to_string()))?;
    Ok(silence)
}

/// Stores a new silence; from then on admission applies it.
pub(super) async fn save(
    app: &AppState,
    silence: &Silence,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let inserted = app
        .store
        .insert_silence(silence, now)
        .await
        .map_err(ApiError::from)?;
    if !inserted {
        return Err(ApiError::Conflict(format!("silence {} exists", silence.id)));
    }
    tracing::warn!(silence = %silence.id, by = %silence.created_by, source = %silence.source, matchers = ?silence.matchers, until = %silence.ends_at, "silence created: {}", silence.comment);
    announce(app, silence);
    Ok(())
}

/// A silence that reaches a rule which absorbs others or fails over is
/// said in the Slack channel, whoever made it and however: such a silence
/// can hide a region outage, so the people on call should know of it.
/// After the commit and off the request's path; a failed post is logged.
fn announce(app: &AppState, silence: &Silence) {
    let (Some(slack), reached) = (
        app.slack.clone(),
        super::authz::sensitive_rules(app, &silence.matchers),
    ) else {
        return;
    };
    if reached.is_empty() {
        return;
    }
    let rules: Vec<&str> = reached.iter().map(|(name, _)| name.as_str()).collect();
    let text = format!(
        "Silence {} by {} ({}) until {}: {} — reaches {}, which absorb others or fail over: \
         their incidents will open nothing. Reason: {}",
        silence.id,
        silence.created_by,
        silence.source,
        silence
            .ends_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        silence.matchers.join(", "),
        rules.join(", "),
        silence.comment,
    );
    let id = silence.id.clone();
    tokio::spawn(async move {
        if let Err(e) = slack.post_text(&text).await {
            tracing::error!(silence = %id, "announcing a sensitive silence in Slack failed: {e}");
        }
    });
}

/// `GET /api/v1/silences`: those in force or pending, from the file and
/// the store.
#[utoipa::path(get, path = "/api/v1/silences", tag = "silences",
    responses((status = 200, description = "Silences in force or pending", body = SilenceList)))]
pub async fn list(State(app): State<Arc<AppState>>) -> Result<Json<SilenceList>, ApiError> {
    let now = Utc::now();
    let silences = app
        .incidents
        .current_silences(now)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(SilenceList {
        status: "ok",
        silences: silences.into_iter().map(|s| render(s, now)).collect(),
    }))
}

/// `DELETE /api/v1/silences/{id}`: ends a silence now. A file's silence is
/// ended by changing the file, not here, so git stays the truth for it.
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "silences",
    params(("id" = String, Path, description = "The silence id")),
    responses(
        (status = 200, description = "The silence has ended", body = SilenceAnswer),
        (status = 404, description = "No such silence", body = ErrorBody),
        (status = 409, description = "It comes from the silences file: remove it there", body = ErrorBody),
    ))]
pub async fn expire(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SilenceAnswer>, ApiError> {
    super::authz::authorize(&app, &caller, crate::access::Action::ExpireSilence)?;
    if app.incidents.is_file_silence(&id) {
        return Err(ApiError::Conflict(format!(
            "silence {id} comes from the silences file; remove it there and reload"
        )));
    }
    let now = Utc::now();
    let by = caller.actor();
    let silence = app
        .store
        .expire_silence(&id, &by, now)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("silence {id}")))?;
    tracing::warn!(silence = %id, by = %by, "silence expired");
    Ok(Json(SilenceAnswer {
        status: "ok",
        silence: render(silence, now),
    }))
}
