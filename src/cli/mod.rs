//! The command line's commands, by job: [`client`] (reaching a running
//! dr-reactor), [`incidents`] (the list and one incident, as the console
//! shows them), [`operator`] (votes, abort, retry, declare, silences),
//! [`drill`] (drills and recovery reports), [`rules`] (rule tooling,
//! schemas) and [`init`] (a new rules repository). `serve` stays in
//! `main.rs`.

pub mod client;
pub mod drill;
pub mod incidents;
pub mod init;
pub mod kill_switch;
pub mod operator;
pub mod rules;
pub mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a bad config or rule set: the operator must fix input.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "dr-reactor",
    version,
    about = "Disaster-recovery runbooks as code"
)]
pub struct Cli {
    /// `json`: what the server answered (or the command's result) as JSON,
    /// for scripts; `text` for people.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// List incidents, newest first: id, state, scenario, group labels,
    /// when opened and how long ago (the console's list).
    Incidents(incidents::ListArgs),
    /// One incident: its header, the timeline of its events, and its plan
    /// with each step's state (the console's incident page).
    Show(incidents::ShowArgs),
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
    },
    /// Approve an incident's plan through the operator API (for when Slack
    /// is down), with your own token (api.users); counts like your Slack
    /// approval. The admin token votes break-glass and needs --as.
    Approve(operator::VoteArgs),
    /// Deny an incident's plan through the operator API.
    Deny(operator::VoteArgs),
    /// Abort an approved or running plan: no further step starts, and a
    /// running SSM execution is stopped.
    Abort(operator::OperatorArgs),
    /// Retry a failed plan from its failed step(s), each under a new
    /// idempotency key; steps that succeeded do not run again.
    Retry(operator::OperatorArgs),
    /// Declare an incident by hand (a known outage, a drill): it is
    /// planned, guarded and approved like a detected one.
    Declare(operator::DeclareArgs),
    /// Start a drill (game day): synthetic signals for the scenario go
    /// through the real pipeline, marked drill end to end; approvals work
    /// as for real, dispatch runs drill runbooks or records (drills.dispatch).
    Drill(drill::DrillArgs),
    /// An incident's or drill's recovery report: time to detect, decide,
    /// approve, each step, and recovery against the RTO.
    Report(drill::ReportArgs),
    /// Silences for planned work: matching incidents are recorded but
    /// nothing acts (see docs/operations.md, "Silences").
    #[command(subcommand)]
    Silence(operator::SilenceCommand),
    /// The global dispatch kill switch: `on` stops every new plan step on
    /// every replica (admin token), `off` lets them start again, `status`.
    #[command(subcommand, name = "kill-switch")]
    KillSwitch(kill_switch::KillSwitchCommand),
    /// API tokens: `new` makes one, `hash` prints the digest config can
    /// hold instead of the token (`sha256:…`; see docs/security.md).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Print the JSON Schema of rule files or of the service catalogue, for
    /// editors, or the OpenAPI document of the HTTP API (all of them ship
    /// in schema/).
    Schema {
        #[arg(value_enum)]
        kind: rules::SchemaKind,
    },
    /// Run rule unit tests (timed input signals → expected incidents).
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay recorded signals (JSON lines) through the rules on a virtual
    /// clock and print what would have happened. Touches nothing.
    Replay(rules::ReplayArgs),
    /// Start a rules repository in DIR from the shipped rules: rules,
    /// catalogue, schemas, rule tests, recorded traces, a README and CI for
    /// GitHub Actions and GitLab (validate, test, replay, readiness).
    Init(init::InitArgs),
}

/// The service's config file, for the commands that read it.
#[derive(clap::Args)]
pub struct ConfigArg {
    #[arg(
        long,
        short,
        env = "DR_REACTOR_CONFIG",
        default_value = "config/dr-reactor.yaml"
    )]
    pub config: PathBuf,
}

/// Runs every command but `serve`.
pub fn run(command: Command, output: Output) -> ExitCode {
    match command {
        Command::Serve { .. } => unreachable!("main runs the service itself"),
        Command::Incidents(args) => incidents::list(args, output),
        Command::Show(args) => incidents::show(args, output),
        Command::Readiness { config } => rules::readiness(&config.config, output),
        Command::Validate { paths, catalogue } => rules::validate(&paths, &catalogue, output),
        Command::Test { files } => rules::test(&files, output),
        Command::Approve(args) => operator::vote(args, "approve", output),
        Command::Deny(args) => operator::vote(args, "deny", output),
        Command::Abort(args) => operator::abort(args, output),
        Command::Retry(args) => operator::retry(args, output),
        Command::Declare(args) => operator::declare(args, output),
        Command::Drill(args) => drill::drill(args, output),
        Command::Report(args) => drill::report(args, output),
        Command::Silence(cmd) => operator::silence(cmd, output),
        Command::KillSwitch(cmd) => kill_switch::run(cmd, output),
        Command::Token(cmd) => token::run(cmd, output),
        Command::Schema { kind } => rules::schema(kind),
        Command::Replay(args) => rules::replay(args, output),
        Command::Init(args) => init::init(args, output),
    }
}

/// A runtime for one blocking command.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds")
}
