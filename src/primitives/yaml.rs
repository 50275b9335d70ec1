//! YAML parse errors as one line of text; callers report the position.

/// serde-saphyr renders a source snippet after the first line of its
/// message; the location is reported separately, so keep only the message.
pub fn message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let msg = first.strip_prefix("error: ").unwrap_or(first).trim();
    // Some messages start with their own "line L column C: ".
    match msg.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains("column") => rest.to_owned(),
        _ => msg.to_owned(),
    }
}
