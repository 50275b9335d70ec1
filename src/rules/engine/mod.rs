//! Correlation: signals into groups, groups into incidents.
//!
//! A *group* is one rule and one set of `group_by` label values. A signal is
//! a member of a group while it fires and for one window after it resolves,
//! so an alert that flaps (fire, resolve, fire) inside the window keeps its
//! group holding instead of opening a second incident. A point-in-time event
//! (a firing signal whose `ends_at` has passed, e.g. a deploy) counts for one
//! window from when it arrived.
//!
//! *Evidence* is what still holds: the conditions counted over the signals
//! firing now and the point events in their window (a rule with
//! `count_resolved` counts resolved signals through their window too). Only
//! evidence opens an incident: two services that failed and recovered do
//! not make a zone failure with a third that fails later. Once open, a
//! group goes on holding while its conditions hold over every member in
//! the window, resolved ones included, so a flap continues the incident;
//! when its evidence lapses or returns meanwhile, the engine says so
//! ([`Decision::Evidence`]), and the approval check and the release of
//! absorbed incidents ask that same question.
//!
//! When a group's conditions start to hold, it joins the *incident* keyed by
//! its scenario and group labels (two rules that recognise the same scenario
//! for the same group feed one incident). The incident opens when its first
//! group holds and closes when its last group stops holding.
//!
//! Precedence: a rule's `absorbs` lists smaller scenarios. An incident of a
//! smaller scenario whose signals all lie inside a larger open incident's
//! group (e.g. a service incident in a zone with an open AZ failure) is
//! opened as absorbed, or absorbed if it was open first; it never acts alone.
//!
//! The engine is pure: it takes the time as an argument and returns
//! decisions, so `serve`, `dr-reactor test` and `replay` run the same code.

mod bounds;
mod group;
mod precedence;
mod snapshot;
mod tally;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::primitives::intern::{ArcStr, Interner};
use crate::signal::HeldLabels;

use chrono::{DateTime, Utc};

pub use self::bounds::{Bounded, EngineLimits};
use self::group::{Assessment, Group, Held, Known, Member, MemberSignal, group_labels, write_key};
use self::precedence::{Opening, Track};
pub use self::snapshot::{GroupView, Progress};
use self::tally::Tally;
use super::{Rule, RuleSet};
use crate::signal::{Change, Labels, SignalEvent, Status};

/// The label that names the service a signal is about.
pub const SERVICE_LABEL: &str = "service";

#[derive(Debug, Clone)]
pub enum Decision {
    /// An incident starts: its first group's conditions hold.
    Open {
        rule: Arc<Rule>,
        key: String,
        labels: Labels,
        signals: Vec<String>,
        /// Values of the `service` label among the signals.
        services: BTreeSet<String>,
        /// The open incident that absorbs this one, if any.
        parent: Option<String>,
        at: DateTime<Utc>,
    },
    /// New evidence for an open incident.
    Attach {
        key: String,
        signals: Vec<String>,
        /// Values of the `service` label among the new signals: a plan not
        /// yet approved grows to cover them.
        services: BTreeSet<String>,
        at: DateTime<Utc>,
    },
    /// A larger incident opened over an open smaller one.
    Absorb {
        key: String,
        parent: String,
        at: DateTime<Utc>,
    },
    /// Firing evidence of an open incident was not re-sent within
    /// `signal_ttl` and is taken as resolved.
    Expired {
        key: String,
        signals: Vec<String>,
        at: DateTime<Utc>,
    },
    /// Whether the incident's evidence holds changed: what still fires no
    /// longer meets (or meets again) the conditions of any of its rules.
    /// The incident stays open through the window (a flap continues it),
    /// but nobody may approve acting on evidence that does not hold, and an
    /// absorbed incident released by its parent goes on only while it does.
    Evidence {
        key: String,
        holds: bool,
        at: DateTime<Utc>,
    },
    /// No group of the incident holds any more: the evidence is gone.
    Close {
        key: String,
        at: DateTime<Utc>,
        reason: String,
    },
}

/// The key of the incident `rule` opens over `labels` (its scenario and
/// the values of its `group_by` labels), exactly as the engine writes it:
/// an incident declared by hand then shares it with a detected one.
pub fn incident_key(rule: &Rule, labels: &Labels) -> String {
    let mut key = String::new();
    write_key(&mut key, &rule.scenario, rule, labels);
    key
}

impl Decision {
    pub fn key(&self) -> &str {
        match self {
            Decision::Open { key, .. }
            | Decision::Attach { key, .. }
            | Decision::Absorb { key, .. }
            | Decision::Expired { key, .. }
            | Decision::Evidence { key, .. }
            | Decision::Close { key, .. } => key,
        }
    }
}

#[derive(Debug)]
pub struct Engine {
    rules: Arc<RuleSet>,
    groups: HashMap<String, Group>,
    incidents: BTreeMap<String, Track>,
    /// Per signal in any group: lets a re-send of an already counted signal
    /// (most of the traffic: Alertmanager repeats firing alerts) be decided
    /// with one lookup instead of a visit to every group it is in.
    known: HashMap<ArcStr, Known>,
    /// The next tick evaluates every group, not only those time can change
    /// (set when the rules change under the groups).
    evaluate_all: bool,
    /// Precedence rank per scenario: 0 absorbs nothing, else one more than
    /// the largest rank it absorbs. Groups are evaluated largest first.
    rank: HashMap<String, u32>,
    limits: EngineLimits,
    /// Groups per rule name, for `max_groups_per_rule`.
    group_counts: HashMap<String, usize>,
    bounded: Bounded,
    next_sweep: Option<DateTime<Utc>>,
    /// Limits already logged as hit (once each, not per signal).
    warned: HashSet<String>,
    /// Label names and values, alert names and sources of held signals,
    /// one copy each.
    strings: Interner,
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine {
            rank: precedence::ranks(&rules),
            rules,
            groups: HashMap::new(),
            incidents: BTreeMap::new(),
            known: HashMap::new(),
            evaluate_all: false,
            limits: EngineLimits::default(),
            group_counts: HashMap::new(),
            bounded: Bounded::default(),
            next_sweep: None,
            warned: HashSet::new(),
            strings: Interner::default(),
        }
    }

    pub fn with_limits(mut self, limits: EngineLimits) -> Engine {
        self.limits = limits;
        self
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Number of signal memberships currently tracked.
    pub fn tracked(&self) -> usize {
        self.groups.values().map(|g| g.members.len()).sum()
    }

    /// Number of distinct signals in at least one group.
    pub fn signals_tracked(&self) -> usize {
        self.known.len()
    }

    /// Swaps in a new rule set. Groups of rules that still exist (by name)
    /// keep their members and state and are re-evaluated under the new rule
    /// at the next tick; groups of removed rules are dropped, and an incident
    /// left with no group is closed then.
    pub fn replace_rules(&mut self, rules: Arc<RuleSet>) {
        let by_name: HashMap<&str, &Arc<Rule>> =
            rules.rules.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut dropped = Vec::new();
        self.groups
            .retain(|key, g| match by_name.get(g.rule.name.as_str()) {
                Some(r) => {
                    g.rule = Arc::clone(r);
                    g.rebuild_counts();
                    // The window may have changed: prune at the next evaluation.
                    g.expires = g.members.values().filter_map(Member::resolved_at).min();
                    true
                }
                None => {
                    if g.holding {
                        dropped.push((key.clone(), g.incident.clone()));
                    }
                    false
                }
            });
        for (group, incident) in dropped {
            if let Some(t) = self.incidents.get_mut(&incident) {
                t.groups.remove(&group);
            }
        }
        self.group_counts.clear();
        for g in self.groups.values() {
            *self.group_counts.entry(g.rule.name.clone()).or_default() += 1;
        }
        let last_seen: HashMap<ArcStr, DateTime<Utc>> = self
            .known
            .drain()
            .filter_map(|(id, k)| Some((id, k.last_seen()?)))
            .collect();
        for g in self.groups.values() {
            for (s, m) in &g.members {
                let k = self.known.entry(s.id.clone()).or_default();
                k.memberships += 1;
                k.active |= m.is_firing();
                k.watched |= g.rule.when.absent.is_some();
                k.set_last_seen(last_seen.get(&*s.id).copied());
            }
        }
        self.rank = precedence::ranks(&rules);
        self.rules = rules;
        self.evaluate_all = true;
    }

    pub fn on_event(&mut self, ev: &SignalEvent, now: DateTime<Utc>) -> Vec<Decision> {
        self.on_batch(std::slice::from_ref(ev), now)
    }

    /// One batch of signal events (a webhook delivery, a Kafka poll, what
    /// queued up behind them): every membership change first, then every
    /// touched group evaluated once, larger scenarios before smaller ones.
    /// So when a zone's alerts arrive together, the zone incident is open
    /// before its services' incidents are decided, and those open absorbed
    /// instead of acting for a moment on their own.
    pub fn on_batch(&mut self, events: &[SignalEvent], now: DateTime<Utc>) -> Vec<Decision> {
        let mut touched: Vec<(String, Vec<String>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for ev in events {
            for (key, joined) in self.record(ev, now) {
                let i = *index.entry(key.clone()).or_insert_with(|| {
                    touched.push((key, Vec::new()));
                    touched.len() - 1
                });
                touched[i].1.extend(joined);
            }
        }
        let mut out = Vec::new();
        self.settle(touched, now, &mut out);
        out
    }

    /// Applies one event to the groups it belongs to; returns the groups
    /// whose outcome it may change, with the signal id where it joined.
    fn record(&mut self, ev: &SignalEvent, now: DateTime<Utc>) -> Vec<(String, Option<String>)> {
        let mut touched = Vec::new();
        if ev.change == Change::Ignored {
            return touched;
        }
        let s = &ev.signal;
        let id = s.id();
        // A firing signal that already ended is a point-in-time event.
        let instant = s.status == Status::Firing && s.ends_at.is_some_and(|e| e <= s.received_at);
        let refresh = matches!(ev.change, Change::Fired | Change::Refreshed) && !instant;
        if refresh
            && let Some(k) = self.known.get_mut(id.as_str())
            && k.active
            && !k.watched
        {
            k.set_last_seen(Some(now));
            return touched;
        }
        let (mut joined_groups, mut watched) = (0u32, false);
        let rules = Arc::clone(&self.rules);
        // One copy of the signal (and its id) for every group it joins and
        // for `known`.
        let mut shared: Option<Held> = None;
        let mut key = String::with_capacity(96);
        for rule in rules.candidates(&s.name, &s.labels) {
            if !rule.matches(&s.source, &s.name, &s.labels) {
                continue;
            }
            write_key(&mut key, &rule.name, rule, &s.labels);
            if !self.groups.contains_key(key.as_str()) {
                if ev.change == Change::Resolved || !self.room_for_group(&rule.name) {
                    continue;
                }
                *self.group_counts.entry(rule.name.clone()).or_default() += 1;
                let mut incident = String::new();
                write_key(&mut incident, &rule.scenario, rule, &s.labels);
                self.groups.insert(
                    key.clone(),
                    Group {
                        incident,
                        rule: Arc::clone(rule),
                        labels: group_labels(rule, &s.labels),
                        members: HashMap::new(),
                        holding: false,
                        tally: Tally::for_rule(rule),
                        live: Tally::for_rule(rule),
                        live_members: 0,
                        expires: None,
                        back_at: None,
                        carried: false,
                    },
                );
            }
            let group = self.groups.get_mut(key.as_str()).expect("inserted above");
            watched |= rule.when.absent.is_some();
            let joined = match ev.change {
                Change::Fired | Change::Refreshed => match group.members.get_mut(id.as_str()) {
                    Some(m) => {
                        let was_active = m.is_firing();
                        let was_live = m.is_live();
                        let before = m.seen(now);
                        m.refire(instant);
                        group.relive(id.as_str(), was_live);
                        if instant {
                            group.resolved(now);
                        }
                        if rule
                            .when
                            .absent
                            .as_ref()
                            .is_some_and(|a| a.is_beat(&s.name))
                        {
                            group.beat(before, now);
                        }
                        // A re-send of what is already counted changes
                        // nothing, unless the rule measures how recently
                        // its signals were seen: the common case, skipped.
                        if was_active && !instant && rule.when.absent.is_none() {
                            continue;
                        }
                        false
                    }
                    None => {
                        let members = group.members.len();
                        if !self.room_for_member(&key, members) {
                            continue;
                        }
                        let group = self.groups.get_mut(key.as_str()).expect("looked up above");
                        let signal = shared
                            .get_or_insert_with(|| {
                                Held(Arc::new(MemberSignal {
                                    id: match self.known.get_key_value(id.as_str()) {
                                        Some((k, _)) => k.clone(),
                                        None => ArcStr::from(id.as_str()),
                                    },
                                    name: self.strings.intern(&s.name),
                                    source: self.strings.intern(&s.source),
                                    labels: HeldLabels::new(&s.labels, &mut self.strings),
                                }))
                            })
                            .clone();
                        if instant {
                            group.resolved(now);
                        }
                        group.join(signal, Member::new(now, instant));
                        joined_groups += 1;
                        true
                    }
                },
                Change::Resolved => {
                    // A heartbeat that Alertmanager resolves has stopped
                    // beating: its silence, measured from its last beat, is
                    // the evidence, so it stays a member and never ages out.
                    if rule
                        .when
                        .absent
                        .as_ref()
                        .is_some_and(|a| a.is_beat(&s.name))
                    {
                        continue;
                    }
                    match group.members.get_mut(id.as_str()) {
                        Some(m) => {
                            let was_live = m.is_live();
                            m.resolve(now);
                            group.relive(id.as_str(), was_live);
                        }
                        None => continue,
                    }
                    group.resolved(now);
                    false
                }
                Change::Ignored => continue,
            };
            touched.push((key.clone(), joined.then(|| id.clone())));
        }
        if joined_groups > 0 || self.known.contains_key(id.as_str()) {
            let k = match self.known.get_mut(id.as_str()) {
                Some(k) => k,
                None => self
                    .known
                    .entry(shared.map_or_else(|| ArcStr::from(id.as_str()), |s| s.id.clone()))
                    .or_default(),
            };
            k.memberships += joined_groups;
            k.active = refresh;
            k.watched |= watched;
            if refresh {
                k.set_last_seen(Some(now));
            }
        }
        touched
    }

    /// Time-driven evaluation: resolved members age out of their windows,
    /// heartbeats go absent, and groups whose conditions stop holding close.
    ///
    /// Only groups whose outcome time can change are evaluated: those with
    /// an absence condition and those with a member due to age out. Every
    /// other condition (count, distinct, alerts, CEL) depends on the members
    /// alone, and each change of members was evaluated when it happened, so
    /// re-evaluating such a group (a CEL condition walks every member) would
    /// cost time in proportion to all tracked signals, every tick, for
    /// nothing.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let mut out = Vec::new();
        let all = std::mem::take(&mut self.evaluate_all);
        let swept = self.sweep(now, &mut out);
        let mut keys: Vec<(String, Vec<String>)> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                all || g.rule.when.absent.is_some() || g.expires.is_some_and(|e| e <= now)
            })
            .map(|(k, _)| (k.clone(), Vec::new()))
            .chain(swept.into_iter().map(|k| (k, Vec::new())))
            .collect();
        keys.sort();
        keys.dedup();
        self.settle(keys, now, &mut out);
        out
    }

    /// Re-evaluates groups and turns their changes into decisions. Groups
    /// that start holding are handled before groups that stop, so when one
    /// rule of an incident hands over to another in the same instant (a
    /// deploy ageing out of the window: "after deploy" stops, "no deploy"
    /// starts) the incident continues instead of closing and reopening.
    /// Among the rest, larger scenarios go first (see [`Engine::on_batch`]).
    fn settle(
        &mut self,
        groups: Vec<(String, Vec<String>)>,
        now: DateTime<Utc>,
        out: &mut Vec<Decision>,
    ) {
        let mut stopping = Vec::new();
        let mut rest = Vec::new();
        for (key, joined) in groups {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.prune(now, &mut self.known);
            // Assessed once: evaluating other groups never changes this
            // group's members, so the answer still holds when it is used.
            let outcome = group.assess(now);
            if group.holding && !outcome.holds {
                stopping.push((key, outcome));
            } else {
                let rank = self.rank.get(&group.rule.scenario).copied().unwrap_or(0);
                rest.push((std::cmp::Reverse(rank), key, joined, outcome));
            }
        }
        // Stable: groups of one rank keep their order.
        rest.sort_by_key(|(rank, ..)| *rank);
        for (_, key, joined, outcome) in rest {
            self.evaluate(&key, now, outcome, &joined, out);
        }
        for (key, outcome) in stopping {
            self.evaluate(&key, now, outcome, &[], out);
        }
    }

    fn evaluate(
        &mut self,
        gkey: &str,
        now: DateTime<Utc>,
        outcome: Assessment,
        joined: &[String],
        out: &mut Vec<Decision>,
    ) {
        let Some(group) = self.groups.get_mut(gkey) else {
            return;
        };
        match (group.holding, outcome.holds) {
            (false, true) => {
                group.holding = true;
                let ikey = group.incident.clone();
                let signals = group.member_ids();
                if let Some(track) = self.incidents.get_mut(&ikey) {
                    track.groups.insert(gkey.to_owned());
                    out.push(Decision::Attach {
                        key: ikey,
                        signals,
                        services: group.services(),
                        at: now,
                    });
                } else {
                    let opening = Opening {
                        scope: group.scope(),
                        services: group.services(),
                        rule: Arc::clone(&group.rule),
                        labels: group.labels.clone(),
                        signals,
                    };
                    self.open(ikey, opening, gkey, now, out);
                }
            }
            (true, true) => {
                if !joined.is_empty() {
                    out.push(Decision::Attach {
                        key: group.incident.clone(),
                        services: group.services_of(joined),
                        signals: joined.to_vec(),
                        at: now,
                    });
                }
            }
            (true, false) => {
                group.holding = false;
                group.carried = false;
                group.back_at = None;
                let ikey = group.incident.clone();
                let reason = format!(
                    "conditions of rule {} no longer hold (window {})",
                    group.rule.name,
                    humantime::format_duration(group.rule.window)
                );
                if let Some(track) = self.incidents.get_mut(&ikey) {
                    track.groups.remove(gkey);
                    if track.groups.is_empty() {
                        self.incidents.remove(&ikey);
                        self.orphan(&ikey);
                        out.push(Decision::Close {
                            key: ikey,
                            at: now,
                            reason,
                        });
                    }
                }
            }
            (false, false) => {}
        }
        // A closed incident has no track left, and so no evidence to note.
        if let Some(g) = self.groups.get(gkey)
            && let Some(track) = self.incidents.get_mut(&g.incident)
        {
            note_evidence(track, &g.incident, gkey, outcome.live, now, out);
        }
        if let Some(g) = self.groups.get(gkey)
            && g.members.is_empty()
            && !g.holding
            && let Some(g) = self.groups.remove(gkey)
            && let Some(n) = self.group_counts.get_mut(&g.rule.name)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.group_counts.remove(&g.rule.name);
            }
        }
    }

    /// Incidents absorbed by `parent`, which has closed, stand alone again:
    /// a larger incident that opens later may absorb them anew.
    fn orphan(&mut self, parent: &str) {
        for t in self.incidents.values_mut() {
            if t.parent.as_deref() == Some(parent) {
                t.parent = None;
            }
        }
    }

    /// The incident of `key` no longer counts as absorbed (its parent ended
    /// without acting, and the incident layer released it).
    pub fn release(&mut self, key: &str) {
        if let Some(t) = self.incidents.get_mut(key) {
            t.parent = None;
        }
    }

    /// Rebuilds state after a restart from recorded signal events (oldest
    /// first, each with its time), then reconciles with the incidents the
    /// store has open: an incident that still holds continues silently; one
    /// that holds but is not in the store opens (it was decided while
    /// dr-reactor was down); an open one in the store whose evidence is gone
    /// closes. A heartbeat group of an incident still open is taken as
    /// having held, so a heartbeat that came back keeps it open for one
    /// window from its last replayed beat rather than closing it at once.
    pub fn restore(
        &mut self,
        events: &[(SignalEvent, DateTime<Utc>)],
        open: &HashSet<String>,
        now: DateTime<Utc>,
    ) -> Vec<Decision> {
        for (ev, at) in events {
            self.on_event(ev, *at);
        }
        for g in self.groups.values_mut() {
            g.carried = open.contains(&g.incident);
        }
        self.tick(now);
        let mut out = Vec::new();
        let mut stale: Vec<&String> = open
            .iter()
            .filter(|k| !self.incidents.contains_key(*k))
            .collect();
        stale.sort();
        for key in stale {
            out.push(Decision::Close {
                key: key.clone(),
                at: now,
                reason: "evidence resolved while dr-reactor was not running".into(),
            });
        }
        for (key, track) in &self.incidents {
            if open.contains(key) {
                continue;
            }
            let Some(g) = track.groups.iter().next().and_then(|g| self.groups.get(g)) else {
                continue;
            };
            out.push(Decision::Open {
                rule: Arc::clone(&g.rule),
                key: key.clone(),
                labels: track.labels.clone(),
                signals: g.member_ids(),
                services: g.services(),
                parent: track.parent.clone(),
                at: now,
            });
        }
        out
    }
}

/// Keeps the incident's record of which of its groups have evidence, and
/// says so when the incident's evidence as a whole comes or goes. Called
/// for every evaluated group: it allocates only when something changes.
fn note_evidence(
    track: &mut Track,
    ikey: &str,
    gkey: &str,
    live: bool,
    now: DateTime<Utc>,
    out: &mut Vec<Decision>,
) {
    if !track.groups.contains(gkey) || track.live.contains(gkey) == live {
        return;
    }
    let had = !track.live.is_empty();
    if live {
        track.live.insert(gkey.to_owned());
    } else {
        track.live.remove(gkey);
    }
    let has = !track.live.is_empty();
    if had != has {
        out.push(Decision::Evidence {
            key: ikey.to_owned(),
            holds: live,
            at: now,
        });
    }
}

#[cfg(test)]
mod absence_tests;
#[cfg(test)]
mod evidence_tests;
#[cfg(test)]
mod tests;
