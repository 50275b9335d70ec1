//! Approval bound to its evidence: an incident awaiting approval whose
//! evidence has gone is paused (votes to approve are refused) until the
//! evidence returns or the incident closes at the end of its window. The
//! pause and the resumption are events, so the Slack message and the audit
//! show them; a vote checks the evidence itself, not the event, so a vote in
//! the moment before the tick notices is refused all the same.

use chrono::{DateTime, Utc};

use super::approval::ApprovalError;

/// The events that record the engine's word on an incident's evidence.
const EVIDENCE_KINDS: [&str; 2] = ["evidence_lapsed", "evidence_returned"];
use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::approval::evidence::{self, PAUSED};
use crate::approval::votes::{Refusal, Request};

impl Incidents {
    /// Whether the incident's evidence holds at `at`, by the request's idea
    /// of evidence (alerts firing, or a heartbeat still absent).
    pub(super) async fn evidence_holds(
        &self,
        id: &str,
        request: &Request,
        at: DateTime<Utc>,
    ) -> Result<bool, IncidentError> {
        // A declared incident has no alert behind it: the operator's
        // declaration is its evidence, and stands until the incident ends.
        if self.declared(id).await? {
            return Ok(true);
        }
        self.evidence_of(id, request.heartbeat.as_ref(), at).await
    }

    /// Whether the incident was declared by hand (its log starts so).
    pub(super) async fn declared(&self, id: &str) -> Result<bool, IncidentError> {
        let first = self.store.events_page(id, 0, 1).await?;
        Ok(first.first().is_some_and(|e| e.kind == "declared"))
    }

    /// Whether the evidence of incident `id` holds at `at`: a firing signal,
    /// or for a heartbeat incident the heartbeat still silent.
    pub(super) async fn evidence_of(
        &self,
        id: &str,
        heartbeat: Option<&evidence::Heartbeat>,
        at: DateTime<Utc>,
    ) -> Result<bool, IncidentError> {
        // The engine's word first (the rule's conditions over what still
        // fires, [`crate::rules::Decision::Evidence`]), then the store's,
        // which sees a resolve the engine has not consumed yet.
        if self.evidence_lapsed(id).await? {
            return Ok(false);
        }
        Ok(match heartbeat {
            Some(hb) => evidence::heartbeat_absent(hb, &self.store.incident_beats(id).await?, at),
            None => self.store.incident_firing(id).await?,
        })
    }

    /// Whether the engine last said the incident's evidence does not hold.
    async fn evidence_lapsed(&self, id: &str) -> Result<bool, IncidentError> {
        Ok(self
            .store
            .events_of_kinds(id, &EVIDENCE_KINDS)
            .await?
            .last()
            .is_some_and(|e| e.kind == "evidence_lapsed"))
    }

    /// Records the engine's word that the incident's evidence holds or no
    /// longer does, unless the log says so already (a decision may be
    /// applied twice, and a new leader says it again for every incident).
    pub(super) async fn note_evidence(
        &self,
        inc: &Incident,
        holds: bool,
        at: DateTime<Utc>,
    ) -> Result<(), IncidentError> {
        if self.evidence_lapsed(&inc.id).await? != holds {
            return Ok(());
        }
        let note = if holds {
            EventNote::new(
                "evidence_returned",
                SYSTEM,
                "evidence holds again: the rule's conditions are met by what fires now",
            )
        } else {
            EventNote::new(
                "evidence_lapsed",
                SYSTEM,
                "evidence no longer holds: what still fires does not meet the rule's \
                 conditions; the incident stays open for its window",
            )
        };
        self.store.append_event(&inc.id, at, &note).await?;
        self.changed(&inc.id);
        Ok(())
    }

    /// Why a vote to approve `inc` is not taken at `at`, if it is not: its
    /// evidence is gone, or, for a failback, the region it returns to is
    /// not healthy.
    pub(super) async fn approval_blocked(
        &self,
        inc: &Incident,
        request: &Request,
        at: DateTime<Utc>,
    ) -> Result<Option<Refusal>, IncidentError> {
        if inc.failback_of.is_some() {
            return Ok(self
                .failback_unhealthy(inc, at)
                .await?
                .map(|reason| Refusal::RegionUnhealthy { reason }));
        }
        Ok(
            (!self.evidence_holds(&inc.id, request, at).await?)
                .then_some(Refusal::EvidenceResolved),
        )
    }

    /// Pauses the approval of incidents whose evidence has gone (or, for a
    /// failback, whose region is unhealthy again) and resumes them when it
    /// is back. Returns how many changed.
    pub async fn watch_evidence(&self, now: DateTime<Utc>) -> Result<usize, IncidentError> {
        let mut changed = 0;
        for inc in self.store.incidents_in(&[State::AwaitingApproval]).await? {
            let request = match self.approval_state(&inc.id).await {
                Ok((request, _)) => request,
                Err(ApprovalError::Incident(e)) => return Err(e),
                Err(_) => continue,
            };
            let blocked = self.approval_blocked(&inc, &request, now).await?;
            let paused = evidence::paused(
                &self
                    .store
                    .events_of_kinds(&inc.id, &["approval_paused", "approval_resumed"])
                    .await?,
            );
            let note = match (blocked, paused) {
                (Some(Refusal::EvidenceResolved), false) => {
                    EventNote::new("approval_paused", SYSTEM, PAUSED)
                }
                (Some(r), false) => {
                    EventNote::new("approval_paused", SYSTEM, format!("{r}: approval paused"))
                }
                (None, true) if inc.failback_of.is_some() => EventNote::new(
                    "approval_resumed",
                    SYSTEM,
                    "the failed region is healthy again: votes are taken again",
                ),
                (None, true) => EventNote::new(
                    "approval_resumed",
                    SYSTEM,
                    "evidence returned: votes are taken again",
                ),
                _ => continue,
            };
            tracing::warn!(incident = %inc.id, "{}", note.reason);
            self.store.append_event(&inc.id, now, &note).await?;
            self.metrics
                .approvals_paused
                .with_label_values(&[note.kind])
                .inc();
            self.changed(&inc.id);
            changed += 1;
        }
        Ok(changed)
    }
}
