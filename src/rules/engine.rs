//! Correlation: signals into groups, groups into decisions.
//!
//! A group is one rule and one set of `group_by` label values. A signal is
//! a member of a group while it fires and for one window after it resolves,
//! so an alert that flaps (fire, resolve, fire) inside the window keeps its
//! group's incident open instead of opening a second one. When the rule's
//! conditions hold, the group *opens* (one incident); new members are
//! attached to it; when the conditions stop holding, it *closes*.
//!
//! The engine is pure: it takes the time as an argument and returns
//! decisions, so tests and `replay` drive it with a virtual clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Rule, RuleSet};
use crate::signal::{Change, Labels, SignalEvent};

#[derive(Debug, Clone)]
pub enum Decision {
    /// A group's conditions started to hold: open an incident.
    Open {
        rule: Arc<Rule>,
        group_key: String,
        labels: Labels,
        signals: Vec<String>,
        at: DateTime<Utc>,
    },
    /// New evidence for a group that is already open.
    Attach {
        group_key: String,
        signals: Vec<String>,
        at: DateTime<Utc>,
    },
    /// The group's conditions no longer hold: the evidence is gone.
    Close {
        group_key: String,
        at: DateTime<Utc>,
        reason: String,
    },
}

#[derive(Debug)]
struct Member {
    name: String,
    labels: Labels,
    resolved_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Group {
    rule: Arc<Rule>,
    labels: Labels,
    members: BTreeMap<String, Member>,
    open: bool,
}

impl Group {
    /// Drops members that resolved more than a window ago.
    fn prune(&mut self, now: DateTime<Utc>) {
        let window = chrono::Duration::from_std(self.rule.window).unwrap_or(chrono::Duration::MAX);
        self.members
            .retain(|_, m| m.resolved_at.is_none_or(|r| now - r < window));
    }

    fn holds(&self) -> bool {
        let when = &self.rule.when;
        if self.members.is_empty() {
            return false;
        }
        if when.count.is_some_and(|n| self.members.len() < n) {
            return false;
        }
        for (label, &n) in &when.distinct {
            let distinct: HashSet<&str> = self
                .members
                .values()
                .filter_map(|m| m.labels.get(label).map(String::as_str))
                .filter(|v| !v.is_empty())
                .collect();
            if distinct.len() < n {
                return false;
            }
        }
        when.alerts
            .iter()
            .all(|a| self.members.values().any(|m| &m.name == a))
    }
}

#[derive(Debug)]
pub struct Engine {
    rules: Arc<RuleSet>,
    groups: HashMap<String, Group>,
}

/// `rule{label="value",…}` over the rule's group_by labels, in their order.
pub fn group_key(rule: &Rule, labels: &Labels) -> (String, Labels) {
    let mut key = String::with_capacity(64);
    key.push_str(&rule.name);
    key.push('{');
    let mut group = Labels::new();
    for (i, l) in rule.group_by.iter().enumerate() {
        let v = labels.get(l).cloned().unwrap_or_default();
        if i > 0 {
            key.push(',');
        }
        let _ = write!(key, "{l}={v:?}");
        group.insert(l.clone(), v);
    }
    key.push('}');
    (key, group)
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine {
            rules,
            groups: HashMap::new(),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Number of signals currently tracked across all groups.
    pub fn tracked(&self) -> usize {
        self.groups.values().map(|g| g.members.len()).sum()
    }

    /// Swaps in a new rule set. Groups of rules that still exist (by name)
    /// keep their members and open state, re-evaluated under the new rule;
    /// groups of removed rules are dropped without closing, since their
    /// incidents stay as they are in the store.
    pub fn replace_rules(&mut self, rules: Arc<RuleSet>) {
        let by_name: HashMap<&str, &Arc<Rule>> =
            rules.rules.iter().map(|r| (r.name.as_str(), r)).collect();
        self.groups
            .retain(|_, g| match by_name.get(g.rule.name.as_str()) {
                Some(r) => {
                    g.rule = Arc::clone(r);
                    true
                }
                None => false,
            });
        self.rules = rules;
    }

    pub fn on_event(&mut self, ev: &SignalEvent, now: DateTime<Utc>) -> Vec<Decision> {
        let mut out = Vec::new();
        if ev.change == Change::Ignored {
            return out;
        }
        let s = &ev.signal;
        let id = s.id();
        let rules = Arc::clone(&self.rules);
        for rule in rules.candidates(&s.labels) {
            if !rule.matches(&s.source, &s.labels) {
                continue;
            }
            let (key, labels) = group_key(rule, &s.labels);
            let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                rule: Arc::clone(rule),
                labels,
                members: BTreeMap::new(),
                open: false,
            });
            let joined = match ev.change {
                Change::Fired | Change::Refreshed => {
                    let resolved_at = None;
                    let prev = group.members.insert(
                        id.clone(),
                        Member {
                            name: s.name.clone(),
                            labels: s.labels.clone(),
                            resolved_at,
                        },
                    );
                    prev.is_none()
                }
                Change::Resolved => {
                    if let Some(m) = group.members.get_mut(&id) {
                        m.resolved_at = Some(now);
                    }
                    false
                }
                Change::Ignored => false,
            };
            evaluate(&key, group, now, joined.then_some(&id), &mut out);
            if group.members.is_empty() && !group.open {
                self.groups.remove(&key);
            }
        }
        out
    }

    /// Time-driven evaluation: resolved members age out of their windows,
    /// and groups whose conditions stop holding close.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let mut out = Vec::new();
        self.groups.retain(|key, group| {
            evaluate(key, group, now, None, &mut out);
            !group.members.is_empty() || group.open
        });
        out
    }

    /// Rebuilds state after a restart from recorded signals (oldest first),
    /// then reconciles with the incidents the store has open: a group that
    /// holds without an open incident opens; an open incident whose group no
    /// longer holds closes; the rest continue silently.
    pub fn restore(
        &mut self,
        events: &[(SignalEvent, DateTime<Utc>)],
        open_keys: &HashSet<String>,
        now: DateTime<Utc>,
    ) -> Vec<Decision> {
        for (ev, at) in events {
            self.on_event(ev, *at);
        }
        let mut out = Vec::new();
        let mut holding = BTreeSet::new();
        for (key, group) in &mut self.groups {
            group.prune(now);
            group.open = false;
            if group.holds() {
                holding.insert(key.clone());
                group.open = true;
                if !open_keys.contains(key) {
                    out.push(Decision::Open {
                        rule: Arc::clone(&group.rule),
                        group_key: key.clone(),
                        labels: group.labels.clone(),
                        signals: group.members.keys().cloned().collect(),
                        at: now,
                    });
                }
            }
        }
        let mut stale: Vec<&String> = open_keys.iter().filter(|k| !holding.contains(*k)).collect();
        stale.sort();
        for key in stale {
            out.push(Decision::Close {
                group_key: key.clone(),
                at: now,
                reason: "evidence resolved while dr-reactor was not running".into(),
            });
        }
        self.groups.retain(|_, g| !g.members.is_empty() || g.open);
        out
    }
}

fn evaluate(
    key: &str,
    group: &mut Group,
    now: DateTime<Utc>,
    joined: Option<&String>,
    out: &mut Vec<Decision>,
) {
    group.prune(now);
    let holds = group.holds();
    match (group.open, holds) {
        (false, true) => {
            group.open = true;
            out.push(Decision::Open {
                rule: Arc::clone(&group.rule),
                group_key: key.to_owned(),
                labels: group.labels.clone(),
                signals: group.members.keys().cloned().collect(),
                at: now,
            });
        }
        (true, true) => {
            if let Some(id) = joined {
                out.push(Decision::Attach {
                    group_key: key.to_owned(),
                    signals: vec![id.clone()],
                    at: now,
                });
            }
        }
        (true, false) => {
            group.open = false;
            out.push(Decision::Close {
                group_key: key.to_owned(),
                at: now,
                reason: format!(
                    "conditions of rule {} no longer hold within its {} window",
                    group.rule.name,
                    humantime::format_duration(group.rule.window)
                ),
            });
        }
        (false, false) => {}
    }
}
