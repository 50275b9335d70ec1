//! Rules: which signals are evidence of which DR scenario.
//!
//! Loading compiles rule files into a [`RuleSet`]; the [`engine::Engine`]
//! correlates signals against it and returns decisions. Nothing here does
//! I/O after loading, so the engine runs the same in `serve`, `test` and
//! `replay`.

pub mod cel;
pub mod cel_shape;
pub mod engine;
pub mod matcher;
pub mod model;
pub mod plan;
pub mod silence;
pub mod spec;
pub mod step;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use engine::{Decision, Engine};
pub use model::{Rule, RuleError, RuleErrors};

use crate::catalogue::Catalogue;
use crate::signal::Labels;
use matcher::Op;
use serde_saphyr::Spanned;
use spec::{Errs, RuleFileSpec, RuleSpec};

#[derive(Debug)]
struct RegexIndex {
    label: String,
    set: regex::RegexSet,
    rules: Vec<usize>,
}

/// A compiled, indexed set of rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Arc<Rule>>,
    /// Rules by one of their equality matchers: label → value → rule
    /// indexes. A signal only looks at the rules whose indexed label it
    /// carries with that value, plus the few that have no equality matcher.
    by_label: HashMap<String, HashMap<String, Vec<usize>>>,
    /// Rules with no equality matcher, by one of their regex matchers: per
    /// label, one RegexSet over all those patterns, so a signal costs one
    /// automaton pass per label instead of one regex per rule.
    by_regex: Vec<RegexIndex>,
    /// Rules with neither: checked against every signal.
    unindexed: Vec<usize>,
    pub files: Vec<PathBuf>,
    pub catalogue: Arc<Catalogue>,
    /// The silences file's silences (`silences.file`); the API's are in
    /// the store.
    pub silences: Arc<Vec<silence::Silence>>,
}

impl RuleSet {
    /// Indexes `rules`. Fails only when the regexes of several rules on one
    /// label, compiled together, exceed the regex size limit (each alone
    /// was checked when its rule compiled); every rule in that set is named.
    pub fn new(
        rules: Vec<Arc<Rule>>,
        files: Vec<PathBuf>,
        catalogue: Arc<Catalogue>,
    ) -> Result<RuleSet, RuleErrors> {
        let mut set = RuleSet {
            rules,
            files,
            catalogue,
            ..RuleSet::default()
        };
        let mut regexes: std::collections::BTreeMap<&str, (Vec<String>, Vec<usize>)> =
            Default::default();
        for (i, rule) in set.rules.iter().enumerate() {
            // The name is the most selective label in practice; otherwise
            // any equality matcher on a non-empty value will do.
            let eq = rule
                .matchers
                .iter()
                .filter(|m| m.op == Op::Eq && !m.value.is_empty() && m.name != "__source__")
                .min_by_key(|m| !matches!(m.name.as_str(), "alertname" | "__name__"));
            let re = || {
                rule.matchers
                    .iter()
                    .filter(|m| m.op == Op::Re && m.name != "__source__")
                    .min_by_key(|m| !matches!(m.name.as_str(), "alertname" | "__name__"))
            };
            match (eq, re()) {
                (Some(m), _) => set
                    .by_label
                    .entry(m.name.clone())
                    .or_default()
                    .entry(m.value.clone())
                    .or_default()
                    .push(i),
                (None, Some(m)) => {
                    let e = regexes.entry(m.name.as_str()).or_default();
                    e.0.push(format!("^(?:{})$", m.value));
                    e.1.push(i);
                }
                (None, None) => set.unindexed.push(i),
            }
        }
        let mut errors = Vec::new();
        for (label, (patterns, rules)) in regexes {
            match regex::RegexSet::new(&patterns) {
                Ok(regexes) => set.by_regex.push(RegexIndex {
                    label: label.to_owned(),
                    set: regexes,
                    rules,
                }),
                Err(e) => errors.extend(rules.iter().map(|&i| {
                    let origin = &set.rules[i].origin;
                    let (file, line) = origin.rsplit_once(':').unwrap_or((origin, "0"));
                    RuleError {
                        file: PathBuf::from(file),
                        line: line.parse().unwrap_or(0),
                        column: 0,
                        message: format!(
                            "the regex matchers on label {label:?} of {} rules are too large together: {e}",
                            rules.len()
                        ),
                    }
                })),
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(RuleErrors(errors))
        }
    }

    /// Whether any rule matches a signal of this source, name and labels:
    /// one that none does can change nothing in the engine.
    pub fn can_match(&self, source: &str, name: &str, labels: &Labels) -> bool {
        self.candidates(name, labels)
            .any(|r| r.matches(source, name, labels))
    }

    /// Whether a signal of this source, name and labels is a heartbeat to
    /// some rule (one whose silence it watches).
    pub fn watches_beat(&self, source: &str, name: &str, labels: &Labels) -> bool {
        self.candidates(name, labels).any(|r| {
            r.when.absent.as_ref().is_some_and(|a| a.is_beat(name))
                && r.matches(source, name, labels)
        })
    }

    /// Rules that may match a signal with this name and these labels: a
    /// superset of the matching ones, each at most once.
    pub fn candidates<'a>(
        &'a self,
        name: &'a str,
        labels: &'a Labels,
    ) -> impl Iterator<Item = &'a Arc<Rule>> + 'a {
        let value = move |label: &str| -> &'a str {
            if label == "__name__" {
                name
            } else {
                labels.get(label).map(String::as_str).unwrap_or("")
            }
        };
        let by_name = self.by_label.get("__name__").and_then(|m| m.get(name));
        // Few label names are indexed (alertname, perhaps severity): probe
        // those rather than every label of the signal.
        let by_eq = self
            .by_label
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .filter_map(|(k, values)| values.get(labels.get(k)?))
            .chain(by_name)
            .flatten()
            .copied();
        let by_regex = self.by_regex.iter().flat_map(move |ix| {
            ix.set
                .matches(value(&ix.label))
                .into_iter()
                .map(move |k| ix.rules[k])
        });
        by_eq
            .chain(by_regex)
            .chain(self.unindexed.iter().copied())
            .map(|i| &self.rules[i])
    }

    /// Loads the silences file, if one is configured; a bad file fails the
    /// whole set, so a reload with it is rejected and the running set stays.
    pub fn with_silences_file(mut self, path: Option<&Path>) -> Result<RuleSet, RuleErrors> {
        if let Some(path) = path {
            self.silences = Arc::new(silence::load_file(path)?);
        }
        Ok(self)
    }

    /// Sets the hold of every rule that can be absorbed and gives none of
    /// its own (the config's `rules.default_hold`). Call it on a freshly
    /// loaded set, before anything shares its rules.
    pub fn with_default_hold(mut self, hold: std::time::Duration) -> RuleSet {
        for rule in &mut self.rules {
            if let Some(r) = Arc::get_mut(rule)
                && !r.hold_explicit
                && !r.hold.is_zero()
            {
                r.hold = hold;
            }
        }
        self
    }

    /// Loads every rule file under `paths` (files, or directories of
    /// `*.yaml`/`*.yml`) and the service catalogue, and checks them against
    /// each other. Any error rejects the whole set.
    pub fn load(paths: &[PathBuf], catalogue: Option<&Path>) -> Result<RuleSet, RuleErrors> {
        let mut errors = Vec::new();
        let catalogue = match catalogue.map(Catalogue::load) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                errors.extend(e);
                Catalogue::default()
            }
            None => Catalogue::default(),
        };
        RuleSet::load_rules(paths, Arc::new(catalogue), errors)
    }

    /// [`RuleSet::load`] over a catalogue already loaded: the fuzz target
    /// checks a rule file per run against the shipped catalogue.
    pub fn load_with_catalogue(
        paths: &[PathBuf],
        catalogue: Arc<Catalogue>,
    ) -> Result<RuleSet, RuleErrors> {
        RuleSet::load_rules(paths, catalogue, Vec::new())
    }

    fn load_rules(
        paths: &[PathBuf],
        catalogue: Arc<Catalogue>,
        mut errors: Vec<RuleError>,
    ) -> Result<RuleSet, RuleErrors> {
        let files = rule_files(paths, &mut errors);
        let mut rules: Vec<Arc<Rule>> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut scenarios: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut absorbs: Vec<(PathBuf, Spanned<String>)> = Vec::new();
        // Explicit holds, to check once every rule's `absorbs` is known.
        let mut holds: Vec<(PathBuf, String, Spanned<String>)> = Vec::new();
        for file in &files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(file_error(file, format!("cannot read: {e}")));
                    continue;
                }
            };
            let spec: RuleFileSpec = match crate::primitives::yaml::from_str(&text) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(RuleError {
                        file: file.clone(),
                        line: e.line,
                        column: e.column,
                        message: e.message,
                    });
                    continue;
                }
            };
            let mut errs = Errs {
                file,
                out: &mut errors,
            };
            for rule_spec in spec.rules {
                check_against_catalogue(&rule_spec, &catalogue, &mut errs);
                let name = rule_spec.name.clone();
                let here = format!("{}:{}", file.display(), name.referenced.line());
                if let Some(first) = seen.insert(name.value.clone(), here.clone()) {
                    seen.insert(name.value.clone(), first.clone());
                    errs.at(
                        &name,
                        format!(
                            "duplicate rule name {:?}; first defined at {first}",
                            name.value
                        ),
                    );
                    continue;
                }
                scenarios.insert(rule_spec.scenario.value.clone());
                absorbs.extend(rule_spec.absorbs.iter().map(|a| (file.clone(), a.clone())));
                if let Some(h) = &rule_spec.hold {
                    holds.push((file.clone(), rule_spec.scenario.value.clone(), h.clone()));
                }
                if let Some(rule) = model::compile(rule_spec, &mut errs) {
                    rules.push(rule);
                }
            }
        }
        // A hold waits for a larger scenario: only a scenario something
        // absorbs has one to wait for.
        let absorbed: std::collections::BTreeSet<String> =
            absorbs.iter().map(|(_, a)| a.value.clone()).collect();
        for (file, scenario, h) in holds {
            if !absorbed.contains(&scenario) {
                Errs {
                    file: &file,
                    out: &mut errors,
                }
                .at(
                    &h,
                    format!(
                        "hold: no rule absorbs scenario {scenario:?}, so there is no larger \
                         incident to wait for; remove the hold"
                    ),
                );
            }
        }
        for rule in &mut rules {
            if !absorbed.contains(&rule.scenario)
                && let Some(r) = Arc::get_mut(rule)
            {
                r.hold = std::time::Duration::ZERO;
            }
        }
        // `absorbs` must name scenarios some rule opens.
        for (file, a) in absorbs {
            if !scenarios.contains(&a.value) {
                Errs {
                    file: &file,
                    out: &mut errors,
                }
                .at(
                    &a,
                    format!(
                        "absorbs unknown scenario {:?}; scenarios of loaded rules: {}",
                        a.value,
                        scenarios.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        if errors.is_empty() {
            RuleSet::new(rules, files, catalogue)
        } else {
            Err(RuleErrors(errors))
        }
    }
}

/// Rules name services and scenarios the catalogue must know.
fn check_against_catalogue(spec: &RuleSpec, cat: &Catalogue, errs: &mut Errs<'_>) {
    for m in &spec.matches.labels {
        if let Ok(matcher) = matcher::Matcher::parse(&m.value)
            && matcher.name == engine::SERVICE_LABEL
            && matcher.op == Op::Eq
            && !matcher.value.is_empty()
            && !cat.services.contains_key(&matcher.value)
        {
            errs.at(
                m,
                format!(
                    "unknown service {:?}; the catalogue has: {}",
                    matcher.value,
                    known(cat)
                ),
            );
        }
    }
    let scenario = &spec.scenario.value;
    if spec.plan.from_catalogue
        && !cat
            .services
            .values()
            .any(|s| s.runbooks.contains_key(scenario))
    {
        errs.at(
            &spec.scenario,
            format!(
                "plan.from_catalogue: no service in the catalogue has a runbook for scenario {scenario:?}"
            ),
        );
    }
}

fn known(cat: &Catalogue) -> String {
    if cat.services.is_empty() {
        "(no catalogue loaded)".into()
    } else {
        cat.services.keys().cloned().collect::<Vec<_>>().join(", ")
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

/// JSON Schema of rule files, generated from the types the loader parses
/// with, so the editor's view of the format cannot drift from the loader's.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RuleFileSpec)).expect("a schema is plain JSON")
}
