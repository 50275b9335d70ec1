//! Approval: requesting it, and counting votes against the request in
//! force.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::approval::votes::{self, Choice, Directory, Refusal, Request, Verdict, Vote};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no incident {0}")]
    NotFound(String),
    #[error("incident {id} is {state}, not awaiting approval")]
    NotAwaiting { id: String, state: State },
    #[error("vote refused: {0}")]
    Refused(Refusal),
    #[error("incident {0} kept changing; try again")]
    Busy(String),
    #[error(transparent)]
    Incident(#[from] IncidentError),
}

/// How many leading hex digits of a plan digest a voter must give at least:
/// the digest shown in the message.
const SHORT_DIGEST: usize = 12;

impl Incidents {
    pub(super) async fn request_approval(
        &self,
        inc: &Incident,
        request: Request,
        kind: &'static str,
        at: DateTime<Utc>,
    ) -> Result<Incident, IncidentError> {
        let note = EventNote::new(
            kind,
            SYSTEM,
            format!(
                "needs {} approver(s) from {} by {}",
                request.needed,
                request.groups.join(", "),
                request.deadline.format("%H:%M:%SZ")
            ),
        )
        .with_data(json!(request));
        let after = Incident {
            state: State::AwaitingApproval,
            approval_deadline: Some(request.deadline),
            ..inc.clone()
        };
        self.save(inc, after, at, note).await
    }

    /// Records a vote and applies its verdict, in one write with the
    /// incident's version check: two people approving at the same instant
    /// are counted one after the other, never both against the same count.
    pub async fn vote(
        &self,
        id: &str,
        vote: Vote,
        reason: &str,
        directory: &Directory,
        at: DateTime<Utc>,
    ) -> Result<(Verdict, Incident), ApprovalError> {
        for _ in 0..5 {
            let inc = self
                .store
                .incident(id)
                .await
                .map_err(IncidentError::from)?
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
            if inc.state != State::AwaitingApproval {
                return Err(ApprovalError::NotAwaiting {
                    id: id.to_owned(),
                    state: inc.state,
                });
            }
            let (request, previous) = self.approval_state(id).await?;
            // Break-glass is once per incident, whatever plan it was for.
            let break_glass_used = previous.iter().any(|v| v.break_glass);
            let current = inc.plan.digest();
            // Only votes on the plan in force count: a revision voids them.
            let previous: Vec<Vote> = previous
                .into_iter()
                .filter(|v| v.plan_digest.as_deref() == Some(current.as_str()))
                .collect();
            let mut vote = vote.clone();
            let stale = vote
                .plan_digest
                .as_deref()
                .filter(|d| !(d.len() >= SHORT_DIGEST && current.starts_with(*d)))
                .map(|d| Refusal::StalePlan {
                    voted: d.chars().take(SHORT_DIGEST).collect(),
                    current: inc.plan.short_digest(),
                });
            vote.plan_digest = Some(current);
            if let Some(r) = stale {
                return Err(self.refuse(id, &vote, r, at).await);
            }
            if vote.choice == Choice::Approve
                && let Some(r) = self.stale(&inc, &request, at).await?
            {
                return Err(self.refuse(id, &vote, r, at).await);
            }
            if vote.choice == Choice::Approve
                && let Some(how) = self.initiated_by(&inc, &vote.user).await?
            {
                let r = Refusal::SelfApproval {
                    user: vote.user.clone(),
                    how,
                };
                return Err(self.refuse(id, &vote, r, at).await);
            }
            if vote.break_glass && break_glass_used {
                return Err(self.refuse(id, &vote, Refusal::BreakGlassUsed, at).await);
            }
            let allowed = directory.members(&request.groups);
            let verdict = votes::evaluate(&request, &allowed, &previous, &vote);
            let (to, kind) = match &verdict {
                Verdict::Refused(r) => return Err(self.refuse(id, &vote, r.clone(), at).await),
                Verdict::Pending { .. } => (State::AwaitingApproval, "vote"),
                Verdict::Approved { .. } => (State::Approved, "vote"),
                Verdict::Denied { .. } => (State::Denied, "vote"),
            };
            let why = match &verdict {
                Verdict::Approved { by } => format!("approved by {}", by.join(" and ")),
                Verdict::Denied { by } => format!("denied by {by}"),
                Verdict::Pending { still_needed } => {
                    format!("approved by {}; {still_needed} more needed", vote.user)
                }
                Verdict::Refused(_) => unreachable!("returned above"),
            };
            let why = if reason.is_empty() {
                why
            } else {
                format!("{why}: {reason}")
            };
            let why = if vote.break_glass {
                format!("break-glass (admin token): {why}")
            } else {
                why
            };
            let note = EventNote::new(kind, vote.user.clone(), why)
                .with_data(json!({ "vote": vote, "break_glass": vote.break_glass }));
            let after = Incident {
                state: to,
                approval_deadline: (to == State::AwaitingApproval)
                    .then_some(inc.approval_deadline)
                    .flatten(),
                ..inc.clone()
            };
            match self.save(&inc, after, at, note).await {
                Ok(saved) => {
                    let label = match vote.choice {
                        Choice::Approve => "approve",
                        Choice::Deny => "deny",
                    };
                    self.metrics.votes.with_label_values(&[label]).inc();
                    if saved.state == State::Approved {
                        self.hold_if_over_limit(&saved, &[State::Approved, State::Running], at)
                            .await?;
                        self.approved.notify_one();
                    }
                    return Ok((verdict, saved));
                }
                Err(IncidentError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApprovalError::Busy(id.to_owned()))
    }

    /// How `user` set this incident going, if they did: declared it,
    /// started the drill it belongs to, or retried its plan. Nobody counts
    /// toward approving what they asked for themselves (the admin token's
    /// break-glass vote names a person, and is held to the same rule).
    async fn initiated_by(
        &self,
        inc: &Incident,
        user: &str,
    ) -> Result<Option<&'static str>, IncidentError> {
        let events = self
            .store
            .events_of_kinds(&inc.id, &["declared", "step_retry"])
            .await?;
        for e in &events {
            if e.actor == user {
                return Ok(Some(if e.kind == "declared" {
                    "declared"
                } else {
                    "retried the plan of"
                }));
            }
        }
        if inc.drill
            && self
                .store
                .incident_signals(&inc.id)
                .await?
                .iter()
                .any(|s| s.annotations.get("drill_by").is_some_and(|b| b == user))
        {
            return Ok(Some("started the drill of"));
        }
        Ok(None)
    }

    /// Why an approval would come too late, if it would: the deadline has
    /// passed (whether or not the leader's tick has expired it yet), or the
    /// evidence is gone. Denying stays possible either way.
    async fn stale(
        &self,
        inc: &Incident,
        request: &Request,
        at: DateTime<Utc>,
    ) -> Result<Option<Refusal>, ApprovalError> {
        if let Some(deadline) = inc.approval_deadline
            && deadline <= at
        {
            return Ok(Some(Refusal::DeadlinePassed { deadline }));
        }
        Ok(self.approval_blocked(inc, request, at).await?)
    }

    /// Records a refused vote (event and metric) and returns the error to
    /// answer with. A failure to record is what is answered then: a refusal
    /// that is not in the log must not look like one that is.
    async fn refuse(&self, id: &str, vote: &Vote, r: Refusal, at: DateTime<Utc>) -> ApprovalError {
        let note = EventNote::new("vote_refused", vote.user.clone(), r.to_string()).with_data(
            json!({ "vote": vote, "reason": r.reason(), "break_glass": vote.break_glass }),
        );
        if let Err(e) = self.store.append_event(id, at, &note).await {
            return ApprovalError::Incident(e.into());
        }
        self.changed(id);
        self.metrics.votes.with_label_values(&[r.reason()]).inc();
        ApprovalError::Refused(r)
    }

    /// The approval request in force (the latest, escalations included) and
    /// the votes cast since it.
    pub(super) async fn approval_state(
        &self,
        id: &str,
    ) -> Result<(Request, Vec<Vote>), ApprovalError> {
        let events = self
            .store
            .events_of_kinds(id, &["approval_requested", "escalated", "vote"])
            .await
            .map_err(IncidentError::from)?;
        let start = events
            .iter()
            .rposition(|e| matches!(e.kind.as_str(), "approval_requested" | "escalated"))
            .ok_or_else(|| ApprovalError::NotAwaiting {
                id: id.to_owned(),
                state: State::AwaitingApproval,
            })?;
        let request: Request = serde_json::from_value(events[start].data.clone()).map_err(|e| {
            IncidentError::Store(StoreError::Corrupt {
                table: "incident_events",
                detail: e.to_string(),
            })
        })?;
        // Votes from before an escalation still count.
        let votes = events
            .iter()
            .filter(|e| e.kind == "vote")
            .filter_map(|e| serde_json::from_value::<Vote>(e.data.get("vote")?.clone()).ok())
            .collect();
        Ok((request, votes))
    }
}
