//! dr-reactor with Slack on: its config against the fake Slack and AWS, and
//! requests to its Slack endpoints signed the way Slack signs them.

use std::path::Path;

use serde_json::Value;

use super::approval::ADMIN;
use super::fake_aws::FakeAws;
use super::fake_slack::{FakeSlack, sign};
use super::{Server, TOKEN};

pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const BOT: &str = "xoxb-test-token";
pub const INTERACTIONS: &str = "/api/v1/slack/interactions";
pub const COMMANDS: &str = "/api/v1/slack/commands";

/// One region-failover rule that needs two people of `leads`.
pub const RULES: &str = r#"rules:
  - name: failover
    match: {labels: ['alertname="RegionDown"']}
    correlate: {group_by: [region], window: 1h, when: {count: 1}}
    scenario: region_outage
    approval: {mode: two, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: promote the replica, ssm: {document: DR-Promote, region: ap-northeast-1}}
"#;

/// [`RULES`] in `dir/rules`, served with [`config`] against a fresh fake
/// AWS and Slack, which the caller keeps alive.
pub async fn start(dir: &Path) -> (Server, FakeAws, FakeSlack) {
    let aws = FakeAws::start().await;
    let slack = FakeSlack::start(BOT).await;
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
    let srv = Server::start_with_aws(dir, &config(dir, &aws, &slack), aws.sdk_config()).await;
    (srv, aws, slack)
}

/// Live dispatch, rules from `dir/rules`, U_ALICE and U_BOB as `leads`.
pub fn config(dir: &Path, aws: &FakeAws, slack: &FakeSlack) -> String {
    format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: 100ms\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: {ADMIN}\ndispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [U_ALICE, U_BOB]\n\
         aws:\n  endpoint_url: {aws}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n\
         slack:\n  bot_token: {BOT}\n  signing_secret: {SECRET}\n  channel: C123\n  api_url: {slack}\n",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        aws = aws.endpoint(),
        slack = slack.api_url(),
    )
}

/// Posts a form body to one of the Slack endpoints with the given
/// timestamp and signature; the status and the JSON answer.
pub async fn post(srv: &Server, path: &str, body: &str, ts: i64, signature: &str) -> (u16, Value) {
    let resp = srv
        .client
        .post(format!("{}{path}", srv.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// [`post`], signed now with the right secret.
pub async fn signed(srv: &Server, path: &str, body: &str) -> (u16, Value) {
    let ts = chrono::Utc::now().timestamp();
    post(srv, path, body, ts, &sign(SECRET, ts, body)).await
}

/// A slash command body, form-encoded as Slack posts it.
pub fn command(user_id: &str, text: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("token", "deprecated")
        .append_pair("team_id", "T1")
        .append_pair("channel_id", "C123")
        .append_pair("user_id", user_id)
        .append_pair("user_name", &user_id.to_lowercase())
        .append_pair("command", "/dr")
        .append_pair("text", text)
        .append_pair("response_url", "http://127.0.0.1:9/unused")
        .append_pair("trigger_id", "1.2.3")
        .finish()
}
