//! What the approval tests share: a server with live dispatch against a fake
//! AWS, the operator API's tokens (the admin's and each person's own),
//! votes, and waits on incident states and events.

use std::path::Path;

use serde_json::{Value, json};

use super::fake_aws::FakeAws;
use super::{Server, TOKEN, alert, payload};

/// The admin token: break-glass.
pub const ADMIN: &str = "admin-secret";

/// Each person's own API token (`api.users`).
pub fn token_of(user: &str) -> String {
    format!("{user}-own-token")
}

/// One rule of a test rule file: alerts named `alert`, grouped by region
/// within an hour, held when `when` holds, approved per `approval` (a YAML
/// flow map), with `limits` (a flow map, or empty), running SSM `steps`
/// (name, document) in ap-northeast-1. Its scenario is its name.
pub fn rule(
    name: &str,
    alert: &str,
    when: &str,
    approval: &str,
    limits: &str,
    steps: &[(&str, &str)],
) -> String {
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("    limits: {limits}\n")
    };
    let steps: String = steps
        .iter()
        .map(|(step, document)| {
            format!(
                "        - {{name: {step}, ssm: {{document: {document}, region: ap-northeast-1}}}}\n"
            )
        })
        .collect();
    format!(
        "  - name: {name}\n    match: {{labels: ['alertname=\"{alert}\"']}}\n    \
         correlate: {{group_by: [region], window: 1h, when: {when}}}\n    scenario: {name}\n\
         {limits}    approval: {approval}\n    plan:\n      steps:\n{steps}"
    )
}

/// `failover`: RegionDown alerts grouped by region, approved by one lead,
/// then DR-Promote and DR-Flip in ap-northeast-1.
pub fn failover_rule() -> String {
    rule(
        "failover",
        "RegionDown",
        "{count: 1}",
        "{mode: one, groups: [leads], include_owners: false, timeout: 1h}",
        "",
        &[
            ("promote the replica", "DR-Promote"),
            ("flip DNS", "DR-Flip"),
        ],
    )
}

/// A rule file of `rules`.
pub fn rule_file(rules: &[String]) -> String {
    format!("rules:\n{}", rules.concat())
}

/// `api.users` entries (under `api:`) giving each of `users` their token.
pub fn api_users(users: &[&str]) -> String {
    users
        .iter()
        .map(|u| format!("    - {{id: {u}, token: {}}}\n", token_of(u)))
        .collect()
}

/// Config text: live dispatch to `fake`, rules from `dir/rules`, the
/// directory (leads: alice, bob; sre: carol) with a token each, and
/// `extra` appended.
pub fn config(dir: &Path, fake: &FakeAws, evaluation_interval: &str, extra: &str) -> String {
    let users = api_users(&["alice", "bob", "carol"]);
    format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  evaluation_interval: {evaluation_interval}\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: {ADMIN}\n  users:\n{users}dispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [alice, bob]\n    sre: [carol]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n{extra}",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        endpoint = fake.endpoint(),
    )
}

/// Writes `rules` into `dir/rules` (unless there already) and starts the
/// server with a fresh fake AWS, which the caller keeps alive.
pub async fn start(dir: &Path, rules: &str, evaluation_interval: &str) -> (Server, FakeAws) {
    if !dir.join("rules").exists() {
        std::fs::create_dir(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/r.yaml"), rules).unwrap();
    }
    let fake = FakeAws::start().await;
    let cfg = config(dir, &fake, evaluation_interval, "");
    let srv = Server::start_with_aws(dir, &cfg, fake.sdk_config()).await;
    (srv, fake)
}

/// Writes `rules` and the service `catalogue` into `dir` and starts a
/// server with live dispatch to a fresh fake AWS (default region
/// ap-northeast-1): leads alice, bob and carol with their own tokens, holds of
/// 500 ms, and `extra` appended to the config.
pub async fn start_with_catalogue(
    dir: &Path,
    rules: &str,
    catalogue: &str,
    extra: &str,
) -> (Server, FakeAws) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), rules).unwrap();
    std::fs::write(dir.join("services.yaml"), catalogue).unwrap();
    let fake = FakeAws::start().await;
    let users = api_users(&["alice", "bob", "carol"]);
    let cfg = format!(
        "listen: 127.0.0.1:0\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  catalogue: {catalogue}\n  evaluation_interval: 100ms\n  default_hold: 500ms\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\napi:\n  admin_token: {ADMIN}\n  users:\n{users}dispatch:\n  dry_run: false\n\
         approval:\n  directory:\n    leads: [alice, bob, carol]\n\
         aws:\n  endpoint_url: {endpoint}\n  default_region: ap-northeast-1\n  poll_interval: 50ms\n{extra}",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
        catalogue = dir.join("services.yaml").display(),
        endpoint = fake.endpoint(),
    );
    let srv = Server::start_with_aws(dir, &cfg, fake.sdk_config()).await;
    (srv, fake)
}

/// A vote through the API with `token`, naming `user` if given.
pub async fn vote_as(
    srv: &Server,
    id: &str,
    action: &str,
    token: &str,
    user: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({ "reason": "checked the dashboards" });
    if let Some(u) = user {
        body["as"] = json!(u);
    }
    let resp = srv
        .client
        .post(format!("{}/api/v1/incidents/{id}/{action}", srv.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A person's vote with their own token.
pub async fn vote(srv: &Server, id: &str, action: &str, user: &str) -> (u16, Value) {
    vote_as(srv, id, action, &token_of(user), None).await
}

/// Waits until the incident of `region` is in `state`; returns its id.
pub async fn wait_state(srv: &Server, region: &str, state: &str) -> String {
    let find = || async {
        srv.incidents()
            .await
            .into_iter()
            .find(|i| i["group_labels"]["region"] == region && i["state"] == state)
            .map(|i| i["id"].as_str().unwrap().to_owned())
    };
    srv.wait_for(&format!("incident in {region} {state}"), || async {
        find().await.is_some()
    })
    .await;
    find().await.unwrap()
}

/// The incident's event log.
pub async fn events(srv: &Server, id: &str) -> Vec<Value> {
    srv.get(&format!("/api/v1/incidents/{id}")).await["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the incident's log has an event of `kind`.
pub async fn wait_event(srv: &Server, id: &str, kind: &str) {
    srv.wait_for(kind, || async {
        events(srv, id).await.iter().any(|e| e["kind"] == kind)
    })
    .await;
}

pub fn fire(name: &str, region: &str) -> Value {
    payload(vec![alert(
        "firing",
        &[("alertname", name), ("region", region)],
    )])
}

pub fn resolve(name: &str, region: &str) -> Value {
    payload(vec![alert(
        "resolved",
        &[("alertname", name), ("region", region)],
    )])
}
