//! `dr-reactor drill` and `dr-reactor report`: a drill started, and an
//! incident's recovery report read, through the API.

use std::process::ExitCode;

use super::{EXIT_CONFIG, NO_TOKEN, parse_label, post, runtime, token};

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
    /// dr-reactor's base URL.
    #[arg(long, env = "DR_REACTOR_URL", default_value = "http://127.0.0.1:9099")]
    url: String,
    /// Your API token (api.users); without it, DR_REACTOR_ADMIN_TOKEN is
    /// used as break-glass.
    #[arg(long, env = "DR_REACTOR_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Why: recorded with the drill's signals.
    #[arg(last = true)]
    reason: Vec<String>,
}

/// The body of a declaration or a drill: `{scenario, labels, reason,
/// rule?}`.
pub fn declaration_body(
    scenario: String,
    labels: Vec<(String, String)>,
    rule: Option<String>,
    reason: String,
) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let mut body = serde_json::json!({
        "scenario": scenario,
        "labels": labels,
        "reason": reason,
    });
    if let Some(rule) = rule {
        body["rule"] = serde_json::Value::String(rule);
    }
    body
}

pub fn drill(args: DrillArgs) -> ExitCode {
    let body = declaration_body(args.scenario, args.labels, args.rule, args.reason.join(" "));
    post(
        &args.url,
        "/api/v1/drills",
        args.token,
        "drill",
        &body,
        |b| {
            format!(
                "drill {} started: {} signal(s) for {}; its incident opens in {}s",
                b["drill"].as_str().unwrap_or("?"),
                b["signals"].as_u64().unwrap_or(0),
                b["key"].as_str().unwrap_or("?"),
                b["opens_after_secs"].as_u64().unwrap_or(0),
            )
        },
    )
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Markdown,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The incident id.
    incident: String,
    #[arg(long, value_enum, default_value = "markdown")]
    format: ReportFormat,
    /// dr-reactor's base URL.
    #[arg(long, env = "DR_REACTOR_URL", default_value = "http://127.0.0.1:9099")]
    url: String,
    /// A read token, your API token, or the admin token.
    #[arg(long, env = "DR_REACTOR_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub fn report(args: ReportArgs) -> ExitCode {
    let Some(token) = token(args.token) else {
        eprintln!("dr-reactor: {NO_TOKEN}");
        return ExitCode::from(EXIT_CONFIG);
    };
    let format = match args.format {
        ReportFormat::Json => "json",
        ReportFormat::Markdown => "markdown",
    };
    let url = format!(
        "{}/api/v1/incidents/{}/report?format={format}",
        args.url.trim_end_matches('/'),
        args.incident
    );
    let answer = runtime().block_on(async {
        let resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?;
        Ok::<_, reqwest::Error>((resp.status().as_u16(), resp.text().await?))
    });
    match answer {
        Ok((200, text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok((code, text)) => {
            eprintln!("dr-reactor: report refused ({code}): {text}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("dr-reactor: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
