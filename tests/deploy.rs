//! Keeps deploy/ from rotting: every YAML and JSON file parses; the Helm
//! chart renders (a small renderer for the template actions it uses, as no
//! helm binary is installed here) to valid YAML in both branches of every
//! condition, with the objects a deployment needs wired to each other;
//! every dr-reactor metric the dashboard and alert rules query is one the
//! code registers; and, where Debian's promtool and amtool are installed
//! (`.ci/run` installs them), the Prometheus rules and the Alertmanager
//! config pass their own checkers.

use std::collections::{BTreeMap, BTreeSet};
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

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/dr-reactor")
}

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"))
}

/// Renders the chart the way helm would for the template actions it uses:
/// `.Values.…`, `.Release.Name`, `include`, `toYaml`, `.Files.Get`, `nindent`,
/// `if`/`else`/`end` on a value or `not` a value. Anything else fails the test, so a new kind
/// of action extends this instead of going unchecked. With `flip`, every
/// condition is inverted: the two renders together cover every branch.
struct Chart {
    values: Value,
    defines: BTreeMap<String, String>,
}

const RELEASE: &str = "dr";

impl Chart {
    fn load() -> Chart {
        let values = yaml(
            &std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap(),
            "values.yaml",
        );
        let helpers = std::fs::read_to_string(chart_dir().join("templates/_helpers.tpl")).unwrap();
        let define =
            Regex::new(r#"(?s)\{\{-? define "([^"]+)" -?\}\}(.*?)\{\{-? end -?\}\}"#).unwrap();
        let defines = define
            .captures_iter(&helpers)
            .map(|c| {
                let body = c[2].trim().replace("{{ .Release.Name }}", RELEASE);
                assert!(!body.contains("{{"), "_helpers.tpl: {body}");
                (c[1].to_owned(), body)
            })
            .collect();
        Chart { values, defines }
    }

    fn value(&self, path: &str) -> &Value {
        let keys = path
            .strip_prefix(".Values.")
            .unwrap_or_else(|| panic!("not a value: {path}"));
        keys.split('.')
            .try_fold(&self.values, |v, k| v.get(k))
            .unwrap_or_else(|| panic!(".Values.{keys} is not in values.yaml"))
    }

    fn truthy(&self, path: &str) -> bool {
        match self.value(path) {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    /// The text of one pipeline's first stage.
    fn eval(&self, expr: &str) -> String {
        let include = Regex::new(r#"^include "([^"]+)" \.$"#).unwrap();
        let files = Regex::new(r#"^\.Files\.Get "([^"]+)"$"#).unwrap();
        if let Some(c) = include.captures(expr) {
            return self.defines[&c[1]].clone();
        }
        if let Some(c) = files.captures(expr) {
            return std::fs::read_to_string(chart_dir().join(&c[1])).unwrap();
        }
        if expr == ".Release.Name" {
            return RELEASE.into();
        }
        // JSON is YAML: good enough for toYaml's flow-insensitive readers.
        if let Some(path) = expr.strip_prefix("toYaml ") {
            return serde_json::to_string(self.value(path)).unwrap();
        }
        match self.value(expr) {
            Value::String(s) => s.clone(),
            v @ (Value::Bool(_) | Value::Number(_)) => v.to_string(),
            other => panic!("{expr} is not a scalar: {other}"),
        }
    }

    fn render(&self, template: &str, flip: bool) -> String {
        let text = std::fs::read_to_string(chart_dir().join("templates").join(template)).unwrap();
        let standalone = Regex::new(r"^\s*\{\{-?\s*(.*?)\s*-?\}\}\s*$").unwrap();
        let inline = Regex::new(r"\{\{-?\s*(.*?)\s*-?\}\}").unwrap();
        let nindent = Regex::new(r"^(.*?) \| nindent (\d+)$").unwrap();
        let mut open: Vec<bool> = Vec::new();
        let mut out = String::new();
        for line in text.lines() {
            let on = open.iter().all(|b| *b);
            if let Some(action) = standalone.captures(line).map(|c| c[1].to_owned()) {
                if let Some(cond) = action.strip_prefix("if ") {
                    let holds = match cond.strip_prefix("not ") {
                        Some(negated) => !self.truthy(negated),
                        None => self.truthy(cond),
                    };
                    open.push(holds != flip);
                } else if action == "else" {
                    let top = open.last_mut().expect("else inside if");
                    *top = !*top;
                } else if action == "end" {
                    open.pop().expect("end closes an if");
                } else if let Some(c) = nindent.captures(&action) {
                    if on {
                        let pad = " ".repeat(c[2].parse().unwrap());
                        for l in self.eval(&c[1]).lines() {
                            out.push_str(&pad);
                            out.push_str(l);
                            out.push('\n');
                        }
                    }
                } else {
                    panic!("{template}: the test's renderer does not know {{{{ {action} }}}}");
                }
                continue;
            }
            if on {
                let rendered = inline.replace_all(line, |c: &regex::Captures| self.eval(&c[1]));
                out.push_str(&rendered);
                out.push('\n');
            }
        }
        assert!(open.is_empty(), "{template}: unclosed if");
        out
    }

    /// Every object of every template, with `flip` as in [`Chart::render`].
    fn objects(&self, flip: bool) -> Vec<Value> {
        let mut objects = Vec::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("templates"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        names.sort();
        for p in names {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            let rendered = self.render(&name, flip);
            for doc in rendered.split("\n---\n") {
                if doc.lines().all(|l| l.trim().is_empty()) {
                    continue;
                }
                let v = yaml(doc, &format!("{name} (flip={flip})"));
                assert!(
                    v["apiVersion"].is_string() && v["kind"].is_string(),
                    "{name}: a document without apiVersion/kind"
                );
                objects.push(v);
            }
        }
        objects
    }
}

fn by_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    match by_kind(objects, kind)[..] {
        [o] => o,
        ref found => panic!("expected one {kind}, found {}", found.len()),
    }
}

/// The renders above skip a branch nested inside one they turn off; every
/// `.Values` reference must still exist.
#[test]
fn helm_templates_only_use_values_that_exist() {
    let chart = Chart::load();
    let re = Regex::new(r"\.Values(?:\.[A-Za-z0-9_]+)+").unwrap();
    let mut used = 0;
    for p in deploy_files().iter().filter(|p| is_template(p)) {
        for m in re.find_iter(&std::fs::read_to_string(p).unwrap()) {
            chart.value(m.as_str());
            used += 1;
        }
    }
    assert!(used > 10, "templates use {used} values");
}

#[test]
fn helm_chart_renders_in_every_branch() {
    let chart = Chart::load();
    let defaults = chart.objects(false);
    let flipped = chart.objects(true);
    let kinds: BTreeSet<&str> = defaults
        .iter()
        .chain(&flipped)
        .filter_map(|o| o["kind"].as_str())
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(kind), "the chart has no {kind}: {kinds:?}");
    }

    let env = Regex::new(r"\{env: ([A-Z0-9_]+)\}").unwrap();
    for objects in [&defaults, &flipped] {
        let deploy = one(objects, "Deployment");
        let pod = &deploy["spec"]["template"];
        let labels = &pod["metadata"]["labels"];
        assert!(labels.is_object(), "pod labels: {labels}");
        assert_eq!(deploy["spec"]["selector"]["matchLabels"], *labels);
        assert_eq!(
            one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
            *labels
        );
        assert_eq!(one(objects, "Service")["spec"]["selector"], *labels);
        for sm in by_kind(objects, "ServiceMonitor") {
            assert_eq!(sm["spec"]["selector"]["matchLabels"], *labels);
            assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
        }

        let spec = &pod["spec"];
        assert_eq!(
            spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                [0]["podAffinityTerm"]["topologyKey"],
            "topology.kubernetes.io/zone",
            "replicas spread across zones"
        );
        let c = &spec["containers"][0];
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");

        // Secrets come from the one existing Secret; the config names them.
        let mut env_names = BTreeSet::new();
        for e in c["env"].as_array().unwrap() {
            // The pod's own name, as the replica's name in the leader lease.
            if e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
                continue;
            }
            assert_eq!(
                e["valueFrom"]["secretKeyRef"]["name"], chart.values["existingSecret"],
                "{e}"
            );
            env_names.insert(e["name"].as_str().unwrap().to_owned());
        }

        // Volumes: config (and rules, when given) from the chart's ConfigMaps.
        let configmaps: BTreeMap<&str, &Value> = by_kind(objects, "ConfigMap")
            .into_iter()
            .map(|cm| (cm["metadata"]["name"].as_str().unwrap(), cm))
            .collect();
        let volumes: BTreeMap<&str, &Value> = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        let mut mounted = BTreeMap::new();
        for m in c["volumeMounts"].as_array().unwrap() {
            let volume = volumes[m["name"].as_str().unwrap()];
            if let Some(cm) = volume["configMap"]["name"].as_str() {
                let data = &configmaps
                    .get(cm)
                    .unwrap_or_else(|| panic!("no ConfigMap {cm}"))["data"];
                if let Some(key) = m["subPath"].as_str() {
                    assert!(data[key].is_string(), "ConfigMap {cm} has no {key}");
                }
            }
            mounted.insert(m["mountPath"].as_str().unwrap(), volume);
        }
        let config = &mounted["/etc/dr-reactor/config"]["configMap"]["name"];
        let config_text = configmaps[config.as_str().unwrap()]["data"]["dr-reactor.yaml"]
            .as_str()
            .expect("dr-reactor.yaml in the config ConfigMap");
        for c in env.captures_iter(config_text) {
            assert!(
                env_names.contains(&c[1]),
                "the config reads ${}, which the Deployment does not set",
                &c[1]
            );
        }
        if chart.truthy(".Values.rules") != std::ptr::eq(objects, &flipped) {
            assert!(
                mounted["/etc/dr-reactor/rules"]["configMap"].is_object(),
                "rules from a ConfigMap"
            );
        }
        if std::ptr::eq(objects, &defaults) {
            // The service itself accepts the chart's config (secrets as the
            // Deployment's environment would give them).
            let resolved = env.replace_all(config_text, "\"value-of-$1\"");
            dr_reactor::config::Config::parse(&resolved, Path::new("configmap/dr-reactor.yaml"))
                .unwrap_or_else(|e| panic!("{e}\n{resolved}"));
        }
    }

    let health: Value = yaml(
        &std::fs::read_to_string(chart_dir().join("files/dr-reactor-health.rules.yml")).unwrap(),
        "dr-reactor-health.rules.yml",
    );
    let rule = one(&flipped, "PrometheusRule");
    assert_eq!(
        rule["spec"], health,
        "the PrometheusRule carries the health rules"
    );
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
