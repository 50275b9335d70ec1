//! The HTTP side of [`crate::access`]: who a caller is, what an action on
//! an incident or a silence needs, and a refusal as a 403 that names the
//! missing role, with an audit line and a metric. The API, the console and
//! Slack all come through here, so one decision holds on every path.

use crate::access::{Action, Person, decide};
use crate::rules::Rule;

use super::auth::Caller;
use super::{ApiError, AppState};

/// The person behind a credential (the admin token, or a person's own
/// token or Slack user id): roles from `api.users`, approver groups from
/// the directory.
pub(super) fn person(app: &AppState, caller: &Caller) -> Person {
    match caller {
        Caller::Admin => Person::admin(),
        Caller::User(id) => Person::user(id, &app.credentials.roles(id), &app.directory),
        Caller::Proxied(id, granted) => {
            let mut roles = app.credentials.roles(id);
            roles.extend(granted);
            Person::user(id, &roles, &app.directory)
        }
    }
}

/// `action` by `caller`, or a 403 naming the missing role (counted, and
/// logged as an audit line).
pub(super) fn authorize(
    app: &AppState,
    caller: &Caller,
    action: Action<'_>,
) -> Result<(), ApiError> {
    decide(&person(app, caller), action).map_err(|refused| {
        app.metrics
            .access_refused
            .with_label_values(&[refused.action])
            .inc();
        tracing::warn!(target: "audit", who = %refused.who, action = refused.action, needs = %refused.needs, "operator action refused: {refused}");
        ApiError::Refused(refused.to_string(), "missing_role")
    })
}

/// The approver groups of `rule` for `services`, as approving it asks.
fn approvers(app: &AppState, rule: &Rule, services: &[String]) -> Vec<String> {
    crate::incident::approver_groups(rule, services, &app.rules.get().catalogue)
}

/// What retrying incident `id` needs: an approver of its rule's groups if
/// its plan fails over into another region or touches a datastore (a step
/// names one, or the scenario restores data); `None` for the operator
/// role alone, or if the incident is unknown (the retry says so itself).
pub(super) async fn retry_approvers(
    app: &AppState,
    id: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(inc) = app.store.incident(id).await? else {
        return Ok(None);
    };
    let touches_data = inc.scenario == "data_loss"
        || inc.plan.steps.iter().any(|s| match &s.action {
            crate::plan::Action::Ssm { parameters, .. } => parameters.contains_key("Datastore"),
            crate::plan::Action::Lambda { payload, .. } => payload.get("datastore").is_some(),
        });
    if crate::incident::targets(&inc).is_empty() && !touches_data {
        return Ok(None);
    }
    let rules = app.rules.get();
    let groups = match rules.rules.iter().find(|r| r.name == inc.rule) {
        Some(rule) => approvers(app, rule, &inc.services),
        // The rule is gone: nobody is its approver but break-glass.
        None => Vec::new(),
    };
    Ok(Some(groups))
}

/// The longest silence of a rule that absorbs others or fails over: long
/// enough for a maintenance window, short enough that a forgotten one does
/// not hide a region outage for a day.
pub const MAX_SENSITIVE_SILENCE: std::time::Duration = std::time::Duration::from_secs(4 * 3600);

/// Whether `caller` may create `silence`: what it can reach decides the
/// role, and a silence of a rule that absorbs others or fails over lasts
/// at most [`MAX_SENSITIVE_SILENCE`].
pub(super) fn silence_allowed(
    app: &AppState,
    caller: &Caller,
    silence: &crate::rules::silence::Silence,
) -> Result<(), ApiError> {
    let approvers = silence_approvers(app, &silence.matchers);
    authorize(
        app,
        caller,
        Action::Silence {
            approvers: approvers.as_deref(),
        },
    )?;
    let span = (silence.ends_at - silence.starts_at)
        .to_std()
        .unwrap_or_default();
    if approvers.is_some() && span > MAX_SENSITIVE_SILENCE {
        return Err(ApiError::BadRequest(
            format!(
                "this silence reaches a rule that absorbs others or fails over: at most {}",
                humantime::format_duration(MAX_SENSITIVE_SILENCE)
            ),
            "bad_silence",
        ));
    }
    Ok(())
}

/// What a silence with `matchers` needs: an approver of every rule it can
/// reach that absorbs others or fails over (`None` if it reaches none).
pub(super) fn silence_approvers(app: &AppState, matchers: &[String]) -> Option<Vec<String>> {
    let mut groups: Vec<String> = sensitive_rules(app, matchers)
        .into_iter()
        .flat_map(|(_, g)| g)
        .collect();
    groups.sort();
    groups.dedup();
    (!groups.is_empty()).then_some(groups)
}

/// The rules a silence with `matchers` can reach that absorb others or
/// fail over, each with its approver groups. A matcher reaches a rule if
/// it names one of the rule's group labels (the labels silences match), or
/// matches a label that is missing.
pub(super) fn sensitive_rules(app: &AppState, matchers: &[String]) -> Vec<(String, Vec<String>)> {
    let parsed: Vec<crate::rules::matcher::Matcher> = matchers
        .iter()
        .filter_map(|m| crate::rules::matcher::Matcher::parse(m).ok())
        .collect();
    let rules = app.rules.get();
    let services: Vec<String> = rules.catalogue.services.keys().cloned().collect();
    rules
        .rules
        .iter()
        .filter(|rule| {
            parsed
                .iter()
                .all(|m| rule.group_by.contains(&m.name) || m.matches(&Default::default()))
                && (!rule.absorbs.is_empty() || rule.fails_over(&rules.catalogue))
        })
        .map(|rule| (rule.name.clone(), approvers(app, rule, &services)))
        .collect()
}
