//! Approval deadlines: escalate once if the policy says so, else expire.

use chrono::{DateTime, Utc};

use super::approval::ApprovalError;
use super::{EventNote, IncidentError, Incidents, SYSTEM, State};
use crate::approval::votes::Request;

impl Incidents {
    /// Approvals whose deadline passed: escalate once if the policy says so,
    /// else expire. Returns how many incidents changed.
    pub async fn expire_due(&self, now: DateTime<Utc>) -> Result<usize, IncidentError> {
        let mut changed = 0;
        for inc in self.store.approvals_due(now).await? {
            let (request, _) = match self.approval_state(&inc.id).await {
                Ok(s) => s,
                Err(ApprovalError::Incident(e)) => return Err(e),
                Err(_) => continue,
            };
            if request.escalate_to.is_empty() {
                let note = EventNote::new(
                    "expired",
                    SYSTEM,
                    format!(
                        "no approval from {} in time; nothing ran",
                        request.groups.join(", ")
                    ),
                );
                self.transition(&inc, State::Expired, now, note).await?;
            } else {
                let mut groups = request.groups.clone();
                groups.extend(request.escalate_to.iter().cloned());
                groups.sort();
                groups.dedup();
                let escalated = Request {
                    groups,
                    escalate_to: Vec::new(),
                    deadline: crate::primitives::duration::after(
                        now,
                        std::time::Duration::from_secs(request.timeout_secs),
                    ),
                    ..request
                };
                self.request_approval(&inc, escalated, "escalated", now)
                    .await?;
            }
            changed += 1;
        }
        Ok(changed)
    }
}
