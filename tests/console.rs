//! The operator console in a real browser: headless Chromium, driven over
//! WebDriver by chromedriver, against a running server with seeded
//! incidents. Every page is loaded and checked, a screenshot of each is
//! kept under `$CARGO_TARGET_TMPDIR/console-screens/`, and Approve pressed
//! on an incident page is checked to be a vote in the store. Without
//! Chromium the browser test is skipped with a reason, except under CI.
//!
//! The sign-in and form checks (401, CSRF, the auth proxy's header) are
//! plain HTTP and run everywhere.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::approval::{self, events, token_of, vote, wait_event};
use support::binary::free_port;
use support::fake_aws::{Document, FakeAws};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Service incidents planned from the shipped catalogue, one approval by a
/// lead; and a rule that needs three alerts, to show a group on its way.
const RULES: &str = r#"rules:
  - name: service-down
    description: One service is down.
    match: {labels: ['alertname="ServiceDown"']}
    correlate: {group_by: [region, service], window: 1h, when: {count: 1}}
    scenario: service_failure
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan: {from_catalogue: true}
  - name: flaky-quorum
    match: {labels: ['alertname="Flaky"']}
    correlate: {group_by: [region], window: 1h, when: {count: 3}}
    scenario: flaky
    approval: {mode: one, groups: [leads], include_owners: false, timeout: 1h}
    plan:
      steps:
        - {name: restart, ssm: {document: DR-Restart, region: ap-northeast-2}}
"#;

/// A server with the shipped catalogue, live dispatch against a fake AWS,
/// and the console configured by `console` (a YAML block).
async fn start(dir: &Path, console: &str) -> (Server, FakeAws) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
    let fake = FakeAws::start().await;
    fake.register_document(
        "ap-northeast-2",
        "DR-Restart",
        Document::automation(&[], &[]),
    );
    let cfg = approval::config(dir, &fake, "100ms", console).replace(
        "  watch: false\n",
        &format!(
            "  watch: false\n  catalogue: {}\n",
            repo_path("config/services.yaml").display()
        ),
    );
    let srv = Server::start_with_aws(dir, &cfg, fake.sdk_config()).await;
    (srv, fake)
}

fn down(service: &str) -> Value {
    payload(vec![alert(
        "firing",
        &[
            ("alertname", "ServiceDown"),
            ("region", "ap-northeast-2"),
            ("service", service),
            ("severity", "critical"),
        ],
    )])
}

/// The id of the service incident of `service` once it is in `state`.
async fn incident_of(srv: &Server, service: &str, state: &str) -> String {
    let find = || async {
        srv.incidents()
            .await
            .into_iter()
            .find(|i| i["group_labels"]["service"] == service && i["state"] == state)
            .and_then(|i| i["id"].as_str().map(String::from))
    };
    srv.wait_for(&format!("{service} incident {state}"), || async {
        find().await.is_some()
    })
    .await;
    find().await.unwrap()
}

/// Chromedriver on a loopback port, killed when dropped.
struct Driver {
    child: tokio::process::Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Whether the browser test can run here; says why not, and fails under CI
/// (where `.ci/run` installs both).
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "skipping the browser test: {} missing (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("{why}");
    false
}

async fn browser() -> (Driver, Client) {
    let port = free_port();
    let child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1360,1000",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => break c,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver at {url}: {e}"),
        }
    };
    (driver, client)
}

fn screens() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    let path = screens().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// The element at `css`, waited for: after a click the next page may
/// still be loading (on a loaded box, for a while).
async fn element(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(std::time::Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

/// Types `value` into the field at `field`, then clicks `button`.
async fn fill_and_press(c: &Client, field: &str, value: &str, button: &str) {
    let input = element(c, field).await;
    input.send_keys(value).await.unwrap();
    element(c, button).await.click().await.unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    element(c, css).await.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_chromium_and_approve_records_a_vote() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let console = "console:\n  secure_cookies: false\n  refresh: 1h\n  \
                   alertmanager_url: http://alertmanager.example:9093\n";
    let (srv, _aws) = start(dir.path(), console).await;
    for service in ["payment", "auth", "order"] {
        srv.post(&down(service)).await;
    }
    srv.post(&approval::fire("Flaky", "ap-northeast-2")).await;
    let payment = incident_of(&srv, "payment", "awaiting_approval").await;
    let order = incident_of(&srv, "order", "awaiting_approval").await;
    let auth = incident_of(&srv, "auth", "awaiting_approval").await;
    assert_eq!(vote(&srv, &order, "approve", "alice").await.0, 200);
    incident_of(&srv, "order", "succeeded").await;
    assert_eq!(vote(&srv, &auth, "deny", "bob").await.0, 200);

    let (_driver, c) = browser().await;
    // Without a credential: the sign-in page. Signing in with alice's own
    // token comes back to the list as her.
    c.goto(&format!("{}/", srv.base)).await.unwrap();
    assert!(text(&c, "h1").await.contains("Sign in"));
    screenshot(&c, "sign-in").await;
    fill_and_press(&c, "#token", &token_of("alice"), "#sign-in button").await;
    assert_eq!(text(&c, "#who").await, "alice");

    let list = text(&c, "#incidents").await;
    for want in [
        "service_failure",
        "awaiting_approval",
        "succeeded",
        "denied",
    ] {
        assert!(list.contains(want), "{want} in the list: {list}");
    }
    let links = c.find_all(Locator::Css("a.incident-link")).await.unwrap();
    assert_eq!(
        links.len(),
        3,
        "three incidents; the flaky group holds no incident"
    );
    screenshot(&c, "incidents").await;
    c.goto(&format!("{}/?state=denied", srv.base))
        .await
        .unwrap();
    let denied = c.find_all(Locator::Css("a.incident-link")).await.unwrap();
    assert_eq!(denied.len(), 1, "the state filter");

    // One incident: what it is, its plan from the catalogue, its evidence
    // linked to Alertmanager, its timeline; then Approve.
    c.goto(&format!("{}/incidents/{payment}", srv.base))
        .await
        .unwrap();
    assert_eq!(text(&c, "#state").await, "awaiting_approval");
    assert!(text(&c, "#rto").await.contains("left"), "RTO countdown");
    let plan = text(&c, "#plan").await;
    assert!(
        plan.contains("DR-RestartDeployment") && plan.contains("pending"),
        "{plan}"
    );
    let link = c
        .find(Locator::Css("#evidence a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        link.starts_with("http://alertmanager.example:9093/#/alerts?") && link.contains("payment"),
        "{link}"
    );
    let timeline = text(&c, "#timeline").await;
    for kind in ["detected", "approval_requested"] {
        assert!(
            timeline.contains(kind),
            "{kind} in the timeline: {timeline}"
        );
    }
    screenshot(&c, "incident").await;
    fill_and_press(
        &c,
        "#vote-form input[name=reason]",
        "checked the payment dashboards",
        "#approve",
    )
    .await;
    assert!(text(&c, "#notice").await.contains("recorded"));
    // The vote is alice's, from the console, with her reason, in the
    // store: the API shows it and the plan runs.
    wait_event(&srv, &payment, "vote").await;
    let vote_event = events(&srv, &payment)
        .await
        .into_iter()
        .find(|e| e["kind"] == "vote")
        .unwrap();
    assert_eq!(vote_event["actor"], "alice");
    assert_eq!(vote_event["data"]["vote"]["via"], "console");
    assert_eq!(
        vote_event["reason"],
        "approved by alice: checked the payment dashboards"
    );
    incident_of(&srv, "payment", "succeeded").await;
    c.goto(&format!("{}/incidents/{payment}", srv.base))
        .await
        .unwrap();
    assert!(text(&c, "#votes").await.contains("alice"));
    assert!(text(&c, "#plan").await.contains("succeeded"));
    screenshot(&c, "incident-approved").await;

    // The catalogue, with the incident's service marked.
    c.goto(&format!("{}/catalogue?incident={payment}", srv.base))
        .await
        .unwrap();
    let hot = c.find_all(Locator::Css("svg .node.hot")).await.unwrap();
    assert_eq!(hot.len(), 1, "payment alone is marked");
    assert_eq!(
        hot[0].attr("id").await.unwrap().as_deref(),
        Some("svc-payment")
    );
    let nodes = c.find_all(Locator::Css("svg .node")).await.unwrap();
    assert!(nodes.len() >= 5, "every catalogue service is drawn");
    assert!(text(&c, "#services").await.contains("restart-service"));
    screenshot(&c, "catalogue").await;

    // The rules, where each is defined, and the flaky group's distance.
    c.goto(&format!("{}/rules", srv.base)).await.unwrap();
    let rules = text(&c, "#rules").await;
    assert!(
        rules.contains("r.yaml:2") && rules.contains("r.yaml:9"),
        "{rules}"
    );
    assert!(rules.contains("count: 1/3 (2 to go)"), "{rules}");
    screenshot(&c, "rules").await;

    srv.wait_for("the first readiness pass", || async {
        srv.get_any("/readyz").await.1["readiness"]["checked"] == true
    })
    .await;
    c.goto(&format!("{}/health", srv.base)).await.unwrap();
    assert_eq!(text(&c, "#ready").await, "ready");
    assert!(text(&c, "#leadership").await.contains("leader"));
    // Every runbook the rules and catalogue can call, in each region, as
    // the checker found it at the fake AWS: the rule's own document is
    // registered there, the catalogue's are not.
    let restart = text(&c, "#rb-DR-Restart-ap-northeast-2").await;
    assert!(
        restart.contains("ready") && !restart.contains("not ready"),
        "{restart}"
    );
    let standby = text(&c, "#rb-DR-ScaleStandby-ap-northeast-1").await;
    assert!(standby.contains("document not found"), "{standby}");
    assert!(text(&c, "#runbooks").await.contains("not ready"));
    screenshot(&c, "health").await;

    c.close().await.unwrap();
    srv.stop().await;
}

/// What the console answers to a request by hand (no browser).
async fn get(srv: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = srv.client.get(format!("{}{path}", srv.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn reads_need_a_credential_and_forms_need_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let console = "console:\n  secure_cookies: false\n  auth_proxy:\n    header: X-Forwarded-User\n    \
                   trusted_proxies: [10.9.9.9]\n";
    let (srv, _aws) = start(dir.path(), console).await;
    srv.post(&down("payment")).await;
    let id = incident_of(&srv, "payment", "awaiting_approval").await;
    let page = format!("/incidents/{id}");

    let (code, body) = get(&srv, &page, &[]).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("Sign in"));
    // The proxy's header from an address that is not the proxy's is
    // ignored: a client cannot name itself.
    let (code, _) = get(&srv, &page, &[("x-forwarded-user", "alice")]).await;
    assert_eq!(code, 401);
    // A read token reads, but is offered no buttons.
    let bearer = format!("Bearer {READ_TOKEN}");
    let (code, body) = get(&srv, &page, &[("authorization", &bearer)]).await;
    assert_eq!(code, 200);
    assert!(body.contains("awaiting_approval") && !body.contains("id=\"approve\""));
    // Alice's own token: the buttons, and a form token to post with.
    let alice = format!("Bearer {}", token_of("alice"));
    let resp = srv
        .client
        .get(format!("{}{page}", srv.base))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let csrf = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("drr_csrf="))
        .unwrap()
        .to_owned();
    assert!(resp.text().await.unwrap().contains("id=\"approve\""));

    let post = |form: String, with_cookie: bool| {
        let mut req = srv
            .client
            .post(format!("{}{page}/approve", srv.base))
            .header("authorization", &alice)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        if with_cookie {
            req = req.header("cookie", format!("drr_csrf={csrf}"));
        }
        req
    };
    // Without the cookie, or with another token: refused, and no vote.
    for (form, with_cookie) in [
        (format!("csrf={csrf}"), false),
        ("csrf=0123456789abcdef0123456789abcdef".to_owned(), true),
        (String::new(), true),
    ] {
        let resp = post(form.clone(), with_cookie).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{form} cookie={with_cookie}");
    }
    assert!(!events(&srv, &id).await.iter().any(|e| e["kind"] == "vote"));
    // With both: alice's vote, through the API's checks.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{page}/approve", srv.base))
        .header("authorization", &alice)
        .header("cookie", format!("drr_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&reason=from+the+console"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    wait_event(&srv, &id, "vote").await;
    let v = events(&srv, &id)
        .await
        .into_iter()
        .find(|e| e["kind"] == "vote")
        .unwrap();
    assert_eq!(
        (v["actor"].as_str(), v["reason"].as_str()),
        (Some("alice"), Some("approved by alice: from the console"))
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_auth_proxy_names_the_person_from_its_own_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let console = "console:\n  secure_cookies: false\n  auth_proxy:\n    header: X-Auth-Request-User\n    \
                   trusted_proxies: [127.0.0.0/8]\n    users: {carol@example.com: carol}\n";
    let (srv, _aws) = start(dir.path(), console).await;
    let (code, body) = get(&srv, "/", &[("x-auth-request-user", "carol@example.com")]).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("<strong id=\"who\">carol</strong>"),
        "mapped to the directory id"
    );
    let (code, body) = get(&srv, "/health", &[("x-auth-request-user", "dave")]).await;
    assert_eq!(code, 200);
    assert!(
        body.contains("<strong id=\"who\">dave</strong>"),
        "an unmapped name as it is"
    );
    assert_eq!(
        get(&srv, "/health", &[]).await.0,
        401,
        "no header, no token"
    );
    srv.stop().await;
}

/// The console's abort goes through the same role decision as the API's:
/// a person outside every approver group (and without the operator role)
/// is refused with the role named, and nothing is recorded or called; an
/// operator's abort passes that check (and is then judged on the state).
#[tokio::test]
async fn a_console_action_is_refused_to_a_person_without_the_role() {
    let dir = tempfile::tempdir().unwrap();
    let console = "console:\n  secure_cookies: false\n  auth_proxy:\n    header: X-Auth-Request-User\n    \
                   trusted_proxies: [127.0.0.0/8]\n    groups_header: X-Auth-Request-Groups\n    \
                   roles: {sre-oncall: [operator]}\n";
    let (srv, aws) = start(dir.path(), console).await;
    srv.post(&down("payment")).await;
    let id = incident_of(&srv, "payment", "awaiting_approval").await;
    let page = format!("/incidents/{id}");
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let abort_as = |who: &'static str, groups: &'static str| {
        let (srv, page, client) = (&srv, page.clone(), no_redirect.clone());
        async move {
            let resp = client
                .get(format!("{}{page}", srv.base))
                .header("x-auth-request-user", who)
                .header("x-auth-request-groups", groups)
                .send()
                .await
                .unwrap();
            let csrf = resp
                .headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|c| c.split(';').next())
                .and_then(|kv| kv.strip_prefix("drr_csrf="))
                .unwrap()
                .to_owned();
            let resp = client
                .post(format!("{}{page}/abort", srv.base))
                .header("x-auth-request-user", who)
                .header("x-auth-request-groups", groups)
                .header("cookie", format!("drr_csrf={csrf}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf={csrf}&reason=stop"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 303);
            let location = resp.headers()["location"].to_str().unwrap().to_owned();
            form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
                .find(|(k, _)| k == "done")
                .map(|(_, v)| v.into_owned())
                .unwrap()
        }
    };
    let notice = abort_as("dave", "eng, on-call").await;
    assert_eq!(
        notice,
        "Not done: dave may not abort: it needs the operator role"
    );
    // The same person, in a proxy group mapped to the operator role (the
    // directory's carol is an operator by being a lead): past the role
    // check, and judged on the incident's state.
    for (who, groups) in [("dave", "eng, sre-oncall"), ("carol", "")] {
        let notice = abort_as(who, groups).await;
        assert!(
            !notice.contains("may not") && notice.contains("only an approved or running plan"),
            "{who}: {notice}"
        );
    }
    assert!(
        !events(&srv, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "abort_requested" || e["kind"] == "aborted")
    );
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());
    srv.stop().await;
}
