//! `dr-reactor drill` and `dr-reactor report`: a drill started, and an
//! incident's recovery report read, through the API.

use std::process::ExitCode;

use reqwest::Method;

use super::Output;
use super::client::{ApiArgs, Needs, report as answer_of, text};
use super::operator::{declaration_body, parse_label};

#[derive(clap::Args)]
pub struct DrillArgs {
    /// The scenario to rehearse (e.g. az_failure, region_outage).
    scenario: String,
    /// A group label, `key=value`; repeat for each (e.g. --label
    /// region=ap-northeast-2 --label zone=ap-northeast-2a).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The rule whose conditions the drill satisfies; else the scenario's
    /// first.
    #[arg(long)]
    rule: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
    /// Why: recorded with the drill's signals (after `--`).
    #[arg(last = true)]
    reason: Vec<String>,
}

pub fn drill(args: DrillArgs, output: Output) -> ExitCode {
    let body = declaration_body(args.scenario, args.labels, args.rule, args.reason.join(" "));
    let answer = match args
        .api
        .call(Needs::Operator, Method::POST, "/api/v1/drills", Some(&body))
    {
        Ok(a) => a,
        Err(code) => return code,
    };
    answer_of("drill", answer, output, |b| {
        println!(
            "drill {} started: {} signal(s) for {}; its incident opens in {}s",
            text(b, "drill"),
            b["signals"].as_u64().unwrap_or(0),
            text(b, "key"),
            b["opens_after_secs"].as_u64().unwrap_or(0),
        );
    })
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Markdown,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The incident id.
    incident: String,
    /// Markdown for people (the default), JSON for tools; `--output json`
    /// also asks for JSON.
    #[arg(long, value_enum)]
    format: Option<ReportFormat>,
    #[command(flatten)]
    api: ApiArgs,
}

pub fn report(args: ReportArgs, output: Output) -> ExitCode {
    let format = args.format.unwrap_or(match output {
        Output::Json => ReportFormat::Json,
        Output::Text => ReportFormat::Markdown,
    });
    let query = match format {
        ReportFormat::Json => "json",
        ReportFormat::Markdown => "markdown",
    };
    let path = format!("/api/v1/incidents/{}/report?format={query}", args.incident);
    match args.api.call_text(Needs::Read, Method::GET, &path, None) {
        Err(code) => code,
        Ok(Ok((200, body))) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok(Ok((code, body))) => {
            eprintln!("dr-reactor: report refused ({code}): {}", body.trim());
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("dr-reactor: {e}");
            ExitCode::FAILURE
        }
    }
}
