//! The Helm chart, checked by the real tools: `helm lint` and `helm
//! template` (helm 4) with each values file, every rendered object against
//! the Kubernetes API's JSON schemas in strict mode (kubernetes-validate:
//! unknown fields and wrong types fail), values.schema.json refusing wrong
//! values, the objects wired to each other, and the rendered config, rules,
//! catalogue and silences loaded by the dr-reactor binary itself
//! (`serve --check`) from files laid out as the pod's mounts would be.
//!
//! `.ci/run` installs helm and kubernetes-validate into
//! ~/.cache/dr-reactor; without them (outside CI) these tests say so and
//! pass, under CI=true they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/dr-reactor")
}

/// A tool `.ci/run` installs into the cache, or one on PATH.
fn tool(cached: &str, name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cached = home.join(".cache/dr-reactor").join(cached);
    if cached.is_file() {
        return Some(cached);
    }
    let on_path = Command::new(name).arg("--help").output().is_ok();
    if on_path {
        return Some(PathBuf::from(name));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is not installed: .ci/run installs it into {}",
        cached.display()
    );
    eprintln!("{name} not installed: skipped (.ci/run installs it)");
    None
}

fn helm() -> Option<PathBuf> {
    tool("bin/helm", "helm")
}

fn kubernetes_validate() -> Option<PathBuf> {
    tool(
        "kubernetes-validate/bin/kubernetes-validate",
        "kubernetes-validate",
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The values sets the chart is checked with: the defaults; every feature
/// on, with the repository's rules and catalogue and a silences file; and
/// several replicas on PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Set {
    Defaults,
    Everything,
    Ha,
}

const SETS: [Set; 3] = [Set::Defaults, Set::Everything, Set::Ha];
const RELEASE: &str = "dr";

impl Set {
    /// `-f` and `--set-file` arguments for helm.
    fn args(self) -> Vec<String> {
        let ci = chart_dir().join("ci");
        let mut args = Vec::new();
        match self {
            Set::Defaults => {}
            Set::Everything => {
                args.push("-f".into());
                args.push(ci.join("everything-values.yaml").display().to_string());
                for rule in rule_files() {
                    let name = rule.file_name().unwrap().to_str().unwrap().to_owned();
                    args.push("--set-file".into());
                    args.push(format!(
                        "rules.{}={}",
                        name.replace('.', "\\."),
                        rule.display()
                    ));
                }
                args.push("--set-file".into());
                args.push(format!(
                    "catalogue={}",
                    root().join("config/services.yaml").display()
                ));
            }
            Set::Ha => {
                args.push("-f".into());
                args.push(ci.join("ha-values.yaml").display().to_string());
            }
        }
        args
    }

    fn values(self) -> Value {
        let file = match self {
            Set::Defaults => return Value::Object(Default::default()),
            Set::Everything => "everything-values.yaml",
            Set::Ha => "ha-values.yaml",
        };
        let text = std::fs::read_to_string(chart_dir().join("ci").join(file)).unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }
}

fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn run_helm(helm: &Path, command: &str, args: &[String]) -> Output {
    let mut cmd = Command::new(helm);
    cmd.arg(command);
    if command == "template" {
        cmd.arg(RELEASE);
    }
    cmd.arg(chart_dir()).args(args);
    // Helm keeps no state for lint and template; keep it out of $HOME.
    let home = tempfile::tempdir().unwrap();
    cmd.env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"));
    cmd.output().unwrap()
}

/// `helm template` with one values set: the YAML and its objects.
fn render(helm: &Path, set: Set) -> (String, Vec<Value>) {
    let out = run_helm(helm, "template", &set.args());
    assert!(
        out.status.success(),
        "helm template ({set:?}): {}",
        text(&out)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<Value> = serde_saphyr::from_multiple(&yaml)
        .unwrap_or_else(|e| panic!("helm template ({set:?}) printed bad YAML: {e}\n{yaml}"));
    let objects: Vec<Value> = objects.into_iter().filter(|o| !o.is_null()).collect();
    for o in &objects {
        assert!(
            o["apiVersion"].is_string() && o["kind"].is_string(),
            "({set:?}) a document without apiVersion/kind: {o}"
        );
    }
    (yaml, objects)
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

fn kinds(objects: &[Value]) -> BTreeSet<&str> {
    objects.iter().filter_map(|o| o["kind"].as_str()).collect()
}

#[test]
fn helm_lint_passes_with_every_values_set() {
    let Some(helm) = helm() else { return };
    for set in SETS {
        let mut args = set.args();
        args.push("--strict".into());
        let out = run_helm(&helm, "lint", &args);
        assert!(out.status.success(), "helm lint ({set:?}): {}", text(&out));
        assert!(
            text(&out).contains("1 chart(s) linted, 0 chart(s) failed"),
            "{}",
            text(&out)
        );
    }
}

/// The prometheus-operator kinds have no schema in kubernetes-validate:
/// their shape is asserted in `objects_are_wired_to_each_other`.
const CUSTOM_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

#[test]
fn rendered_objects_match_the_kubernetes_api_schemas() {
    let (Some(helm), Some(validate)) = (helm(), kubernetes_validate()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut kinds_seen = BTreeSet::new();
    for set in SETS {
        let (yaml, objects) = render(&helm, set);
        let file = dir.path().join(format!("{set:?}.yaml"));
        std::fs::write(&file, &yaml).unwrap();
        let out = Command::new(&validate)
            .args(["--strict", "--kubernetes-version", "1.37.0"])
            .arg(&file)
            .output()
            .unwrap();
        let report = text(&out);
        assert!(out.status.success(), "({set:?}) {report}");
        let standard: Vec<&Value> = objects
            .iter()
            .filter(|o| !CUSTOM_KINDS.contains(&o["kind"].as_str().unwrap()))
            .collect();
        for o in &standard {
            let line = format!(
                "passed for resource {}/{} against version 1.37",
                o["kind"].as_str().unwrap().to_lowercase(),
                o["metadata"]["name"].as_str().unwrap()
            );
            assert!(report.contains(&line), "({set:?}) not {line}:\n{report}");
        }
        assert_eq!(
            report.matches(" passed for resource ").count(),
            standard.len(),
            "{report}"
        );
        kinds_seen.extend(kinds(&objects).into_iter().map(str::to_owned));
    }
    for kind in [
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds_seen.contains(kind), "no set renders a {kind}");
    }

    // The check is real: a wrong type and an unknown field in a rendered
    // Deployment fail it.
    let (yaml, _) = render(&helm, Set::Defaults);
    for (from, to, want) in [
        (
            "replicas: 1",
            "replicas: \"1\"",
            "'1' is not of type 'integer'",
        ),
        (
            "runAsGroup: 10001",
            "runAsGroup: 10001\n        runAsAdmin: true",
            "'runAsAdmin' was unexpected",
        ),
    ] {
        assert!(yaml.contains(from), "{from}");
        let file = dir.path().join("broken.yaml");
        std::fs::write(&file, yaml.replacen(from, to, 1)).unwrap();
        let out = Command::new(&validate)
            .arg("--strict")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{to}: {}", text(&out));
        assert!(text(&out).contains(want), "{}", text(&out));
    }
}

#[test]
fn values_schema_refuses_wrong_values() {
    let Some(helm) = helm() else { return };
    for (set, want) in [
        (
            "replicaCount=two",
            "at '/replicaCount': got string, want integer",
        ),
        ("replicaCount=0", "at '/replicaCount'"),
        ("bogus=1", "additional properties 'bogus' not allowed"),
        (
            "config.server.metrics_listen=0.0.0.0:1",
            "additional properties 'metrics_listen' not allowed",
        ),
        (
            "config.webhook.auth.insecure_no_auth=true",
            "additional properties 'auth' not allowed",
        ),
        (
            "config.retention.incidents=forever",
            "at '/config/retention/incidents'",
        ),
        ("config.limits.global=5", "at '/config/limits/global'"),
        ("config.log.format=xml", "at '/config/log/format'"),
        ("config.kafka.brokers=k:9092", "at '/config/kafka'"),
        ("metrics.port=9099", "at '/metrics/port'"),
        ("networkPolicy.enabled=yes", "at '/networkPolicy/enabled'"),
        ("apiUsers.U01ALICE=no/slash", "at '/apiUsers/U01ALICE'"),
        ("rules.az-failure=x", "'az-failure' does not match pattern"),
    ] {
        let args = vec!["--set".to_owned(), set.to_owned()];
        for command in ["lint", "template"] {
            let out = run_helm(&helm, command, &args);
            assert!(!out.status.success(), "helm {command} --set {set} passed");
            assert!(
                text(&out).contains(want),
                "helm {command} --set {set}: {}",
                text(&out)
            );
        }
    }
}

/// What a pod of the Deployment sees: mount path → the volume's files.
fn mounted_files(objects: &[Value]) -> BTreeMap<String, BTreeMap<String, String>> {
    let deploy = one(objects, "Deployment");
    let spec = &deploy["spec"]["template"]["spec"];
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
    for m in spec["containers"][0]["volumeMounts"].as_array().unwrap() {
        let volume = volumes[m["name"].as_str().unwrap()];
        assert!(m["subPath"].is_null(), "subPath mounts miss updates: {m}");
        let mut files = BTreeMap::new();
        if let Some(cm) = volume["configMap"]["name"].as_str() {
            let data = &configmaps
                .get(cm)
                .unwrap_or_else(|| panic!("no ConfigMap {cm}"))["data"];
            for (k, v) in data.as_object().unwrap() {
                files.insert(k.clone(), v.as_str().unwrap().to_owned());
            }
        }
        mounted.insert(m["mountPath"].as_str().unwrap().to_owned(), files);
    }
    mounted
}

fn config_of(objects: &[Value]) -> Value {
    let text = &mounted_files(objects)["/etc/dr-reactor/config"]["dr-reactor.yaml"];
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn objects_are_wired_to_each_other() {
    let Some(helm) = helm() else { return };
    for set in SETS {
        let values = set.values();
        let (_, objects) = render(&helm, set);
        let deploy = one(&objects, "Deployment");
        let pod = &deploy["spec"]["template"];
        let labels = &pod["metadata"]["labels"];
        assert!(labels.is_object(), "pod labels: {labels}");
        assert_eq!(deploy["spec"]["selector"]["matchLabels"], *labels);
        assert_eq!(
            one(&objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
            *labels
        );
        let service = one(&objects, "Service");
        assert_eq!(service["spec"]["selector"], *labels);

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

        // The Pod Security Standards' restricted profile.
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(spec["automountServiceAccountToken"], false);
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{sc}"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");

        // The config's listeners are the container's and the Service's
        // ports, and the ServiceMonitor scrapes where /metrics is.
        let config = config_of(&objects);
        let port_of = |ports: &Value, name: &str, key: &str| -> Option<i64> {
            ports
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p[key].as_i64().unwrap())
        };
        assert_eq!(config["listen"], "0.0.0.0:9099");
        assert_eq!(port_of(&c["ports"], "http", "containerPort"), Some(9099));
        assert_eq!(
            port_of(&service["spec"]["ports"], "http", "port"),
            Some(9099)
        );
        let metrics_port = config["server"]["metrics_listen"].as_str().map(|a| {
            a.strip_prefix("0.0.0.0:")
                .and_then(|p| p.parse::<i64>().ok())
                .unwrap_or_else(|| panic!("metrics_listen {a}"))
        });
        assert_eq!(
            metrics_port,
            values["metrics"]["port"].as_i64(),
            "({set:?})"
        );
        assert_eq!(
            port_of(&c["ports"], "metrics", "containerPort"),
            metrics_port
        );
        assert_eq!(
            port_of(&service["spec"]["ports"], "metrics", "port"),
            metrics_port
        );
        let scrape_port = if metrics_port.is_some() {
            "metrics"
        } else {
            "http"
        };
        for sm in by_kind(&objects, "ServiceMonitor") {
            assert_eq!(sm["spec"]["selector"]["matchLabels"], *labels);
            assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
            assert_eq!(sm["spec"]["endpoints"][0]["port"], scrape_port);
        }
        assert_eq!(
            by_kind(&objects, "ServiceMonitor").len(),
            usize::from(values["serviceMonitor"]["enabled"] == true)
        );
        for rule in by_kind(&objects, "PrometheusRule") {
            let health: Value = serde_saphyr::from_str(
                &std::fs::read_to_string(chart_dir().join("files/dr-reactor-health.rules.yml"))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                rule["spec"], health,
                "the PrometheusRule carries the health rules"
            );
        }

        // The NetworkPolicy lets the named peers reach the ports that exist.
        for np in by_kind(&objects, "NetworkPolicy") {
            assert_eq!(np["spec"]["podSelector"]["matchLabels"], *labels);
            let rules = np["spec"]["ingress"].as_array().unwrap();
            let ports: Vec<&Value> = rules.iter().map(|r| &r["ports"][0]["port"]).collect();
            let want: Vec<&str> = if metrics_port.is_some() {
                vec!["http", "metrics"]
            } else {
                vec!["http"]
            };
            assert_eq!(ports, want, "{np}");
            let egress = &values["networkPolicy"]["egress"];
            if egress.is_array() {
                let rendered = np["spec"]["egress"].as_array().unwrap();
                assert_eq!(rendered[0]["ports"][0]["port"], 53, "DNS stays open");
                assert_eq!(&rendered[1..], egress.as_array().unwrap().as_slice());
                assert_eq!(
                    np["spec"]["policyTypes"],
                    serde_json::json!(["Ingress", "Egress"])
                );
            } else {
                assert_eq!(np["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
            }
        }

        // Secrets come from the one existing Secret, as environment
        // variables and as its mounted files.
        let secret = values["existingSecret"].as_str().unwrap_or("dr-reactor");
        for e in c["env"].as_array().unwrap() {
            // The pod's own name, as the replica's name in the lease.
            if e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
                continue;
            }
            assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], secret, "{e}");
        }
        let volumes = spec["volumes"].as_array().unwrap();
        let secret_volume = volumes
            .iter()
            .find(|v| v["secret"].is_object())
            .expect("the Secret as a volume");
        assert_eq!(secret_volume["secret"]["secretName"], secret);

        // One writer on SQLite; PostgreSQL replicas roll one at a time.
        let ha = values["ha"]["enabled"] == true;
        assert_eq!(
            deploy["spec"]["strategy"]["type"],
            if ha { "RollingUpdate" } else { "Recreate" }
        );
        assert_eq!(
            deploy["spec"]["replicas"].as_i64(),
            Some(values["replicaCount"].as_i64().unwrap_or(1))
        );
        assert_eq!(
            by_kind(&objects, "PersistentVolumeClaim").len(),
            usize::from(!ha)
        );
        let mounted = mounted_files(&objects);
        assert_eq!(
            mounted.contains_key("/etc/dr-reactor/rules"),
            set == Set::Everything,
            "rules from a ConfigMap when given"
        );
    }
}

/// Lays out the pod's mounts under `dir` (ConfigMaps as files, the Secret
/// as a file per key the config reads) and points the config (the
/// ConfigMap's, or `config` in its place) at them.
/// Paths the chart leaves to the image (its rules and catalogue) are this
/// repository's, which the Dockerfile copies there.
fn lay_out_mounts(
    objects: &[Value],
    dir: &Path,
    config: Option<&str>,
) -> (PathBuf, Vec<(String, String)>) {
    let mut mounts: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (i, (mount, files)) in mounted_files(objects).into_iter().enumerate() {
        if files.is_empty() {
            continue;
        }
        let local = dir.join(format!("mount-{i}"));
        std::fs::create_dir_all(&local).unwrap();
        for (name, content) in files {
            std::fs::write(local.join(name), content).unwrap();
        }
        mounts.insert(mount, local);
    }
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    mounts.insert("/etc/dr-reactor/secrets".into(), secrets.clone());
    mounts
        .entry("/etc/dr-reactor/rules".into())
        .or_insert_with(|| root().join("rules"));
    mounts.insert(
        "/etc/dr-reactor/services.yaml".into(),
        root().join("config/services.yaml"),
    );
    mounts.insert("/data".into(), dir.join("data"));

    let config_file = mounts["/etc/dr-reactor/config"].join("dr-reactor.yaml");
    let config = match config {
        Some(text) => text.to_owned(),
        None => std::fs::read_to_string(&config_file).unwrap(),
    };
    let file_secret = regex::Regex::new(r"/etc/dr-reactor/secrets/([-._a-zA-Z0-9]+)").unwrap();
    for c in file_secret.captures_iter(&config) {
        std::fs::write(secrets.join(&c[1]), format!("secret-{}\n", &c[1])).unwrap();
    }
    // One pass, longest mount first, so a path is rewritten once.
    let mut prefixes: Vec<&String> = mounts.keys().collect();
    prefixes.sort_by_key(|m| std::cmp::Reverse(m.len()));
    let alternation: Vec<String> = prefixes.iter().map(|m| regex::escape(m)).collect();
    let mount = regex::Regex::new(&format!("(?:{})", alternation.join("|"))).unwrap();
    let config = mount.replace_all(&config, |c: &regex::Captures| {
        mounts[&c[0]].display().to_string()
    });
    std::fs::write(&config_file, config.as_bytes()).unwrap();

    // The environment the Deployment gives the container, a distinct value
    // per variable (tokens must differ from each other).
    let deploy = one(objects, "Deployment");
    let env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            let value = match name.as_str() {
                "DR_REACTOR_STORE_URL" => "postgres://dr@127.0.0.1:5432/test".to_owned(),
                _ => format!("value-of-{name}"),
            };
            (name, value)
        })
        .collect();
    (config_file, env)
}

/// `dr-reactor serve --check` with only the Deployment's environment.
fn check(config_file: &Path, env: Vec<(String, String)>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
        .args(["serve", "--check", "--config"])
        .arg(config_file)
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

#[test]
fn the_binary_loads_the_rendered_config_rules_and_silences() {
    let Some(helm) = helm() else { return };
    for set in SETS {
        let (_, objects) = render(&helm, set);
        let dir = tempfile::tempdir().unwrap();
        let (config_file, env) = lay_out_mounts(&objects, dir.path(), None);
        let out = check(&config_file, env);
        let report = text(&out);
        assert!(out.status.success(), "({set:?}) {report}");
        let rules = rule_files().len();
        assert!(
            report.contains(&format!("rule(s) in {rules} file(s)")),
            "({set:?}) {report}"
        );
        let silences = if set == Set::Everything {
            "ok: 1 silence(s) in the silences file"
        } else {
            "silence"
        };
        assert_eq!(
            report.contains(silences),
            set == Set::Everything,
            "({set:?}) {report}"
        );
    }

    // The check is real: a config the service refuses fails it with its
    // reason (two people sharing one token).
    let (_, objects) = render(&helm, Set::Everything);
    let dir = tempfile::tempdir().unwrap();
    let (config_file, env) = lay_out_mounts(&objects, dir.path(), None);
    let secrets = dir.path().join("secrets");
    std::fs::copy(
        secrets.join("api-token-alice"),
        secrets.join("api-token-bob"),
    )
    .unwrap();
    let out = check(&config_file, env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("api.users: the token of U02BOB is also another user's token"),
        "{}",
        text(&out)
    );
}

/// Each value of the everything set lands where the config reference says.
#[test]
fn every_config_value_reaches_the_config() {
    let Some(helm) = helm() else { return };
    let values = Set::Everything.values();
    let (_, objects) = render(&helm, Set::Everything);
    let config = config_of(&objects);
    // What the values give as the config's own keys is there as given.
    for (key, given) in values["config"].as_object().unwrap() {
        let rendered = &config[key];
        for (k, v) in given.as_object().unwrap() {
            assert_eq!(&rendered[k], v, "config.{key}.{k}");
        }
    }
    let secrets = "/etc/dr-reactor/secrets";
    assert_eq!(
        config["api"]["users"],
        serde_json::json!([
            {"id": "U01ALICE", "token": {"file": format!("{secrets}/api-token-alice")}},
            {"id": "U02BOB", "token": {"file": format!("{secrets}/api-token-bob")}},
        ])
    );
    assert_eq!(
        config["api"]["admin_token"]["env"],
        "DR_REACTOR_ADMIN_TOKEN"
    );
    assert_eq!(
        config["webhook"]["auth"],
        serde_json::json!({"bearer_token": {"env": "DR_REACTOR_WEBHOOK_TOKEN"}})
    );
    assert_eq!(
        config["kafka"]["secret_properties"],
        serde_json::json!({"sasl.password": {"file": format!("{secrets}/kafka-password")}})
    );
    assert_eq!(config["slack"]["channel"], "C0123456789");
    assert_eq!(config["slack"]["bot_token"]["env"], "SLACK_BOT_TOKEN");
    assert_eq!(config["server"]["metrics_listen"], "0.0.0.0:9100");
    assert_eq!(
        config["silences"]["file"],
        "/etc/dr-reactor/config/silences.yaml"
    );
    assert_eq!(
        config["rules"]["catalogue"],
        "/etc/dr-reactor/config/services.yaml"
    );
    assert_eq!(
        config["rules"]["paths"],
        serde_json::json!(["/etc/dr-reactor/rules"])
    );
    assert_eq!(config["store"]["url"], "sqlite:///data/dr-reactor.db");
    let env: BTreeSet<&str> = one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"]
        [0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in [
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "DR_REACTOR_ADMIN_TOKEN",
    ] {
        assert!(env.contains(name), "{name} not set: {env:?}");
    }

    // HA: the store URL from the Secret, not the file.
    let (_, objects) = render(&helm, Set::Ha);
    let config = config_of(&objects);
    assert!(config["store"].is_null(), "{config}");
    assert_eq!(config["ha"]["lease_ttl"], "15s");
    let store_env = one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DR_REACTOR_STORE_URL")
        .cloned()
        .expect("DR_REACTOR_STORE_URL");
    assert_eq!(store_env["valueFrom"]["secretKeyRef"]["key"], "store-url");
}

/// The image's baked config is the chart's default one, so the image runs
/// alone as it runs in the chart; and the binary accepts it with the
/// image's rules and catalogue.
#[test]
fn the_images_config_is_the_charts_default() {
    let Some(helm) = helm() else { return };
    let (_, objects) = render(&helm, Set::Defaults);
    let baked_text = std::fs::read_to_string(root().join("deploy/image/dr-reactor.yaml")).unwrap();
    let baked: Value = serde_saphyr::from_str(&baked_text).unwrap();
    assert_eq!(baked, config_of(&objects));

    let dir = tempfile::tempdir().unwrap();
    let (config_file, env) = lay_out_mounts(&objects, dir.path(), Some(&baked_text));
    let out = check(&config_file, env);
    assert!(out.status.success(), "{}", text(&out));
}
