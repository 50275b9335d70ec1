//! What an operator does through the API: votes, abort, retry, declaring
//! an incident, silences.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::Output;
use super::client::{ApiArgs, Needs, report, text};

/// What every operator command on one incident (approve, deny, abort,
/// retry) takes.
#[derive(clap::Args)]
pub struct OperatorArgs {
    /// The incident id.
    incident: String,
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
pub struct VoteArgs {
    #[command(flatten)]
    op: OperatorArgs,
    /// Whom the admin token (break-glass) votes for: a user id in the
    /// approver directory. Not needed with your own token.
    #[arg(long = "as")]
    user: Option<String>,
}

#[derive(clap::Args)]
pub struct DeclareArgs {
    /// The scenario (e.g. region_outage).
    scenario: String,
    /// A group label, `key=value`; repeat for each.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The rule whose plan and approval apply; else the scenario's first.
    #[arg(long)]
    rule: Option<String>,
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    api: ApiArgs,
}

pub(super) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected key=value")),
    }
}

#[derive(clap::Subcommand)]
pub enum SilenceCommand {
    /// Create a silence: every --match must match an incident's group
    /// labels (Alertmanager syntax, e.g. 'zone="eu-west-1a"').
    Add {
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        /// How long from now (or from --starts-at), e.g. 2h.
        #[arg(long = "for")]
        duration: String,
        /// RFC 3339; defaults to now.
        #[arg(long)]
        starts_at: Option<String>,
        /// Why, and for what work: shown on every incident it silences.
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List silences in force or pending.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a silence now.
    Expire {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// POSTs `body` to `/api/v1/incidents/{incident}/{action}`; on 2xx prints
/// what `done` makes of the answer.
fn on_incident(
    args: OperatorArgs,
    action: &str,
    body: &Value,
    output: Output,
    done: impl Fn(&Value) -> String,
) -> ExitCode {
    let path = format!("/api/v1/incidents/{}/{action}", args.incident);
    let answer = match args
        .api
        .call(Needs::Operator, Method::POST, &path, Some(body))
    {
        Ok(a) => a,
        Err(code) => return code,
    };
    report(action, answer, output, |body| {
        println!("{}: {}", args.incident, done(body));
    })
}

pub fn vote(args: VoteArgs, action: &str, output: Output) -> ExitCode {
    let mut body = json!({ "reason": args.op.reason, "via": "cli" });
    if let Some(user) = &args.user {
        body["as"] = Value::String(user.clone());
    }
    on_incident(args.op, action, &body, output, |body| {
        format!(
            "{} (incident is {}{})",
            text(body, "verdict"),
            text(body, "state"),
            match body["still_needed"].as_u64() {
                Some(n) if n > 0 => format!("; {n} more approval(s) needed"),
                _ => String::new(),
            }
        )
    })
}

pub fn abort(args: OperatorArgs, output: Output) -> ExitCode {
    let body = json!({ "reason": args.reason });
    on_incident(args, "abort", &body, output, |body| {
        format!(
            "abort {} (incident is {})",
            text(body, "abort"),
            text(body, "state"),
        )
    })
}

pub fn retry(args: OperatorArgs, output: Output) -> ExitCode {
    let body = json!({ "reason": args.reason });
    on_incident(args, "retry", &body, output, |body| {
        format!("retried (incident is {})", text(body, "state"))
    })
}

/// The body of a declaration or a drill: `{scenario, labels, reason,
/// rule?}`.
pub(super) fn declaration_body(
    scenario: String,
    labels: Vec<(String, String)>,
    rule: Option<String>,
    reason: String,
) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut body = json!({
        "scenario": scenario,
        "labels": labels,
        "reason": reason,
    });
    if let Some(rule) = rule {
        body["rule"] = Value::String(rule);
    }
    body
}

pub fn declare(args: DeclareArgs, output: Output) -> ExitCode {
    let body = declaration_body(args.scenario, args.labels, args.rule, args.reason);
    let answer = match args.api.call(
        Needs::Operator,
        Method::POST,
        "/api/v1/incidents",
        Some(&body),
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    report("declare", answer, output, |body| {
        println!(
            "{}: declared (incident is {})",
            text(body, "id"),
            text(body, "state")
        );
    })
}

fn silence_line(s: &Value) -> String {
    let matchers: Vec<&str> = s["matchers"]
        .as_array()
        .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    format!(
        "{}\t{}\t{}\tuntil {}\tby {} ({}): {}",
        text(s, "id"),
        text(s, "state"),
        matchers.join(","),
        text(s, "ends_at"),
        text(s, "created_by"),
        text(s, "source"),
        s["comment"].as_str().unwrap_or(""),
    )
}

pub fn silence(cmd: SilenceCommand, output: Output) -> ExitCode {
    let (what, answer) = match &cmd {
        SilenceCommand::Add {
            matchers,
            duration,
            starts_at,
            comment,
            api,
        } => {
            let mut body = json!({
                "matchers": matchers, "duration": duration, "comment": comment,
            });
            if let Some(start) = starts_at {
                body["starts_at"] = Value::String(start.clone());
            }
            let path = "/api/v1/silences";
            (
                "silence add",
                api.call(Needs::Operator, Method::POST, path, Some(&body)),
            )
        }
        SilenceCommand::List { api } => (
            "silence list",
            api.call(Needs::Read, Method::GET, "/api/v1/silences", None),
        ),
        SilenceCommand::Expire { id, api } => (
            "silence expire",
            api.call(
                Needs::Operator,
                Method::DELETE,
                &format!("/api/v1/silences/{id}"),
                None,
            ),
        ),
    };
    let answer = match answer {
        Ok(a) => a,
        Err(code) => return code,
    };
    report(what, answer, output, |body| {
        if let Some(list) = body["silences"].as_array() {
            for s in list {
                println!("{}", silence_line(s));
            }
        } else {
            println!("{}", silence_line(&body["silence"]));
        }
    })
}
