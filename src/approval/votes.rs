//! Vote counting: pure functions over the policy snapshot taken when
//! approval was requested and the votes recorded since.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::model::ApprovalMode;

/// The policy as it applies to one incident, stored with the approval
/// request so that a reload or restart cannot change who may approve a
/// pending incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Distinct approvers needed (1 or 2).
    pub needed: usize,
    /// Groups whose members may vote (rule groups, owners, escalations).
    pub groups: Vec<String>,
    pub deadline: DateTime<Utc>,
    /// Whether the next timeout escalates (to these groups) or expires.
    pub escalate_to: Vec<String>,
    /// The policy's timeout, for the deadline after an escalation.
    pub timeout_secs: u64,
    /// For a heartbeat-absence rule, what "the evidence holds" means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<super::evidence::Heartbeat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Approve,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub user: String,
    pub choice: Choice,
    /// `slack`, `api` or `cli`.
    pub via: String,
    /// Cast with the admin token, naming the user: one such vote per
    /// incident, and never the one that completes a two-person approval.
    #[serde(default)]
    pub break_glass: bool,
    /// The plan the vote is for. A voter may name it (Slack buttons carry
    /// the digest of the plan the message showed); a vote is refused if
    /// that is no longer the plan, and recorded with the plan in force, so
    /// it stops counting when the plan is revised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approved { by: Vec<String> },
    Denied { by: String },
    Pending { still_needed: usize },
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{user} is not in any approver group of this incident ({groups})")]
    NotAllowed { user: String, groups: String },
    #[error("{user} has already approved; this policy needs {needed} different people")]
    AlreadyVoted { user: String, needed: usize },
    #[error("evidence resolved: approval paused until it returns")]
    EvidenceResolved,
    #[error("the failed region is not healthy: {reason}; the failback waits for it")]
    RegionUnhealthy { reason: String },
    #[error("the approval deadline passed at {}", .deadline.format("%H:%M:%SZ"))]
    DeadlinePassed { deadline: DateTime<Utc> },
    #[error("the admin token has already voted on this incident; break-glass counts once")]
    BreakGlassUsed,
    #[error(
        "the admin token cannot be the second person of a two-person approval; \
         a second approver must vote with their own identity"
    )]
    BreakGlassSecond,
    #[error(
        "the plan changed since it was shown (voted on {voted}, now {current}); review the new plan and vote again"
    )]
    StalePlan { voted: String, current: String },
    #[error("{user} {how} this incident and may not approve it too; someone else must")]
    SelfApproval { user: String, how: &'static str },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAllowed { .. } => "not_allowed",
            Refusal::AlreadyVoted { .. } => "already_voted",
            Refusal::EvidenceResolved => "evidence_resolved",
            Refusal::RegionUnhealthy { .. } => "region_unhealthy",
            Refusal::DeadlinePassed { .. } => "deadline_passed",
            Refusal::BreakGlassUsed => "break_glass_used",
            Refusal::BreakGlassSecond => "break_glass_second",
            Refusal::StalePlan { .. } => "stale_plan",
            Refusal::SelfApproval { .. } => "self_approval",
        }
    }

    /// The voter may vote, but not on what they saw, or no longer: the
    /// incident moved on (plan revised, evidence gone, deadline passed).
    /// HTTP 409, where a vote by someone not allowed is 403.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Refusal::StalePlan { .. }
                | Refusal::EvidenceResolved
                | Refusal::RegionUnhealthy { .. }
                | Refusal::DeadlinePassed { .. }
        )
    }
}

pub fn needed(mode: ApprovalMode) -> usize {
    match mode {
        ApprovalMode::Auto => 0,
        ApprovalMode::One => 1,
        ApprovalMode::Two => 2,
    }
}

/// Counts `new` with the `previous` accepted votes. One deny from an
/// allowed person denies; approvals must come from distinct people.
pub fn evaluate(
    req: &Request,
    allowed: &HashSet<String>,
    previous: &[Vote],
    new: &Vote,
) -> Verdict {
    if !allowed.contains(&new.user) {
        return Verdict::Refused(Refusal::NotAllowed {
            user: new.user.clone(),
            groups: req.groups.join(", "),
        });
    }
    if new.break_glass && previous.iter().any(|v| v.break_glass) {
        return Verdict::Refused(Refusal::BreakGlassUsed);
    }
    if new.choice == Choice::Deny {
        return Verdict::Denied {
            by: new.user.clone(),
        };
    }
    let mut approvers: BTreeSet<&str> = previous
        .iter()
        .filter(|v| v.choice == Choice::Approve)
        .map(|v| v.user.as_str())
        .collect();
    if !approvers.insert(&new.user) {
        return Verdict::Refused(Refusal::AlreadyVoted {
            user: new.user.clone(),
            needed: req.needed,
        });
    }
    if new.break_glass && req.needed >= 2 && approvers.len() >= req.needed {
        return Verdict::Refused(Refusal::BreakGlassSecond);
    }
    if approvers.len() >= req.needed {
        Verdict::Approved {
            by: approvers.into_iter().map(String::from).collect(),
        }
    } else {
        Verdict::Pending {
            still_needed: req.needed - approvers.len(),
        }
    }
}

/// Group membership for the fallback path (API and CLI) and for when
/// Slack's user groups cannot be read: `approval.directory` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Directory(pub BTreeMap<String, Vec<String>>);

impl Directory {
    pub fn members(&self, groups: &[String]) -> HashSet<String> {
        groups
            .iter()
            .filter_map(|g| self.0.get(g))
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(needed: usize) -> Request {
        Request {
            needed,
            groups: vec!["sre".into()],
            deadline: Utc::now(),
            escalate_to: vec![],
            timeout_secs: 600,
            heartbeat: None,
        }
    }

    fn vote(user: &str, choice: Choice) -> Vote {
        Vote {
            plan_digest: None,
            user: user.into(),
            choice,
            via: "api".into(),
            break_glass: false,
        }
    }

    fn break_glass(user: &str, choice: Choice) -> Vote {
        Vote {
            break_glass: true,
            ..vote(user, choice)
        }
    }

    #[test]
    fn break_glass_is_one_vote_and_never_the_second_person() {
        let r = req(2);
        let bg = break_glass("alice", Choice::Approve);
        assert_eq!(
            evaluate(&r, &allowed(), &[], &bg),
            Verdict::Pending { still_needed: 1 }
        );
        assert_eq!(
            evaluate(
                &r,
                &allowed(),
                std::slice::from_ref(&bg),
                &break_glass("bob", Choice::Approve)
            ),
            Verdict::Refused(Refusal::BreakGlassUsed)
        );
        assert_eq!(
            evaluate(
                &r,
                &allowed(),
                &[vote("alice", Choice::Approve)],
                &break_glass("bob", Choice::Approve)
            ),
            Verdict::Refused(Refusal::BreakGlassSecond),
            "not after one person approved"
        );
        assert_eq!(
            evaluate(&r, &allowed(), &[bg], &vote("bob", Choice::Approve)),
            Verdict::Approved {
                by: vec!["alice".into(), "bob".into()]
            },
            "a person may complete what break-glass began"
        );
        assert_eq!(
            evaluate(
                &req(1),
                &allowed(),
                &[],
                &break_glass("bob", Choice::Approve)
            ),
            Verdict::Approved {
                by: vec!["bob".into()]
            },
            "one-person policies are what break-glass is for"
        );
    }

    fn allowed() -> HashSet<String> {
        ["alice", "bob"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_approvers_must_be_different_people() {
        let r = req(2);
        let a = vote("alice", Choice::Approve);
        assert_eq!(
            evaluate(&r, &allowed(), &[], &a),
            Verdict::Pending { still_needed: 1 }
        );
        assert!(matches!(
            evaluate(&r, &allowed(), std::slice::from_ref(&a), &a),
            Verdict::Refused(Refusal::AlreadyVoted { .. })
        ));
        assert_eq!(
            evaluate(&r, &allowed(), &[a], &vote("bob", Choice::Approve)),
            Verdict::Approved {
                by: vec!["alice".into(), "bob".into()]
            }
        );
    }

    #[test]
    fn outsiders_cannot_vote_and_one_deny_denies() {
        let r = req(2);
        assert!(matches!(
            evaluate(&r, &allowed(), &[], &vote("mallory", Choice::Approve)),
            Verdict::Refused(Refusal::NotAllowed { .. })
        ));
        let a = vote("alice", Choice::Approve);
        assert_eq!(
            evaluate(&r, &allowed(), &[a], &vote("bob", Choice::Deny)),
            Verdict::Denied { by: "bob".into() }
        );
    }

    #[test]
    fn directory_resolves_groups() {
        let d = Directory(
            [
                ("sre".to_string(), vec!["alice".to_string()]),
                ("dba".to_string(), vec!["carol".to_string()]),
            ]
            .into_iter()
            .collect(),
        );
        assert_eq!(
            d.members(&["sre".into(), "nope".into()]),
            ["alice".to_string()].into()
        );
    }
}
