//! Rules: which signals are evidence of which DR scenario.
//!
//! Loading compiles rule files into a [`RuleSet`]; the [`engine::Engine`]
//! correlates signals against it and returns decisions. Nothing here does
//! I/O after loading, so the engine runs the same in `serve`, `test` and
//! `replay`.

pub mod engine;
pub mod matcher;
pub mod model;
pub mod plan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use engine::{Decision, Engine};
pub use model::{Rule, RuleError, RuleErrors};

use crate::signal::Labels;
use matcher::Op;
use model::{Errs, RuleFileSpec};

/// A compiled, indexed set of rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Arc<Rule>>,
    /// Rules by one of their equality matchers: label → value → rule
    /// indexes. A signal only looks at the rules whose indexed label it
    /// carries with that value, plus the few that have no equality matcher.
    by_label: HashMap<String, HashMap<String, Vec<usize>>>,
    unindexed: Vec<usize>,
    pub files: Vec<PathBuf>,
}

impl RuleSet {
    pub fn new(rules: Vec<Arc<Rule>>, files: Vec<PathBuf>) -> RuleSet {
        let mut set = RuleSet {
            rules,
            files,
            ..RuleSet::default()
        };
        for (i, rule) in set.rules.iter().enumerate() {
            // alertname is the most selective label in practice; otherwise
            // any equality matcher on a non-empty value will do.
            let key = rule
                .matchers
                .iter()
                .filter(|m| m.op == Op::Eq && !m.value.is_empty())
                .min_by_key(|m| m.name != "alertname");
            match key {
                Some(m) => set
                    .by_label
                    .entry(m.name.clone())
                    .or_default()
                    .entry(m.value.clone())
                    .or_default()
                    .push(i),
                None => set.unindexed.push(i),
            }
        }
        set
    }

    /// Rules that may match a signal with these labels: a superset of the
    /// matching ones, each at most once.
    pub fn candidates<'a>(
        &'a self,
        labels: &'a Labels,
    ) -> impl Iterator<Item = &'a Arc<Rule>> + 'a {
        labels
            .iter()
            .filter_map(|(k, v)| self.by_label.get(k)?.get(v))
            .flatten()
            .chain(self.unindexed.iter())
            .map(|&i| &self.rules[i])
    }

    /// Loads every rule file under `paths` (files, or directories of
    /// `*.yaml`/`*.yml`). Any error rejects the whole set.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, RuleErrors> {
        let mut errors = Vec::new();
        let files = rule_files(paths, &mut errors);
        let mut rules: Vec<Arc<Rule>> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for file in &files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(file_error(file, format!("cannot read: {e}")));
                    continue;
                }
            };
            let spec: RuleFileSpec = match serde_saphyr::from_str(&text) {
                Ok(s) => s,
                Err(e) => {
                    let (line, column) = e
                        .location()
                        .map(|l| (l.line(), l.column()))
                        .unwrap_or((0, 0));
                    errors.push(RuleError {
                        file: file.clone(),
                        line,
                        column,
                        message: crate::config::yaml_message(&e),
                    });
                    continue;
                }
            };
            let mut errs = Errs {
                file,
                out: &mut errors,
            };
            for rule_spec in spec.rules {
                let name = rule_spec.name.clone();
                if let Some(first) = seen.get(&name.value) {
                    errs.at(
                        &name,
                        format!(
                            "duplicate rule name {:?}; first defined at {first}",
                            name.value
                        ),
                    );
                    continue;
                }
                if let Some(rule) = model::compile(rule_spec, &mut errs) {
                    seen.insert(rule.name.clone(), rule.origin.clone());
                    rules.push(rule);
                }
            }
        }
        if errors.is_empty() {
            Ok(RuleSet::new(rules, files))
        } else {
            Err(RuleErrors(errors))
        }
    }
}

fn file_error(file: &Path, message: String) -> RuleError {
    RuleError {
        file: file.to_owned(),
        line: 0,
        column: 0,
        message,
    }
}

fn rule_files(paths: &[PathBuf], errors: &mut Vec<RuleError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| {
                            f.is_file()
                                && matches!(
                                    f.extension().and_then(|e| e.to_str()),
                                    Some("yaml" | "yml")
                                )
                        })
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(file_error(p, format!("cannot list directory: {e}"))),
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            errors.push(file_error(p, "no such file or directory".into()));
        }
    }
    files
}
