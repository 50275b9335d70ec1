use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Decision, Engine};
use crate::rules::{Rule, RuleSet};
use crate::signal::{Labels, is_drill};

/// How large each scenario is in the precedence order: 0 for one that
/// absorbs nothing, else one more than the largest it absorbs (a region
/// outage absorbs zone failures, which absorb service failures: 2, 1, 0).
/// A cycle in `absorbs` is cut where it closes.
pub(super) fn ranks(rules: &RuleSet) -> HashMap<String, u32> {
    let mut absorbs: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &rules.rules {
        absorbs
            .entry(r.scenario.as_str())
            .or_default()
            .extend(r.absorbs.iter().map(String::as_str));
    }
    fn rank<'a>(
        s: &'a str,
        absorbs: &HashMap<&'a str, Vec<&'a str>>,
        seen: &mut Vec<&'a str>,
        memo: &mut HashMap<String, u32>,
    ) -> u32 {
        if let Some(r) = memo.get(s) {
            return *r;
        }
        if seen.contains(&s) {
            return 0;
        }
        seen.push(s);
        let r = absorbs
            .get(s)
            .into_iter()
            .flatten()
            .map(|child| 1 + rank(child, absorbs, seen, memo))
            .max()
            .unwrap_or(0);
        seen.pop();
        memo.insert(s.to_owned(), r);
        r
    }
    let mut memo = HashMap::new();
    for s in absorbs.keys() {
        rank(s, &absorbs, &mut Vec::new(), &mut memo);
    }
    memo
}

/// What a group brings to the incident it opens.
pub(super) struct Opening {
    pub(super) rule: Arc<Rule>,
    pub(super) labels: Labels,
    pub(super) scope: Labels,
    pub(super) services: BTreeSet<String>,
    pub(super) signals: Vec<String>,
}

/// An open incident as the engine sees it.
#[derive(Debug)]
pub(super) struct Track {
    scenario: String,
    pub(super) labels: Labels,
    scope: Labels,
    absorbs: Vec<String>,
    pub(super) groups: BTreeSet<String>,
    /// Its groups whose evidence holds (see `Group::assess`): none, and
    /// the incident is open on a lapsed window only.
    pub(super) live: BTreeSet<String>,
    pub(super) parent: Option<String>,
}

impl Track {
    /// Whether this incident absorbs an incident of `scenario` whose
    /// evidence lies in `scope`. A drill absorbs only drills and a real
    /// incident only real ones: a rehearsal never silences a real failure,
    /// and a real zone failure does not swallow a drill's rehearsal.
    fn absorbs(&self, scenario: &str, scope: &Labels) -> bool {
        self.absorbs.iter().any(|s| s == scenario)
            && is_drill(&self.labels) == is_drill(scope)
            && self.labels.iter().all(|(k, v)| scope.get(k) == Some(v))
    }
}

impl Engine {
    pub(super) fn open(
        &mut self,
        ikey: String,
        o: Opening,
        gkey: &str,
        now: DateTime<Utc>,
        out: &mut Vec<Decision>,
    ) {
        let Opening {
            rule,
            labels,
            scope,
            services,
            signals,
        } = o;
        let parent = self
            .incidents
            .iter()
            .find(|(_, t)| t.absorbs(&rule.scenario, &scope))
            .map(|(k, _)| k.clone());
        let track = Track {
            scenario: rule.scenario.clone(),
            labels: labels.clone(),
            scope,
            absorbs: rule.absorbs.clone(),
            groups: BTreeSet::from([gkey.to_owned()]),
            // Evidence opened it (`Engine::note_evidence` says otherwise).
            live: BTreeSet::from([gkey.to_owned()]),
            parent: parent.clone(),
        };
        // Smaller incidents already open inside this one are absorbed now.
        let children: Vec<String> = self
            .incidents
            .iter()
            .filter(|(_, t)| t.parent.is_none() && track.absorbs(&t.scenario, &t.scope))
            .map(|(k, _)| k.clone())
            .collect();
        out.push(Decision::Open {
            rule,
            key: ikey.clone(),
            labels,
            signals,
            services,
            parent,
            at: now,
        });
        for child in children {
            if let Some(t) = self.incidents.get_mut(&child) {
                t.parent = Some(ikey.clone());
            }
            out.push(Decision::Absorb {
                key: child,
                parent: ikey.clone(),
                at: now,
            });
        }
        self.incidents.insert(ikey, track);
    }
}
