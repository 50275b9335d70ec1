//! Console sessions and the console's defences, over plain HTTP against
//! running servers: the cookie holds a random session id and never a
//! token; signing out on one replica ends the session on the other (both
//! on one PostgreSQL store); every page carries the security headers, its
//! script and style only by nonce; a form from another site is refused
//! even with valid cookies and form token. And tokens with a lifecycle,
//! against the release binary: a token rotated in the config file is
//! refused at once after SIGHUP (with its console sessions), an expired
//! one says it expired, and `dr-reactor token hash` gives the digest form
//! that config takes.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::approval::{self, ADMIN, events, failover_rule, fire, rule_file, token_of};
use support::binary::{Dr, free_port};
use support::fake_aws::{FakeAws, Op};
use support::*;

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A browser's view of one console: its form token and, once signed in,
/// its session cookie.
struct Browser {
    base: String,
    csrf: String,
    session: Option<String>,
}

impl Browser {
    /// Opens the console signed out: the sign-in page (401) issues the form
    /// token.
    async fn open(base: &str) -> Browser {
        let resp = client().get(format!("{base}/")).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let csrf = set_cookie(&resp, "drr_csrf").expect("a form token cookie");
        Browser {
            base: base.to_owned(),
            csrf,
            session: None,
        }
    }

    /// The same cookies, on another replica.
    fn at(&self, base: &str) -> Browser {
        Browser {
            base: base.to_owned(),
            csrf: self.csrf.clone(),
            session: self.session.clone(),
        }
    }

    fn cookies(&self) -> String {
        let mut c = format!("drr_csrf={}", self.csrf);
        if let Some(s) = &self.session {
            c.push_str(&format!("; drr_session={s}"));
        }
        c
    }

    async fn post(&self, path: &str, form: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut req = client()
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookies())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    async fn sign_in(&mut self, token: &str) -> reqwest::Response {
        let form = format!(
            "csrf={}&next=%2F&token={}",
            self.csrf,
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        );
        let resp = self
            .post("/sign-in", &form, &[("sec-fetch-site", "same-origin")])
            .await;
        if let Some(s) = set_cookie(&resp, "drr_session") {
            self.session = Some(s);
        }
        resp
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let resp = client()
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookies())
            .send()
            .await
            .unwrap();
        let (code, headers) = (resp.status().as_u16(), resp.headers().clone());
        (code, headers, resp.text().await.unwrap())
    }
}

/// Config for a console replica on `store`, live dispatch to `fake`.
fn replica_config(dir: &std::path::Path, fake: &FakeAws, store: &str) -> String {
    approval::config(dir, fake, "100ms", "console:\n  secure_cookies: false\n").replace(
        &format!("url: sqlite://{}", dir.join("db.sqlite").display()),
        &format!("url: {store}"),
    )
}

#[tokio::test]
async fn the_cookie_holds_no_token_and_sign_out_ends_the_session_on_every_replica() {
    let store = postgres_database().await;
    let fake = FakeAws::start().await;
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut replicas = Vec::new();
    for dir in [a_dir.path(), b_dir.path()] {
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/r.yaml"), rule_file(&[failover_rule()])).unwrap();
        let cfg = replica_config(dir, &fake, &store);
        replicas.push(Server::start_with_aws(dir, &cfg, fake.sdk_config()).await);
    }
    let (a, b) = (&replicas[0], &replicas[1]);

    let mut on_a = Browser::open(&a.base).await;
    // A wrong token opens nothing.
    let resp = on_a.sign_in("not-a-token-of-anyone").await;
    assert_eq!(resp.status(), 401);
    assert!(on_a.session.is_none());
    let resp = on_a.sign_in(&token_of("alice")).await;
    assert_eq!(resp.status(), 303);
    let session = on_a.session.clone().expect("a session cookie");
    assert!(
        !session.contains(&token_of("alice")) && session.len() >= 32,
        "the cookie is a random id, not the token: {session}"
    );
    // The store keeps the id's digest only.
    let pool = sqlx::PgPool::connect(&store).await.unwrap();
    let ids: Vec<(String, String)> = sqlx::query_as("SELECT id, principal FROM console_sessions")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert!(ids[0].0.starts_with("sha256:") && !ids[0].0.contains(&session));
    assert_eq!(ids[0].1, "user:alice");

    let on_b = on_a.at(&b.base);
    let (code, _, body) = on_b.get("/").await;
    assert_eq!(code, 200, "the session holds on the other replica: {body}");
    assert!(body.contains("<strong id=\"who\">alice</strong>"));
    // A stolen cookie is no bearer token.
    let api = client()
        .get(format!("{}/api/v1/incidents", b.base))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);

    let resp = on_a
        .post(
            "/sign-out",
            &format!("csrf={}", on_a.csrf),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let (code, _, body) = on_b.get("/").await;
    assert_eq!(code, 401, "signed out on A, ended on B");
    assert!(body.contains("session ended (signed out)"), "{body}");
    assert_eq!(on_a.get("/").await.0, 401);

    pool.close().await;
    for r in replicas {
        r.stop().await;
    }
}

/// The nonce a page's policy names, which its script and style must carry.
fn nonce_of(policy: &str) -> &str {
    policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {policy}"))
}

fn assert_secured(path: &str, headers: &reqwest::header::HeaderMap, body: &str) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path}: no {n}"))
            .to_owned()
    };
    let policy = h("content-security-policy");
    for want in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(policy.contains(want), "{path}: {want} in {policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
    let nonce = nonce_of(&policy);
    assert!(
        body.contains(&format!("<script nonce=\"{nonce}\">"))
            && body.contains(&format!("<style nonce=\"{nonce}\">")),
        "{path}: script and style carry the page's nonce"
    );
    assert!(!body.contains(" style=\""), "{path}: no style attribute");
    assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(h("x-frame-options"), "DENY", "{path}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
}

#[tokio::test]
async fn every_page_is_secured_and_a_form_from_another_site_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, aws) = approval::start(dir.path(), &rule_file(&[failover_rule()]), "100ms").await;
    srv.post(&fire("RegionDown", "ap-northeast-1")).await;
    let id = approval::wait_state(&srv, "ap-northeast-1", "awaiting_approval").await;

    let mut browser = Browser::open(&srv.base).await;
    let (code, headers, body) = browser.get("/").await;
    assert_eq!(code, 401);
    assert_secured("the sign-in page", &headers, &body);
    assert_eq!(browser.sign_in(&token_of("alice")).await.status(), 303);
    for path in [
        "/".to_owned(),
        format!("/incidents/{id}"),
        "/catalogue".to_owned(),
        "/rules".to_owned(),
        "/health".to_owned(),
    ] {
        let (code, headers, body) = browser.get(&path).await;
        assert!(code == 200 || code == 503, "{path}: {code}");
        assert_secured(&path, &headers, &body);
    }
    // Two pages, two nonces.
    let (_, first, _) = browser.get("/").await;
    let (_, second, _) = browser.get("/").await;
    let policy =
        |h: &reqwest::header::HeaderMap| h["content-security-policy"].to_str().unwrap().to_owned();
    assert_ne!(nonce_of(&policy(&first)), nonce_of(&policy(&second)));
    // The API's answers carry the defaults too.
    let resp = srv
        .client
        .get(format!("{}/api/v1/incidents", srv.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        resp.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );

    // Valid cookies and form token, posted from another site: refused.
    let form = format!("csrf={}&reason=from+elsewhere", browser.csrf);
    let approve = format!("/incidents/{id}/approve");
    for hostile in [
        [("origin", "https://evil.example"), ("x-probe", "1")],
        [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
        [("sec-fetch-site", "same-site"), ("x-probe", "1")],
        [("origin", "null"), ("x-probe", "1")],
    ] {
        let resp = browser.post(&approve, &form, &hostile).await;
        assert_eq!(resp.status(), 403, "{hostile:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("another site"),
            "{body}"
        );
    }
    assert!(!events(&srv, &id).await.iter().any(|e| e["kind"] == "vote"));
    assert!(
        aws.calls().is_empty(),
        "nothing dispatched: {:?}",
        aws.calls()
    );
    // The same form from the console itself is alice's vote, and the plan runs.
    let origin = srv.base.clone();
    let resp = browser.post(&approve, &form, &[("origin", &origin)]).await;
    assert_eq!(resp.status(), 303);
    approval::wait_state(&srv, "ap-northeast-1", "succeeded").await;
    assert_eq!(aws.calls_of(Op::StartAutomationExecution).len(), 2);
    assert!(aws.calls_of(Op::StopAutomationExecution).is_empty());
    srv.stop().await;
}

/// Alice's token in the rotation test: long enough for `token hash`.
const ALICE: &str = "alice-own-token-4f9c1e0b7d2a";

/// `dr-reactor token …` through the binary.
fn token_cli(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
        .arg("token")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn config_with(dir: &std::path::Path, port: u16, users: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\nstore:\n  url: sqlite://{db}\nrules:\n  paths: [{rules}]\n  watch: false\n\
         webhook:\n  auth:\n    bearer_token: {TOKEN}\n\
         api:\n  admin_token: {ADMIN}\n  users:\n{users}\
         approval:\n  directory:\n    leads: [alice, bob]\n\
         console:\n  secure_cookies: false\n",
        db = dir.join("db.sqlite").display(),
        rules = dir.join("rules").display(),
    )
}

async fn api_status(dr: &Dr, token: &str) -> (u16, Value) {
    let resp = dr
        .client
        .get(format!("{}/api/v1/incidents", dr.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_rotated_token_is_refused_after_sighup_with_its_sessions_and_an_expired_one_says_so() {
    // The digest form, from the CLI: what the config below holds for alice.
    let (ok, out, err) = token_cli(&["hash"], &format!("{ALICE}\n"));
    assert!(ok, "{err}");
    let alice_digest = out.trim().to_owned();
    assert!(
        alice_digest.starts_with("sha256:") && alice_digest.len() == 71,
        "{alice_digest}"
    );
    let (ok, _, err) = token_cli(&["hash"], "short");
    assert!(
        !ok && err.contains("at least"),
        "a guessable token is refused: {err}"
    );
    let (ok, out, _) = token_cli(&["new"], "");
    assert!(ok);
    let new_token = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(new_token.len(), 64);

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/r.yaml"),
        rule_file(&[failover_rule()]),
    )
    .unwrap();
    let port = free_port();
    let path = dir.path().join("c.yaml");
    let users = format!(
        "    - {{id: alice, token: \"{alice_digest}\"}}\n    - {{id: bob, token: {}, expires: \"2020-01-01T00:00:00Z\"}}\n",
        token_of("bob")
    );
    std::fs::write(&path, config_with(dir.path(), port, &users)).unwrap();
    let dr = Dr::start(&path, port, &dir.path().join("dr.log")).await;

    // Alice's token, given to config only as its digest, works.
    assert_eq!(api_status(&dr, ALICE).await.0, 200);
    let (code, body) = api_status(&dr, &token_of("bob")).await;
    assert_eq!(code, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("expired at 2020-01-01T00:00:00Z"),
        "{body}"
    );
    let mut browser = Browser::open(&dr.base).await;
    assert_eq!(browser.sign_in(ALICE).await.status(), 303);
    assert_eq!(browser.get("/").await.0, 200);

    // Rotate: alice gets the new token; SIGHUP re-reads the file.
    let users = format!("    - {{id: alice, token: {new_token}}}\n");
    std::fs::write(&path, config_with(dir.path(), port, &users)).unwrap();
    dr.hangup();
    eventually("the old token refused", 10, || async {
        api_status(&dr, ALICE).await.0 == 401
    })
    .await;
    let (_, body) = api_status(&dr, ALICE).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("removed from the configuration"),
        "{body}"
    );
    assert_eq!(
        api_status(&dr, &new_token).await.0,
        200,
        "no restart needed"
    );
    let (code, _, page) = browser.get("/").await;
    assert_eq!(code, 401);
    assert!(page.contains("its token was removed or expired"), "{page}");
    dr.kill9().await;
}
