use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::SERVICE_LABEL;
use super::tally::Tally;
use crate::primitives::duration::after;
use crate::primitives::intern::ArcStr;
use crate::primitives::key;
use crate::rules::Rule;
use crate::rules::cel::SignalView;
use crate::rules::cel_shape::Tallies;
use crate::signal::{DRILL_LABEL, HeldLabels, Labels, is_drill};

/// A time in 8 bytes, where a `DateTime<Utc>` takes 12 and an
/// `Option<DateTime<Utc>>` 16: the engine holds one or two per signal per
/// group, so at a million held signals this is tens of megabytes.
/// Nanoseconds since the Unix epoch (the precision of `DateTime`),
/// saturating outside 1677–2262; `i64::MIN` is "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp(i64);

/// "None", as `Option`'s default is.
impl Default for Stamp {
    fn default() -> Stamp {
        Stamp::NONE
    }
}

impl Stamp {
    pub(super) const NONE: Stamp = Stamp(i64::MIN);

    pub(super) fn at(t: DateTime<Utc>) -> Stamp {
        Stamp(t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
            i64::MIN + 1
        } else {
            i64::MAX
        }))
    }

    pub(super) fn of(t: Option<DateTime<Utc>>) -> Stamp {
        t.map_or(Stamp::NONE, Stamp::at)
    }

    pub(super) fn get(self) -> Option<DateTime<Utc>> {
        (self != Stamp::NONE).then(|| DateTime::from_timestamp_nanos(self.0))
    }
}

/// A held signal, shared by every group it is in (one copy per signal), as
/// the key of each group's members: looked up by its id, so a membership
/// costs no key of its own (at a million held signals, one 16-byte key per
/// membership is tens of megabytes).
#[derive(Debug, Clone)]
pub(super) struct Held(pub(super) Arc<MemberSignal>);

impl std::ops::Deref for Held {
    type Target = MemberSignal;
    fn deref(&self) -> &MemberSignal {
        &self.0
    }
}

/// By id, exactly as a `str` hashes and compares, so that a map keyed by
/// `Held` is searched with the id alone.
impl std::hash::Hash for Held {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (*self.0.id).hash(h)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Held {}

impl std::borrow::Borrow<str> for Held {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// A signal's times in one group.
#[derive(Debug)]
pub(super) struct Member {
    last_seen: Stamp,
    resolved_at: Stamp,
}

impl Member {
    pub(super) fn new(seen: DateTime<Utc>, resolved_at: Option<DateTime<Utc>>) -> Member {
        Member {
            last_seen: Stamp::at(seen),
            resolved_at: Stamp::of(resolved_at),
        }
    }

    pub(super) fn last_seen(&self) -> DateTime<Utc> {
        self.last_seen.get().unwrap_or_default()
    }

    /// Seen again at `now`; returns when it was seen before.
    pub(super) fn seen(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let before = self.last_seen();
        self.last_seen = Stamp::at(now);
        before
    }

    pub(super) fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.resolved_at.get()
    }

    pub(super) fn set_resolved(&mut self, at: Option<DateTime<Utc>>) {
        self.resolved_at = Stamp::of(at);
    }
}

#[derive(Debug)]
pub(super) struct MemberSignal {
    /// The same shared copy as in the engine's `known`.
    pub(super) id: ArcStr,
    pub(super) name: ArcStr,
    pub(super) source: ArcStr,
    pub(super) labels: HeldLabels,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) rule: Arc<Rule>,
    pub(super) labels: Labels,
    pub(super) incident: String,
    pub(super) members: HashMap<Held, Member>,
    pub(super) holding: bool,
    pub(super) tally: Tally,
    /// When the earliest resolved member leaves its window: pruning before
    /// then would find nothing, so it is skipped.
    pub(super) expires: Option<DateTime<Utc>>,
    /// Absence rules: when the heartbeat last came back after a silence of
    /// at least `absent.for`. A group that held stays holding for one window
    /// after that, as an alert group does after its alerts resolve, so that
    /// a flapping heartbeat continues one incident instead of opening one
    /// per flap.
    pub(super) back_at: Option<DateTime<Utc>>,
    /// Its incident was open in the store when the engine was rebuilt: the
    /// replay cannot tell whether the group held before, so it is taken as
    /// having held (see [`Group::holds`]).
    pub(super) carried: bool,
}

impl Group {
    /// Drops members that resolved more than a window ago.
    pub(super) fn prune(&mut self, now: DateTime<Utc>, known: &mut HashMap<ArcStr, Known>) {
        if self.expires.is_none_or(|e| now < e) {
            return;
        }
        let window = self.rule.window;
        let (rule, tally) = (&self.rule, &mut self.tally);
        let mut next: Option<DateTime<Utc>> = None;
        self.members.retain(|s, m| {
            let until = m.resolved_at().map(|r| after(r, window));
            let keep = until.is_none_or(|u| now < u);
            if !keep {
                forget(known, &s.id);
                tally.remove(rule, &s.name, &s.labels);
            } else if let Some(u) = until {
                next = Some(next.map_or(u, |n| n.min(u)));
            }
            keep
        });
        self.expires = next;
    }

    /// Member ids in a stable order, for decisions and the audit log.
    pub(super) fn member_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.members.keys().map(|s| s.id.to_string()).collect();
        ids.sort();
        ids
    }

    /// A heartbeat member of an absence rule arrived at `now`, last seen at
    /// `before`: after a silence long enough to be absent, it is back.
    pub(super) fn beat(&mut self, before: DateTime<Utc>, now: DateTime<Utc>) {
        if let Some(absent) = &self.rule.when.absent
            && after(before, absent.after) <= now
        {
            self.back_at = Some(now);
        }
    }

    /// A member resolved (or arrived already ended) at `at`.
    pub(super) fn resolved(&mut self, at: DateTime<Utc>) {
        let e = after(at, self.rule.window);
        self.expires = Some(self.expires.map_or(e, |x| x.min(e)));
    }

    pub(super) fn holds(&self, now: DateTime<Utc>) -> bool {
        let when = &self.rule.when;
        if self.members.is_empty() {
            return false;
        }
        if when.count.is_some_and(|n| self.members.len() < n) {
            return false;
        }
        for (counts, &n) in self.tally.values.iter().zip(when.distinct.values()) {
            if counts.len() < n {
                return false;
            }
        }
        if !when.alerts.iter().all(|a| self.tally.names.contains_key(a)) {
            return false;
        }
        if let Some(absent) = &when.absent {
            let mut beats = self
                .members
                .iter()
                .filter(|(s, _)| absent.is_beat(&s.name))
                .peekable();
            // Never seen is not absent: there is nothing to miss yet.
            let silent = beats.peek().is_some()
                && beats.all(|(_, m)| after(m.last_seen(), absent.after) <= now);
            let lingering = (self.holding || self.carried)
                && self
                    .back_at
                    .is_some_and(|b| now < after(b, self.rule.window));
            if !silent && !lingering {
                return false;
            }
        }
        if let Some(shape) = when.cel.as_ref().and_then(|c| c.shape()) {
            return shape.eval(self);
        }
        if let Some(cel) = &when.cel {
            let views: Vec<SignalView<'_>> = self
                .members
                .iter()
                .map(|(s, m)| SignalView {
                    name: &s.name,
                    source: &s.source,
                    status: if m.resolved_at().is_some() {
                        "resolved"
                    } else {
                        "firing"
                    },
                    labels: &s.labels,
                })
                .collect();
            match cel.eval(&views, &self.labels) {
                Ok(b) => return b,
                Err(e) => {
                    tracing::warn!(rule = %self.rule.name, "CEL condition failed, treated as false: {e}");
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn services(&self) -> BTreeSet<String> {
        self.members
            .keys()
            .filter_map(|s| s.labels.get(SERVICE_LABEL))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Values of the `service` label among these members.
    pub(super) fn services_of(&self, ids: &[String]) -> BTreeSet<String> {
        ids.iter()
            .filter_map(|id| {
                self.members
                    .get_key_value(id.as_str())?
                    .0
                    .labels
                    .get(SERVICE_LABEL)
            })
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Labels every member agrees on, plus the group labels: the scope the
    /// group's evidence lies in, for precedence.
    pub(super) fn scope(&self) -> Labels {
        let mut members = self.members.keys();
        let mut common = members
            .next()
            .map(|s| s.labels.to_labels())
            .unwrap_or_default();
        for s in members {
            common.retain(|k, v| s.labels.get(k) == Some(v.as_str()));
        }
        common.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        common
    }
}

#[derive(Debug, Default)]
pub(super) struct Known {
    /// Groups the signal is a member of.
    pub(super) memberships: u32,
    /// Firing (not resolved, not a point event).
    pub(super) active: bool,
    /// Some group it is in measures how recently it was seen (absence), so
    /// every re-send matters there.
    pub(super) watched: bool,
    /// The last time it fired or was re-sent, for `signal_ttl`.
    last_seen: Stamp,
}

impl Known {
    pub(super) fn last_seen(&self) -> Option<DateTime<Utc>> {
        self.last_seen.get()
    }

    pub(super) fn set_last_seen(&mut self, at: Option<DateTime<Utc>>) {
        self.last_seen = Stamp::of(at);
    }
}

fn forget(known: &mut HashMap<ArcStr, Known>, id: &str) {
    if let Some(k) = known.get_mut(id) {
        k.memberships = k.memberships.saturating_sub(1);
        if k.memberships == 0 {
            known.remove(id);
        }
    }
}

/// Writes `name{label="value",…}` over the rule's group_by labels, in their
/// order, into `out` (reused across calls: no allocation per lookup). Past
/// [`key::MAX_KEY_BYTES`] the label part is replaced by its digest, since
/// incident keys are indexed in the store. A drill's labels add the drill
/// label last, so a drill's groups and incident never share a key with
/// real ones: real evidence cannot join a drill, nor a drill a real one.
pub(super) fn write_key(out: &mut String, name: &str, rule: &Rule, labels: &Labels) {
    out.clear();
    out.push_str(name);
    out.push('{');
    let drill = is_drill(labels).then_some(DRILL_LABEL);
    for (i, l) in rule
        .group_by
        .iter()
        .map(String::as_str)
        .chain(drill)
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        let v = labels.get(l).map(String::as_str).unwrap_or_default();
        let _ = write!(out, "{l}={v:?}");
    }
    out.push('}');
    if out.len() > key::MAX_KEY_BYTES {
        // The name stays readable in logs and the API; the digest covers
        // it too, so two names cannot share a key.
        let digest = key::digest(out);
        out.truncate(name.len());
        out.push('{');
        out.push_str(&digest);
        out.push('}');
    }
}

/// The rule's `group_by` labels, and a drill's mark, which the incident
/// carries from there.
pub(super) fn group_labels(rule: &Rule, labels: &Labels) -> Labels {
    let drill = is_drill(labels).then_some(DRILL_LABEL);
    rule.group_by
        .iter()
        .map(String::as_str)
        .chain(drill)
        .map(|l| (l.to_owned(), labels.get(l).cloned().unwrap_or_default()))
        .collect()
}

/// A group answers a CEL condition of a known shape from its tallies,
/// whatever its size.
impl Tallies for Group {
    fn members(&self) -> usize {
        self.members.len()
    }

    fn named(&self, name: &str) -> usize {
        self.tally.names.get(name).copied().unwrap_or(0) as usize
    }
}
