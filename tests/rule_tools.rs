//! The rule tooling a git workflow runs in CI: `dr-reactor validate`,
//! `dr-reactor test` and `dr-reactor replay`, run as the compiled binary from
//! the repository root. Error output is compared to the exact text in the
//! `.out` snapshot next to each broken fixture.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn snapshot(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn shipped_rules_and_catalogue_validate() {
    let o = run(&["validate", "rules", "--catalogue", "config/services.yaml"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("ok: 14 rule(s) in 4 file(s), 5 service(s)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn validate_reports_every_error_with_position() {
    for (fixture, catalogue) in [
        ("unknown-key", "config/services.yaml"),
        ("bad-values", "config/services.yaml"),
        ("holds-and-templates", "config/services.yaml"),
        ("runtime-bounds", "config/services.yaml"),
    ] {
        let o = run(&[
            "validate",
            &format!("tests/fixtures/validate/{fixture}.yaml"),
            "--catalogue",
            catalogue,
        ]);
        assert_eq!(o.status.code(), Some(1), "{fixture}");
        assert_eq!(
            stdout(&o),
            snapshot(&format!("tests/fixtures/validate/{fixture}.out")),
            "{fixture}"
        );
    }
}

#[test]
fn validate_names_catalogue_cycles_unknown_services_and_runbooks() {
    let o = run(&[
        "validate",
        "tests/fixtures/validate/ok-rule.yaml",
        "--catalogue",
        "tests/fixtures/validate/broken-catalogue.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        snapshot("tests/fixtures/validate/broken-catalogue.out")
    );
}

#[test]
fn shipped_rule_tests_pass() {
    let mut args = vec!["test".to_owned()];
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".test.yaml") {
            args.push(format!(
                "tests/rules/{}",
                p.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert_eq!(args.len(), 5, "one test file per scenario A-D: {args:?}");
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.ends_with("36 passed, 0 failed\n"), "{out}");
}

#[test]
fn failing_rule_tests_print_a_readable_diff() {
    let o = run(&["test", "tests/fixtures/rulestest/wrong.test.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), snapshot("tests/fixtures/rulestest/wrong.out"));
}

/// Each scenario's recorded trace replays to the incident it demonstrates.
#[test]
fn shipped_traces_replay_to_their_scenarios() {
    let cases = [
        (
            "az-failure",
            vec![
                "+1m 5s  incident az_failure{region=\"ap-northeast-2\",zone=\"ap-northeast-2a\"} detected",
                "az_failure{region=\"ap-northeast-2\",zone=\"ap-northeast-2a\"} [suppressed, open] rule az-failure",
                "service_failure{region=\"ap-northeast-2\",service=\"auth\"} [suppressed, open] rule service-failure, absorbed by az_failure",
                "4 incident(s):",
            ],
        ),
        (
            "region-outage",
            vec![
                "+4m  incident region_outage{region=\"ap-northeast-2\"} detected",
                "6. flip DNS failover to the DR region — SSM Automation DR-Route53Failover in ap-northeast-1",
                "1 incident(s):",
            ],
        ),
        (
            "service-failure",
            vec![
                "rule service-failure-after-deploy",
                "1. roll back to the previous release — SSM Automation DR-HelmRollback in ap-northeast-2",
                "1 incident(s):",
            ],
        ),
        (
            "data-loss",
            vec![
                "data_loss{region=\"ap-northeast-2\",service=\"order\"} [suppressed, open] rule data-loss",
                "1. order: point-in-time restore to a new instance, verify, switch over",
                "1 incident(s):",
            ],
        ),
    ];
    for (trace, wants) in cases {
        let o = run(&["replay", &format!("examples/traces/{trace}.jsonl")]);
        let out = stdout(&o);
        assert!(o.status.success(), "{trace}: {out}");
        for w in wants {
            assert!(out.contains(w), "{trace}: missing {w:?} in\n{out}");
        }
    }
}

/// A zone's services alerting in one delivery (the quick start's payload),
/// 15 s apart, and over a minute (the recorded trace, 30 s apart): no
/// service incident is ever admitted, approved or dispatched; each is
/// absorbed by the zone incident (at once, or after waiting in its hold),
/// whose plan covers all three in catalogue order.
#[test]
fn staggered_zone_failures_never_act_on_a_service_alone() {
    // (trace, how many incidents are held: the zone's, plus the services
    // that arrived before the zone formed)
    for (trace, held) in [
        ("az-failure-one-delivery", 1),
        ("az-failure-staggered", 3),
        ("az-failure", 3),
    ] {
        let o = run(&["replay", &format!("examples/traces/{trace}.jsonl")]);
        let out = stdout(&o);
        assert!(o.status.success(), "{trace}: {out}");
        for line in out
            .lines()
            .filter(|l| l.contains("incident service_failure"))
        {
            for acted in ["admitted", "approved", "step_dry_run", "hold_ended"] {
                assert!(
                    !line.contains(acted),
                    "{trace}: a service acted alone: {line}"
                );
            }
        }
        for service in ["auth", "order", "payment"] {
            let absorbed = format!(
                "service_failure{{region=\"ap-northeast-2\",service=\"{service}\"}} [suppressed, open] rule service-failure, absorbed by az_failure"
            );
            assert!(
                out.contains(&absorbed),
                "{trace}: {service} not absorbed:\n{out}"
            );
        }
        assert!(
            out.contains("1. auth: scale up") && out.contains("3. payment: scale up"),
            "{trace}: {out}"
        );
        let holds = out.lines().filter(|l| l.contains("held: waiting")).count();
        assert_eq!(holds, held, "{trace}: who waited\n{out}");
    }
}

#[test]
fn replay_rejects_bad_input_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        "{\"at\":\"2026-01-01T00:00:00Z\",\"signal\":{\"name\":\"A\"}}\nnot json\n",
    )
    .unwrap();
    let o = run(&["replay", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2: expected ident"), "{err}");
}

/// The shipped schemas are what the loader's types (and the HTTP route
/// table) generate, and every shipped rule file points its editor at them.
#[test]
fn shipped_json_schemas_are_up_to_date() {
    for (kind, file) in [
        ("rules", "schema/rules.schema.json"),
        ("catalogue", "schema/services.schema.json"),
        ("openapi", "schema/openapi.json"),
    ] {
        let o = run(&["schema", kind]);
        assert!(o.status.success());
        assert_eq!(
            stdout(&o),
            snapshot(file),
            "{file} is stale: run `dr-reactor schema {kind} > {file}`"
        );
    }
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=../schema/rules.schema.json"));
    }
}

/// `service-failure-signalled` leaves the alerts the two named
/// service-failure rules recognise to them (they know about deploys): its
/// exclusion list must stay equal to their name list, without `Deploy`.
#[test]
fn service_down_rule_excludes_exactly_the_named_alerts() {
    let text = snapshot("rules/service-failure.yaml");
    let rules: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let names = |rule: &str, prefix: &str| -> Vec<String> {
        let r = rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == rule)
            .unwrap_or_else(|| panic!("no rule {rule}"));
        let m = r["match"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str()?.strip_prefix(prefix))
            .next()
            .unwrap_or_else(|| panic!("{rule}: no {prefix} matcher"));
        let mut v: Vec<String> = m
            .trim_matches('"')
            .split('|')
            .filter(|n| *n != "Deploy")
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let named = names("service-failure", "__name__=~");
    assert_eq!(named, names("service-failure-after-deploy", "__name__=~"));
    assert_eq!(names("service-failure-signalled", "__name__!~"), named);
}
