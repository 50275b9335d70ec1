//! CEL conditions, for what count/distinct/alerts/absent cannot say.
//!
//! An expression sees:
//! - `signals`: the group's signals, each `{name, source, status, labels}`
//!   (`status` is `"firing"` or `"resolved"`; a resolved signal stays in the
//!   group for one window);
//! - `group`: the group's labels (the rule's `group_by`);
//! - `count`: the number of signals.
//!
//! It must evaluate to a bool. Example:
//! `signals.exists(s, s.name == "Deploy") && count >= 2`.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};
use serde::Serialize;

use super::cel_shape::Shape;
use crate::signal::{HeldLabels, Labels};

/// What an expression sees of one signal.
#[derive(Debug, Serialize)]
pub struct SignalView<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub status: &'a str,
    pub labels: &'a HeldLabels,
}

/// The standard functions and macros. Building them takes far longer than
/// evaluating a typical condition, and a condition is evaluated on every
/// change of its group: build them once.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

pub struct Condition {
    pub source: String,
    program: Program,
    /// The same condition over the group's tallies, if it has that shape.
    shape: Option<Shape>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl Condition {
    /// Compiles and dry-runs the expression on an empty group, so that a
    /// misspelt variable or a non-boolean result is a load error, not a
    /// silent `false` at 3 a.m.
    pub fn compile(source: &str) -> Result<Condition, String> {
        let program = Program::compile(source)
            .map_err(|e| format!("invalid CEL expression {source:?}: {e}"))?;
        let shape = Shape::of(program.expression());
        let cond = Condition {
            source: source.to_owned(),
            program,
            shape,
        };
        cond.eval(&[], &Labels::new())
            .map_err(|e| format!("CEL expression {source:?}: {e}"))?;
        Ok(cond)
    }

    /// The condition as a [`Shape`] the group's tallies answer, when it
    /// is one; then [`Condition::eval`] is never needed.
    pub fn shape(&self) -> Option<&Shape> {
        self.shape.as_ref()
    }

    pub fn eval(&self, signals: &[SignalView<'_>], group: &Labels) -> Result<bool, String> {
        let mut ctx = Context::with_env(Arc::clone(&STDLIB));
        let list: Vec<Value> = signals
            .iter()
            .map(|s| cel::to_value(s).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let count = list.len() as i64;
        ctx.add_variable_from_value("signals", list);
        let group: BTreeMap<&str, &str> = group
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ctx.add_variable_from_value("group", cel::to_value(group).map_err(|e| e.to_string())?);
        ctx.add_variable_from_value("count", count);
        // The interpreter is third-party code fed label values from
        // outside; a panic in it (an overflow, say) must cost this one
        // evaluation, not the pipeline.
        let run = std::panic::AssertUnwindSafe(|| self.program.execute(&ctx));
        match std::panic::catch_unwind(run) {
            Ok(Ok(Value::Bool(b))) => Ok(b),
            Ok(Ok(other)) => Err(format!("must evaluate to a bool, got {other:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the CEL interpreter panicked on this input".into()),
        }
    }
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

    fn held(labels: &Labels) -> HeldLabels {
        HeldLabels::new(labels, &mut crate::primitives::intern::Interner::default())
    }

    #[test]
    fn evaluates_over_signals_group_and_count() {
        let c = Condition::compile(
            r#"signals.exists(s, s.name == "Deploy") && count >= 2 && group.service == "order""#,
        )
        .unwrap();
        let l1 = labels(&[("service", "order")]);
        let h1 = held(&l1);
        let deploy = SignalView {
            name: "Deploy",
            source: "kafka",
            status: "resolved",
            labels: &h1,
        };
        let alert = SignalView {
            name: "HighErrorRate",
            source: "alertmanager",
            status: "firing",
            labels: &h1,
        };
        assert!(c.eval(&[deploy, alert], &l1).unwrap());
        let alert = SignalView {
            name: "HighErrorRate",
            source: "alertmanager",
            status: "firing",
            labels: &h1,
        };
        assert!(!c.eval(&[alert], &l1).unwrap());
    }

    #[test]
    fn label_access_inside_macros() {
        let c =
            Condition::compile(r#"signals.filter(s, s.labels.severity == "critical").size() >= 1"#)
                .unwrap();
        let l = held(&labels(&[("severity", "critical")]));
        let s = SignalView {
            name: "A",
            source: "alertmanager",
            status: "firing",
            labels: &l,
        };
        assert!(c.eval(&[s], &Labels::new()).unwrap());
    }

    #[test]
    fn load_errors_are_explained() {
        let e = Condition::compile("count >").unwrap_err();
        assert!(e.starts_with("invalid CEL expression"), "{e}");
        let e = Condition::compile("cuont > 1").unwrap_err();
        assert!(e.contains("cuont"), "{e}");
        let e = Condition::compile("count + 1").unwrap_err();
        assert!(e.contains("must evaluate to a bool"), "{e}");
    }

    /// Names and a member count, as a group's tallies.
    struct Counted(Vec<&'static str>);

    impl crate::rules::cel_shape::Tallies for Counted {
        fn members(&self) -> usize {
            self.0.len()
        }
        fn named(&self, name: &str) -> usize {
            self.0.iter().filter(|n| **n == name).count()
        }
    }

    #[test]
    fn shaped_conditions_answer_exactly_as_cel_does() {
        let shaped = [
            r#"signals.exists(s, s.name == "Deploy") && signals.exists(s, s.name != "Deploy")"#,
            r#"!signals.exists(s, s.name == "Deploy") && signals.exists(s, s.name != "Deploy")"#,
            r#"signals.exists(x, "Deploy" == x.name) || count >= 3"#,
            r#"(count > 1 && !(2 <= count)) || size(signals) == 2 || signals.size() != 4"#,
            "true && !false",
        ];
        let groups: Vec<Vec<&'static str>> = vec![
            vec![],
            vec!["Deploy"],
            vec!["HighErrorRate"],
            vec!["Deploy", "HighErrorRate"],
            vec!["Deploy", "Deploy"],
            vec!["A", "B", "C"],
            vec!["Deploy", "A", "B", "C"],
        ];
        let l = Labels::new();
        let h = held(&l);
        for src in shaped {
            let c = Condition::compile(src).unwrap();
            let shape = c.shape().unwrap_or_else(|| panic!("{src} has a shape"));
            for names in &groups {
                let views: Vec<SignalView<'_>> = names
                    .iter()
                    .map(|n| SignalView {
                        name: n,
                        source: "alertmanager",
                        status: "firing",
                        labels: &h,
                    })
                    .collect();
                assert_eq!(
                    shape.eval(&Counted(names.clone())),
                    c.eval(&views, &l).unwrap(),
                    "{src} over {names:?}"
                );
            }
        }
    }

    #[test]
    fn other_conditions_are_left_to_cel() {
        for src in [
            r#"signals.filter(s, s.labels.severity == "critical").size() >= 1"#,
            r#"signals.exists(s, s.status == "firing")"#,
            r#"signals.all(s, s.name == "A")"#,
            "size(group) > 1",
            r#"signals.exists(s, s.name.startsWith("Kube"))"#,
        ] {
            assert!(Condition::compile(src).unwrap().shape().is_none(), "{src}");
        }
    }
}
