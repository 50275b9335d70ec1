//! `dr-reactor init`: a new rules repository, started from what ships.
//!
//! The files are this repository's own, embedded with `include_str!` (the
//! rules, the catalogue, the rule tests, one recorded trace per scenario,
//! the JSON Schemas), so a scaffold never drifts from what dr-reactor
//! ships and validates; only the CI workflows, the repository's README and
//! its readiness config are written for the scaffold (`files/`). The layout
//! mirrors this repository's, so the relative paths inside the files (the
//! schema modelines, the rule tests' `rules:` and `catalogue:`) and the
//! commands' defaults hold unchanged.
//!
//! The schemas ship as files rather than a URL: they are the ones of the
//! binary that will validate the rules, they work offline, and a move to a
//! new version regenerates them in the same pull request.
//!
//! With some scenarios only, [`filter`] cuts the files down: rule files of
//! the other scenarios go, `absorbs` lists lose them, rule test cases that
//! name them go, and the catalogue keeps only the runbooks still
//! referenced. The result is checked with the real loaders before anything
//! is written.

mod filter;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::catalogue::Catalogue;

/// One scenario's shipped files, found by one name (`rules/NAME.yaml`,
/// `tests/rules/NAME.test.yaml`, `examples/traces/NAME.jsonl`).
struct Shipped {
    name: &'static str,
    rules: &'static str,
    test: &'static str,
    trace: &'static str,
}

macro_rules! shipped {
    ($($name:literal),* $(,)?) => {
        &[$(Shipped {
            name: $name,
            rules: include_str!(concat!("../../rules/", $name, ".yaml")),
            test: include_str!(concat!("../../tests/rules/", $name, ".test.yaml")),
            trace: include_str!(concat!("../../examples/traces/", $name, ".jsonl")),
        }),*]
    };
}

/// Every shipped rule file, one per scenario; a unit test fails while a
/// file under `rules/` is missing here.
const SHIPPED: &[Shipped] = shipped![
    "az-failure",
    "region-outage",
    "service-failure",
    "data-loss"
];

const CATALOGUE: &str = include_str!("../../config/services.yaml");
const RULES_SCHEMA: &str = include_str!("../../schema/rules.schema.json");
const SERVICES_SCHEMA: &str = include_str!("../../schema/services.schema.json");
const README: &str = include_str!("files/README.md");
const GITHUB_WORKFLOW: &str = include_str!("files/dr-rules.yml");
const GITLAB_CI: &str = include_str!("files/gitlab-ci.yml");
const READINESS_CONFIG: &str = include_str!("files/readiness.yaml");

/// The container image the CI files run: the chart's default repository,
/// at this binary's version.
pub const IMAGE: &str = concat!("ghcr.io/example/dr-reactor:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("unknown scenario {name:?}; the shipped ones are {known}")]
    UnknownScenario { name: String, known: String },
    #[error("no scenario given; the shipped ones are {known}")]
    NoScenario { known: String },
    #[error(
        "{} is not empty: give an empty or new directory, or --force to write the \
         scaffold into it (its files are overwritten, every other file is left alone)",
        dir.display()
    )]
    NotEmpty { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The shipped files changed in a way the cutting-down does not
    /// understand: a bug of `init`, caught before anything is written.
    #[error("scaffolding {what} failed: {detail} (a bug in dr-reactor init; please report it)")]
    Shipped { what: String, detail: String },
}

/// One file of the scaffold: its path inside the new repository.
#[derive(Debug, Clone)]
pub struct File {
    pub path: String,
    pub text: String,
}

/// What `write` wrote.
#[derive(Debug)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub scenarios: BTreeSet<String>,
    /// Rule test cases left out because they need a scenario left out.
    pub dropped_cases: usize,
}

/// The scenarios the shipped rules open, in shipped order.
pub fn scenarios() -> Result<Vec<String>, ScaffoldError> {
    let mut out = Vec::new();
    for s in SHIPPED {
        for name in scenarios_of(s)? {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

fn scenarios_of(s: &Shipped) -> Result<BTreeSet<String>, ScaffoldError> {
    filter::scenarios_of(s.rules).map_err(|detail| ScaffoldError::Shipped {
        what: format!("rules/{}.yaml", s.name),
        detail,
    })
}

/// The scaffold's files for `only` (every scenario when `None`), checked
/// with the same loaders `validate` uses; nothing is written.
pub fn files(only: Option<&[String]>) -> Result<(Vec<File>, Written), ScaffoldError> {
    let known: Vec<String> = scenarios()?;
    let known_set: BTreeSet<String> = known.iter().cloned().collect();
    let selected: BTreeSet<String> = match only {
        None => known_set.clone(),
        Some(names) => {
            let list = || known.join(", ");
            if names.is_empty() {
                return Err(ScaffoldError::NoScenario { known: list() });
            }
            for n in names {
                if !known_set.contains(n) {
                    return Err(ScaffoldError::UnknownScenario {
                        name: n.clone(),
                        known: list(),
                    });
                }
            }
            names.iter().cloned().collect()
        }
    };
    let mut out = Vec::new();
    let mut dropped_cases = 0;
    for s in SHIPPED {
        let opens = scenarios_of(s)?;
        if opens.is_disjoint(&selected) {
            continue;
        }
        if !opens.is_subset(&selected) {
            // Only a file of one scenario can be kept or left out whole.
            return Err(ScaffoldError::Shipped {
                what: format!("rules/{}.yaml", s.name),
                detail: format!(
                    "it opens several scenarios ({}), only some selected",
                    opens.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        out.push(File {
            path: format!("rules/{}.yaml", s.name),
            text: filter::rules(s.rules, &selected),
        });
        let (test, dropped) =
            filter::rule_tests(s.test, &selected, &known_set).map_err(|detail| {
                ScaffoldError::Shipped {
                    what: format!("tests/rules/{}.test.yaml", s.name),
                    detail,
                }
            })?;
        dropped_cases += dropped;
        out.push(File {
            path: format!("tests/rules/{}.test.yaml", s.name),
            text: test,
        });
        out.push(File {
            path: format!("examples/traces/{}.jsonl", s.name),
            text: s.trace.to_owned(),
        });
    }
    out.push(File {
        path: "config/services.yaml".to_owned(),
        text: catalogue(&selected)?,
    });
    let listed = known
        .iter()
        .filter(|s| selected.contains(*s))
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let fill = |t: &str| {
        t.replace("@IMAGE@", IMAGE)
            .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
            .replace("@SCENARIOS@", &listed)
    };
    for (path, text) in [
        ("schema/rules.schema.json", RULES_SCHEMA.to_owned()),
        ("schema/services.schema.json", SERVICES_SCHEMA.to_owned()),
        ("config/readiness.yaml", READINESS_CONFIG.to_owned()),
        ("README.md", fill(README)),
        (".github/workflows/dr-rules.yml", fill(GITHUB_WORKFLOW)),
        (".gitlab-ci.yml", fill(GITLAB_CI)),
    ] {
        out.push(File {
            path: path.to_owned(),
            text,
        });
    }
    check(&out)?;
    let written = Written {
        files: out.iter().map(|f| PathBuf::from(&f.path)).collect(),
        scenarios: selected,
        dropped_cases,
    };
    Ok((out, written))
}

/// The catalogue with each service's runbooks for the selected scenarios
/// and the runbooks those reference, failbacks included.
fn catalogue(selected: &BTreeSet<String>) -> Result<String, ScaffoldError> {
    let parse = |text: &str| {
        Catalogue::parse(text, Path::new("config/services.yaml")).map_err(|e| {
            ScaffoldError::Shipped {
                what: "config/services.yaml".to_owned(),
                detail: e
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })
    };
    let full = parse(CATALOGUE)?;
    let mut keep: BTreeSet<String> = full
        .services
        .values()
        .flat_map(|s| s.runbooks.iter())
        .filter(|(scenario, _)| selected.contains(*scenario))
        .map(|(_, runbook)| runbook.clone())
        .collect();
    // A failover's failback is prepared from the catalogue when it
    // succeeds: it stays with the runbook it undoes.
    let mut todo: Vec<String> = keep.iter().cloned().collect();
    while let Some(name) = todo.pop() {
        if let Some(back) = full.runbooks.get(&name).and_then(|r| r.failback.clone())
            && keep.insert(back.clone())
        {
            todo.push(back);
        }
    }
    let text = filter::catalogue(CATALOGUE, selected, &keep);
    let cut = parse(&text)?;
    let kept: BTreeSet<String> = cut.runbooks.keys().cloned().collect();
    let stray: Vec<&String> = cut
        .services
        .values()
        .flat_map(|s| s.runbooks.keys())
        .filter(|scenario| !selected.contains(*scenario))
        .collect();
    if kept != keep || !stray.is_empty() {
        return Err(ScaffoldError::Shipped {
            what: "config/services.yaml".to_owned(),
            detail: format!(
                "the cut catalogue has runbooks {kept:?} where {keep:?} were meant, \
                 and service runbooks for {stray:?}"
            ),
        });
    }
    Ok(text)
}

/// The rules and catalogue of `files` load together, as `validate` loads
/// them; they are written to a scratch directory because the loader reads
/// files.
fn check(files: &[File]) -> Result<(), ScaffoldError> {
    let scratch = std::env::temp_dir().join(format!(
        "dr-reactor-init-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let result = (|| {
        write_files(&scratch, files)?;
        let rules: Vec<PathBuf> = files
            .iter()
            .filter(|f| f.path.starts_with("rules/"))
            .map(|f| scratch.join(&f.path))
            .collect();
        crate::rules::RuleSet::load(&rules, Some(&scratch.join("config/services.yaml")))
            .map(drop)
            .map_err(|e| ScaffoldError::Shipped {
                what: "the rules and catalogue".to_owned(),
                detail: e.to_string(),
            })
    })();
    // Best effort: a scratch directory left behind is litter, not harm.
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn write_files(dir: &Path, files: &[File]) -> Result<(), ScaffoldError> {
    for f in files {
        let path = dir.join(&f.path);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, &f.text).map_err(io)?;
    }
    Ok(())
}

/// Writes the scaffold into `dir` (created if missing). A directory with
/// anything in it is refused unless `force`: a rules repository is worth
/// more than a scaffold.
pub fn write(dir: &Path, only: Option<&[String]>, force: bool) -> Result<Written, ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: dir.to_owned(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(ScaffoldError::NotEmpty {
                    dir: dir.to_owned(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let (files, mut written) = files(only)?;
    write_files(dir, &files)?;
    written.files = files.iter().map(|f| dir.join(&f.path)).collect();
    Ok(written)
}

#[cfg(test)]
mod tests;
