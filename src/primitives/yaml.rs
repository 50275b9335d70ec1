//! Every YAML file dr-reactor reads (config, catalogue, rules, silences,
//! rule tests) goes through [`from_str`], so their errors have one shape
//! and their line numbers mean the same thing everywhere.

use serde::de::DeserializeOwned;

/// A YAML file that could not be read as `T`: where (1-based; 0 when the
/// parser knows no position) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Parses `text`. A carriage return not followed by a line feed is
/// refused first: YAML counts it as a line break, `grep -n`, `sed` and
/// most diff views do not, so every line number reported after it would
/// point at a different line than the one the operator opens. Such a byte
/// in a file kept in git is corruption (or a classic-Mac editor), never
/// intent.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    if let Some(at) = lone_carriage_return(text) {
        let before = &text[..at];
        let line = before.matches('\n').count() as u64 + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
        return Err(YamlError {
            line,
            column,
            message:
                "carriage return without a line feed: save the file with LF (or CRLF) line endings"
                    .to_owned(),
        });
    }
    serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        YamlError {
            line,
            column,
            message: message(&e),
        }
    })
}

fn lone_carriage_return(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .find(|&(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
        .map(|(i, _)| i)
}

/// serde-saphyr renders a source snippet after the first line of its
/// message; the location is reported separately, so keep only the message.
fn message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let msg = first.strip_prefix("error: ").unwrap_or(first).trim();
    // Some messages start with their own "line L column C: ".
    match msg.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains("column") => rest.to_owned(),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Map = BTreeMap<String, String>;

    #[test]
    fn a_lone_carriage_return_is_refused_where_it_is() {
        // Found by the catalogue and silences fuzz targets: YAML put the
        // error after 47 carriage returns at line 48 of a 3-line file.
        let e = from_str::<Map>("a: b\nc: d\r\re: [").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
        assert!(e.message.contains("carriage return"), "{}", e.message);
    }

    #[test]
    fn the_fuzzers_inputs_are_refused_inside_their_files() {
        for name in ["catalogue-8383155bddfd", "silences-34142790d0ca"] {
            let path = format!("{}/fuzz/crashes/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
            let e = from_str::<serde::de::IgnoredAny>(&text).unwrap_err();
            assert_eq!(e.line, 1, "{name}: {e:?}");
            assert!(e.column >= 1 && e.column as usize <= text.len(), "{e:?}");
        }
    }

    #[test]
    fn crlf_files_parse_and_count_lines_as_editors_do() {
        let m = from_str::<Map>("a: b\r\nc: d\r\n").unwrap();
        assert_eq!(m.get("c").map(String::as_str), Some("d"));
        let e = from_str::<Map>("a: b\r\nc: d\r\ne: [\r\n").unwrap_err();
        assert!(e.line >= 3 && e.line <= 4, "{e:?}");
    }

    #[test]
    fn errors_carry_the_parser_position_without_its_snippet() {
        let e = from_str::<Map>("a: b\nc: [\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        assert!(!e.message.contains('\n') && !e.message.is_empty());
    }
}
