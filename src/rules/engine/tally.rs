use std::collections::HashMap;

use super::group::{Member, MemberSignal};
use crate::rules::Rule;

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

    pub(super) fn add(&mut self, rule: &Rule, m: &MemberSignal) {
        for (counts, label) in self.values.iter_mut().zip(rule.when.distinct.keys()) {
            if let Some(v) = m.labels.get(label).filter(|v| !v.is_empty()) {
                *counts.entry(v.clone()).or_default() += 1;
            }
        }
        if !rule.when.alerts.is_empty() {
            *self.names.entry(m.name.clone()).or_default() += 1;
        }
    }

    pub(super) fn remove(&mut self, rule: &Rule, m: &MemberSignal) {
        fn dec(map: &mut HashMap<String, u32>, k: &str) {
            if let Some(n) = map.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    map.remove(k);
                }
            }
        }
        for (counts, label) in self.values.iter_mut().zip(rule.when.distinct.keys()) {
            if let Some(v) = m.labels.get(label) {
                dec(counts, v);
            }
        }
        if !rule.when.alerts.is_empty() {
            dec(&mut self.names, &m.name);
        }
    }

    pub(super) fn rebuild(rule: &Rule, members: &HashMap<String, Member>) -> Tally {
        let mut t = Tally::for_rule(rule);
        for m in members.values() {
            t.add(rule, &m.signal);
        }
        t
    }
}
