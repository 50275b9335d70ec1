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
    /// A member's `resolved_at` when it is a point-in-time event: it ended
    /// as it arrived, and counts until one window after it was last seen.
    const POINT: Stamp = Stamp(i64::MIN + 1);

    pub(super) fn at(t: DateTime<Utc>) -> Stamp {
        Stamp(t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
            i64::MIN + 2
        } else {
            i64::MAX
        }))
    }

    pub(super) fn of(t: Option<DateTime<Utc>>) -> Stamp {
        t.map_or(Stamp::NONE, Stamp::at)
    }

    pub(super) fn get(self) -> Option<DateTime<Utc>> {
        (self != Stamp::NONE && self != Stamp::POINT)
            .then(|| DateTime::from_timestamp_nanos(self.0))
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

/// A signal's times in one group: when it was last seen, and whether it
/// fires, is a point-in-time event, or resolved (and when).
#[derive(Debug)]
pub(super) struct Member {
    last_seen: Stamp,
    /// "None" while it fires, [`Stamp::POINT`] for a point event.
    resolved_at: Stamp,
}

impl Member {
    /// A member that fires, or (`point`) a point-in-time event.
    pub(super) fn new(seen: DateTime<Utc>, point: bool) -> Member {
        Member {
            last_seen: Stamp::at(seen),
            resolved_at: if point { Stamp::POINT } else { Stamp::NONE },
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

    /// When it stopped counting as firing: when it resolved, or for a point
    /// event when it was last seen. It leaves the group one window later.
    pub(super) fn resolved_at(&self) -> Option<DateTime<Utc>> {
        if self.resolved_at == Stamp::POINT {
            return Some(self.last_seen());
        }
        self.resolved_at.get()
    }

    pub(super) fn is_firing(&self) -> bool {
        self.resolved_at == Stamp::NONE
    }

    /// Evidence that still holds: firing, or a point event in its window.
    pub(super) fn is_live(&self) -> bool {
        self.is_firing() || self.resolved_at == Stamp::POINT
    }

    /// Fired again: firing, or (`point`) a point event seen again.
    pub(super) fn refire(&mut self, point: bool) {
        self.resolved_at = if point { Stamp::POINT } else { Stamp::NONE };
    }

    pub(super) fn resolve(&mut self, at: DateTime<Utc>) {
        self.resolved_at = Stamp::at(at);
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
    /// Counts over every member, resolved ones in their window included.
    pub(super) tally: Tally,
    /// Counts over the live members alone (see [`Member::is_live`]), and
    /// how many there are: the evidence that still holds.
    pub(super) live: Tally,
    pub(super) live_members: usize,
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
        let (live, live_members) = (&mut self.live, &mut self.live_members);
        let mut next: Option<DateTime<Utc>> = None;
        self.members.retain(|s, m| {
            let until = m.resolved_at().map(|r| after(r, window));
            let keep = until.is_none_or(|u| now < u);
            if !keep {
                forget(known, &s.id);
                tally.remove(rule, &s.name, &s.labels);
                if m.is_live() {
                    live.remove(rule, &s.name, &s.labels);
                    *live_members -= 1;
                }
            } else if let Some(u) = until {
                next = Some(next.map_or(u, |n| n.min(u)));
            }
            keep
        });
        self.expires = next;
    }

    /// A new member, live as every new one is (firing or a point event).
    pub(super) fn join(&mut self, signal: Held, member: Member) {
        self.tally.add(&self.rule, &signal.name, &signal.labels);
        self.live.add(&self.rule, &signal.name, &signal.labels);
        self.live_members += 1;
        self.members.insert(signal, member);
    }

    /// Member `id` was live (`was`) and may not be now, or the other way
    /// round: the live counts follow.
    pub(super) fn relive(&mut self, id: &str, was: bool) {
        let (members, live, rule) = (&self.members, &mut self.live, &self.rule);
        let Some((s, m)) = members.get_key_value(id) else {
            return;
        };
        match (was, m.is_live()) {
            (false, true) => {
                live.add(rule, &s.name, &s.labels);
                self.live_members += 1;
            }
            (true, false) => {
                live.remove(rule, &s.name, &s.labels);
                self.live_members -= 1;
            }
            _ => {}
        }
    }

    /// The counts from scratch: after the rule behind the group changed.
    pub(super) fn rebuild_counts(&mut self) {
        let rule = &self.rule;
        let all = self.members.keys().map(|s| (&*s.name, &s.labels));
        self.tally = Tally::rebuild(rule, all);
        let live = self.members.iter().filter(|(_, m)| m.is_live());
        self.live_members = live.clone().count();
        self.live = Tally::rebuild(rule, live.map(|(s, _)| (&*s.name, &s.labels)));
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

    /// Whether the group holds at `now`, and whether its evidence does.
    ///
    /// Evidence is what still holds: the conditions over the live members
    /// (firing signals and point events in their window), or for a
    /// heartbeat rule the heartbeat silent now; a rule with
    /// `count_resolved` counts resolved members through their window too.
    /// Only evidence opens an incident, and the approval check asks the
    /// same question ([`super::Decision::Evidence`]). A group that holds
    /// goes on holding while the conditions hold over every member in the
    /// window, resolved ones included (and a heartbeat lingers for a window
    /// after it returns), so that a flapping alert continues one incident
    /// instead of opening one per flap.
    pub(super) fn assess(&self, now: DateTime<Utc>) -> Assessment {
        let live = if self.rule.when.count_resolved {
            self.conditions_hold(now, Over::All)
        } else {
            self.conditions_hold(now, Over::Live)
        };
        let continues = (self.holding || self.carried) && self.conditions_hold(now, Over::Window);
        Assessment {
            live,
            holds: live || continues,
        }
    }

    /// The rule's conditions over the members `over` names.
    fn conditions_hold(&self, now: DateTime<Utc>, over: Over) -> bool {
        let when = &self.rule.when;
        let counts = match over {
            Over::Live => Counts {
                members: self.live_members,
                tally: &self.live,
            },
            Over::All | Over::Window => Counts {
                members: self.members.len(),
                tally: &self.tally,
            },
        };
        if counts.members == 0 {
            return false;
        }
        if when.count.is_some_and(|n| counts.members < n) {
            return false;
        }
        for (values, &n) in counts.tally.values.iter().zip(when.distinct.values()) {
            if values.len() < n {
                return false;
            }
        }
        if !when
            .alerts
            .iter()
            .all(|a| counts.tally.names.contains_key(a))
        {
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
            let lingering = over == Over::Window
                && (self.holding || self.carried)
                && self
                    .back_at
                    .is_some_and(|b| now < after(b, self.rule.window));
            if !silent && !lingering {
                return false;
            }
        }
        if let Some(shape) = when.cel.as_ref().and_then(|c| c.shape()) {
            return shape.eval(&counts);
        }
        if let Some(cel) = &when.cel {
            let views: Vec<SignalView<'_>> = self
                .members
                .iter()
                .filter(|(_, m)| over != Over::Live || m.is_live())
                .map(|(s, m)| SignalView {
                    name: &s.name,
                    source: &s.source,
                    status: if m.is_firing() { "firing" } else { "resolved" },
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

/// A group's outcome at one moment (see [`Group::assess`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Assessment {
    /// Its evidence holds.
    pub(super) live: bool,
    /// The group holds: its evidence, or one window after it lapsed.
    pub(super) holds: bool,
}

/// Which members a condition is asked over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    /// The evidence that still holds.
    Live,
    /// Every member in the window.
    All,
    /// Every member in the window, and a heartbeat that came back lingers.
    Window,
}

/// A member count and the tallies over the same members.
struct Counts<'a> {
    members: usize,
    tally: &'a Tally,
}

/// A CEL condition of a known shape is answered from the tallies, whatever
/// the group's size.
impl Tallies for Counts<'_> {
    fn members(&self) -> usize {
        self.members
    }

    fn named(&self, name: &str) -> usize {
        self.tally.names.get(name).copied().unwrap_or(0) as usize
    }
}
