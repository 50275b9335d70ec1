//! Cutting the shipped files down to some scenarios, as text.
//!
//! The shipped rules, catalogue and rule tests are edited line by line, not
//! parsed and written back: a serialiser would drop their comments, which
//! are half of what a new rules repository is for. Every edit is decided on
//! the parsed file (which runbooks are still referenced, which scenarios a
//! rule file opens), and what comes out is parsed again by the caller, so a
//! change of the shipped files' layout that these edits do not understand
//! fails loudly instead of scaffolding something else.

use std::collections::BTreeSet;

/// The scenarios a rule file opens (`rules[*].scenario`), read without the
/// rest of the rule format: the full check is `validate`'s job.
pub(super) fn scenarios_of(rule_file: &str) -> Result<BTreeSet<String>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<Head>,
    }
    #[derive(serde::Deserialize)]
    struct Head {
        scenario: String,
    }
    let file: File = crate::primitives::yaml::from_str(rule_file)
        .map_err(|e| format!("line {}: {}", e.line, e.message))?;
    Ok(file.rules.into_iter().map(|r| r.scenario).collect())
}

/// A rule file with every `absorbs: [...]` list cut to the selected
/// scenarios (validation refuses a scenario no loaded rule opens), each
/// cut saying what it left out, so the reader of the new repository knows
/// the rule once absorbed more.
pub(super) fn rules(text: &str, selected: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let Some((indent, list)) = absorbs_list(body) else {
            out.push_str(line);
            continue;
        };
        let (kept, dropped): (Vec<&str>, Vec<&str>) =
            list.iter().partition(|s| selected.contains(**s));
        if dropped.is_empty() {
            out.push_str(line);
            continue;
        }
        out.push_str(&format!(
            "{indent}absorbs: [{}]  # dr-reactor init left out: {}\n",
            kept.join(", "),
            dropped.join(", ")
        ));
    }
    out
}

/// `    absorbs: [a, b]` → its indentation and names; anything else (a
/// comment, a block list) is not touched, and the re-parse catches it.
fn absorbs_list(line: &str) -> Option<(&str, Vec<&str>)> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let rest = trimmed.strip_prefix("absorbs:")?.trim();
    let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
    let names = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    Some((indent, names))
}

/// A rule test file with only the cases whose every named scenario is
/// selected: a case that expects an incident of a scenario left out (or
/// one absorbed by it) would fail against the cut-down rules. A case names
/// a scenario by its identifier (`service_failure`, also inside
/// `parent: "az_failure{…}"`). Returns the text and how many cases it
/// dropped; the header (rules, catalogue, interval) is kept as it is.
pub(super) fn rule_tests(
    text: &str,
    selected: &BTreeSet<String>,
    known: &BTreeSet<String>,
) -> Result<(String, usize), String> {
    let Some(at) = text.find("\ntests:\n") else {
        return Err("no top-level `tests:` list".to_owned());
    };
    let (head, body) = text.split_at(at + "\ntests:\n".len());
    let mut cases: Vec<String> = Vec::new();
    for line in body.split_inclusive('\n') {
        if line.starts_with("  - ") || cases.is_empty() {
            // The comment lines just above a case belong to it, not to the
            // case before.
            let mut lead = String::new();
            if let Some(last) = cases.last_mut() {
                while let Some(pos) = trailing_comment(last) {
                    lead.insert_str(0, &last[pos..]);
                    last.truncate(pos);
                }
            }
            cases.push(lead);
        }
        if let Some(last) = cases.last_mut() {
            last.push_str(line);
        }
    }
    // Comments above the first case leave an empty first chunk behind.
    cases.retain(|c| !c.trim().is_empty());
    let mut out = head.to_owned();
    let mut dropped = 0;
    for case in &cases {
        let named: Vec<&String> = known.iter().filter(|s| names(case, s)).collect();
        if named.iter().all(|s| selected.contains(*s)) {
            out.push_str(case);
        } else {
            dropped += 1;
        }
    }
    if dropped == cases.len() {
        return Err("every case needs a scenario left out".to_owned());
    }
    Ok((out, dropped))
}

/// Where the last line of `chunk` starts, if it is a comment at the list's
/// indentation (two spaces) and not the chunk's only line.
fn trailing_comment(chunk: &str) -> Option<usize> {
    let body = chunk.strip_suffix('\n')?;
    let start = body.rfind('\n').map_or(0, |p| p + 1);
    (start > 0 && body[start..].starts_with("  #")).then_some(start)
}

/// Whether `text` contains `word` as an identifier (not inside a longer
/// one: `service_failure` is not in `service_failure_x`).
fn names(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// The catalogue with only what the selected scenarios use: each service's
/// runbooks for those scenarios, and the top-level runbooks they reference
/// (with their failbacks, which a failover's success prepares). `keep` is
/// that set of runbook names, decided on the parsed catalogue.
pub(super) fn catalogue(
    text: &str,
    selected: &BTreeSet<String>,
    keep: &BTreeSet<String>,
) -> String {
    #[derive(PartialEq)]
    enum Section {
        Other,
        Runbooks,
        Services,
    }
    let mut section = Section::Other;
    let mut dropping = false;
    let mut in_service_runbooks = false;
    // A service's `runbooks:` line, held until one of its entries is kept:
    // if none is, it is written as an empty map (a bare `runbooks:` is null,
    // which the catalogue refuses).
    let mut pending: Option<String> = None;
    let mut out = String::with_capacity(text.len());
    let flush_empty = |pending: &mut Option<String>, out: &mut String| {
        if let Some(line) = pending.take() {
            out.push_str(line.trim_end_matches(['\n', '\r']));
            out.push_str(" {}\n");
        }
    };
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let indent = body.len() - body.trim_start().len();
        let blank = body.trim().is_empty() || body.trim_start().starts_with('#');
        if indent == 0 && body.trim_start().starts_with('#') {
            // A comment at the margin introduces what follows, never the
            // runbook above it.
            dropping = false;
        }
        if !blank && indent == 0 {
            section = match body {
                "runbooks:" => Section::Runbooks,
                "services:" => Section::Services,
                _ => Section::Other,
            };
            dropping = false;
        }
        match section {
            Section::Runbooks if !blank && indent == 2 => {
                let name = body.trim().trim_end_matches(':');
                dropping = !keep.contains(name);
            }
            Section::Services if !blank => {
                if indent <= 4 {
                    flush_empty(&mut pending, &mut out);
                    in_service_runbooks = indent == 4 && body.trim() == "runbooks:";
                    if in_service_runbooks {
                        pending = Some(line.to_owned());
                        continue;
                    }
                } else if in_service_runbooks
                    && indent == 6
                    && let Some((scenario, _)) = body.trim().split_once(':')
                    && !selected.contains(scenario.trim())
                {
                    continue;
                }
            }
            _ => {}
        }
        if dropping && !body.trim().is_empty() {
            continue;
        }
        if in_service_runbooks
            && !blank
            && let Some(held) = pending.take()
        {
            out.push_str(&held);
        }
        if pending.is_some() && !blank && indent == 0 {
            flush_empty(&mut pending, &mut out);
        }
        out.push_str(line);
    }
    flush_empty(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn absorbs_lists_keep_the_selected_and_say_what_they_left_out() {
        let text =
            "rules:\n  - name: r\n    absorbs: [az_failure, service_failure]\n    # absorbs: [x]\n";
        let cut = rules(text, &set(&["service_failure"]));
        assert_eq!(
            cut,
            "rules:\n  - name: r\n    absorbs: [service_failure]  # dr-reactor init left out: az_failure\n    # absorbs: [x]\n"
        );
        assert_eq!(rules(text, &set(&["az_failure", "service_failure"])), text);
        assert!(
            rules(text, &set(&[]))
                .contains("absorbs: []  # dr-reactor init left out: az_failure, service_failure")
        );
    }

    #[test]
    fn a_case_goes_with_the_comment_above_it() {
        let text = "rules: [../../rules]\ntests:\n  - name: one\n    expect: [{scenario: az_failure}]\n\n  # about two\n  - name: two\n    expect: [{parent: \"service_failure{a=b}\"}]\n  - name: three\n    expect: []\n";
        let known = set(&["az_failure", "service_failure"]);
        let (cut, dropped) = rule_tests(text, &set(&["az_failure"]), &known).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(
            cut,
            "rules: [../../rules]\ntests:\n  - name: one\n    expect: [{scenario: az_failure}]\n\n  - name: three\n    expect: []\n"
        );
        let err = rule_tests("tests:\n", &known, &known).unwrap_err();
        assert!(err.contains("tests:"), "{err}");
    }

    #[test]
    fn a_scenario_is_named_only_as_a_whole_identifier() {
        assert!(names("parent: \"az_failure{zone=a}\"", "az_failure"));
        assert!(!names("scenario: az_failure_drill", "az_failure"));
        assert!(!names("x_az_failure", "az_failure"));
    }

    #[test]
    fn the_catalogue_keeps_what_the_selected_scenarios_reference() {
        let text = "\
runbooks:
  restart:
    ssm: {document: A}
  promote:
    ssm:
      document: B
    failback: back
  back:
    ssm: {document: C}

services:
  auth:
    priority: 4
    runbooks:
      service_failure: restart
      region_outage: promote
    owners: [x]
";
        let cut = catalogue(text, &set(&["service_failure"]), &set(&["restart"]));
        assert_eq!(
            cut,
            "runbooks:\n  restart:\n    ssm: {document: A}\n\nservices:\n  auth:\n    priority: 4\n    runbooks:\n      service_failure: restart\n    owners: [x]\n"
        );
    }
}
