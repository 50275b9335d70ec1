//! The guard: what may act, and what is held back. Rate limits per rule,
//! per scenario and target (the incident's group), and global, as GCRA
//! (a burst of N, then one more every PERIOD/N); a concurrency limit per
//! rule from the store. What is held back is `suppressed` with the reason —
//! never queued to fire later, because a failover that was not wanted then
//! is not wanted an hour later either.
//!
//! A limit is spent only by an incident the guard admits: every limit is
//! checked before any is taken. So the state rebuilt after a restart, from
//! the store's record of what was admitted, is the state before it.
//!
//! The clock is incident time (detection time), not the wall clock, so
//! `serve`, `dr-reactor test` and `replay` limit the same way.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::rules::model::Rate;
use crate::rules::{Rule, RuleSet};

/// One rate, with each cell's theoretical arrival time (GCRA): a cell is
/// free at `at` if `at` is no earlier than its TAT minus the burst
/// tolerance.
struct Limit {
    rate: Rate,
    tat: HashMap<String, DateTime<Utc>>,
}

impl Limit {
    fn new(rate: Rate) -> Limit {
        Limit {
            rate,
            tat: HashMap::new(),
        }
    }

    fn interval(&self) -> chrono::Duration {
        let n = self.rate.n.max(1);
        chrono::Duration::from_std(self.rate.period / n).unwrap_or(chrono::Duration::MAX)
    }

    fn allows(&self, cell: &str, at: DateTime<Utc>) -> bool {
        let Some(tat) = self.tat.get(cell) else {
            return true;
        };
        let tolerance = self.interval() * (self.rate.n.max(1) as i32 - 1);
        at >= *tat - tolerance
    }

    fn take(&mut self, cell: &str, at: DateTime<Utc>) {
        let interval = self.interval();
        let tat = self.tat.entry(cell.to_owned()).or_insert(at);
        *tat = (*tat).max(at) + interval;
    }
}

/// A rule's own limit, and its limit per target.
#[derive(Default)]
struct RuleLimits {
    rule: Option<Limit>,
    per_target: Option<Limit>,
}

struct Limits {
    /// The latest incident time seen: an older time only means "now", as
    /// incidents are applied in time order.
    now: Option<DateTime<Utc>>,
    per_rule: HashMap<String, RuleLimits>,
    global: Option<Limit>,
}

/// The guard's verdict on an incident that wants to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Held back, with the reason and a bounded label for the metric.
    Hold {
        reason: String,
        limit: &'static str,
    },
}

pub struct Guard {
    limits: Mutex<Limits>,
    /// Per rule name, for the re-checks at approval and dispatch.
    max_concurrent: HashMap<String, u32>,
    /// Scenarios that absorb others (zone, region): an open one in a region
    /// means that region is not a healthy place to fail over into.
    large: HashSet<String>,
}

impl Guard {
    pub fn new(rules: &RuleSet, global: Option<Rate>) -> Guard {
        let per_rule = rules
            .rules
            .iter()
            .map(|r| {
                let limits = RuleLimits {
                    rule: r.limits.rate.map(Limit::new),
                    per_target: r.limits.per_target.map(Limit::new),
                };
                (r.name.clone(), limits)
            })
            .collect();
        let max_concurrent = rules
            .rules
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.limits.max_concurrent?)))
            .collect();
        let large = rules
            .rules
            .iter()
            .filter(|r| !r.absorbs.is_empty())
            .map(|r| r.scenario.clone())
            .collect();
        Guard {
            limits: Mutex::new(Limits {
                now: None,
                per_rule,
                global: global.map(Limit::new),
            }),
            max_concurrent,
            large,
        }
    }

    /// Whether `scenario` absorbs others in the rules as loaded now.
    pub fn is_large(&self, scenario: &str) -> bool {
        self.large.contains(scenario)
    }

    /// The rule's `max_concurrent`, as loaded now.
    pub fn max_concurrent(&self, rule: &str) -> Option<u32> {
        self.max_concurrent.get(rule).copied()
    }

    /// Whether an incident of `rule` for group `key` may act at `at`, given
    /// how many incidents of the rule are active (awaiting approval,
    /// approved or running). Only admitting takes from the limits.
    pub fn admit(&self, rule: &Rule, key: &str, at: DateTime<Utc>, active: usize) -> Admission {
        let mut guard = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let at = match guard.now {
            Some(prev) if prev > at => prev,
            _ => at,
        };
        guard.now = Some(at);
        if let Some(max) = rule.limits.max_concurrent
            && active >= max as usize
        {
            return Admission::Hold {
                reason: format!(
                    "rule {} allows {max} concurrent incident(s); {active} active",
                    rule.name
                ),
                limit: "max_concurrent",
            };
        }
        let Limits {
            per_rule, global, ..
        } = &mut *guard;
        let (rule_limit, target_limit) = match per_rule.get_mut(&rule.name) {
            Some(l) => (l.rule.as_mut(), l.per_target.as_mut()),
            None => (None, None),
        };
        let mut checks = [
            (target_limit, key, "per_target", "for this target"),
            (rule_limit, rule.name.as_str(), "rule", "for this rule"),
            (global.as_mut(), "", "global", "in total"),
        ];
        for (limit, cell, label, scope) in &checks {
            if let Some(l) = limit
                && !l.allows(cell, at)
            {
                return Admission::Hold {
                    reason: format!(
                        "rate limit: {} per {} {scope}",
                        l.rate.n,
                        humantime::format_duration(l.rate.period)
                    ),
                    limit: label,
                };
            }
        }
        for (limit, cell, ..) in &mut checks {
            if let Some(l) = limit {
                l.take(cell, at);
            }
        }
        Admission::Admit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(limits: &str) -> RuleSet {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yaml");
        std::fs::write(
            &p,
            format!(
                "rules:\n  - name: r\n    match: {{labels: ['a=\"b\"']}}\n    correlate: {{window: 1m, when: {{count: 1}}}}\n    scenario: s\n    limits: {limits}\n"
            ),
        )
        .unwrap();
        RuleSet::load(&[p], None).unwrap()
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn per_target_limit_holds_the_second_failover_of_the_same_target() {
        let rs = rules("{per_target: 1/1h}");
        let g = Guard::new(&rs, None);
        let r = &rs.rules[0];
        assert_eq!(g.admit(r, "s{zone=a}", t(0), 0), Admission::Admit);
        let held = g.admit(r, "s{zone=a}", t(60), 0);
        assert!(
            matches!(&held, Admission::Hold { limit: "per_target", reason } if reason == "rate limit: 1 per 1h for this target"),
            "{held:?}"
        );
        assert_eq!(
            g.admit(r, "s{zone=b}", t(60), 0),
            Admission::Admit,
            "another target"
        );
        assert_eq!(
            g.admit(r, "s{zone=a}", t(3600), 0),
            Admission::Admit,
            "after the period"
        );
    }

    #[test]
    fn rule_and_global_limits() {
        let rs = rules("{rate: 2/10m}");
        let g = Guard::new(&rs, Some(Rate::parse("3/1h").unwrap()));
        let r = &rs.rules[0];
        assert_eq!(g.admit(r, "k1", t(0), 0), Admission::Admit);
        assert_eq!(g.admit(r, "k2", t(1), 0), Admission::Admit);
        assert!(matches!(
            g.admit(r, "k3", t(2), 0),
            Admission::Hold { limit: "rule", .. }
        ));
        assert_eq!(g.admit(r, "k4", t(601), 0), Admission::Admit);
        // Global 3/1h: the burst of three is spent; one cell returns every 20m.
        assert!(matches!(
            g.admit(r, "k5", t(1199), 0),
            Admission::Hold {
                limit: "global",
                ..
            }
        ));
        assert_eq!(g.admit(r, "k6", t(1200), 0), Admission::Admit);
    }

    #[test]
    fn a_held_incident_spends_no_limit() {
        let rs = rules("{rate: 1/1h, per_target: 1/1h}");
        let live = Guard::new(&rs, Some(Rate::parse("5/1h").unwrap()));
        let r = &rs.rules[0];
        assert_eq!(live.admit(r, "k1", t(0), 0), Admission::Admit);
        assert!(matches!(
            live.admit(r, "k2", t(60), 0),
            Admission::Hold { limit: "rule", .. }
        ));
        // Rebuilt from what was admitted, as after a restart: the same answer.
        let rebuilt = Guard::new(&rs, Some(Rate::parse("5/1h").unwrap()));
        assert_eq!(rebuilt.admit(r, "k1", t(0), 0), Admission::Admit);
        for g in [&live, &rebuilt] {
            assert_eq!(
                g.admit(r, "k2", t(3600), 0),
                Admission::Admit,
                "k2's target cell was not spent while the rule held it"
            );
        }
    }

    #[test]
    fn concurrency_limit() {
        let rs = rules("{max_concurrent: 1}");
        let g = Guard::new(&rs, None);
        let r = &rs.rules[0];
        assert_eq!(g.admit(r, "k", t(0), 0), Admission::Admit);
        assert!(matches!(
            g.admit(r, "k", t(1), 1),
            Admission::Hold {
                limit: "max_concurrent",
                ..
            }
        ));
    }
}
