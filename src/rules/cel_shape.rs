//! CEL conditions the engine's running tallies can answer without CEL.
//!
//! A CEL condition sees every signal of its group, so evaluating it costs
//! time in proportion to the group: in an alert storm a service's group
//! holds thousands of pods, and each new alert would pay for all of them.
//! The common shapes only ask about names and the size of the group:
//!
//! - `signals.exists(s, s.name == "X")` and `… s.name != "X"`;
//! - `count` (or `size(signals)`, `signals.size()`) compared with a number;
//! - `true`, `false`, and `!`, `&&`, `||` (and parentheses) over those.
//!
//! Such an expression is compiled from CEL's own syntax tree into a
//! [`Shape`], answered from the group's name tally and member count in time
//! independent of the group's size, with exactly CEL's result: names are
//! always strings and counts integers, so none of these can error. Any other
//! expression is left to CEL.

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, operators};

/// A comparison of the group's size with a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    fn of(op: &str) -> Option<Cmp> {
        Some(match op {
            operators::LESS => Cmp::Lt,
            operators::LESS_EQUALS => Cmp::Le,
            operators::GREATER => Cmp::Gt,
            operators::GREATER_EQUALS => Cmp::Ge,
            operators::EQUALS => Cmp::Eq,
            operators::NOT_EQUALS => Cmp::Ne,
            _ => return None,
        })
    }

    /// `n op count` is `count (op mirrored) n`.
    fn mirrored(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            other => other,
        }
    }

    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Const(bool),
    /// Some signal is named `name` (`eq`), or some signal is not (`!eq`).
    NameExists {
        name: String,
        eq: bool,
    },
    Count(Cmp, i64),
    Not(Box<Shape>),
    And(Box<Shape>, Box<Shape>),
    Or(Box<Shape>, Box<Shape>),
}

/// What a shape is answered from: the group's member count, and how many
/// of its members carry a name.
pub trait Tallies {
    fn members(&self) -> usize;
    fn named(&self, name: &str) -> usize;
}

impl Shape {
    /// The shape of a whole expression, if it has one.
    pub fn of(expr: &IdedExpr) -> Option<Shape> {
        match &expr.expr {
            Expr::Literal(LiteralValue::Boolean(b)) => Some(Shape::Const(*b.inner())),
            Expr::Call(call) => Shape::call(call),
            Expr::Comprehension(c) => {
                // `exists` expands to: init false; step `@result || pred`;
                // result `@result`, over `signals`.
                let over_signals = matches!(&c.iter_range.expr, Expr::Ident(v) if v == "signals");
                let init_false = matches!(&c.accu_init.expr, Expr::Literal(LiteralValue::Boolean(b)) if !*b.inner());
                let result_is_accu = matches!(&c.result.expr, Expr::Ident(v) if *v == c.accu_var);
                let Expr::Call(step) = &c.loop_step.expr else {
                    return None;
                };
                if !(over_signals && init_false && result_is_accu && c.iter_var2.is_none())
                    || step.func_name != operators::LOGICAL_OR
                    || step.args.len() != 2
                    || !matches!(&step.args[0].expr, Expr::Ident(v) if *v == c.accu_var)
                {
                    return None;
                }
                name_predicate(&step.args[1], &c.iter_var)
            }
            _ => None,
        }
    }

    fn call(call: &CallExpr) -> Option<Shape> {
        let args = &call.args;
        match (call.func_name.as_str(), args.len(), &call.target) {
            (operators::LOGICAL_NOT, 1, None) => Some(Shape::Not(Box::new(Shape::of(&args[0])?))),
            (operators::LOGICAL_AND, 2, None) => Some(Shape::And(
                Box::new(Shape::of(&args[0])?),
                Box::new(Shape::of(&args[1])?),
            )),
            (operators::LOGICAL_OR, 2, None) => Some(Shape::Or(
                Box::new(Shape::of(&args[0])?),
                Box::new(Shape::of(&args[1])?),
            )),
            (op, 2, None) => {
                let cmp = Cmp::of(op)?;
                match (
                    is_count(&args[0]),
                    int(&args[1]),
                    int(&args[0]),
                    is_count(&args[1]),
                ) {
                    (true, Some(n), _, _) => Some(Shape::Count(cmp, n)),
                    (_, _, Some(n), true) => Some(Shape::Count(cmp.mirrored(), n)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    pub fn eval(&self, t: &impl Tallies) -> bool {
        match self {
            Shape::Const(b) => *b,
            Shape::NameExists { name, eq: true } => t.named(name) > 0,
            Shape::NameExists { name, eq: false } => t.members() > t.named(name),
            Shape::Count(cmp, n) => cmp.holds(t.members() as i64, *n),
            Shape::Not(s) => !s.eval(t),
            Shape::And(a, b) => a.eval(t) && b.eval(t),
            Shape::Or(a, b) => a.eval(t) || b.eval(t),
        }
    }

    /// Whether the shape reads names (the group must tally them).
    pub fn reads_names(&self) -> bool {
        match self {
            Shape::NameExists { .. } => true,
            Shape::Const(_) | Shape::Count(..) => false,
            Shape::Not(s) => s.reads_names(),
            Shape::And(a, b) | Shape::Or(a, b) => a.reads_names() || b.reads_names(),
        }
    }
}

/// `v.name == "X"` or `v.name != "X"` (either side), `v` the loop variable.
fn name_predicate(pred: &IdedExpr, var: &str) -> Option<Shape> {
    let Expr::Call(call) = &pred.expr else {
        return None;
    };
    let eq = match call.func_name.as_str() {
        operators::EQUALS => true,
        operators::NOT_EQUALS => false,
        _ => return None,
    };
    if call.args.len() != 2 || call.target.is_some() {
        return None;
    }
    let name_of = |e: &IdedExpr| match &e.expr {
        Expr::Select(s) if !s.test && s.field == "name" => {
            matches!(&s.operand.expr, Expr::Ident(v) if v == var)
        }
        _ => false,
    };
    let text = |e: &IdedExpr| match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_owned()),
        _ => None,
    };
    let name = match (name_of(&call.args[0]), name_of(&call.args[1])) {
        (true, false) => text(&call.args[1])?,
        (false, true) => text(&call.args[0])?,
        _ => return None,
    };
    Some(Shape::NameExists { name, eq })
}

/// `count`, `size(signals)` or `signals.size()`.
fn is_count(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Ident(v) => v == "count",
        Expr::Call(c) if c.func_name == "size" => {
            let arg: Option<&IdedExpr> = match (&c.target, c.args.as_slice()) {
                (None, [a]) => Some(a),
                (Some(t), []) => Some(t),
                _ => None,
            };
            arg.is_some_and(|a| matches!(&a.expr, Expr::Ident(v) if v == "signals"))
        }
        _ => false,
    }
}

fn int(e: &IdedExpr) -> Option<i64> {
    match &e.expr {
        Expr::Literal(LiteralValue::Int(i)) => Some(*i.inner()),
        _ => None,
    }
}
