//! A rule file, through `RuleSet::load` (what `validate`, start-up and a
//! reload run) against the shipped catalogue. A refused file has errors
//! that point into it; a loaded one is evaluated: signals its rules match
//! go through the engine, the guard and plan rendering, with time running
//! far past every window (the `window: 300000y`, `rate: 5/1ns` class).
#![no_main]

use std::sync::Arc;

use dr_reactor::rules::RuleSet;
use dr_reactor_fuzz::{check_errors, drive, scratch, shipped_rules, signals_for};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = scratch("rules.yaml", data);
    // The shipped catalogue, loaded once: the catalogue has its own target.
    let catalogue = Arc::clone(&shipped_rules().catalogue);
    match RuleSet::load_with_catalogue(std::slice::from_ref(&file), catalogue) {
        Ok(set) => {
            let signals = signals_for(&set);
            drive(&Arc::new(set), &signals);
        }
        Err(e) => check_errors(&e.0, &file, data),
    }
});
