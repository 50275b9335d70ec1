//! What keeps the engine's memory bounded whatever senders do: firing
//! signals that stop being re-sent expire (`signal_ttl`), and each rule may
//! hold only so many groups, each group only so many members.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Decision, Engine};
use crate::primitives::duration::after;

/// The engine's bounds (`rules.signal_ttl`, `rules.max_groups_per_rule`,
/// `rules.max_members_per_group` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLimits {
    /// A firing signal not re-sent for this long is taken as resolved (its
    /// resolve was lost). Alertmanager re-sends firing alerts every
    /// `repeat_interval` (4h by default), so this is a few of those.
    pub signal_ttl: Duration,
    /// Groups (distinct `group_by` values) one rule may hold.
    pub max_groups_per_rule: usize,
    /// Signals one group may hold.
    pub max_members_per_group: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            signal_ttl: Duration::from_secs(12 * 3600),
            max_groups_per_rule: 10_000,
            max_members_per_group: 10_000,
        }
    }
}

/// What the bounds turned away or expired since last asked, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bounded {
    /// Signals not added to a rule because it held `max_groups_per_rule`.
    pub groups: u64,
    /// Signals not added to a group because it held `max_members_per_group`.
    pub members: u64,
    /// Firing signals expired by `signal_ttl`.
    pub expired: u64,
}

/// Sweeps at most this often: expiry is accurate to it, and a sweep visits
/// every member.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Engine {
    /// Counts since the last call, then zero.
    pub fn take_bounded(&mut self) -> Bounded {
        std::mem::take(&mut self.bounded)
    }

    /// Expires firing members not seen within `signal_ttl`, as if they had
    /// resolved now: they stop counting as evidence, like any resolved
    /// signal. Groups that measure absence are left alone: there silence
    /// is the evidence. Returns the groups touched; an open incident gets a
    /// [`Decision::Expired`] naming the signals.
    pub(super) fn sweep(&mut self, now: DateTime<Utc>, out: &mut Vec<Decision>) -> Vec<String> {
        if self.next_sweep.is_some_and(|at| now < at) {
            return Vec::new();
        }
        self.next_sweep = Some(after(now, SWEEP_EVERY.min(self.limits.signal_ttl / 4)));
        let ttl = self.limits.signal_ttl;
        let mut touched = Vec::new();
        for (key, g) in &mut self.groups {
            if g.rule.when.absent.is_some() {
                continue;
            }
            let mut expired = Vec::new();
            for (s, m) in &mut g.members {
                let seen = self
                    .known
                    .get(&*s.id)
                    .and_then(|k| k.last_seen())
                    .unwrap_or(m.last_seen());
                if m.is_firing() && after(seen, ttl) <= now {
                    m.resolve(now);
                    expired.push(s.id.to_string());
                }
            }
            if expired.is_empty() {
                continue;
            }
            for id in &expired {
                g.relive(id, true);
            }
            g.resolved(now);
            for id in &expired {
                if let Some(k) = self.known.get_mut(id.as_str()) {
                    k.active = false;
                }
            }
            self.bounded.expired += expired.len() as u64;
            tracing::info!(rule = %g.rule.name, group = %key, signals = expired.len(), ttl = %humantime::format_duration(ttl), "firing signals not re-sent within signal_ttl expired");
            if g.holding {
                expired.sort();
                out.push(Decision::Expired {
                    key: g.incident.clone(),
                    signals: expired,
                    at: now,
                });
            }
            touched.push(key.clone());
        }
        touched
    }

    /// Whether `rule` may open one more group; counted when it may not.
    pub(super) fn room_for_group(&mut self, rule: &str) -> bool {
        let held = self.group_counts.get(rule).copied().unwrap_or(0);
        if held < self.limits.max_groups_per_rule {
            return true;
        }
        self.bounded.groups += 1;
        if self.warned.insert(format!("groups:{rule}")) {
            tracing::warn!(
                rule,
                limit = self.limits.max_groups_per_rule,
                "rule holds max_groups_per_rule groups; new groups are not tracked"
            );
        }
        false
    }

    /// Whether the group may take one more member; counted when it may not.
    pub(super) fn room_for_member(&mut self, key: &str, members: usize) -> bool {
        if members < self.limits.max_members_per_group {
            return true;
        }
        self.bounded.members += 1;
        if self.warned.insert(format!("members:{key}")) {
            tracing::warn!(
                group = key,
                limit = self.limits.max_members_per_group,
                "group holds max_members_per_group signals; new ones are not counted"
            );
        }
        false
    }
}
