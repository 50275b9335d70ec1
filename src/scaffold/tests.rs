use std::collections::BTreeSet;
use std::path::Path;

use super::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn stems(dir: &str, suffix: &str) -> BTreeSet<String> {
    std::fs::read_dir(repo(dir))
        .expect("the folder ships")
        .map(|e| {
            e.expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|n| n.strip_suffix(suffix).map(str::to_owned))
        .collect()
}

fn file<'a>(files: &'a [File], path: &str) -> Option<&'a File> {
    files.iter().find(|f| f.path == path)
}

#[test]
fn every_shipped_rule_file_and_its_test_is_embedded() {
    let embedded: BTreeSet<String> = SHIPPED.iter().map(|s| s.name.to_owned()).collect();
    assert_eq!(embedded, stems("rules", ".yaml"), "rules/ against SHIPPED");
    assert_eq!(
        embedded,
        stems("tests/rules", ".test.yaml"),
        "tests/rules/ against SHIPPED"
    );
    for s in SHIPPED {
        assert!(
            repo(&format!("examples/traces/{}.jsonl", s.name)).is_file(),
            "{}: a trace of the same name",
            s.name
        );
    }
}

#[test]
fn the_whole_scaffold_is_the_shipped_files_unchanged() {
    let (files, written) = files(None).unwrap();
    assert_eq!(written.dropped_cases, 0);
    assert_eq!(
        written.scenarios,
        scenarios().unwrap().into_iter().collect::<BTreeSet<_>>()
    );
    for path in [
        "config/services.yaml",
        "schema/rules.schema.json",
        "schema/services.schema.json",
    ] {
        let shipped = std::fs::read_to_string(repo(path)).unwrap();
        assert_eq!(file(&files, path).unwrap().text, shipped, "{path}");
    }
    for s in SHIPPED {
        for path in [
            format!("rules/{}.yaml", s.name),
            format!("tests/rules/{}.test.yaml", s.name),
            format!("examples/traces/{}.jsonl", s.name),
        ] {
            let shipped = std::fs::read_to_string(repo(&path)).unwrap();
            assert_eq!(file(&files, &path).unwrap().text, shipped, "{path}");
        }
    }
    let readme = &file(&files, "README.md").unwrap().text;
    assert!(!readme.contains('@'), "every placeholder filled: {readme}");
    assert!(readme.contains("`az_failure`, `region_outage`"), "{readme}");
    let workflow = &file(&files, ".github/workflows/dr-rules.yml").unwrap().text;
    assert!(workflow.contains(IMAGE), "{workflow}");
}

#[test]
fn every_subset_of_scenarios_loads_and_keeps_only_what_it_uses() {
    let all = scenarios().unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    for mask in 1..(1u32 << all.len()) {
        let only: Vec<String> = (0..all.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| all[i].clone())
            .collect();
        // `files` checks the rules and catalogue with the real loaders.
        let (files, written) = files(Some(&only)).unwrap_or_else(|e| panic!("{only:?}: {e}"));
        let rules: Vec<&File> = files
            .iter()
            .filter(|f| f.path.starts_with("rules/"))
            .collect();
        assert_eq!(rules.len(), only.len(), "{only:?}: one rule file each");
        let tests = files
            .iter()
            .filter(|f| f.path.starts_with("tests/rules/"))
            .count();
        assert_eq!(tests, only.len(), "{only:?}: one rule test file each");
        let catalogue = Catalogue::parse(
            &file(&files, "config/services.yaml").unwrap().text,
            Path::new("services.yaml"),
        )
        .unwrap();
        for service in catalogue.services.values() {
            for scenario in service.runbooks.keys() {
                assert!(only.contains(scenario), "{only:?}: {}", service.name);
            }
        }
        for f in &rules {
            for line in f
                .text
                .lines()
                .filter(|l| l.trim_start().starts_with("absorbs:"))
            {
                for s in &all {
                    if !only.contains(s) {
                        let list = line.split('#').next().unwrap_or_default();
                        assert!(!list.contains(s.as_str()), "{only:?}: {line}");
                    }
                }
            }
        }
        assert_eq!(written.scenarios.len(), only.len());
    }
}

#[test]
fn one_scenario_keeps_its_runbooks_and_their_failbacks_only() {
    let (files, _) = files(Some(&["region_outage".to_owned()])).unwrap();
    let catalogue = Catalogue::parse(
        &file(&files, "config/services.yaml").unwrap().text,
        Path::new("services.yaml"),
    )
    .unwrap();
    let runbooks: Vec<&str> = catalogue.runbooks.keys().map(String::as_str).collect();
    assert_eq!(
        runbooks,
        [
            "fail-back-datastore",
            "promote-replica",
            "scale-primary",
            "scale-standby",
            "switch-kafka-consumers",
            "switch-kafka-consumers-back"
        ]
    );
    let rules = &file(&files, "rules/region-outage.yaml").unwrap().text;
    assert!(
        rules.contains("absorbs: []  # dr-reactor init left out: az_failure, service_failure"),
        "{rules}"
    );
}

#[test]
fn unknown_and_missing_scenarios_are_refused_naming_the_known_ones() {
    let err = files(Some(&["az_falure".to_owned()]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "unknown scenario \"az_falure\"; the shipped ones are az_failure, region_outage, service_failure, data_loss"
    );
    let err = files(Some(&[])).unwrap_err().to_string();
    assert!(err.starts_with("no scenario given"), "{err}");
}

#[test]
fn a_directory_with_anything_in_it_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let err = write(dir.path(), None, false).unwrap_err();
    assert!(matches!(err, ScaffoldError::NotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(!dir.path().join("rules").exists(), "nothing written");

    let written = write(dir.path(), Some(&["data_loss".to_owned()]), true).unwrap();
    assert!(written.files.iter().all(|f| f.is_file()));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine",
        "other files are left alone"
    );
    assert!(dir.path().join("rules/data-loss.yaml").is_file());
    assert!(!dir.path().join("rules/az-failure.yaml").exists());

    let fresh = dir.path().join("new/repo");
    write(&fresh, None, false).unwrap();
    assert!(fresh.join(".gitlab-ci.yml").is_file());
}
