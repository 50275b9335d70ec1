//! The runbook library (runbooks/) is Python tested against moto's server;
//! this runs its whole pytest suite as part of `cargo test`, so a runbook
//! that breaks fails the same command everything else does. What it needs
//! (pytest, aws-lambda-powertools, PyYAML, moto[server], boto3) is installed
//! by .ci/run.

use std::process::Command;

#[test]
fn runbook_library_passes_its_tests_against_moto() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "runbooks"])
        .current_dir(root)
        .output()
        .expect("python3 runs (the runbook tests need pytest and moto; .ci/run installs them)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "python3 -m pytest -q runbooks failed ({}):\n{text}",
        out.status
    );
    // pytest exits 5 when it collects nothing, which the check above already
    // refuses; a summary with passes says the suite really ran.
    assert!(text.contains(" passed"), "no test ran:\n{text}");
}
