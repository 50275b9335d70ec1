//! The guard: what may act, and what is held back. Rate limits per rule,
//! per scenario and target (the incident's group), and global, with
//! governor; a concurrency limit per rule from the store. What is held back
//! is `suppressed` with the reason — never queued to fire later, because a
//! failover that was not wanted then is not wanted an hour later either.
//!
//! Governor's clock is driven by incident time (detection time), not the
//! wall clock, so `serve`, `dr-reactor test` and `replay` limit the same
//! way, and a restart re-seeds the limiters from the store's record of what
//! was admitted.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use governor::clock::FakeRelativeClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::rules::model::Rate;
use crate::rules::{Rule, RuleSet};

type Limiter = RateLimiter<
    String,
    HashMapStateStore<String>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// A rate and the limiter that enforces it.
type Limit = (Rate, Limiter);

/// A rule's own limit, and its limit per target.
type RuleLimits = (Option<Limit>, Option<Limit>);

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
    clock: FakeRelativeClock,
    /// The instant governor's clock stands at: the latest incident time seen.
    now: Mutex<Option<DateTime<Utc>>>,
    /// Per rule name: (rate of the rule, rate per target).
    per_rule: HashMap<String, RuleLimits>,
    global: Option<Limit>,
}

/// `N/PERIOD` as governor's GCRA: a burst of N, then one more every
/// PERIOD/N. For N = 1 that is exactly "at most one per PERIOD".
fn limiter(rate: Rate, clock: &FakeRelativeClock) -> Limiter {
    let n = NonZeroU32::new(rate.n).expect("rates are validated > 0");
    let quota = Quota::with_period(rate.period / rate.n)
        .expect("Rate::parse keeps period / n at 1µs or more")
        .allow_burst(n);
    RateLimiter::hashmap_with_clock(quota, clock.clone())
}

impl Guard {
    pub fn new(rules: &RuleSet, global: Option<Rate>) -> Guard {
        let clock = FakeRelativeClock::default();
        let per_rule = rules
            .rules
            .iter()
            .map(|r| {
                let rule = r.limits.rate.map(|rate| (rate, limiter(rate, &clock)));
                let target = r
                    .limits
                    .per_target
                    .map(|rate| (rate, limiter(rate, &clock)));
                (r.name.clone(), (rule, target))
            })
            .collect();
        Guard {
            global: global.map(|rate| (rate, limiter(rate, &clock))),
            clock,
            now: Mutex::new(None),
            per_rule,
        }
    }

    /// Moves governor's clock forward to `at` (never back: incidents are
    /// applied in time order, and an older time only means "now").
    fn advance(&self, at: DateTime<Utc>) {
        let mut now = self.now.lock().expect("lock not poisoned");
        match *now {
            Some(prev) if at > prev => {
                self.clock.advance((at - prev).to_std().unwrap_or_default());
                *now = Some(at);
            }
            Some(_) => {}
            None => *now = Some(at),
        }
    }

    /// Whether an incident of `rule` for group `key` may act at `at`, given
    /// how many incidents of the rule are active (approved or running).
    /// Admitting consumes the limits' cells.
    pub fn admit(&self, rule: &Rule, key: &str, at: DateTime<Utc>, active: usize) -> Admission {
        self.advance(at);
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
        let (rule_rate, target_rate) = match self.per_rule.get(&rule.name) {
            Some((r, t)) => (r.as_ref(), t.as_ref()),
            None => (None, None),
        };
        let checks = [
            (target_rate, key.to_owned(), "per_target", "for this target"),
            (rule_rate, rule.name.clone(), "rule", "for this rule"),
            (self.global.as_ref(), String::new(), "global", "in total"),
        ];
        for (limit, cell, label, scope) in checks {
            if let Some((rate, l)) = limit
                && l.check_key(&cell).is_err()
            {
                return Admission::Hold {
                    reason: format!(
                        "rate limit: {} per {} {scope}",
                        rate.n,
                        humantime::format_duration(rate.period)
                    ),
                    limit: label,
                };
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
