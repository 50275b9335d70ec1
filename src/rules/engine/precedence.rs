use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Decision, Engine};
use crate::rules::Rule;
use crate::signal::Labels;

/// What a group brings to the incident it opens.
pub(super) struct Opening {
    pub(super) rule: Arc<Rule>,
    pub(super) labels: Labels,
    pub(super) scope: Labels,
    pub(super) services: BTreeSet<String>,
    pub(super) signals: Vec<String>,
}

/// An open incident as the engine sees it.
#[derive(Debug)]
pub(super) struct Track {
    scenario: String,
    pub(super) labels: Labels,
    scope: Labels,
    absorbs: Vec<String>,
    pub(super) groups: BTreeSet<String>,
    pub(super) parent: Option<String>,
}

impl Track {
    /// Whether this incident absorbs an incident of `scenario` whose
    /// evidence lies in `scope`.
    fn absorbs(&self, scenario: &str, scope: &Labels) -> bool {
        self.absorbs.iter().any(|s| s == scenario)
            && self.labels.iter().all(|(k, v)| scope.get(k) == Some(v))
    }
}

impl Engine {
    pub(super) fn open(
        &mut self,
        ikey: String,
        o: Opening,
        gkey: &str,
        now: DateTime<Utc>,
        out: &mut Vec<Decision>,
    ) {
        let Opening {
            rule,
            labels,
            scope,
            services,
            signals,
        } = o;
        let parent = self
            .incidents
            .iter()
            .find(|(_, t)| t.absorbs(&rule.scenario, &scope))
            .map(|(k, _)| k.clone());
        let track = Track {
            scenario: rule.scenario.clone(),
            labels: labels.clone(),
            scope,
            absorbs: rule.absorbs.clone(),
            groups: BTreeSet::from([gkey.to_owned()]),
            parent: parent.clone(),
        };
        // Smaller incidents already open inside this one are absorbed now.
        let children: Vec<String> = self
            .incidents
            .iter()
            .filter(|(_, t)| t.parent.is_none() && track.absorbs(&t.scenario, &t.scope))
            .map(|(k, _)| k.clone())
            .collect();
        out.push(Decision::Open {
            rule,
            key: ikey.clone(),
            labels,
            signals,
            services,
            parent,
            at: now,
        });
        for child in children {
            if let Some(t) = self.incidents.get_mut(&child) {
                t.parent = Some(ikey.clone());
            }
            out.push(Decision::Absorb {
                key: child,
                parent: ikey.clone(),
                at: now,
            });
        }
        self.incidents.insert(ikey, track);
    }
}
