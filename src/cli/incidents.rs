//! `incidents` and `show`: what the console's list and incident page show,
//! as text for a terminal (coloured only on one) or the API's JSON.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;

use super::Output;
use super::client::{Answer, ApiArgs, Needs, report, text};

/// Events asked for per request by `show` (the API's largest page).
const EVENTS_PAGE: u32 = 1000;

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only incidents in this state (e.g. awaiting_approval, running).
    #[arg(long)]
    state: Option<String>,
    /// Only incidents of this scenario.
    #[arg(long)]
    scenario: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The incident id.
    id: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// ANSI colours, on only for a terminal without `NO_COLOR`.
#[derive(Clone, Copy)]
pub struct Paint(bool);

impl Paint {
    pub fn for_stdout() -> Paint {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Paint(std::io::stdout().is_terminal() && !no_color)
    }

    fn code(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn bold(self, s: &str) -> String {
        self.code("1", s)
    }

    fn dim(self, s: &str) -> String {
        self.code("2", s)
    }

    /// An incident's, a step's or an event's state, coloured by how it
    /// went: green done well, red gone wrong, yellow waiting or under way.
    fn state(self, s: &str) -> String {
        let code = match s {
            "succeeded" | "approved" => "32",
            "failed" | "denied" | "expired" | "aborted" => "31",
            k if k.ends_with("_failed") || k.contains("refused") => "31",
            "awaiting_approval" | "running" | "dispatching" | "planned" | "detected" => "33",
            k if k.ends_with("_succeeded") => "32",
            _ => return s.to_owned(),
        };
        self.code(code, s)
    }
}

/// `key="value"` pairs of a label object, comma-separated.
fn labels(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `2026-11-30 13:45:00Z`, or `-`.
fn when(v: &Value) -> String {
    time(v).map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

/// How long ago (or until): `3m`, `2h`, `in 5m`; coarse, for scanning.
fn age(v: &Value, now: DateTime<Utc>) -> String {
    let Some(t) = time(v) else {
        return "-".to_owned();
    };
    let secs = (now - t).num_seconds();
    let span = dr_reactor::primitives::duration::coarse(secs.unsigned_abs());
    if secs >= 0 {
        span
    } else {
        format!("in {span}")
    }
}

/// Rows under a header, each column as wide as its widest cell; `colour`
/// paints one column's cells after they are padded.
fn table(header: &[&str], rows: &[Vec<String>], paint: impl Fn(usize, &str) -> String) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                if i + 1 == cells.len() {
                    paint(i, c.as_str())
                } else {
                    format!("{}{pad}", paint(i, c.as_str()))
                }
            })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect()) + "\n";
    for row in rows {
        out += &line(row.clone());
        out.push('\n');
    }
    out
}

/// The incident list as a table: id, state, scenario, group labels, when
/// opened and how long ago.
pub fn list_text(body: &Value, now: DateTime<Utc>, p: Paint) -> String {
    let incidents = body["incidents"].as_array().cloned().unwrap_or_default();
    if incidents.is_empty() {
        return "no incidents\n".to_owned();
    }
    let rows: Vec<Vec<String>> = incidents
        .iter()
        .map(|i| {
            vec![
                text(i, "id").to_owned(),
                text(i, "state").to_owned(),
                text(i, "scenario").to_owned(),
                labels(&i["group_labels"]),
                when(&i["detected_at"]),
                age(&i["detected_at"], now),
            ]
        })
        .collect();
    let header = ["ID", "STATE", "SCENARIO", "LABELS", "OPENED", "AGE"];
    let mut out = table(&header, &rows, |col, cell| match col {
        1 => p.state(cell),
        _ => cell.to_owned(),
    });
    if !body["next_before"].is_null() {
        out += &p.dim("(more: raise --limit)\n");
    }
    out
}

pub fn list(args: ListArgs, output: Output) -> ExitCode {
    let mut path = format!("/api/v1/incidents?limit={}", args.limit);
    for (key, value) in [("state", &args.state), ("scenario", &args.scenario)] {
        if let Some(v) = value {
            let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
            let _ = write!(path, "&{key}={v}");
        }
    }
    let answer = match args.api.call(Needs::Read, Method::GET, &path, None) {
        Ok(a) => a,
        Err(code) => return code,
    };
    report("incidents", answer, output, |body| {
        print!("{}", list_text(body, Utc::now(), Paint::for_stdout()));
    })
}

/// One incident: the header, the timeline of its events, and its plan
/// with each step's state.
pub fn show_text(body: &Value, now: DateTime<Utc>, p: Paint) -> String {
    let i = &body["incident"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  {}",
        p.bold("incident"),
        p.bold(text(i, "id")),
        p.state(text(i, "state"))
    );
    let field = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(out, "  {} {value}", p.dim(&format!("{name:<10}")));
    };
    field(
        &mut out,
        "scenario",
        format!(
            "{} (rule {}, severity {})",
            text(i, "scenario"),
            text(i, "rule"),
            text(i, "severity")
        ),
    );
    field(&mut out, "labels", labels(&i["group_labels"]));
    if let Some(services) = i["services"].as_array().filter(|s| !s.is_empty()) {
        let names: Vec<&str> = services.iter().filter_map(Value::as_str).collect();
        field(&mut out, "services", names.join(", "));
    }
    field(
        &mut out,
        "opened",
        format!(
            "{} ({} ago)",
            when(&i["detected_at"]),
            age(&i["detected_at"], now)
        ),
    );
    if !i["rto_deadline"].is_null() {
        field(&mut out, "rto", when(&i["rto_deadline"]));
    }
    if !i["closed_at"].is_null() {
        field(&mut out, "closed", when(&i["closed_at"]));
    }
    if let Some(parent) = i["parent_id"].as_str() {
        field(&mut out, "parent", parent.to_owned());
    }
    let events = body["events"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{}",
        p.bold(&format!("Timeline ({} events)", events.len()))
    );
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let change = match (e["from_state"].as_str(), e["to_state"].as_str()) {
                (Some(f), Some(t)) => format!("{f} → {t}"),
                (None, Some(t)) => format!("→ {t}"),
                _ => String::new(),
            };
            vec![
                when(&e["at"]),
                text(e, "kind").to_owned(),
                text(e, "actor").to_owned(),
                change,
                e["reason"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    out += &indent(&table(
        &["AT", "EVENT", "BY", "STATE", "WHY"],
        &rows,
        |col, cell| match col {
            1 => p.state(cell),
            _ => cell.to_owned(),
        },
    ));
    let steps = body["steps"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{}",
        p.bold(&format!("Plan ({} steps)", steps.len()))
    );
    if steps.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                s["n"].to_string(),
                text(s, "name").to_owned(),
                text(s, "what").to_owned(),
                text(s, "state").to_owned(),
                s["failure"]
                    .as_str()
                    .or(s["execution_id"].as_str())
                    .unwrap_or("")
                    .to_owned(),
            ]
        })
        .collect();
    out += &indent(&table(
        &["#", "STEP", "RUNS", "STATE", "DETAIL"],
        &rows,
        |col, cell| match col {
            3 => p.state(cell),
            _ => cell.to_owned(),
        },
    ));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// The incident with all its events: the first page's answer, with the
/// events of the later pages appended.
fn whole(api: &ApiArgs, id: &str) -> Result<Answer, ExitCode> {
    let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let page = |cursor: Option<i64>| {
        let mut path = format!("/api/v1/incidents/{id}?limit={EVENTS_PAGE}");
        if let Some(c) = cursor {
            let _ = write!(path, "&cursor={c}");
        }
        api.call(Needs::Read, Method::GET, &path, None)
    };
    let (code, mut body) = match page(None)? {
        Ok((200, body)) => (200, body),
        other => return Ok(other),
    };
    while let Some(cursor) = body["next_cursor"].as_i64() {
        let (_, more) = match page(Some(cursor))? {
            Ok((200, more)) => (200, more),
            other => return Ok(other),
        };
        if let (Some(events), Some(later)) =
            (body["events"].as_array_mut(), more["events"].as_array())
        {
            events.extend(later.iter().cloned());
        }
        body["next_cursor"] = more["next_cursor"].clone();
    }
    Ok(Ok((code, body)))
}

pub fn show(args: ShowArgs, output: Output) -> ExitCode {
    let answer = match whole(&args.api, &args.id) {
        Ok(a) => a,
        Err(code) => return code,
    };
    report("show", answer, output, |body| {
        print!("{}", show_text(body, Utc::now(), Paint::for_stdout()));
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_list_is_a_table_and_colour_is_only_for_terminals() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = json!({"incidents": [{
            "id": "abc", "state": "failed", "scenario": "region_outage",
            "group_labels": {"region": "eu-west-1"}, "detected_at": "2026-11-30T13:57:00Z",
        }], "next_before": null});
        let plain = list_text(&body, now, Paint(false));
        assert_eq!(
            plain,
            "ID   STATE   SCENARIO       LABELS            OPENED                AGE\n\
             abc  failed  region_outage  region=eu-west-1  2026-11-30 13:57:00Z  3m\n"
        );
        let coloured = list_text(&body, now, Paint(true));
        assert!(coloured.contains("\x1b[31mfailed\x1b[0m"), "{coloured}");
    }
}
