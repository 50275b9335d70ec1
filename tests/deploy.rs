//! Keeps deploy/ from rotting: every YAML and JSON file parses; every
//! `.Values.…` a Helm template uses exists in values.yaml; every dr-reactor
//! metric the dashboard and alert rules query is one the code registers;
//! and, where Debian's promtool and amtool are installed (`.ci/run`
//! installs them), the Prometheus rules and the Alertmanager config pass
//! their own checkers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn deploy_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(&root().join("deploy"), &mut out);
    out.sort();
    out
}

fn is_template(p: &Path) -> bool {
    p.components().any(|c| c.as_os_str() == "templates")
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut checked = 0;
    for p in deploy_files().iter().filter(|p| !is_template(p)) {
        let text = std::fs::read_to_string(p).unwrap();
        match p.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                serde_saphyr::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
            Some("json") => {
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
            _ => continue,
        }
        checked += 1;
    }
    assert!(checked >= 6, "checked {checked} files");
}

/// Helm templates cannot be parsed before rendering, and helm is not
/// installed here; what rots in practice is a template naming a value that
/// was renamed or removed, so check exactly that.
#[test]
fn helm_templates_only_use_values_that_exist() {
    let chart = root().join("deploy/helm/dr-reactor");
    let values: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap())
            .unwrap();
    let re = Regex::new(r"\.Values((?:\.[A-Za-z0-9_]+)+)").unwrap();
    let mut used = 0;
    for p in deploy_files().iter().filter(|p| is_template(p)) {
        let text = std::fs::read_to_string(p).unwrap();
        for c in re.captures_iter(&text) {
            let path: Vec<&str> = c[1].trim_start_matches('.').split('.').collect();
            let found = path.iter().try_fold(&values, |v, k| v.get(*k));
            assert!(
                found.is_some(),
                "{} uses .Values{} which values.yaml does not have",
                p.display(),
                &c[1]
            );
            used += 1;
        }
    }
    assert!(used > 10, "templates use {used} values");
}

/// Metric names the code registers (prefix dr_reactor_).
fn registered_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let re = Regex::new(r#""([a-z][a-z0-9_]*_(?:total|seconds|open|loaded))""#).unwrap();
    for f in ["src/telemetry.rs"] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        for c in re.captures_iter(&text) {
            names.insert(format!("dr_reactor_{}", &c[1]));
        }
    }
    names
}

#[test]
fn dashboard_and_alerts_query_metrics_that_exist() {
    let registered = registered_metrics();
    assert!(
        registered.contains("dr_reactor_alerts_received_total"),
        "{registered:?}"
    );
    let re = Regex::new(r"dr_reactor_[a-z0-9_]+").unwrap();
    for f in [
        "deploy/grafana/dr-reactor-dashboard.json",
        "deploy/prometheus/dr-reactor-health.rules.yml",
    ] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        for m in re.find_iter(&text) {
            let name = m.as_str().trim_end_matches("_bucket");
            assert!(
                registered.contains(name),
                "{f} queries {name}, which the code does not register"
            );
        }
    }
}

#[test]
fn prometheus_and_alertmanager_accept_the_files() {
    let run = |tool: &str, args: &[&str]| -> Option<std::process::Output> {
        Command::new(tool)
            .args(args)
            .current_dir(root())
            .output()
            .ok()
    };
    match run(
        "promtool",
        &[
            "check",
            "rules",
            "deploy/prometheus/dr-signals.rules.yml",
            "deploy/prometheus/dr-reactor-health.rules.yml",
        ],
    ) {
        Some(o) => assert!(
            o.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        None => eprintln!("promtool not installed: skipped its check (.ci/run installs it)"),
    }
    match run(
        "amtool",
        &["check-config", "deploy/alertmanager/alertmanager.yml"],
    ) {
        Some(o) => assert!(
            o.status.success(),
            "amtool: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        None => eprintln!("amtool not installed: skipped its check (.ci/run installs it)"),
    }
}
