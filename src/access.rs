//! Who may do what: one decision for every operator action, whichever path
//! asks (HTTP API, console, Slack, and the CLI through the API).
//!
//! Roles, from least to most:
//! - `viewer`: reads. Every authenticated person.
//! - `operator`: drills, declaring an incident, silences of rules that
//!   neither absorb others nor fail over, aborting a plan, retrying a plan
//!   that stays in its region and touches no datastore. A person is an
//!   operator if `api.users` gives them the role, or if the approver
//!   directory names them in any group (the people trusted to start a plan
//!   may stop one).
//! - `approver` of a group: the directory's members of that group. Retrying
//!   a plan that fails over or touches a datastore, and silencing a rule
//!   that absorbs others or fails over, need an approver of that rule's
//!   groups, as approving it would.
//! - `admin`: reload and the kill switch. The admin token is admin (and
//!   break-glass: it may do what an approver may, recorded as such); a
//!   person is admin if `api.users` says so.
//!
//! A refusal names the role that was missing (403), and the caller records
//! it as an audit line and a metric.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::approval::votes::Directory;

/// A role `api.users` can give (approver roles come from the directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

/// Who asks, and what they may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The directory user id (`admin` for the admin token).
    pub id: String,
    /// The admin token (break-glass), not a person's own credential.
    pub admin_token: bool,
    roles: BTreeSet<Role>,
    /// Approver groups the directory puts them in.
    groups: BTreeSet<String>,
}

impl Person {
    /// A person by their own credential: `roles` from `api.users`, approver
    /// groups from the directory.
    pub fn user(id: &str, roles: &[Role], directory: &Directory) -> Person {
        let groups: BTreeSet<String> = directory
            .0
            .iter()
            .filter(|(_, members)| members.iter().any(|m| m == id))
            .map(|(g, _)| g.clone())
            .collect();
        let mut roles: BTreeSet<Role> = roles.iter().copied().collect();
        roles.insert(Role::Viewer);
        if !groups.is_empty() {
            roles.insert(Role::Operator);
        }
        if roles.contains(&Role::Admin) {
            roles.insert(Role::Operator);
        }
        Person {
            id: id.to_owned(),
            admin_token: false,
            roles,
            groups,
        }
    }

    /// The admin token.
    pub fn admin() -> Person {
        Person {
            id: "admin".to_owned(),
            admin_token: true,
            roles: [Role::Viewer, Role::Operator, Role::Admin].into(),
            groups: BTreeSet::new(),
        }
    }

    fn is(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// An approver of any of `groups` (the admin token as break-glass).
    fn approves_for(&self, groups: &[String]) -> bool {
        self.admin_token || groups.iter().any(|g| self.groups.contains(g))
    }
}

/// An operator action and what deciding it needs to know.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    Declare,
    Drill,
    Abort,
    /// `approvers`: the rule's approver groups, when the plan fails over or
    /// touches a datastore.
    Retry {
        approvers: Option<&'a [String]>,
    },
    /// `approvers`: the approver groups of the rules it can silence that
    /// absorb others or fail over (empty if none).
    Silence {
        approvers: Option<&'a [String]>,
    },
    ExpireSilence,
    Reload,
    KillSwitch,
}

impl Action<'_> {
    /// The bounded name of the action, for metrics and audit lines.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Declare => "declare",
            Action::Drill => "drill",
            Action::Abort => "abort",
            Action::Retry { .. } => "retry",
            Action::Silence { .. } => "silence",
            Action::ExpireSilence => "expire_silence",
            Action::Reload => "reload",
            Action::KillSwitch => "kill_switch",
        }
    }
}

impl Action<'_> {
    /// The action as a person reads it in a refusal.
    fn what(&self) -> &'static str {
        match self {
            Action::ExpireSilence => "end a silence",
            Action::Reload => "reload the rules",
            Action::KillSwitch => "change the kill switch",
            other => other.name(),
        }
    }
}

/// Why an action was refused: the role that was missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{who} may not {what}: it needs {needs}")]
pub struct Refused {
    pub who: String,
    /// The bounded name, for metrics.
    pub action: &'static str,
    what: &'static str,
    pub needs: String,
}

/// The one decision: may `person` do `action`?
pub fn decide(person: &Person, action: Action<'_>) -> Result<(), Refused> {
    let refuse = |needs: String| {
        Err(Refused {
            who: person.id.clone(),
            action: action.name(),
            what: action.what(),
            needs,
        })
    };
    match action {
        Action::Reload | Action::KillSwitch => {
            if person.is(Role::Admin) {
                Ok(())
            } else {
                refuse("the admin role".into())
            }
        }
        Action::Retry {
            approvers: Some(groups),
        }
        | Action::Silence {
            approvers: Some(groups),
        } if !groups.is_empty() => {
            if person.approves_for(groups) {
                Ok(())
            } else {
                refuse(format!("an approver of {}", groups.join(", ")))
            }
        }
        Action::Declare
        | Action::Drill
        | Action::Abort
        | Action::Retry { .. }
        | Action::Silence { .. }
        | Action::ExpireSilence => {
            if person.is(Role::Operator) {
                Ok(())
            } else {
                refuse("the operator role".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        Directory(
            [(
                "leads".to_owned(),
                vec!["alice".to_owned(), "bob".to_owned()],
            )]
            .into_iter()
            .collect(),
        )
    }

    #[test]
    fn the_action_by_role_table() {
        let d = directory();
        let nobody = Person::user("mallory", &[], &d);
        let operator = Person::user("oscar", &[Role::Operator], &d);
        let lead = Person::user("alice", &[], &d);
        let admin = Person::user("root", &[Role::Admin], &d);
        let token = Person::admin();
        let leads = ["leads".to_owned()];
        let others = ["platform".to_owned()];
        let table: [(Action, [bool; 5]); 10] = [
            (Action::Declare, [false, true, true, true, true]),
            (Action::Drill, [false, true, true, true, true]),
            (Action::Abort, [false, true, true, true, true]),
            (
                Action::Retry { approvers: None },
                [false, true, true, true, true],
            ),
            (
                Action::Retry {
                    approvers: Some(&leads),
                },
                [false, false, true, false, true],
            ),
            (
                Action::Retry {
                    approvers: Some(&others),
                },
                [false, false, false, false, true],
            ),
            (
                Action::Silence { approvers: None },
                [false, true, true, true, true],
            ),
            (
                Action::Silence {
                    approvers: Some(&leads),
                },
                [false, false, true, false, true],
            ),
            (Action::Reload, [false, false, false, true, true]),
            (Action::KillSwitch, [false, false, false, true, true]),
        ];
        for (action, allowed) in table {
            for (person, allowed) in [&nobody, &operator, &lead, &admin, &token]
                .iter()
                .zip(allowed)
            {
                assert_eq!(
                    decide(person, action).is_ok(),
                    allowed,
                    "{} {}",
                    person.id,
                    action.name()
                );
            }
        }
    }

    #[test]
    fn a_refusal_names_the_missing_role() {
        let d = directory();
        let e = decide(&Person::user("mallory", &[], &d), Action::Declare).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mallory may not declare: it needs the operator role"
        );
        let groups = ["leads".to_owned(), "platform".to_owned()];
        let e = decide(
            &Person::user("oscar", &[Role::Operator], &d),
            Action::Retry {
                approvers: Some(&groups),
            },
        )
        .unwrap_err();
        assert_eq!(e.needs, "an approver of leads, platform");
    }
}
