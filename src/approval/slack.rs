//! Slack: one message per incident (scenario, evidence, services, the plan
//! in order, RTO budget, Approve / Deny), updated as the incident moves; and
//! verification of the interaction requests Slack sends back.
//!
//! The Web API is reached with slack-morphism's hyper client; its base URL
//! is configurable, which is how tests point the real client at a fake.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use crate::primitives::Secret;
use crate::store::Store;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub bot_token: Secret,
    pub signing_secret: Secret,
    /// Channel id (C…) the incident messages go to.
    pub channel: String,
    /// Slack's Web API base; only tests and proxies change it.
    #[serde(default)]
    pub api_url: Option<String>,
}

/// Where an incident's message is, persisted with the incident's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

/// What the message shows.
#[derive(Debug, Clone, Default)]
pub struct IncidentView {
    pub incident_id: String,
    pub scenario: String,
    pub severity: String,
    pub state: String,
    pub group: String,
    /// A drill's: the header and the notification say DRILL, so nobody
    /// takes a rehearsal for a real failure.
    pub drill: bool,
    /// A failback's: the failover incident it undoes.
    pub failback_of: Option<String>,
    /// One line per signal.
    pub evidence: Vec<String>,
    pub services: Vec<String>,
    /// One line per step, in order, with its status.
    pub plan: Vec<String>,
    /// The plan's digest: shown, and carried by the buttons, so a click
    /// approves exactly the plan the clicker saw.
    pub plan_digest: String,
    /// Incidents this one absorbed, one line each.
    pub absorbed: Vec<String>,
    /// Services the evidence names that the approved plan does not cover.
    pub not_covered: Vec<String>,
    /// Runbooks the plan calls that the readiness check found not ready,
    /// as `DR-Restore in ap-northeast-1 (document not found)`.
    pub not_ready: Vec<String>,
    pub rto: Option<String>,
    /// Who voted, and how.
    pub votes: Vec<String>,
    pub status_line: Option<String>,
    /// Show Approve / Deny.
    pub actionable: bool,
    /// Show Abort: the plan is approved or running.
    pub abortable: bool,
    /// Show Retry: the plan failed.
    pub retryable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("slack {method}: {message}")]
    Api {
        method: &'static str,
        message: String,
    },
    #[error("slack client: {0}")]
    Client(String),
}

pub const APPROVE: &str = "dr_approve";
pub const DENY: &str = "dr_deny";
pub const ABORT: &str = "dr_abort";
pub const RETRY: &str = "dr_retry";

/// What a button click asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Click {
    Approve,
    Deny,
    /// Stop an approved or running plan.
    Abort,
    /// Run a failed plan again from its failed step.
    Retry,
}

pub struct Slack {
    client: SlackHyperClient,
    token: SlackApiToken,
    channel: String,
    verifier: SlackEventSignatureVerifier,
}

/// Why a request claiming to be from Slack was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("signature or timestamp invalid: {0}")]
    Invalid(String),
    #[error("request replayed")]
    Replayed,
    /// Whether it is a replay cannot be told: refused, Slack retries.
    #[error("replay check unavailable: {0}")]
    Store(String),
}

impl VerifyError {
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Missing(_) => "slack_missing_signature",
            VerifyError::Invalid(_) => "slack_bad_signature",
            VerifyError::Replayed => "slack_replayed",
            VerifyError::Store(_) => "slack_replay_check_unavailable",
        }
    }
}

/// A click on Approve or Deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub user_id: String,
    pub user_name: String,
    pub click: Click,
    pub incident_id: String,
    /// The digest of the plan the message showed when it was clicked.
    pub plan_digest: Option<String>,
}

impl Slack {
    pub fn new(cfg: &SlackConfig) -> Result<Slack, SlackError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| SlackError::Client(format!("loading CA certificates: {e}")))?;
        // Slack itself is HTTPS only; plain http is allowed just for an
        // explicitly configured base URL (a local fake or a proxy).
        let https = match &cfg.api_url {
            Some(url) if url.starts_with("http://") => builder.https_or_http(),
            _ => builder.https_only(),
        }
        .enable_http1()
        .enable_http2()
        .build();
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(url) = &cfg.api_url {
            connector = connector.with_slack_api_url(url);
        }
        Ok(Slack {
            client: SlackClient::new(connector),
            token: SlackApiToken::new(cfg.bot_token.expose().to_owned().into()),
            channel: cfg.channel.clone(),
            verifier: SlackEventSignatureVerifier::new(
                &cfg.signing_secret.expose().to_owned().into(),
            ),
        })
    }

    pub async fn post(&self, view: &IncidentView) -> Result<MessageRef, SlackError> {
        self.send(SlackApiChatPostMessageRequest::new(
            self.channel.clone().into(),
            content(view)?,
        ))
        .await
    }

    async fn send(&self, req: SlackApiChatPostMessageRequest) -> Result<MessageRef, SlackError> {
        let resp = self
            .client
            .open_session(&self.token)
            .chat_post_message(&req)
            .await
            .map_err(|e| SlackError::Api {
                method: "chat.postMessage",
                message: e.to_string(),
            })?;
        Ok(MessageRef {
            channel: resp.channel.to_string(),
            ts: resp.ts.to_string(),
        })
    }

    /// A plain message, not tied to an incident (runbook readiness).
    pub async fn post_text(&self, text: &str) -> Result<MessageRef, SlackError> {
        let content = SlackMessageContent::new().with_text(super::mrkdwn::truncate(
            &super::mrkdwn::escape(text),
            super::mrkdwn::SECTION_MAX,
        ));
        self.send(SlackApiChatPostMessageRequest::new(
            self.channel.clone().into(),
            content,
        ))
        .await
    }

    pub async fn update(&self, msg: &MessageRef, view: &IncidentView) -> Result<(), SlackError> {
        let req = SlackApiChatUpdateRequest::new(
            msg.channel.clone().into(),
            content(view)?,
            msg.ts.clone().into(),
        );
        self.client
            .open_session(&self.token)
            .chat_update(&req)
            .await
            .map_err(|e| SlackError::Api {
                method: "chat.update",
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// The stateless part of [`Slack::verify`]: headers present, the HMAC
    /// right and the timestamp within five minutes of the clock. Returns
    /// the signature, for the replay check.
    pub fn check_signature<'a>(
        &self,
        signature: Option<&'a str>,
        timestamp: Option<&str>,
        body: &[u8],
    ) -> Result<&'a str, VerifyError> {
        let signature = signature.ok_or(VerifyError::Missing("X-Slack-Signature"))?;
        let timestamp = timestamp.ok_or(VerifyError::Missing("X-Slack-Request-Timestamp"))?;
        let body = std::str::from_utf8(body)
            .map_err(|_| VerifyError::Invalid("body is not UTF-8".into()))?;
        self.verifier
            .verify(signature, body, timestamp)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        Ok(signature)
    }

    /// Slack's v0 scheme: HMAC-SHA256 of `v0:{timestamp}:{body}` with the
    /// signing secret, a timestamp within five minutes, and (ours) never the
    /// same signature twice, across replicas and restarts (the store keeps
    /// the signatures seen within those five minutes).
    pub async fn verify(
        &self,
        store: &Store,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let signature = self.check_signature(signature, timestamp, body)?;
        let keep =
            chrono::Duration::seconds(SlackEventSignatureVerifier::MAX_TIMESTAMP_AGE_SECONDS);
        match store.first_sighting(signature, now, keep).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(VerifyError::Replayed),
            Err(e) => Err(VerifyError::Store(e.to_string())),
        }
    }
}

/// Parses a `block_actions` interaction (`payload=` form field).
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, String> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or("no payload field")?;
    let v: Value =
        serde_json::from_str(&payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    if v["type"] != "block_actions" {
        return Err(format!("unsupported interaction type {}", v["type"]));
    }
    let action = v["actions"]
        .as_array()
        .and_then(|a| a.first())
        .ok_or("no action")?;
    let click = match action["action_id"].as_str() {
        Some(APPROVE) => Click::Approve,
        Some(DENY) => Click::Deny,
        Some(ABORT) => Click::Abort,
        Some(RETRY) => Click::Retry,
        other => return Err(format!("unknown action {other:?}")),
    };
    let text = |p: &Value| p.as_str().map(String::from).ok_or("missing field");
    // The button's value is "<incident id> <plan digest>".
    let value = text(&action["value"]).map_err(|e| format!("action value: {e}"))?;
    let (incident_id, plan_digest) = match value.split_once(' ') {
        Some((id, digest)) => (id.to_owned(), Some(digest.to_owned())),
        None => (value, None),
    };
    Ok(Interaction {
        user_id: text(&v["user"]["id"]).map_err(|e| format!("user.id: {e}"))?,
        user_name: v["user"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        click,
        incident_id,
        plan_digest,
    })
}

/// Block Kit, written as Slack documents it, then typed. Every text from
/// the view is escaped (it carries labels, annotations and rule text) and
/// kept within Slack's limits (see [`super::mrkdwn`]).
pub fn blocks(view: &IncidentView) -> Value {
    use super::mrkdwn::{
        FIELD_MAX, HEADER_MAX, SECTION_MAX, cap_blocks, escape, fit_lines, truncate,
    };
    let id = escape(&view.incident_id);
    let more = format!("incident `{id}` (GET /api/v1/incidents/{id})");
    let field = |title: &str, text: &str| json!({"type": "mrkdwn", "text": truncate(&format!("*{title}*\n{}", escape(text)), FIELD_MAX)});
    let escaped = |lines: &[String]| lines.iter().map(|l| escape(l)).collect::<Vec<_>>();
    let numbered: Vec<String> = view
        .plan
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{}. {}", i + 1, escape(l)))
        .collect();
    let bullets: Vec<String> = escaped(&view.evidence)
        .into_iter()
        .map(|l| format!("• {l}"))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("{}: {} ({})", title(view), view.scenario, view.severity), HEADER_MAX)}}),
        json!({"type": "section", "fields": [
            field("State", &view.state),
            field("Where", &view.group),
            field("Services", &if view.services.is_empty() { "–".to_owned() } else { view.services.join(", ") }),
            field("RTO budget", view.rto.as_deref().unwrap_or("–")),
        ]}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": fit_lines("*Evidence*", &bullets, "–", &more)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": fit_lines(&format!("*Plan* (digest `{}`)", escape(short(&view.plan_digest))), &numbered, "no steps", &more)}}),
    ];
    if !view.not_covered.is_empty() {
        let text = format!(
            "*Not covered by the approved plan*\n{}\nA follow-up plan needs its own approval.",
            escape(&view.not_covered.join(", "))
        );
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, SECTION_MAX)}}));
    }
    if !view.not_ready.is_empty() {
        let lines: Vec<String> = escaped(&view.not_ready)
            .into_iter()
            .map(|l| format!("• runbook not ready: {l}"))
            .collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": fit_lines("*Runbooks not ready* (at the last readiness check)", &lines, "–", &more)}}));
    }
    if !view.absorbed.is_empty() {
        let absorbed: Vec<String> = escaped(&view.absorbed)
            .into_iter()
            .map(|l| format!("• {l}"))
            .collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": fit_lines("*Absorbed*", &absorbed, "–", &more)}}));
    }
    if !view.votes.is_empty() {
        let votes = truncate(&escaped(&view.votes).join(" · "), SECTION_MAX);
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": votes}]}));
    }
    if let Some(s) = &view.status_line {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&escape(s), SECTION_MAX)}}));
    }
    if view.actionable {
        let value = format!("{} {}", view.incident_id, view.plan_digest);
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "action_id": APPROVE, "value": value, "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": DENY, "value": value, "style": "danger",
             "text": {"type": "plain_text", "text": "Deny"},
             "confirm": {"title": {"type": "plain_text", "text": "Deny the recovery plan?"},
                         "text": {"type": "mrkdwn", "text": "Nothing will run for this incident."},
                         "confirm": {"type": "plain_text", "text": "Deny"},
                         "deny": {"type": "plain_text", "text": "Back"}}},
        ]}));
    }
    if view.retryable {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "action_id": RETRY, "value": view.incident_id,
             "text": {"type": "plain_text", "text": "Retry failed step"},
             "confirm": {"title": {"type": "plain_text", "text": "Run the failed step again?"},
                         "text": {"type": "mrkdwn", "text": "The same plan goes on from its failed step, under a new idempotency key."},
                         "confirm": {"type": "plain_text", "text": "Retry"},
                         "deny": {"type": "plain_text", "text": "Back"}}},
        ]}));
    }
    if view.abortable {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "action_id": ABORT, "value": view.incident_id, "style": "danger",
             "text": {"type": "plain_text", "text": "Abort"},
             "confirm": {"title": {"type": "plain_text", "text": "Abort the recovery plan?"},
                         "text": {"type": "mrkdwn", "text": "No further step runs; an SSM execution in flight is stopped."},
                         "confirm": {"type": "plain_text", "text": "Abort"},
                         "deny": {"type": "plain_text", "text": "Back"}}},
        ]}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("incident `{id}`")}]}));
    Value::Array(cap_blocks(blocks, &more))
}

/// What the message calls the incident.
fn title(view: &IncidentView) -> &'static str {
    match (view.drill, view.failback_of.is_some()) {
        (true, true) => "DRILL – DR failback",
        (true, false) => "DRILL – DR incident",
        (false, true) => "DR failback",
        (false, false) => "DR incident",
    }
}

fn content(view: &IncidentView) -> Result<SlackMessageContent, SlackError> {
    let blocks: Vec<SlackBlock> = serde_json::from_value(blocks(view))
        .map_err(|e| SlackError::Client(format!("blocks: {e}")))?;
    Ok(SlackMessageContent::new()
        .with_text(super::mrkdwn::truncate(
            &super::mrkdwn::escape(&format!(
                "{} {} {}: {}",
                title(view),
                view.scenario,
                view.group,
                view.state
            )),
            super::mrkdwn::SECTION_MAX,
        ))
        .with_blocks(blocks))
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactions_parse() {
        let payload = json!({"type": "block_actions", "user": {"id": "U1", "username": "alice"},
            "actions": [{"action_id": APPROVE, "value": "inc-1"}]});
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        assert_eq!(
            parse_interaction(body.as_bytes()).unwrap(),
            Interaction {
                user_id: "U1".into(),
                user_name: "alice".into(),
                click: Click::Approve,
                incident_id: "inc-1".into(),
                plan_digest: None,
            }
        );
        assert!(
            parse_interaction(b"payload=%7B")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_interaction(b"x=1")
                .unwrap_err()
                .contains("no payload")
        );
    }

    #[test]
    fn blocks_are_valid_slack_morphism_blocks() {
        let view = IncidentView {
            incident_id: "inc-1".into(),
            scenario: "region_outage".into(),
            plan: vec!["promote".into()],
            actionable: true,
            ..IncidentView::default()
        };
        assert!(content(&view).is_ok());
        let b = blocks(&view);
        assert!(b.to_string().contains(APPROVE));
        let b = blocks(&IncidentView {
            actionable: false,
            ..view
        });
        assert!(
            !b.to_string().contains(APPROVE),
            "terminal states have no buttons"
        );
        assert!(!b[0].to_string().contains("DRILL"));
        let b = blocks(&IncidentView {
            drill: true,
            ..IncidentView::default()
        });
        assert!(b[0]["text"]["text"].as_str().unwrap().starts_with("DRILL"));
        let b = blocks(&IncidentView {
            failback_of: Some("inc-0".into()),
            ..IncidentView::default()
        });
        assert!(
            b[0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("DR failback"),
            "{b}"
        );
    }

    #[test]
    fn user_text_is_escaped_and_sections_capped() {
        let view = IncidentView {
            incident_id: "inc-1".into(),
            group: "region=<!channel>".into(),
            evidence: (0..400)
                .map(|i| format!("Down{i} note=<https://x|Approve here> {}", "v".repeat(30)))
                .collect(),
            plan: vec!["restart <!here>".into()],
            votes: vec!["approved by <@U1>".into()],
            status_line: Some("waiting & <b>".into()),
            actionable: true,
            ..IncidentView::default()
        };
        let b = blocks(&view);
        let text = b.to_string();
        for raw in ["<!channel>", "<https://x", "<!here>", "<@U1>", "<b>"] {
            assert!(!text.contains(raw), "{raw} left unescaped");
        }
        assert!(text.contains("&lt;!channel&gt;"));
        assert!(text.contains("waiting &amp; &lt;b&gt;"));
        let evidence = b[2]["text"]["text"].as_str().unwrap();
        assert!(evidence.chars().count() <= super::super::mrkdwn::SECTION_MAX);
        assert!(evidence.contains("more: incident `inc-1` (GET /api/v1/incidents/inc-1)"));
        assert!(content(&view).is_ok());
    }
}
