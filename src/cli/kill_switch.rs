//! `dr-reactor kill-switch on|off|status`: the global dispatch kill switch
//! through the API (the admin token turns it; any reader sees it).

use std::process::ExitCode;

use reqwest::Method;
use serde_json::json;

use super::Output;
use super::client::{ApiArgs, Needs, report, text};

#[derive(clap::Subcommand)]
pub enum KillSwitchCommand {
    /// Stop every new plan step from starting, on every replica, until
    /// `off`. Running steps finish unless --abort-running.
    On {
        /// Why: shown on every console page and in /readyz.
        #[arg(long)]
        reason: String,
        /// Abort every approved or running plan too (steps in flight are
        /// stopped).
        #[arg(long)]
        abort_running: bool,
        /// Who asks (recorded with the admin token's change).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Let plans start again.
    Off {
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Whether the switch is on, by whom and why.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub fn run(cmd: KillSwitchCommand, output: Output) -> ExitCode {
    let (api, body) = match cmd {
        KillSwitchCommand::Status { api } => {
            let answer = match api.call(Needs::Read, Method::GET, "/api/v1/kill-switch", None) {
                Ok(a) => a,
                Err(code) => return code,
            };
            return report("kill-switch status", answer, output, describe);
        }
        KillSwitchCommand::On {
            reason,
            abort_running,
            by,
            api,
        } => (
            api,
            json!({"engaged": true, "reason": reason, "abort_running": abort_running, "by": by}),
        ),
        KillSwitchCommand::Off { reason, by, api } => {
            (api, json!({"engaged": false, "reason": reason, "by": by}))
        }
    };
    let answer = match api.call(
        Needs::Operator,
        Method::PUT,
        "/api/v1/kill-switch",
        Some(&body),
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    report("kill-switch", answer, output, |b| {
        describe(&b["switch"]);
        if let Some(ids) = b["aborted"].as_array().filter(|a| !a.is_empty()) {
            println!(
                "asked to abort: {}",
                ids.iter()
                    .map(|i| i.as_str().unwrap_or("?"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    })
}

fn describe(s: &serde_json::Value) {
    let on = s["engaged"].as_bool().unwrap_or(false);
    println!(
        "kill switch {} (by {} at {}: {})",
        if on { "ON: no plan step starts" } else { "off" },
        text(s, "actor"),
        text(s, "at"),
        text(s, "reason")
    );
}
