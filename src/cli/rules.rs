//! Rule tooling that needs no server: validate, unit tests, replay,
//! runbook readiness, and the JSON schemas and OpenAPI document.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dr_reactor::config::Config;
use dr_reactor::rules::{RuleErrors, RuleSet};
use serde_json::json;

use super::client::print_json;
use super::{EXIT_CONFIG, Output, runtime};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// Rule files (JSON Schema).
    Rules,
    /// The service catalogue (JSON Schema).
    Catalogue,
    /// The HTTP API (OpenAPI 3.1), as served at /api/v1/openapi.json.
    Openapi,
}

pub fn schema(kind: SchemaKind) -> ExitCode {
    match kind {
        SchemaKind::Rules => print_json(&dr_reactor::rules::schema()),
        SchemaKind::Catalogue => print_json(&dr_reactor::catalogue::schema()),
        SchemaKind::Openapi => print!("{}", *dr_reactor::http::OPENAPI_JSON),
    }
    ExitCode::SUCCESS
}

pub fn validate(paths: &[PathBuf], catalogue: &Path, output: Output) -> ExitCode {
    report_rules(
        RuleSet::load(paths, Some(catalogue)),
        ExitCode::FAILURE,
        output,
    )
}

/// Prints what a rule set holds, or every error of it and `failed`.
pub fn report_rules(
    loaded: Result<RuleSet, RuleErrors>,
    failed: ExitCode,
    output: Output,
) -> ExitCode {
    match (loaded, output) {
        (Ok(set), Output::Json) => {
            print_json(&json!({
                "ok": true,
                "rules": set.rules.len(),
                "files": set.files.len(),
                "services": set.catalogue.services.len(),
                "catalogue": set.catalogue.file,
                "silences": set.silences.len(),
            }));
            ExitCode::SUCCESS
        }
        (Ok(set), Output::Text) => {
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
        (Err(errors), Output::Json) => {
            let list: Vec<_> = errors
                .0
                .iter()
                .map(|e| {
                    json!({
                        "file": e.file, "line": e.line, "column": e.column,
                        "message": e.message,
                    })
                })
                .collect();
            print_json(&json!({ "ok": false, "errors": list }));
            failed
        }
        (Err(errors), Output::Text) => {
            for e in &errors.0 {
                println!("{e}");
            }
            println!("{} error(s)", errors.0.len());
            failed
        }
    }
}

/// `dr-reactor test`: each case's outcome, then the count; with `--output
/// json`, one JSON object per case (`type: case`) and one `type: summary`.
pub fn test(files: &[PathBuf], output: Output) -> ExitCode {
    let rt = runtime();
    let json = output == Output::Json;
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        match rt.block_on(dr_reactor::rulestest::run_file(f)) {
            Ok(report) if json => {
                for c in &report.cases {
                    let mut v = serde_json::json!(c);
                    v["type"] = "case".into();
                    println!("{v}");
                }
                passed += report.passed;
                failed += report.failed;
            }
            Ok(report) => {
                print!("{}", report.text);
                passed += report.passed;
                failed += report.failed;
            }
            Err(e) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"type": "case", "file": f.display().to_string(),
                            "name": null, "passed": false, "failures": [e.to_string()]})
                    );
                } else {
                    println!("FAIL {}: {e}", f.display());
                }
                failed += 1;
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"type": "summary", "passed": passed, "failed": failed})
        );
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What `replay` reads.
#[derive(clap::Args)]
pub struct ReplayArgs {
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
}

/// Replays a recording; a long one shows its progress on stderr when that
/// is a terminal (and nothing otherwise, so logs and pipes stay clean).
pub fn replay(args: ReplayArgs, output: Output) -> ExitCode {
    let rules = match RuleSet::load(&args.rules, Some(&args.catalogue)) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            eprintln!("dr-reactor: invalid rules:\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let file = &args.file;
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dr-reactor: {}: {e}", file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(None, target);
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let replayed = runtime().block_on(dr_reactor::replay::replay(
        &text,
        rules,
        args.interval,
        args.extend,
        match output {
            Output::Json => dr_reactor::replay::Format::Json,
            Output::Text => dr_reactor::replay::Format::Text,
        },
        &progress,
    ));
    bar.finish_and_clear();
    match replayed {
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

pub fn readiness(path: &Path, output: Output) -> ExitCode {
    let config = match Config::load(path) {
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
        Ok::<_, dr_reactor::dispatch::DispatchError>(
            dr_reactor::readiness::check::once(&std::sync::Arc::new(dispatcher), &rules).await,
        )
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dr-reactor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => print_json(&report),
    }
    if report.all_ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
