//! The service dependency graph as SVG, laid out in layers: a service sits
//! one column right of the deepest thing it depends on, so every arrow
//! points left, to what must be recovered first. Within a column, higher
//! recovery priority comes first. The catalogue has no cycles (it is
//! checked at load), so depths are well defined.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::catalogue::Catalogue;

const BOX_W: u32 = 170;
const BOX_H: u32 = 46;
const GAP_X: u32 = 70;
const GAP_Y: u32 = 18;
const PAD: u32 = 16;

/// Columns of services by dependency depth; each sorted by priority
/// (higher first), then name.
fn layers(cat: &Catalogue) -> Vec<Vec<&str>> {
    fn depth<'a>(
        name: &'a str,
        cat: &'a Catalogue,
        memo: &mut HashMap<&'a str, usize>,
        seen: &mut BTreeSet<&'a str>,
    ) -> usize {
        if let Some(&d) = memo.get(name) {
            return d;
        }
        // A cycle cannot pass the catalogue's checks; guard anyway rather
        // than recurse forever on a bug.
        if !seen.insert(name) {
            return 0;
        }
        let d = cat.services.get(name).map_or(0, |s| {
            s.depends_on
                .iter()
                .map(|dep| depth(dep, cat, memo, seen) + 1)
                .max()
                .unwrap_or(0)
        });
        memo.insert(name, d);
        d
    }
    let mut memo = HashMap::new();
    let mut columns: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for name in cat.services.keys() {
        let d = depth(name, cat, &mut memo, &mut BTreeSet::new());
        columns.entry(d).or_default().push(name);
    }
    columns
        .into_values()
        .map(|mut col| {
            col.sort_by_key(|n| (std::cmp::Reverse(cat.services[*n].priority), *n));
            col
        })
        .collect()
}

/// The graph as one `<svg>` element; services in `highlight` are marked.
/// Every text is escaped: service names come from a config file.
pub fn svg(cat: &Catalogue, highlight: &BTreeSet<String>) -> String {
    let columns = layers(cat);
    let mut at: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for (c, col) in columns.iter().enumerate() {
        for (r, name) in col.iter().enumerate() {
            let x = PAD + c as u32 * (BOX_W + GAP_X);
            let y = PAD + r as u32 * (BOX_H + GAP_Y);
            at.insert(name, (x, y));
        }
    }
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let width = PAD * 2 + (columns.len() as u32).max(1) * (BOX_W + GAP_X) - GAP_X;
    let height = PAD * 2 + rows.max(1) * (BOX_H + GAP_Y) - GAP_Y;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="service dependency graph">"#
    );
    out.push_str(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#7a8699"/></marker></defs>"##,
    );
    for (name, svc) in &cat.services {
        let Some(&(x, y)) = at.get(name.as_str()) else {
            continue;
        };
        for dep in &svc.depends_on {
            let Some(&(dx, dy)) = at.get(dep.as_str()) else {
                continue;
            };
            let hot = highlight.contains(name) && highlight.contains(dep);
            let _ = write!(
                out,
                r#"<path class="edge{}" d="M {x1} {y1} C {cx} {y1}, {cx} {y2}, {x2} {y2}" marker-end="url(#arrow)"/>"#,
                if hot { " hot" } else { "" },
                x1 = x,
                y1 = y + BOX_H / 2,
                cx = (x + dx + BOX_W) / 2,
                x2 = dx + BOX_W,
                y2 = dy + BOX_H / 2,
            );
        }
    }
    for (name, &(x, y)) in &at {
        let svc = &cat.services[*name];
        let hot = highlight.contains(*name);
        let _ = write!(
            out,
            r##"<g class="node{hot}" id="svc-{id}"><title>{title}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/><text x="{tx}" y="{ty1}" class="name">{name}</text><text x="{tx}" y="{ty2}" class="meta">P{prio} · RTO {rto}</text></g>"##,
            hot = if hot { " hot" } else { "" },
            id = escape(name),
            title = escape(&format!("{name}: {}", svc.impact)),
            tx = x + 10,
            ty1 = y + 19,
            ty2 = y + 36,
            name = escape(name),
            prio = svc.priority,
            rto = humantime::format_duration(svc.rto),
        );
    }
    out.push_str("</svg>");
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        Catalogue::parse(
            "services:\n  db: {rto: 10m, priority: 9}\n  api: {rto: 5m, depends_on: [db], priority: 5}\n  \
             web: {rto: 5m, depends_on: [api], priority: 1}\n  cache: {rto: 1m, priority: 3}\n  \
             '<x>': {rto: 1m, depends_on: [db]}\n",
            std::path::Path::new("services.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn a_service_sits_right_of_what_it_depends_on() {
        let cat = catalogue();
        let cols = layers(&cat);
        assert_eq!(
            cols,
            vec![vec!["db", "cache"], vec!["api", "<x>"], vec!["web"]]
        );
    }

    #[test]
    fn names_are_escaped_and_the_incident_is_marked() {
        let cat = catalogue();
        let out = svg(&cat, &BTreeSet::from(["api".to_owned(), "db".to_owned()]));
        assert!(out.contains("&lt;x&gt;") && !out.contains("<x>"), "{out}");
        assert_eq!(out.matches(r#"class="node hot""#).count(), 2);
        assert_eq!(out.matches(r#"class="edge hot""#).count(), 1, "api → db");
        assert_eq!(out.matches("<path class=\"edge").count(), 3);
    }
}
