//! Text for Slack messages: escaping and Slack's size limits.
//!
//! Labels, annotations and rule text come from outside. Unescaped, `<!channel>`
//! pings a whole channel and `<https://x|Approve here>` draws a fake link in
//! an approval message, so every such text is escaped before it reaches
//! mrkdwn. Slack refuses a section over 3,000 characters and a message over
//! 50 blocks; a refused message has no buttons, so both are capped here and
//! the rest is left to the API, which the message points to.

/// Slack's limit on a section's text (and a context element's).
pub const SECTION_MAX: usize = 3000;
/// Slack's limit on a section field's text.
pub const FIELD_MAX: usize = 2000;
/// Slack's limit on a header's plain text.
pub const HEADER_MAX: usize = 150;
/// Slack's limit on blocks in one message.
pub const BLOCKS_MAX: usize = 50;

/// The three characters Slack's mrkdwn gives meaning to, as Slack asks them
/// escaped. `&` first, or the other two would be escaped twice.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, the last one `…` when cut. Cuts on a
/// character boundary, and never inside an escape like `&amp;`, which would
/// leave a stray `&` for Slack to interpret.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
}

/// Lines (already escaped) joined under `title`, as many as fit in one
/// section; the rest are counted in a last line that says where to read
/// them all (`more`, e.g. the incident's API path).
pub fn fit_lines(title: &str, lines: &[String], empty: &str, more: &str) -> String {
    if lines.is_empty() {
        return format!("{title}\n{empty}");
    }
    let mut out = title.to_owned();
    for (i, line) in lines.iter().enumerate() {
        let left = lines.len() - i;
        let tail = format!("\n… and {left} more: {more}");
        // Room for this line and, if others follow, the tail naming them.
        let reserve = if left > 1 { tail.chars().count() } else { 0 };
        let room = SECTION_MAX.saturating_sub(out.chars().count() + 1 + reserve);
        let fits = line.chars().count() <= room;
        if !fits && i > 0 {
            out.push_str(&tail);
            return out;
        }
        out.push('\n');
        out.push_str(&truncate(line, room));
        if !fits && left > 1 {
            // A first line too long to fit whole: the others cannot fit.
            out.push_str(&format!("\n… and {} more: {more}", left - 1));
            return out;
        }
    }
    out
}

/// At most [`BLOCKS_MAX`] blocks: the first ones, a note of how many were
/// left out and where to see them, and the last one (which names the
/// incident).
pub fn cap_blocks(mut blocks: Vec<serde_json::Value>, more: &str) -> Vec<serde_json::Value> {
    if blocks.len() <= BLOCKS_MAX {
        return blocks;
    }
    let Some(last) = blocks.pop() else {
        return blocks;
    };
    let dropped = blocks.len() - (BLOCKS_MAX - 2);
    blocks.truncate(BLOCKS_MAX - 2);
    blocks.push(serde_json::json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("… and {dropped} more: {more}")}
    ]}));
    blocks.push(last);
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_slack_interprets() {
        assert_eq!(escape("<!channel>"), "&lt;!channel&gt;");
        assert_eq!(
            escape("<https://x|Approve here>"),
            "&lt;https://x|Approve here&gt;"
        );
        assert_eq!(escape("a & b &amp;"), "a &amp; b &amp;amp;");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn truncation_keeps_the_limit_and_whole_escapes() {
        let t = truncate(&"x".repeat(5000), 3000);
        assert_eq!(t.chars().count(), 3000);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
        // Cut would land inside `&amp;`: the partial escape goes.
        assert_eq!(truncate("abc&amp;def", 6), "abc…");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    #[test]
    fn long_sections_say_how_many_more_and_where() {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("signal {i} {}", "l".repeat(40)))
            .collect();
        let text = fit_lines("*Evidence*", &lines, "–", "GET /api/v1/incidents/inc-1");
        assert!(text.chars().count() <= SECTION_MAX, "{}", text.len());
        let shown = text.lines().filter(|l| l.starts_with("signal")).count();
        assert!(shown > 10 && shown < 500, "{shown}");
        assert!(
            text.ends_with(&format!(
                "… and {} more: GET /api/v1/incidents/inc-1",
                500 - shown
            )),
            "{text}"
        );
        let all = fit_lines("*E*", &lines[..3], "–", "x");
        assert_eq!(all.lines().count(), 4);
        assert!(!all.contains("more"));
        let ellipsis = vec!["wait for it…".to_string(), "next".into()];
        assert_eq!(
            fit_lines("*E*", &ellipsis, "–", "x"),
            "*E*\nwait for it…\nnext",
            "a line that ends in … by itself is not cut"
        );
        assert_eq!(fit_lines("*E*", &[], "–", "x"), "*E*\n–");
    }

    #[test]
    fn one_huge_line_is_cut_and_the_rest_counted() {
        let lines = vec!["y".repeat(10_000), "z".into(), "w".into()];
        let text = fit_lines("*Evidence*", &lines, "–", "inc-1");
        assert!(text.chars().count() <= SECTION_MAX);
        assert!(text.ends_with("… and 2 more: inc-1"), "{text}");
    }

    #[test]
    fn messages_keep_to_fifty_blocks_and_their_last_block() {
        let blocks: Vec<serde_json::Value> = (0..80).map(|i| serde_json::json!({"n": i})).collect();
        let capped = cap_blocks(blocks, "incident inc-1");
        assert_eq!(capped.len(), BLOCKS_MAX);
        assert_eq!(capped[47]["n"], 47);
        assert!(
            capped[48]
                .to_string()
                .contains("… and 31 more: incident inc-1")
        );
        assert_eq!(capped[49]["n"], 79);
        let few: Vec<serde_json::Value> = (0..3).map(|i| serde_json::json!({"n": i})).collect();
        assert_eq!(cap_blocks(few.clone(), "x"), few);
    }
}
