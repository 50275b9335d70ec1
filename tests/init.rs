//! `dr-reactor init`, through the compiled binary: the repository it
//! scaffolds passes its own `validate`, `test` and `replay` (for every
//! scenario and for some only), its readiness config loads, and its CI
//! workflows are YAML that runs those commands in the released image and,
//! where `check-jsonschema` is installed (`.ci/run` installs it), valid
//! against the GitHub Actions and GitLab CI schemas.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dr-reactor"))
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `dr-reactor ARGS` in `dir` and expects exit 0.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = bin().current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "dr-reactor {args:?} in {}: {}",
        dir.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn files_in(dir: &Path, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// `init` into a new directory, then what the repository's CI runs, the
/// commands' own defaults included (`validate` with no arguments reads
/// `rules` and `config/services.yaml`).
fn scaffold_and_check(scenarios: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("dr-rules");
    let mut args = vec!["init".to_owned(), dir.display().to_string()];
    if let Some(s) = scenarios {
        args.extend(["--scenarios".to_owned(), s.to_owned()]);
    }
    let out = bin().args(&args).output().unwrap();
    assert!(out.status.success(), "init: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok: a rules repository for"),
        "{}",
        text(&out)
    );

    let validated = ok(
        &dir,
        &["validate", "rules", "--catalogue", "config/services.yaml"],
    );
    assert!(validated.starts_with("ok: "), "{validated}");
    ok(&dir, &["validate"]);

    let tests: Vec<String> = files_in(&dir.join("tests/rules"), ".test.yaml")
        .into_iter()
        .map(|f| format!("tests/rules/{f}"))
        .collect();
    let mut args = vec!["test"];
    args.extend(tests.iter().map(String::as_str));
    let tested = ok(&dir, &args);
    let summary = tested.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{tested}");
    assert!(!summary.starts_with("0 passed"), "{tested}");

    for trace in files_in(&dir.join("examples/traces"), ".jsonl") {
        let timeline = ok(&dir, &["replay", &format!("examples/traces/{trace}")]);
        assert!(!timeline.trim().is_empty(), "{trace}: a timeline");
    }
    let checked = ok(
        &dir,
        &["serve", "--check", "--config", "config/readiness.yaml"],
    );
    assert!(checked.contains("ok: "), "{checked}");
    (parent, dir)
}

#[test]
fn the_whole_scaffold_passes_its_own_checks() {
    let (_keep, dir) = scaffold_and_check(None);
    assert_eq!(files_in(&dir.join("rules"), ".yaml").len(), 4);
    assert_eq!(files_in(&dir.join("tests/rules"), ".test.yaml").len(), 4);
    assert_eq!(files_in(&dir.join("examples/traces"), ".jsonl").len(), 4);
    // The modelines point at schemas the scaffold ships.
    let rule = std::fs::read_to_string(dir.join("rules/az-failure.yaml")).unwrap();
    assert!(rule.starts_with("# yaml-language-server: $schema=../schema/rules.schema.json\n"));
    assert!(dir.join("schema/rules.schema.json").is_file());
    let catalogue = std::fs::read_to_string(dir.join("config/services.yaml")).unwrap();
    assert!(
        catalogue.starts_with("# yaml-language-server: $schema=../schema/services.schema.json\n")
    );
    assert!(dir.join("schema/services.schema.json").is_file());
    assert!(dir.join("README.md").is_file());
}

#[test]
fn each_scenario_alone_and_a_pair_pass_their_own_checks() {
    for only in [
        "az_failure",
        "region_outage",
        "service_failure",
        "data_loss",
        "az_failure,service_failure",
    ] {
        let (_keep, dir) = scaffold_and_check(Some(only));
        let wanted = only.split(',').count();
        assert_eq!(
            files_in(&dir.join("rules"), ".yaml").len(),
            wanted,
            "{only}"
        );
        assert_eq!(
            files_in(&dir.join("examples/traces"), ".jsonl").len(),
            wanted,
            "{only}"
        );
        let catalogue = std::fs::read_to_string(dir.join("config/services.yaml")).unwrap();
        if !only.contains("data_loss") {
            assert!(
                !catalogue.contains("point-in-time-restore"),
                "{only}: {catalogue}"
            );
        }
    }
}

#[test]
fn a_directory_with_files_in_it_is_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.md"), "mine").unwrap();
    let out = bin().arg("init").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not empty") && err.contains("--force"),
        "{err}"
    );
    assert!(!dir.path().join("rules").exists());

    let out = bin()
        .arg("init")
        .arg(dir.path())
        .arg("--force")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("rules/region-outage.yaml").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.md")).unwrap(),
        "mine"
    );
}

#[test]
fn an_unknown_scenario_is_refused_with_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("init")
        .arg(dir.path().join("x"))
        .args(["--scenarios", "az_failure,zone_flood"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown scenario \"zone_flood\""), "{err}");
    assert!(
        err.contains("az_failure, region_outage, service_failure, data_loss"),
        "{err}"
    );
    assert!(!dir.path().join("x").exists(), "nothing written");
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The chart's default image, which the CI files must run.
fn chart_image() -> String {
    let values =
        yaml(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/dr-reactor/values.yaml"));
    format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        values["image"]["tag"].as_str().unwrap()
    )
}

#[test]
fn the_ci_workflows_run_the_four_commands_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().arg("init").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let image = chart_image();

    let github = yaml(&dir.path().join(".github/workflows/dr-rules.yml"));
    assert_eq!(github["env"]["DR_REACTOR_IMAGE"], image.as_str());
    assert!(github["on"]["pull_request"].is_null() || github["on"]["pull_request"].is_object());
    let runs = |job: &str| -> String {
        github["jobs"][job]["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("job {job} has steps: {github}"))
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let check = runs("check");
    for command in [
        "validate rules --catalogue config/services.yaml",
        "test tests/rules/*.test.yaml",
        "replay \"$trace\"",
    ] {
        assert!(check.contains(command), "check job runs {command}: {check}");
    }
    assert!(runs("readiness").contains("readiness --config config/readiness.yaml"));
    assert_eq!(github["jobs"]["readiness"]["needs"], "check");

    let gitlab = yaml(&dir.path().join(".gitlab-ci.yml"));
    assert_eq!(gitlab["default"]["image"]["name"], image.as_str());
    let script = |job: &str| gitlab[job]["script"].to_string();
    assert!(
        script("validate").contains("dr-reactor validate rules --catalogue config/services.yaml")
    );
    assert!(script("test").contains("dr-reactor test tests/rules/*.test.yaml"));
    assert!(script("replay").contains("dr-reactor replay"));
    assert!(script("readiness").contains("dr-reactor readiness --config config/readiness.yaml"));
}

/// `check-jsonschema`, where `.ci/run` installs it or on the PATH.
fn check_jsonschema() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let cached = home.join(".cache/dr-reactor/check-jsonschema/bin/check-jsonschema");
    if cached.is_file() {
        return Some(cached);
    }
    let on_path = Command::new("check-jsonschema").arg("--version").output();
    on_path
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("check-jsonschema"))
}

#[test]
fn the_ci_workflows_are_valid_against_their_schemas() {
    let Some(tool) = check_jsonschema() else {
        assert!(
            std::env::var("CI").is_err(),
            "check-jsonschema is missing under CI: .ci/run installs it"
        );
        eprintln!("skipped: check-jsonschema is not installed (.ci/run installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = bin().arg("init").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for (schema, file) in [
        ("vendor.github-workflows", ".github/workflows/dr-rules.yml"),
        ("vendor.gitlab-ci", ".gitlab-ci.yml"),
    ] {
        let out = Command::new(&tool)
            .args(["--builtin-schema", schema])
            .arg(dir.path().join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file} against {schema}: {}",
            text(&out)
        );
    }
    // The schemas do refuse a broken workflow, so the pass above means something.
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "on: push\njobs:\n  check:\n    steps: 3\n").unwrap();
    let out = Command::new(&tool)
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a broken workflow fails: {}",
        text(&out)
    );
}
