//! The `dr-reactor` command line. Everything else lives in the library.

mod drill_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use dr_reactor::config::Config;
use dr_reactor::rules::RuleSet;

#[derive(Parser)]
#[command(
    name = "dr-reactor",
    version,
    about = "Disaster-recovery runbooks as code"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Load the config (secrets resolved) and the rules, catalogue and
        /// silences file it names, as a start would, then exit without
        /// serving: 0 when all are good, 2 with every error otherwise.
        #[arg(long)]
        check: bool,
    },
    /// Check rule files and the service catalogue together; every error
    /// with file:line:column. Exit status 1 on any error.
    Validate {
        /// Rule files or directories.
        #[arg(default_value = "rules")]
        paths: Vec<PathBuf>,
        #[arg(long, default_value = "config/services.yaml")]
        catalogue: PathBuf,
    },
    /// Check every runbook the rules and the catalogue can call, in every
    /// region (SSM DescribeDocument, Lambda GetFunction), with the
    /// config's AWS settings. Exit status 1 if any is not ready (for CI of
    /// the rules repository), 2 for a bad config or rule set.
    Readiness {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Approve an incident's plan through the operator API (for when Slack
    /// is down), with your own token (api.users); counts like your Slack
    /// approval. The admin token votes break-glass and needs --as.
    Approve(VoteArgs),
    /// Deny an incident's plan through the operator API.
    Deny(VoteArgs),
    /// Abort an approved or running plan: no further step starts, and a
    /// running SSM execution is stopped.
    Abort(OperatorArgs),
    /// Retry a failed plan from its failed step(s), each under a new
    /// idempotency key; steps that succeeded do not run again.
    Retry(OperatorArgs),
    /// Declare an incident by hand (a known outage, a drill): it is
    /// planned, guarded and approved like a detected one.
    Declare(DeclareArgs),
    /// Start a drill: synthetic signals through the real pipeline.
    Drill(drill_cli::DrillArgs),
    /// Print an incident's recovery report.
    Report(drill_cli::ReportArgs),
    /// Silences for planned work: matching incidents are recorded but
    /// nothing acts (see README "Silences").
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Print the JSON Schema of rule files or of the service catalogue, for
    /// editors (the same schemas ship in schema/).
    Schema {
        #[arg(value_enum)]
        kind: SchemaKind,
    },
    /// Run rule unit tests (timed input signals → expected incidents).
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay recorded signals (JSON lines) through the rules on a virtual
    /// clock and print what would have happened. Touches nothing.
    Replay {
        file: PathBuf,
        #[arg(long = "rules", default_value = "rules")]
        rules: Vec<PathBuf>,
        #[arg(long, default_value = "config/services.yaml")]
        catalogue: PathBuf,
        /// Evaluation interval of the virtual clock.
        #[arg(long, default_value = "1s", value_parser = dr_reactor::primitives::duration::parse)]
        interval: std::time::Duration,
        /// Keep the clock running this long after the last input (to see
        /// windows close); past the recording heartbeats look absent.
        #[arg(long, default_value = "0s", value_parser = dr_reactor::primitives::duration::parse)]
        extend: std::time::Duration,
    },
}

/// The service's config file, for the commands that read it.
#[derive(clap::Args)]
struct ConfigArg {
    #[arg(
        long,
        short,
        env = "DR_REACTOR_CONFIG",
        default_value = "config/dr-reactor.yaml"
    )]
    config: PathBuf,
}

/// What every operator command on one incident (approve, deny, abort,
/// retry) takes.
#[derive(clap::Args)]
struct OperatorArgs {
    /// The incident id.
    incident: String,
    #[arg(long, default_value = "")]
    reason: String,
    /// dr-reactor's base URL.
    #[arg(long, env = "DR_REACTOR_URL", default_value = "http://127.0.0.1:9099")]
    url: String,
    /// Your API token (api.users); without it, DR_REACTOR_ADMIN_TOKEN is
    /// used as break-glass.
    #[arg(long, env = "DR_REACTOR_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct DeclareArgs {
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
    /// dr-reactor's base URL.
    #[arg(long, env = "DR_REACTOR_URL", default_value = "http://127.0.0.1:9099")]
    url: String,
    /// Your API token (api.users); without it, DR_REACTOR_ADMIN_TOKEN is
    /// used as break-glass.
    #[arg(long, env = "DR_REACTOR_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected key=value")),
    }
}

#[derive(clap::Args)]
struct VoteArgs {
    #[command(flatten)]
    op: OperatorArgs,
    /// Whom the admin token (break-glass) votes for: a user id in the
    /// approver directory. Not needed with your own token.
    #[arg(long = "as")]
    user: Option<String>,
}

/// Where the API is and who calls it, for the silence commands.
#[derive(clap::Args)]
struct ApiArgs {
    /// dr-reactor's base URL.
    #[arg(long, env = "DR_REACTOR_URL", default_value = "http://127.0.0.1:9099")]
    url: String,
    /// Your API token (api.users); without it, DR_REACTOR_ADMIN_TOKEN is
    /// used. `list` takes a read token too.
    #[arg(long, env = "DR_REACTOR_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum SilenceCommand {
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaKind {
    Rules,
    Catalogue,
}

/// Exit status for a bad config or rule set: the operator must fix input.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, check } => serve(config.config, check),
        Command::Readiness { config, output } => readiness(config.config, output),
        Command::Validate { paths, catalogue } => validate(&paths, &catalogue),
        Command::Test { files } => test(&files),
        Command::Approve(args) => vote(args, "approve"),
        Command::Deny(args) => vote(args, "deny"),
        Command::Abort(args) => abort(args),
        Command::Retry(args) => retry(args),
        Command::Declare(args) => declare(args),
        Command::Drill(args) => drill_cli::drill(args),
        Command::Report(args) => drill_cli::report(args),
        Command::Silence(cmd) => silence(cmd),
        Command::Schema { kind } => {
            let schema = match kind {
                SchemaKind::Rules => dr_reactor::rules::schema(),
                SchemaKind::Catalogue => dr_reactor::catalogue::schema(),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("JSON value")
            );
            ExitCode::SUCCESS
        }
        Command::Replay {
            file,
            rules,
            catalogue,
            interval,
            extend,
        } => replay(&file, &rules, &catalogue, interval, extend),
    }
}

fn validate(paths: &[PathBuf], catalogue: &std::path::Path) -> ExitCode {
    report_rules(RuleSet::load(paths, Some(catalogue)), ExitCode::FAILURE)
}

/// Prints what a rule set holds, or every error of it and `failed`.
fn report_rules(
    loaded: Result<RuleSet, dr_reactor::rules::RuleErrors>,
    failed: ExitCode,
) -> ExitCode {
    match loaded {
        Ok(set) => {
            let catalogue = set
                .catalogue
                .file
                .as_deref()
                .map_or_else(|| "no catalogue".to_owned(), |p| p.display().to_string());
            println!(
                "ok: {} rule(s) in {} file(s), {} service(s) in {catalogue}",
                set.rules.len(),
                set.files.len(),
                set.catalogue.services.len(),
            );
            if !set.silences.is_empty() {
                println!("ok: {} silence(s) in the silences file", set.silences.len());
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{e}");
            }
            println!("{} error(s)", errors.0.len());
            failed
        }
    }
}

/// The caller's own token, else the admin token from the environment.
fn token(given: Option<String>) -> Option<String> {
    given.or_else(|| std::env::var("DR_REACTOR_ADMIN_TOKEN").ok())
}

/// POSTs `body` to `/api/v1/incidents/{incident}/{action}` with the caller's
/// token; on 200 prints what `done` makes of the answer, else the refusal.
fn operator_call(
    args: OperatorArgs,
    action: &str,
    body: &serde_json::Value,
    done: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    let incident = args.incident.clone();
    let path = format!("/api/v1/incidents/{incident}/{action}");
    post(&args.url, &path, args.token, action, body, |body| {
        format!("{incident}: {}", done(body))
    })
}

/// POSTs `body` to `path` under `base` with the caller's token (else the
/// admin token); on 2xx prints what `done` makes of the answer, else the
/// refusal.
fn post(
    base: &str,
    path: &str,
    token: Option<String>,
    action: &str,
    body: &serde_json::Value,
    done: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    let Some(token) = self::token(token) else {
        eprintln!("dr-reactor: {NO_TOKEN}");
        return ExitCode::from(EXIT_CONFIG);
    };
    let result = api_call(base, &token, reqwest::Method::POST, path, Some(body));
    report(action, result, |body| println!("{}", done(body)))
}

/// What the CLI says of an API answer: on 2xx what `done` prints, else the
/// refusal with the server's reason, or the error that kept it from asking.
fn report(
    what: &str,
    result: anyhow::Result<(u16, serde_json::Value)>,
    done: impl Fn(&serde_json::Value),
) -> ExitCode {
    match result {
        Ok((200 | 201, body)) => {
            done(&body);
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprintln!(
                "dr-reactor: {what} refused ({code}): {}",
                body["error"].as_str().unwrap_or("no detail")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("dr-reactor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const NO_TOKEN: &str = "no token: pass --token or set DR_REACTOR_API_TOKEN to your own API token";

fn retry(args: OperatorArgs) -> ExitCode {
    let body = serde_json::json!({ "reason": args.reason });
    operator_call(args, "retry", &body, |body| {
        format!(
            "retried (incident is {})",
            body["state"].as_str().unwrap_or("?")
        )
    })
}

fn declare(args: DeclareArgs) -> ExitCode {
    let body = drill_cli::declaration_body(args.scenario, args.labels, args.rule, args.reason);
    post(
        &args.url,
        "/api/v1/incidents",
        args.token,
        "declare",
        &body,
        |body| {
            format!(
                "{}: declared (incident is {})",
                body["id"].as_str().unwrap_or("?"),
                body["state"].as_str().unwrap_or("?")
            )
        },
    )
}

fn abort(args: OperatorArgs) -> ExitCode {
    let body = serde_json::json!({ "reason": args.reason });
    operator_call(args, "abort", &body, |body| {
        format!(
            "abort {} (incident is {})",
            body["abort"].as_str().unwrap_or("?"),
            body["state"].as_str().unwrap_or("?"),
        )
    })
}

/// One request to the API with the caller's token: the status and the
/// JSON answer.
/// One request to the API under `base` with `token`; the status and the
/// JSON answer (null if there is none).
fn api_call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    runtime().block_on(async {
        let mut req = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let code = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok((code, body))
    })
}

fn silence_line(s: &serde_json::Value) -> String {
    let matchers: Vec<&str> = s["matchers"]
        .as_array()
        .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    format!(
        "{}\t{}\t{}\tuntil {}\tby {} ({}): {}",
        s["id"].as_str().unwrap_or("?"),
        s["state"].as_str().unwrap_or("?"),
        matchers.join(","),
        s["ends_at"].as_str().unwrap_or("?"),
        s["created_by"].as_str().unwrap_or("?"),
        s["source"].as_str().unwrap_or("?"),
        s["comment"].as_str().unwrap_or(""),
    )
}

fn silence(cmd: SilenceCommand) -> ExitCode {
    use reqwest::Method;
    let api = match &cmd {
        SilenceCommand::Add { api, .. }
        | SilenceCommand::List { api }
        | SilenceCommand::Expire { api, .. } => api,
    };
    let Some(token) = token(api.token.clone()) else {
        eprintln!("dr-reactor: {NO_TOKEN}");
        return ExitCode::FAILURE;
    };
    let call = |method, path: &str, body| api_call(&api.url, &token, method, path, body);
    let (what, result) = match &cmd {
        SilenceCommand::Add {
            matchers,
            duration,
            starts_at,
            comment,
            ..
        } => {
            let mut body = serde_json::json!({
                "matchers": matchers, "duration": duration, "comment": comment,
            });
            if let Some(start) = starts_at {
                body["starts_at"] = serde_json::Value::String(start.clone());
            }
            let r = call(Method::POST, "/api/v1/silences", Some(&body));
            ("silence add", r)
        }
        SilenceCommand::List { .. } => {
            ("silence list", call(Method::GET, "/api/v1/silences", None))
        }
        SilenceCommand::Expire { id, .. } => (
            "silence expire",
            call(Method::DELETE, &format!("/api/v1/silences/{id}"), None),
        ),
    };
    report(what, result, |body| {
        if let Some(list) = body["silences"].as_array() {
            for s in list {
                println!("{}", silence_line(s));
            }
        } else {
            println!("{}", silence_line(&body["silence"]));
        }
    })
}

fn vote(args: VoteArgs, action: &str) -> ExitCode {
    let mut body = serde_json::json!({ "reason": args.op.reason, "via": "cli" });
    if let Some(user) = &args.user {
        body["as"] = serde_json::Value::String(user.clone());
    }
    operator_call(args.op, action, &body, |body| {
        format!(
            "{} (incident is {}{})",
            body["verdict"].as_str().unwrap_or("?"),
            body["state"].as_str().unwrap_or("?"),
            match body["still_needed"].as_u64() {
                Some(n) if n > 0 => format!("; {n} more approval(s) needed"),
                _ => String::new(),
            }
        )
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds")
}

fn test(files: &[PathBuf]) -> ExitCode {
    let rt = runtime();
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        match rt.block_on(dr_reactor::rulestest::run_file(f)) {
            Ok(report) => {
                print!("{}", report.text);
                passed += report.passed;
                failed += report.failed;
            }
            Err(e) => {
                println!("FAIL {}: {e}", f.display());
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn replay(
    file: &std::path::Path,
    rules: &[PathBuf],
    catalogue: &std::path::Path,
    interval: std::time::Duration,
    extend: std::time::Duration,
) -> ExitCode {
    let rules = match RuleSet::load(rules, Some(catalogue)) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            eprintln!("dr-reactor: invalid rules:\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dr-reactor: {}: {e}", file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match runtime().block_on(dr_reactor::replay::replay(&text, rules, interval, extend)) {
        Ok(timeline) => {
            print!("{timeline}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dr-reactor: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

fn readiness(path: PathBuf, output: Output) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dr-reactor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rules = match RuleSet::load(&config.rules.paths, config.rules.catalogue.as_deref()) {
        Ok(r) => r,
        Err(errors) => {
            eprintln!("dr-reactor: invalid rules:\n{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dr-reactor: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(async {
        let metrics = dr_reactor::telemetry::Metrics::new();
        let dispatcher = dr_reactor::dispatch::Dispatcher::from_env(&config.aws, metrics).await?;
        anyhow::Ok(
            dr_reactor::readiness::check::once(&std::sync::Arc::new(dispatcher), &rules).await,
        )
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dr-reactor: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report is plain JSON")
        ),
    }
    if report.all_ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn serve(path: PathBuf, check: bool) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dr-reactor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check {
        println!("ok: {}", path.display());
        let rules = RuleSet::load(&config.rules.paths, config.rules.catalogue.as_deref())
            .and_then(|set| set.with_silences_file(config.silences.file.as_deref()));
        return report_rules(rules, ExitCode::from(EXIT_CONFIG));
    }
    dr_reactor::telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dr-reactor: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("listen: cannot bind {}: {e}", config.listen))?;
        dr_reactor::app::run(config, listener, shutdown_signal()).await?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("dr-reactor: {e:#}");
            match e.downcast_ref::<dr_reactor::app::AppError>() {
                Some(dr_reactor::app::AppError::Rules(_)) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// SIGINT or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
