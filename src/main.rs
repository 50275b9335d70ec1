//! The `dr-reactor` command line: the binary's edge. Parsing and every
//! command but `serve` are in [`cli`], by job; the service itself, and
//! everything else, lives in the library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, EXIT_CONFIG, Output};
use dr_reactor::config::Config;
use dr_reactor::rules::RuleSet;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, check } => serve(config.config, check, cli.output),
        command => cli::run(command, cli.output),
    }
}

fn serve(path: PathBuf, check: bool, output: Output) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dr-reactor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check {
        if output == Output::Text {
            println!("ok: {}", path.display());
        }
        let rules = RuleSet::load(&config.rules.paths, config.rules.catalogue.as_deref())
            .and_then(|set| set.with_silences_file(config.silences.file.as_deref()));
        return cli::rules::report_rules(rules, ExitCode::from(EXIT_CONFIG), output);
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
