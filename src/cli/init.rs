//! `dr-reactor init DIR`: a new rules repository from the shipped rules
//! (the files and their filtering are the library's `scaffold`).

use std::path::PathBuf;
use std::process::ExitCode;

use dr_reactor::scaffold;
use serde_json::json;

use super::Output;
use super::client::print_json;

#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write the repository; created if missing.
    dir: PathBuf,
    /// Only these scenarios (comma-separated), e.g. az_failure,region_outage:
    /// their rules, rule tests and traces, and the catalogue's runbooks they
    /// still use. Default: every shipped scenario.
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Write into a directory that is not empty: the scaffold's files are
    /// overwritten, every other file is left as it is.
    #[arg(long)]
    force: bool,
}

pub fn init(args: InitArgs, output: Output) -> ExitCode {
    let written = match scaffold::write(&args.dir, args.scenarios.as_deref(), args.force) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("dr-reactor: init: {e}");
            return ExitCode::FAILURE;
        }
    };
    match output {
        Output::Json => print_json(&json!({
            "dir": args.dir,
            "scenarios": written.scenarios,
            "files": written.files,
            "dropped_test_cases": written.dropped_cases,
        })),
        Output::Text => {
            for f in &written.files {
                println!("wrote {}", f.display());
            }
            let scenarios: Vec<&str> = written.scenarios.iter().map(String::as_str).collect();
            println!(
                "ok: a rules repository for {} in {}",
                scenarios.join(", "),
                args.dir.display()
            );
            if written.dropped_cases > 0 {
                println!(
                    "left out {} rule test case(s) that need a scenario not chosen",
                    written.dropped_cases
                );
            }
            println!(
                "next: cd {} && dr-reactor validate && dr-reactor test tests/rules/*.test.yaml",
                args.dir.display()
            );
        }
    }
    ExitCode::SUCCESS
}
