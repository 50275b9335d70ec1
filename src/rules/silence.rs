//! Silences for planned work, in Alertmanager's model: label matchers and a
//! time window. A silence does not drop signals (they are still recorded);
//! it stops a matching incident from acting when it would be admitted.
//!
//! They come from the API/CLI (kept in the store, so every replica and a
//! restart see them) or from a YAML file in git (`silences.file`), loaded
//! with the rules, so a bad file is rejected on reload like a bad rule.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::matcher::Matcher;
use super::spec::{Errs, RuleError, RuleErrors};
use crate::signal::Labels;

/// Bounds on what one silence may hold, so a request cannot make every
/// admission check do unbounded work.
pub const MAX_MATCHERS: usize = 32;
pub const MAX_TEXT: usize = 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Silence {
    pub id: String,
    /// Alertmanager matcher text (`zone="a"`), as given; compiled again
    /// when checked, since the store holds text.
    pub matchers: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    /// `api` (the store) or `file`.
    pub source: String,
    /// Who ended it early through the API, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SilenceError {
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    #[error("at most {MAX_MATCHERS} matchers")]
    TooManyMatchers,
    #[error("{1}")]
    Matcher(String, String),
    #[error("every matcher matches a missing label; at least one must name what to silence")]
    MatchesEverything,
    #[error("ends_at must be after starts_at")]
    Window,
    #[error("{0} longer than {MAX_TEXT} characters")]
    TooLong(&'static str),
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

impl Silence {
    /// Checks what an operator or a file gave: matchers parse, the window
    /// is not empty, the texts are bounded.
    pub fn check(&self) -> Result<(), SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if self.matchers.len() > MAX_MATCHERS {
            return Err(SilenceError::TooManyMatchers);
        }
        let mut compiled = Vec::with_capacity(self.matchers.len());
        for m in &self.matchers {
            compiled.push(Matcher::parse(m).map_err(|e| SilenceError::Matcher(m.clone(), e))?);
        }
        // As Alertmanager: `zone!="a"` alone or `zone=~".*"` would silence
        // every incident, which is never planned work.
        if compiled.iter().all(|m| m.matches_value("")) {
            return Err(SilenceError::MatchesEverything);
        }
        if self.ends_at <= self.starts_at {
            return Err(SilenceError::Window);
        }
        for (what, text) in [
            ("id", &self.id),
            ("created_by", &self.created_by),
            ("comment", &self.comment),
        ] {
            if text.len() > MAX_TEXT {
                return Err(SilenceError::TooLong(what));
            }
        }
        for (what, text) in [("id", &self.id), ("created_by", &self.created_by)] {
            if text.trim().is_empty() {
                return Err(SilenceError::Empty(what));
            }
        }
        Ok(())
    }

    pub fn active_at(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }

    /// Whether every matcher matches `labels` (an incident's group labels).
    /// A matcher that no longer parses matches nothing: a silence that
    /// cannot be read must not silence everything.
    pub fn matches(&self, labels: &Labels) -> bool {
        !self.matchers.is_empty()
            && self
                .matchers
                .iter()
                .all(|m| Matcher::parse(m).is_ok_and(|m| m.matches(labels)))
    }

    /// The silence in force at `at` for `labels`, if any: the one that ends
    /// last, so the reason names the longest quiet.
    pub fn find<'a>(
        silences: impl IntoIterator<Item = &'a Silence>,
        labels: &Labels,
        at: DateTime<Utc>,
    ) -> Option<&'a Silence> {
        silences
            .into_iter()
            .filter(|s| s.active_at(at) && s.matches(labels))
            .max_by_key(|s| s.ends_at)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceSpec {
    id: Spanned<String>,
    matchers: Vec<Spanned<String>>,
    starts_at: Spanned<String>,
    ends_at: Spanned<String>,
    created_by: Spanned<String>,
    #[serde(default)]
    comment: String,
}

fn time(s: &Spanned<String>, errs: &mut Errs<'_>) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(&s.value) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            errs.at(s, format!("{:?}: not an RFC 3339 time: {e}", s.value));
            None
        }
    }
}

/// Loads the silences file (a YAML list). Every problem is reported with
/// its file and line, as for rules.
pub fn load_file(path: &Path) -> Result<Vec<Silence>, RuleErrors> {
    let at = |line, column, message| {
        RuleErrors(vec![RuleError {
            file: path.to_owned(),
            line,
            column,
            message,
        }])
    };
    let text = std::fs::read_to_string(path).map_err(|e| at(0, 0, format!("cannot read: {e}")))?;
    // An empty file is no silences, not an error: the usual state between
    // two maintenance windows.
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    let parsed = if blank {
        Ok(Vec::new())
    } else {
        crate::primitives::yaml::from_str::<Vec<SilenceSpec>>(&text)
    };
    let specs = parsed.map_err(|e| at(e.line, e.column, e.message))?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut errs = Errs {
        file: path,
        out: &mut errors,
    };
    let mut ids = std::collections::HashSet::new();
    for spec in specs {
        if !ids.insert(spec.id.value.clone()) {
            errs.at(
                &spec.id,
                format!("duplicate silence id {:?}", spec.id.value),
            );
            continue;
        }
        for m in &spec.matchers {
            if let Err(e) = Matcher::parse(&m.value) {
                errs.at(m, e);
            }
        }
        let (Some(starts_at), Some(ends_at)) = (
            time(&spec.starts_at, &mut errs),
            time(&spec.ends_at, &mut errs),
        ) else {
            continue;
        };
        let silence = Silence {
            id: spec.id.value.clone(),
            matchers: spec.matchers.iter().map(|m| m.value.clone()).collect(),
            starts_at,
            ends_at,
            created_by: spec.created_by.value.clone(),
            comment: spec.comment,
            source: "file".to_owned(),
            expired_by: None,
        };
        match silence.check() {
            Ok(()) => out.push(silence),
            // Matcher errors were reported at their own line above.
            Err(SilenceError::Matcher(..)) => {}
            Err(e) => errs.at(&spec.id, e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(RuleErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(matchers: &[&str]) -> Silence {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        Silence {
            id: "s1".into(),
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: t("2026-01-01T10:00:00Z"),
            ends_at: t("2026-01-01T12:00:00Z"),
            created_by: "alice".into(),
            comment: "planned".into(),
            source: "api".into(),
            expired_by: None,
        }
    }

    #[test]
    fn matches_all_matchers_within_its_window() {
        let s = silence(&[r#"zone="a""#, r#"region=~"eu-.*""#]);
        let labels: Labels = [("zone", "a"), ("region", "eu-west-1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(s.matches(&labels));
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(Silence::find([&s], &labels, at("2026-01-01T11:00:00Z")).is_some());
        assert!(Silence::find([&s], &labels, at("2026-01-01T12:00:00Z")).is_none());
        assert!(Silence::find([&s], &labels, at("2026-01-01T09:59:59Z")).is_none());
        let other: Labels = [("zone".to_owned(), "b".to_owned())].into();
        assert!(!s.matches(&other));
    }

    #[test]
    fn check_refuses_bad_matchers_and_windows() {
        assert_eq!(silence(&[]).check(), Err(SilenceError::NoMatchers));
        assert!(matches!(
            silence(&["zone~a"]).check(),
            Err(SilenceError::Matcher(..))
        ));
        assert_eq!(
            silence(&[r#"zone!="a""#]).check(),
            Err(SilenceError::MatchesEverything)
        );
        let mut s = silence(&[r#"zone="a""#]);
        s.ends_at = s.starts_at;
        assert_eq!(s.check(), Err(SilenceError::Window));
    }
}
