//! A fake Slack Web API for tests: `chat.postMessage` and `chat.update`
//! as slack-morphism sends them (JSON, `Authorization: Bearer <bot token>`).
//! It checks the token and the required fields the way Slack does (`ok:
//! false` with Slack's error codes), and records every message and update:
//! incident messages (with blocks) apart from plain-text notices (runbook
//! readiness), so a test of one is not thrown by the other.
//! `sign` and `interaction` build requests the way Slack signs them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub text: String,
    pub blocks: Value,
    /// When this fake received it (latency measurements end here).
    pub received: Instant,
}

#[derive(Default)]
struct Inner {
    token: String,
    next_ts: u64,
    messages: Vec<Message>,
    notices: Vec<Message>,
    updates: Vec<Message>,
    /// How many messages were posted so far: lets a waiter sleep until the
    /// next one instead of polling (and cloning) the list.
    posted: tokio::sync::watch::Sender<usize>,
    /// The next this many calls fail as Slack fails when it is down.
    failing: usize,
    /// Calls that failed on purpose.
    failed: usize,
}

pub struct FakeSlack {
    base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSlack {
    pub async fn start(bot_token: &str) -> FakeSlack {
        let inner = Arc::new(Mutex::new(Inner {
            token: bot_token.to_owned(),
            next_ts: 1_700_000_000,
            ..Inner::default()
        }));
        let app = axum::Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSlack { base, inner }
    }

    pub fn api_url(&self) -> String {
        self.base.clone()
    }

    /// Incident messages (posted with blocks).
    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().unwrap().messages.clone()
    }

    /// Plain-text messages (no blocks): runbook readiness notices.
    pub fn notices(&self) -> Vec<Message> {
        self.inner.lock().unwrap().notices.clone()
    }

    /// Waits (at most `timeout`) until message number `n` (0-based) has
    /// been posted and returns when it was received.
    pub async fn wait_message(&self, n: usize, timeout: Duration) -> Option<Instant> {
        let mut rx = self.inner.lock().unwrap().posted.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|count| *count > n))
            .await
            .ok()?
            .ok()?;
        Some(self.inner.lock().unwrap().messages[n].received)
    }

    /// Makes the next `n` calls (posts and updates) fail with Slack's
    /// `internal_error`.
    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap().failing = n;
    }

    /// How many calls failed on purpose so far.
    pub fn failed(&self) -> usize {
        self.inner.lock().unwrap().failed
    }

    pub fn updates(&self) -> Vec<Message> {
        self.inner.lock().unwrap().updates.clone()
    }
}

type Shared = Arc<Mutex<Inner>>;

impl Inner {
    fn count_failure(&mut self) {
        if self.failing > 0 {
            self.failing -= 1;
            self.failed += 1;
        }
    }
}

fn check(
    inner: &Inner,
    headers: &HeaderMap,
    body: &Value,
    required: &[&str],
) -> Result<(), Json<Value>> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", inner.token) {
        return Err(Json(json!({"ok": false, "error": "invalid_auth"})));
    }
    if inner.failing > 0 {
        return Err(Json(json!({"ok": false, "error": "internal_error"})));
    }
    for f in required {
        if body
            .get(f)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Json(json!({"ok": false, "error": format!("missing_{f}")})));
        }
    }
    if body.get("text").is_none() && body.get("blocks").is_none() {
        return Err(Json(json!({"ok": false, "error": "no_text"})));
    }
    Ok(())
}

fn message(body: &Value, ts: String) -> Message {
    Message {
        channel: body["channel"].as_str().unwrap_or_default().to_owned(),
        ts,
        text: body["text"].as_str().unwrap_or_default().to_owned(),
        blocks: body["blocks"].clone(),
        received: Instant::now(),
    }
}

async fn post_message(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut inner = s.lock().unwrap();
    if let Err(e) = check(&inner, &headers, &body, &["channel"]) {
        inner.count_failure();
        return e;
    }
    inner.next_ts += 1;
    let ts = format!("{}.000100", inner.next_ts);
    let m = message(&body, ts.clone());
    if m.blocks.is_null() {
        inner.notices.push(m.clone());
    } else {
        inner.messages.push(m.clone());
        inner.posted.send_replace(inner.messages.len());
    }
    Json(json!({"ok": true, "channel": m.channel, "ts": ts,
                "message": {"ts": ts, "text": m.text, "user": "UBOT", "bot_id": "BBOT"}}))
}

async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut inner = s.lock().unwrap();
    if let Err(e) = check(&inner, &headers, &body, &["channel", "ts"]) {
        inner.count_failure();
        return e;
    }
    let ts = body["ts"].as_str().unwrap().to_owned();
    if !inner.messages.iter().any(|m| m.ts == ts) {
        return Json(json!({"ok": false, "error": "message_not_found"}));
    }
    let m = message(&body, ts.clone());
    inner.updates.push(m.clone());
    Json(
        json!({"ok": true, "channel": m.channel, "ts": ts, "text": m.text,
                "message": {"text": m.text}}),
    )
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`, as Slack signs.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!(
        "v0={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A `block_actions` interaction body, form-encoded as Slack posts it.
pub fn interaction(user_id: &str, action_id: &str, incident_id: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.to_lowercase(), "team_id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message", "channel_id": "C1"},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": incident_id,
                     "action_ts": "1700000000.1"}],
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}
