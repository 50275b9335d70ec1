//! Keeps deploy/ from rotting: every YAML and JSON file parses; every
//! dr-reactor metric the dashboard and alert rules query is one the code
//! registers; where Debian's promtool and amtool are installed (`.ci/run`
//! installs them), the Prometheus rules and the Alertmanager config pass
//! their own checkers; the Dockerfile builds without swallowed errors and
//! runs as a non-root user with the chart's config path; the Slack app
//! manifest points at the interactivity route with the scopes the code
//! needs. The Helm chart is checked by the real helm in tests/helm.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde_json::Value;

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

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"))
}

#[test]
fn alertmanager_receiver_and_prometheus_rules_feed_dr_reactor() {
    let am = yaml(
        &std::fs::read_to_string(root().join("deploy/alertmanager/alertmanager.yml")).unwrap(),
        "alertmanager.yml",
    );
    let receiver = am["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "dr-reactor")
        .expect("a dr-reactor receiver");
    let hook = &receiver["webhook_configs"][0];
    assert!(
        hook["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/alerts/alertmanager")
    );
    assert_eq!(hook["send_resolved"], true, "resolved alerts end signals");
    assert_eq!(hook["http_config"]["authorization"]["type"], "Bearer");
    assert!(hook["http_config"]["authorization"]["credentials_file"].is_string());

    let signals = yaml(
        &std::fs::read_to_string(root().join("deploy/prometheus/dr-signals.rules.yml")).unwrap(),
        "dr-signals.rules.yml",
    );
    let watchdog = signals["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "Watchdog")
        .expect("a Watchdog alert: the region heartbeat");
    assert_eq!(watchdog["expr"], "vector(1)", "always firing");

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/dr-reactor-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(!dashboard["panels"].as_array().unwrap().is_empty());
}

/// Metric names the code registers (prefix dr_reactor_): the first
/// argument of every metric constructor in the telemetry module (read from
/// the source: the registry lists a labelled metric only once it has a
/// child).
fn registered_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let re = Regex::new(r#"(?:new|counter|histogram)[a-z_]*\(\s*"([a-z][a-z0-9_]*)""#).unwrap();
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
        "deploy/helm/dr-reactor/files/dr-reactor-health.rules.yml",
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
    // The rule files; the example Prometheus config (alert relabelling, with
    // the DR rules it loads); the unit tests of the DR rules' zone joins.
    for args in [
        &[
            "check",
            "rules",
            "deploy/prometheus/dr-signals.rules.yml",
            "deploy/helm/dr-reactor/files/dr-reactor-health.rules.yml",
        ][..],
        &["check", "config", "deploy/prometheus/prometheus-dr.yml"],
        &["test", "rules", "deploy/prometheus/dr-signals.test.yml"],
    ] {
        match run("promtool", args) {
            Some(o) => assert!(
                o.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            None => {
                eprintln!("promtool not installed: skipped its check (.ci/run installs it)");
                break;
            }
        }
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

/// The image: no step's failure is swallowed, it runs as a non-root user,
/// and it starts with the config baked where the chart mounts its own
/// (tests/helm.rs checks that the two configs are the same).
#[test]
fn dockerfile_fails_loudly_and_runs_as_non_root_with_the_charts_config_path() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    // Instructions with their continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let instructions: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let swallowed = Regex::new(r"\|\|\s*(true|:)").unwrap();
    for i in &instructions {
        assert!(!swallowed.is_match(i), "a failure is swallowed: {i}");
    }
    let last_stage = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .unwrap();
    let runtime = &instructions[last_stage..];
    let user = runtime
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("the runtime stage names a USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u >= 1000),
        "USER {user}: numeric and not root, so runAsNonRoot can verify it"
    );
    let config_path = "/etc/dr-reactor/config/dr-reactor.yaml";
    assert!(
        runtime.contains(&format!("COPY deploy/image/dr-reactor.yaml {config_path}").as_str()),
        "the config is baked at {config_path}"
    );
    let cmd = runtime
        .iter()
        .find_map(|i| i.strip_prefix("CMD "))
        .expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_eq!(cmd, ["serve", "--config", config_path]);
    for copied in runtime.iter().filter_map(|i| i.strip_prefix("COPY ")) {
        if copied.starts_with("--from") {
            continue;
        }
        let source = copied.split_whitespace().next().unwrap();
        assert!(root().join(source).exists(), "COPY {source}: no such file");
    }
}

/// The Slack app manifest asks for what the code uses and nothing more,
/// and sends interactions and the `/dr` command to the routes that verify
/// them.
#[test]
fn slack_manifest_matches_the_code() {
    let manifest = yaml(
        &std::fs::read_to_string(root().join("deploy/slack/manifest.yaml")).unwrap(),
        "manifest.yaml",
    );
    let interactivity = &manifest["settings"]["interactivity"];
    assert_eq!(interactivity["is_enabled"], true);
    let url = interactivity["request_url"].as_str().unwrap();
    assert!(url.starts_with("https://"), "{url}");
    assert!(url.ends_with("/api/v1/slack/interactions"), "{url}");
    let routes = std::fs::read_to_string(root().join("docs/http-api.md")).unwrap();
    assert!(routes.contains("`POST /api/v1/slack/interactions`"));

    // Web API methods the code calls → the scope each needs.
    let mut needed = BTreeSet::new();
    let call = Regex::new(r"\.(chat_post_message|chat_update|[a-z]+_[a-z_]+)\(&req\)").unwrap();
    for f in files_under("src/approval") {
        for c in call.captures_iter(&std::fs::read_to_string(&f).unwrap()) {
            let scope = match &c[1] {
                "chat_post_message" | "chat_update" => "chat:write",
                other => panic!("{}: no scope known for {other}", f.display()),
            };
            needed.insert(scope.to_owned());
        }
    }
    // A slash command route needs the `commands` scope and the command in
    // the manifest, pointing at that route. The routes are those of the
    // OpenAPI document, which tests/openapi.rs holds to the route table.
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schema/openapi.json")).unwrap())
            .unwrap();
    if spec["paths"].get("/api/v1/slack/commands").is_some() {
        needed.insert("commands".to_owned());
        let commands = manifest["features"]["slash_commands"].as_array().unwrap();
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0]["command"], "/dr");
        let url = commands[0]["url"].as_str().unwrap();
        assert!(
            url.starts_with("https://") && url.ends_with("/api/v1/slack/commands"),
            "{url}"
        );
        assert!(routes.contains("`POST /api/v1/slack/commands`"));
    }
    let asked: BTreeSet<String> = manifest["oauth_config"]["scopes"]["bot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert!(!needed.is_empty());
    assert_eq!(asked, needed);
}

fn files_under(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(&root().join(dir), &mut out);
    out
}

fn json_file(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

/// dr-reactor's role may make exactly the AWS calls the code makes, on
/// named resources; the runbooks' executor role is SSM's to assume, and
/// dr-reactor's role is the chart's service account's.
#[test]
fn iam_policies_grant_what_the_code_calls_and_no_more() {
    let mut called = BTreeSet::new();
    let call = Regex::new(r"\.(start_automation_execution|get_automation_execution|stop_automation_execution|describe_document|get_function|invoke|put_object)\(\)").unwrap();
    for f in files_under("src/dispatch")
        .into_iter()
        .chain(files_under("src/report"))
    {
        for c in call.captures_iter(&std::fs::read_to_string(&f).unwrap()) {
            called.insert(match &c[1] {
                "start_automation_execution" => "ssm:StartAutomationExecution",
                "get_automation_execution" => "ssm:GetAutomationExecution",
                "stop_automation_execution" => "ssm:StopAutomationExecution",
                "describe_document" => "ssm:DescribeDocument",
                "get_function" => "lambda:GetFunction",
                "put_object" => "s3:PutObject",
                _ => "lambda:InvokeFunction",
            });
        }
    }
    assert_eq!(called.len(), 7, "{called:?}");

    let policy = json_file("deploy/aws/dr-reactor-policy.json");
    let mut granted = BTreeSet::new();
    for s in policy["Statement"].as_array().unwrap() {
        assert_eq!(s["Effect"], "Allow", "{s}");
        assert!(s["Sid"].is_string(), "every statement says why: {s}");
        for r in as_list(&s["Resource"]) {
            assert_ne!(r, "*", "{s}");
        }
        for a in as_list(&s["Action"]) {
            let a = a.as_str().unwrap();
            assert!(!a.contains('*'), "{a}");
            granted.insert(a);
        }
        if s["Action"] == "iam:PassRole" {
            assert_eq!(
                s["Condition"]["StringEquals"]["iam:PassedToService"],
                "ssm.amazonaws.com"
            );
        }
    }
    granted.remove("iam:PassRole");
    assert_eq!(granted, called);

    let executor = json_file("deploy/aws/dr-automation-trust-policy.json");
    for s in executor["Statement"].as_array().unwrap() {
        assert_eq!(
            s["Principal"],
            serde_json::json!({"Service": "ssm.amazonaws.com"})
        );
        assert_eq!(s["Action"], "sts:AssumeRole");
        assert!(s["Condition"]["StringEquals"]["aws:SourceAccount"].is_string());
    }
    let own = json_file("deploy/aws/dr-reactor-trust-policy.json");
    for s in own["Statement"].as_array().unwrap() {
        assert_eq!(s["Action"], "sts:AssumeRoleWithWebIdentity");
        let conditions = s["Condition"]["StringEquals"].as_object().unwrap();
        assert!(
            conditions.iter().any(|(k, v)| k.ends_with(":sub")
                && v.as_str().unwrap().starts_with("system:serviceaccount:")),
            "one service account only: {s}"
        );
    }
    let doc = std::fs::read_to_string(root().join("docs/dispatch.md")).unwrap();
    for f in [
        "dr-reactor-policy.json",
        "dr-reactor-trust-policy.json",
        "dr-automation-trust-policy.json",
    ] {
        assert!(
            doc.contains(&format!("(../deploy/aws/{f})")),
            "docs link {f}"
        );
    }
    assert!(
        !doc.contains("\"Statement\""),
        "the docs hold no copy of a policy"
    );
}
