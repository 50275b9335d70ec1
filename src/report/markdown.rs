//! The report as Markdown, for the API (`Accept: text/markdown`), the CLI
//! and postmortems. Values from senders and people (reasons, names) are
//! kept to one line and their table separators escaped.

use std::fmt::Write as _;

use super::Report;

/// A span for people: `1m 05s`, `12.3s`, or `–` where there was none.
fn span(secs: Option<f64>) -> String {
    match secs {
        None => "–".to_owned(),
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) => {
            let whole = s.round() as u64;
            format!("{}m {:02}s", whole / 60, whole % 60)
        }
    }
}

/// One table cell: one line, `|` escaped.
fn cell(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace('|', "\\|")
}

pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let kind = if r.drill {
        "DRILL recovery report"
    } else {
        "Recovery report"
    };
    let _ = writeln!(out, "# {kind}: {} `{}`\n", r.scenario, r.incident);
    let _ = writeln!(
        out,
        "Rule `{}`, group `{}`, final state **{}**.\n",
        r.rule,
        cell(&r.group_key),
        r.state
    );
    let d = &r.durations;
    out.push_str("| span | time |\n|---|---|\n");
    for (name, secs) in [
        (
            "time to detect (first evidence → opened)",
            Some(d.detect_secs),
        ),
        (
            "time to decide (opened → approval requested)",
            d.decide_secs,
        ),
        ("time to approve", d.approve_secs),
        ("steps", Some(d.steps_secs)),
        (
            "total recovery (first evidence → last step)",
            d.recovery_secs,
        ),
    ] {
        let _ = writeln!(out, "| {name} | {} |", span(secs));
    }
    if let Some(rto) = &r.rto {
        let verdict = match (rto.met, rto.margin_secs) {
            (Some(true), Some(m)) => format!("met, {} to spare", span(Some(m))),
            (Some(false), Some(m)) => format!("MISSED by {}", span(Some(-m))),
            _ => "not measured: nothing recovered".to_owned(),
        };
        let _ = writeln!(
            out,
            "\nRTO: {} ({}, the smallest affected): {verdict}.",
            span(Some(rto.rto_secs as f64)),
            rto.service
        );
    }
    if !r.rpo.is_empty() {
        out.push_str("\n| service | RPO | data at risk |\n|---|---|---|\n");
        for p in &r.rpo {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&p.service),
                span(Some(p.rpo_secs as f64)),
                span(p.exposure_secs)
            );
        }
    }
    if !r.steps.is_empty() {
        out.push_str("\n## Steps\n\n| # | step | time | result |\n|---|---|---|---|\n");
        for s in &r.steps {
            let what = if s.recorded {
                format!("{} (recorded, not called)", s.what)
            } else {
                s.what.clone()
            };
            let _ = writeln!(
                out,
                "| {} | {}: {} | {} | {} |",
                s.index + 1,
                cell(&s.name),
                cell(&what),
                span(s.secs),
                cell(s.status.as_deref().unwrap_or("not run"))
            );
        }
    }
    out.push_str("\n## Approvals\n\n");
    if r.votes.is_empty() {
        out.push_str("No votes were cast.\n");
    }
    for v in &r.votes {
        let glass = if v.break_glass { " (break-glass)" } else { "" };
        let _ = writeln!(
            out,
            "- {} by {}{glass} at {}",
            v.choice,
            cell(&v.actor),
            v.at.format("%H:%M:%SZ")
        );
    }
    out.push_str("\n## Timeline\n\n| at | event | by | detail |\n|---|---|---|---|\n");
    for e in &r.timeline {
        let kind = match e.to_state {
            Some(to) => format!("{} → {to}", e.kind),
            None => e.kind.clone(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            e.at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
            cell(&kind),
            cell(&e.actor),
            cell(&e.reason)
        );
    }
    out
}
