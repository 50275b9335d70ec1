//! The compiled binary: exit statuses, the shipped example config, and
//! the commands that show incidents as the console does, against a running
//! server with incidents seeded through the API.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::approval::{self, failover_rule, rule_file, token_of, vote, wait_state};
use support::{READ_TOKEN, Server, repo_path};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
}

#[test]
fn missing_config_exits_2_naming_the_file() {
    let out = bin()
        .args(["serve", "--config", "/nonexistent/dr-reactor.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/dr-reactor.yaml: cannot read config file"),
        "{err}"
    );
}

#[test]
fn invalid_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "webhook:\n  auth:\n    bearer_token: x\nstroe:\n  url: sqlite://x.db\n",
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c.yaml:4:1"), "{err}");
    assert!(err.contains("stroe"), "{err}");
}

#[test]
fn example_config_needs_its_token_from_the_environment() {
    let out = bin()
        .args(["serve", "--config"])
        .arg(repo_path("config/dr-reactor.yaml"))
        .env_remove("DR_REACTOR_WEBHOOK_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DR_REACTOR_WEBHOOK_TOKEN"), "{err}");
}

#[test]
fn shipped_example_config_and_rules_load() {
    let cfg = dr_reactor::config::Config::parse(
        &std::fs::read_to_string(repo_path("config/dr-reactor.yaml")).unwrap(),
        std::path::Path::new("config/dr-reactor.yaml"),
    );
    // The token comes from the environment; give the parse one inline.
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            assert!(e.to_string().contains("DR_REACTOR_WEBHOOK_TOKEN"), "{e}");
            let text = std::fs::read_to_string(repo_path("config/dr-reactor.yaml"))
                .unwrap()
                .replace("{env: DR_REACTOR_WEBHOOK_TOKEN}", "example");
            dr_reactor::config::Config::parse(&text, std::path::Path::new("x")).unwrap()
        }
    };
    assert!(cfg.dispatch.dry_run, "the example must not dispatch");
    let rules = dr_reactor::rules::RuleSet::load(
        &[repo_path("rules")],
        Some(&repo_path("config/services.yaml")),
    )
    .unwrap();
    assert!(!rules.rules.is_empty());
}

/// `dr-reactor ARGS --url <server>` with the read token; (exit code,
/// stdout, stderr). Not a terminal, so never coloured.
async fn run(srv: &Server, args: &[&str], token: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
        .args(args)
        .args(["--url", &srv.base])
        .env("DR_REACTOR_API_TOKEN", token)
        .env_remove("DR_REACTOR_ADMIN_TOKEN")
        .env_remove("NO_COLOR")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two declared incidents: one approved and run to the end against the
/// fake AWS, one still awaiting approval. Their ids, in that order.
async fn seeded(srv: &Server) -> (String, String) {
    for region in ["sa-east-1", "eu-west-1"] {
        let (code, _, err) = run(
            srv,
            &[
                "declare",
                "failover",
                "--label",
                &format!("region={region}"),
            ],
            &token_of("carol"),
        )
        .await;
        assert_eq!(code, 0, "{err}");
    }
    let done = wait_state(srv, "sa-east-1", "awaiting_approval").await;
    let waiting = wait_state(srv, "eu-west-1", "awaiting_approval").await;
    assert_eq!(vote(srv, &done, "approve", "alice").await.0, 200);
    wait_state(srv, "sa-east-1", "succeeded").await;
    (done, waiting)
}

#[tokio::test]
async fn incidents_and_show_print_what_the_console_shows() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = approval::start(dir.path(), &rule_file(&[failover_rule()]), "100ms").await;
    let (done, waiting) = seeded(&srv).await;

    // The list: a header and one row per incident, newest first.
    let (code, table, err) = run(&srv, &["incidents"], READ_TOKEN).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "STATE", "SCENARIO", "LABELS", "OPENED", "AGE"]
    );
    assert_eq!(lines.len(), 3, "{table}");
    let row = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (newest, oldest) = (row(lines[1]), row(lines[2]));
    assert_eq!(
        newest[..4],
        [
            &waiting,
            "awaiting_approval",
            "failover",
            "region=eu-west-1"
        ]
    );
    assert_eq!(
        oldest[..4],
        [&done, "succeeded", "failover", "region=sa-east-1"]
    );
    // OPENED is a date and a time; AGE is seconds old.
    assert!(
        newest[5].ends_with('Z') && newest[6].ends_with('s'),
        "{newest:?}"
    );
    assert!(
        !table.contains('\x1b'),
        "no colour off a terminal: {table:?}"
    );

    // Filters go to the server.
    let (_, table, _) = run(&srv, &["incidents", "--state", "succeeded"], READ_TOKEN).await;
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with(&done), "{table}");
    let (_, table, _) = run(&srv, &["incidents", "--scenario", "drain"], READ_TOKEN).await;
    assert_eq!(table, "no incidents\n");
    let (_, table, _) = run(&srv, &["incidents", "--limit", "1"], READ_TOKEN).await;
    assert_eq!(table.lines().count(), 3, "one row and a note: {table}");
    assert!(table.contains("more: raise --limit"), "{table}");

    // One incident: header, timeline, plan with each step's state.
    let (code, page, err) = run(&srv, &["show", &done], READ_TOKEN).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        page.starts_with(&format!("incident {done}  succeeded\n")),
        "{page}"
    );
    assert!(page.contains("rule failover"), "{page}");
    assert!(page.contains("region=sa-east-1"), "{page}");
    let timeline = &page[page.find("Timeline").unwrap()..page.find("Plan (").unwrap()];
    for kind in [
        "declared",
        "planned",
        "approval_requested",
        "step_succeeded",
    ] {
        assert!(timeline.contains(kind), "{kind} missing from {timeline}");
    }
    assert!(
        timeline.contains("awaiting_approval → approved"),
        "{timeline}"
    );
    let plan = &page[page.find("Plan (2 steps)").unwrap()..];
    let steps: Vec<Vec<&str>> = plan
        .lines()
        .skip(2)
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(steps.len(), 2, "{plan}");
    assert_eq!(
        steps[0][..4],
        [
            "1",
            "promote the replica",
            "SSM Automation DR-Promote in ap-northeast-1",
            "succeeded"
        ]
    );
    assert_eq!(
        steps[1][..4],
        [
            "2",
            "flip DNS",
            "SSM Automation DR-Flip in ap-northeast-1",
            "succeeded"
        ]
    );
    let (_, page, _) = run(&srv, &["show", &waiting], READ_TOKEN).await;
    let plan = &page[page.find("Plan (2 steps)").unwrap()..];
    assert_eq!(plan.matches("pending").count(), 2, "{plan}");

    // An unknown incident: the server's refusal, exit status 1.
    let (code, out, err) = run(&srv, &["show", "nope"], READ_TOKEN).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("show refused (404)"), "{err}");
    srv.stop().await;
}

#[tokio::test]
async fn output_json_prints_what_the_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _aws) = approval::start(dir.path(), &rule_file(&[failover_rule()]), "100ms").await;
    let (done, waiting) = seeded(&srv).await;
    let json_of =
        |out: &str| -> Value { serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}")) };

    let (code, out, err) = run(&srv, &["--output", "json", "incidents"], READ_TOKEN).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out), srv.get("/api/v1/incidents?limit=50").await);
    let (_, out, _) = run(&srv, &["show", &done, "--output", "json"], READ_TOKEN).await;
    let shown = json_of(&out);
    assert_eq!(
        shown,
        srv.get(&format!("/api/v1/incidents/{done}?limit=1000"))
            .await
    );
    assert_eq!(shown["steps"][1]["state"], "succeeded");

    // Operator commands print the server's answer as it is, refusals too.
    let (code, out, _) = run(
        &srv,
        &["--output", "json", "approve", &waiting],
        &token_of("bob"),
    )
    .await;
    assert_eq!(code, 0);
    let answer = json_of(&out);
    assert_eq!(answer["status"], "ok");
    assert_eq!(answer["verdict"], "approved");
    let (code, out, _) = run(
        &srv,
        &["--output", "json", "retry", &waiting],
        &token_of("bob"),
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(json_of(&out)["status"], "error");
    let (_, out, _) = run(&srv, &["--output", "json", "silence", "list"], READ_TOKEN).await;
    assert_eq!(json_of(&out), json!({"status": "ok", "silences": []}));
    srv.stop().await;
}

#[test]
fn validate_prints_json_on_request() {
    let out = bin()
        .args(["validate", "--output", "json", "--catalogue"])
        .arg(repo_path("config/services.yaml"))
        .arg(repo_path("rules"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["rules"].as_u64().unwrap() > 0, "{v}");
}

/// `replay` of a long recording: its progress on stderr when that is a
/// terminal (a pseudo-terminal from `script`, of bsdutils), nothing on it
/// otherwise; the timeline on stdout the same either way.
#[test]
fn replay_shows_progress_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("r.jsonl");
    let line = |i: usize| {
        json!({"at": format!("2026-11-30T10:{:02}:{:02}Z", i / 60, i % 60),
            "signal": {"name": "KubePodNotReady", "labels": {
            "alertname": "KubePodNotReady", "region": "ap-northeast-2", "zone": "a",
            "service": "checkout", "severity": "critical"}}})
        .to_string()
    };
    let text: Vec<String> = (0..200).map(line).collect();
    std::fs::write(&recording, text.join("\n")).unwrap();
    let args = [
        "replay".to_owned(),
        recording.display().to_string(),
        "--rules".to_owned(),
        repo_path("rules").display().to_string(),
        "--catalogue".to_owned(),
        repo_path("config/services.yaml").display().to_string(),
    ];
    let out = bin().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.is_empty(),
        "stderr is not a terminal: nothing on it: {err:?}"
    );
    let timeline = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(timeline.contains("signal"), "{timeline}");

    let piped = dir.path().join("timeline.txt");
    let command = format!(
        "'{}' '{}' > '{}'",
        env!("CARGO_BIN_EXE_dr-reactor"),
        args.join("' '"),
        piped.display()
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (bsdutils) runs the command on a pseudo-terminal");
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{screen}");
    assert!(
        screen.contains("/200"),
        "a progress bar on the terminal: {screen:?}"
    );
    assert_eq!(std::fs::read_to_string(&piped).unwrap(), timeline);
}
