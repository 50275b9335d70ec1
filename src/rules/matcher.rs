//! Label matchers in Alertmanager's syntax: `name="value"`, `name!=value`,
//! `name=~"regex"`, `name!~regex`. Regexes are anchored at both ends, as in
//! Alertmanager and Prometheus, so `zone=~"a|b"` cannot match `ab`.

use std::fmt;

use regex::Regex;

use crate::signal::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    pattern: Option<Pattern>,
}

/// A compiled `=~`/`!~` value. Most matchers in alerting rules are
/// alternations of literals (`critical|page`) or literal prefixes
/// (`kube-.*`); those are string comparisons, several times cheaper than a
/// regex search on the hot path. Anything else is a real regex.
#[derive(Debug, Clone)]
enum Pattern {
    Alternatives(Vec<Alt>),
    Regex(Regex),
}

#[derive(Debug, Clone)]
enum Alt {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn new(value: &str, regex: Regex) -> Pattern {
        let literal = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | ' '))
        };
        let alts: Option<Vec<Alt>> = value
            .split('|')
            .map(|a| match a.strip_suffix(".*") {
                Some(p) if literal(p) => Some(Alt::Prefix(p.to_owned())),
                _ if literal(a) => Some(Alt::Exact(a.to_owned())),
                _ => None,
            })
            .collect();
        match alts {
            Some(alts) => Pattern::Alternatives(alts),
            None => Pattern::Regex(regex),
        }
    }

    fn is_match(&self, v: &str) -> bool {
        match self {
            Pattern::Alternatives(alts) => alts.iter().any(|a| match a {
                Alt::Exact(e) => v == e,
                Alt::Prefix(p) => v.starts_with(p.as_str()),
            }),
            Pattern::Regex(re) => re.is_match(v),
        }
    }
}

impl Matcher {
    /// Parses one matcher; the error says what was expected.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("matcher {text:?} has no operator; expected name=value, name!=value, name=~regex or name!~regex"))?;
        let name = &text[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "matcher {text:?}: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) before the operator"
            ));
        }
        let rest = text[name_end..].trim_start();
        let (op, rest) = [
            ("=~", Op::Re),
            ("!~", Op::NotRe),
            ("!=", Op::Ne),
            ("=", Op::Eq),
        ]
        .into_iter()
        .find_map(|(tok, op)| rest.strip_prefix(tok).map(|r| (op, r)))
        .ok_or_else(|| format!("matcher {text:?}: expected one of =, !=, =~, !~ after {name:?}"))?;
        let value = unquote(rest.trim()).map_err(|e| format!("matcher {text:?}: {e}"))?;
        Matcher::new(name, op, &value)
    }

    pub fn new(name: &str, op: Op, value: &str) -> Result<Matcher, String> {
        let pattern = match op {
            Op::Re | Op::NotRe => {
                let regex = Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    // The syntax error's own text spans several lines with a
                    // caret drawing; its last line says what is wrong.
                    let text = e.to_string();
                    let why = text.lines().last().unwrap_or_default();
                    let why = why.strip_prefix("error: ").unwrap_or(why);
                    format!("invalid regex {value:?} for label {name:?}: {why}")
                })?;
                Some(Pattern::new(value, regex))
            }
            Op::Eq | Op::Ne => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            pattern,
        })
    }

    /// A missing label matches as the empty string, as in Alertmanager:
    /// `zone!=""` means "has a zone".
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }

    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.pattern) {
            (Op::Eq, _) => v == self.value,
            (Op::Ne, _) => v != self.value,
            (Op::Re, Some(p)) => p.is_match(v),
            (Op::NotRe, Some(p)) => !p.is_match(v),
            (Op::Re | Op::NotRe, None) => unreachable!("pattern compiled in new()"),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        return Ok(s.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "unterminated quoted value".to_owned())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(c @ ('"' | '\\')) => out.push(c),
                // Keep other escapes for the regex engine (`\d`, `\.`).
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("value ends in a lone backslash".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn all_operators() {
        let l = labels(&[("zone", "ap-northeast-2a"), ("severity", "critical")]);
        assert!(
            Matcher::parse(r#"zone="ap-northeast-2a""#)
                .unwrap()
                .matches(&l)
        );
        assert!(Matcher::parse("severity=critical").unwrap().matches(&l));
        assert!(Matcher::parse(r#"severity!="none""#).unwrap().matches(&l));
        assert!(Matcher::parse(r#"zone=~"ap-.*""#).unwrap().matches(&l));
        assert!(Matcher::parse(r#"zone!~"us-.*""#).unwrap().matches(&l));
        assert!(
            !Matcher::parse(r#"zone=~"ap""#).unwrap().matches(&l),
            "anchored"
        );
    }

    #[test]
    fn literal_fast_paths_agree_with_the_regex() {
        let values = [
            "",
            "critical",
            "page",
            "critical2",
            "kube-system",
            "kube-",
            "kube",
            "xkube-a",
            "a.b",
        ];
        for pattern in [
            "critical|page",
            "kube-.*",
            "kube-.*|default",
            "a.b",
            "crit.*al",
            "(critical)",
        ] {
            let m = Matcher::parse(&format!("x=~\"{pattern}\"")).unwrap();
            let re = Regex::new(&format!("^(?:{pattern})$")).unwrap();
            for v in values {
                assert_eq!(m.matches_value(v), re.is_match(v), "{pattern} on {v:?}");
            }
        }
    }

    #[test]
    fn missing_label_is_empty() {
        let l = labels(&[("a", "b")]);
        assert!(!Matcher::parse(r#"zone!="""#).unwrap().matches(&l));
        assert!(Matcher::parse(r#"zone="""#).unwrap().matches(&l));
    }

    #[test]
    fn escapes_and_spacing() {
        let m = Matcher::parse(r#" summary = "say \"hi\"" "#).unwrap();
        assert_eq!(m.value, r#"say "hi""#);
        let m = Matcher::parse(r#"ip=~"10\.0\.\d+""#).unwrap();
        assert!(m.matches(&labels(&[("ip", "10.0.7")])));
        assert!(!m.matches(&labels(&[("ip", "10x0.7")])));
    }

    #[test]
    fn errors_say_what_was_expected() {
        assert!(Matcher::parse("zone").unwrap_err().contains("no operator"));
        assert!(
            Matcher::parse("zone>3")
                .unwrap_err()
                .contains("expected one of")
        );
        assert!(
            Matcher::parse(r#"zone=~"(""#)
                .unwrap_err()
                .contains("invalid regex")
        );
        assert!(
            Matcher::parse(r#"zone="x"#)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            Matcher::parse(r#"="x""#)
                .unwrap_err()
                .contains("label name")
        );
    }
}
