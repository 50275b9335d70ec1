use std::collections::HashMap;

use crate::rules::Rule;
use crate::signal::HeldLabels;

/// Running counts behind the `distinct` and `alerts` conditions, kept as
/// members join and leave, so checking them does not walk the group.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Per `distinct` label (in the rule's order): value → members with it.
    pub(super) values: Vec<HashMap<String, u32>>,
    /// Alert name → members with it.
    pub(super) names: HashMap<String, u32>,
}

impl Tally {
    pub(super) fn for_rule(rule: &Rule) -> Tally {
        Tally {
            values: vec![HashMap::new(); rule.when.distinct.len()],
            names: HashMap::new(),
        }
    }

    pub(super) fn add(&mut self, rule: &Rule, name: &str, labels: &HeldLabels) {
        for (counts, label) in self.values.iter_mut().zip(rule.when.distinct.keys()) {
            if let Some(v) = labels.get(label).filter(|v| !v.is_empty()) {
                *counts.entry(v.to_owned()).or_default() += 1;
            }
        }
        if rule.when.tallies_names() {
            *self.names.entry(name.to_owned()).or_default() += 1;
        }
    }

    pub(super) fn remove(&mut self, rule: &Rule, name: &str, labels: &HeldLabels) {
        fn dec(map: &mut HashMap<String, u32>, k: &str) {
            if let Some(n) = map.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    map.remove(k);
                }
            }
        }
        for (counts, label) in self.values.iter_mut().zip(rule.when.distinct.keys()) {
            if let Some(v) = labels.get(label) {
                dec(counts, v);
            }
        }
        if rule.when.tallies_names() {
            dec(&mut self.names, name);
        }
    }

    /// The counts for these members (name and labels of each), from
    /// scratch: after the rule behind a group changed.
    pub(super) fn rebuild<'a>(
        rule: &Rule,
        members: impl IntoIterator<Item = (&'a str, &'a HeldLabels)>,
    ) -> Tally {
        let mut t = Tally::for_rule(rule);
        for (name, labels) in members {
            t.add(rule, name, labels);
        }
        t
    }
}
