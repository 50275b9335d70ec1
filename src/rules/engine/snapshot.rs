//! A read-only picture of the engine's open groups, for the console's
//! rules page: per group, how far each condition of its rule is from
//! holding. Taken between two signals by the pipeline, so it is consistent.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use super::group::Group;
use crate::primitives::duration::after;
use crate::signal::Labels;

/// One group of one rule.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub rule: String,
    pub labels: Labels,
    /// Members: firing signals, and resolved ones still inside the window.
    pub members: usize,
    pub holding: bool,
    pub conditions: Vec<Progress>,
}

/// One condition of a rule against one group: `have` of `need`.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub condition: String,
    pub have: usize,
    pub need: usize,
}

impl Progress {
    fn new(condition: String, have: usize, need: usize) -> Progress {
        Progress {
            condition,
            have,
            need,
        }
    }
}

impl Engine {
    /// Every group the engine holds, by rule name then labels.
    pub fn snapshot(&self, now: DateTime<Utc>) -> Vec<GroupView> {
        let mut groups: Vec<GroupView> = self.groups.values().map(|g| view(g, now)).collect();
        groups.sort_by(|a, b| (&a.rule, &a.labels).cmp(&(&b.rule, &b.labels)));
        groups
    }
}

fn view(g: &Group, now: DateTime<Utc>) -> GroupView {
    let when = &g.rule.when;
    let mut conditions = Vec::new();
    if let Some(n) = when.count {
        conditions.push(Progress::new("count".into(), g.members.len(), n));
    }
    for (counts, (label, &n)) in g.tally.values.iter().zip(&when.distinct) {
        conditions.push(Progress::new(format!("distinct {label}"), counts.len(), n));
    }
    if !when.alerts.is_empty() {
        let seen = when
            .alerts
            .iter()
            .filter(|a| g.tally.names.contains_key(*a))
            .count();
        conditions.push(Progress::new(
            format!("alerts {}", when.alerts.join(", ")),
            seen,
            when.alerts.len(),
        ));
    }
    if let Some(absent) = &when.absent {
        let beats: Vec<_> = g
            .members
            .iter()
            .filter(|(s, _)| absent.is_beat(&s.name))
            .collect();
        let silent = beats
            .iter()
            .filter(|(_, m)| after(m.last_seen(), absent.after) <= now)
            .count();
        conditions.push(Progress::new(
            format!("absent for {}", humantime::format_duration(absent.after)),
            silent,
            beats.len().max(1),
        ));
    }
    if let Some(cel) = &when.cel {
        // A CEL condition has no distance: it holds or it does not.
        let holds = usize::from(g.holding);
        conditions.push(Progress::new(format!("cel {}", cel.source), holds, 1));
    }
    GroupView {
        rule: g.rule.name.clone(),
        labels: g.labels.clone(),
        members: g.members.len(),
        holding: g.holding,
        conditions,
    }
}
