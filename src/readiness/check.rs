//! One readiness pass: DescribeDocument or GetFunction for every target,
//! through the dispatcher (its clients, endpoint, credentials and retries),
//! and what the answers mean for the plans that call them.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;

use super::board::{Report, RunbookStatus};
use super::targets::{Kind, Target, Targets};
use crate::dispatch::inspect::{DocumentInfo, split_qualifier};
use crate::dispatch::{DispatchError, Dispatcher};

/// One pass over every runbook `rules` can call.
pub async fn once(dispatcher: &Arc<Dispatcher>, rules: &crate::rules::RuleSet) -> Report {
    run(dispatcher, super::targets::enumerate(rules)).await
}

/// Checks every target at once (each is independent; a region in trouble
/// only slows its own) and returns the report in target order.
pub async fn run(dispatcher: &Arc<Dispatcher>, targets: Targets) -> Report {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, target) in targets.targets.into_iter().enumerate() {
        let dispatcher = Arc::clone(dispatcher);
        tasks.spawn(async move { (i, check(&dispatcher, target).await) });
    }
    let mut runbooks = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(status) => runbooks.push(status),
            // A check panicked: the other results still stand; the next
            // pass checks it again.
            Err(e) => tracing::error!("a runbook check failed: {e}"),
        }
    }
    runbooks.sort_by_key(|(i, _)| *i);
    Report {
        checked_at: Utc::now(),
        runbooks: runbooks.into_iter().map(|(_, s)| s).collect(),
        unresolved: targets.unresolved,
    }
}

async fn check(dispatcher: &Dispatcher, target: Target) -> RunbookStatus {
    let problems = match target.kind {
        Kind::Ssm => document_problems(dispatcher, &target).await,
        Kind::Lambda => function_problems(dispatcher, &target).await,
    };
    let mut seen = BTreeSet::new();
    let problems: Vec<String> = problems
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect();
    RunbookStatus {
        kind: target.kind,
        ready: problems.is_empty(),
        problems,
        runbook: target.runbook,
        region: target.region,
        calls: target.calls,
    }
}

/// The AWS error code of a rejection, if AWS answered one.
fn code(e: &DispatchError) -> Option<&str> {
    match e {
        DispatchError::Rejected { code, .. } => Some(code),
        _ => None,
    }
}

async fn document_problems(dispatcher: &Dispatcher, target: &Target) -> Vec<String> {
    let versions: BTreeSet<Option<&str>> =
        target.calls.iter().map(|c| c.version.as_deref()).collect();
    let mut problems = Vec::new();
    for version in versions {
        let info = dispatcher
            .describe_document(&target.region, &target.runbook, version)
            .await;
        let info = match (info, version) {
            (Ok(info), _) => info,
            (Err(e), Some(v)) if code(&e) == Some("InvalidDocumentVersion") => {
                problems.push(format!("version {v} not found"));
                continue;
            }
            // Some stand-ins (moto) say InvalidDocument for a missing
            // version: the document itself tells which is missing.
            (Err(e), Some(v)) if code(&e) == Some("InvalidDocument") => {
                match dispatcher
                    .describe_document(&target.region, &target.runbook, None)
                    .await
                {
                    Ok(_) => problems.push(format!("version {v} not found")),
                    Err(e) if code(&e) == Some("InvalidDocument") => {
                        problems.push("document not found".to_owned());
                        break;
                    }
                    Err(e) => problems.push(format!("could not check: {e}")),
                }
                continue;
            }
            (Err(e), None) if code(&e) == Some("InvalidDocument") => {
                problems.push("document not found".to_owned());
                // Every version asked for is missing with it.
                break;
            }
            (Err(e), _) => {
                problems.push(format!("could not check: {e}"));
                continue;
            }
        };
        problems.extend(document_fits(&info, target, version));
    }
    problems
}

/// What is wrong with calling this document version the way the callers
/// asking for it do.
fn document_fits(info: &DocumentInfo, target: &Target, version: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    match info.document_type.as_deref() {
        Some("Automation") => {}
        Some(other) => problems.push(format!("document type is {other}, not Automation")),
        None => problems.push("document type unknown, not Automation".to_owned()),
    }
    if let Some(status) = info.status.as_deref().filter(|s| *s != "Active") {
        problems.push(format!("document status is {status}, not Active"));
    }
    for call in target
        .calls
        .iter()
        .filter(|c| c.version.as_deref() == version)
    {
        for passed in &call.parameters {
            if !info.parameters.iter().any(|p| &p.name == passed) {
                problems.push(format!(
                    "parameter {passed} is not declared by the document (passed by {})",
                    call.caller
                ));
            }
        }
        for declared in info.parameters.iter().filter(|p| !p.has_default) {
            if !call.parameters.contains(&declared.name) {
                problems.push(format!(
                    "required parameter {} (no default) is not passed by {}",
                    declared.name, call.caller
                ));
            }
        }
    }
    problems
}

async fn function_problems(dispatcher: &Dispatcher, target: &Target) -> Vec<String> {
    let function = &target.runbook;
    match dispatcher.get_function(&target.region, function).await {
        Ok(info) => match info.state.as_deref() {
            Some("Active") => Vec::new(),
            state => vec![format!(
                "function state is {}, not Active{}",
                state.unwrap_or("unknown"),
                info.state_reason
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )],
        },
        Err(e) if code(&e) == Some("ResourceNotFoundException") => {
            // Not found may be the qualifier alone: ask for the function
            // itself to say which.
            let (name, qualifier) = split_qualifier(function);
            let Some(qualifier) = qualifier else {
                return vec!["function not found".to_owned()];
            };
            match dispatcher.get_function(&target.region, name).await {
                Ok(_) => vec![format!("qualifier {qualifier} not found")],
                Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                    vec!["function not found".to_owned()]
                }
                Err(e) => vec![format!("could not check: {e}")],
            }
        }
        Err(e) => vec![format!("could not check: {e}")],
    }
}
