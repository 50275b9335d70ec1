//! The compiled binary: exit statuses and the shipped example config.

mod support;

use std::process::Command;

use support::repo_path;

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
