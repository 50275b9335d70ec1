//! Multi-row statements: many rows per round trip, in the SQL both
//! backends speak.

use super::Backend;

/// Rows per multi-row statement: far below both backends' limits on bound
/// parameters (up to 11 per row), large enough that round trips stop mattering.
pub(super) const ROWS_PER_STATEMENT: usize = 100;

/// The `n`-th (from 1) of a statement's bound parameters. SQLite gets
/// anonymous `?`: it finds a numbered parameter's name by a linear scan, and
/// sqlx asks for every parameter's name, which made a statement of a
/// thousand parameters cost a million steps.
pub(super) fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    }
}

/// `(…)` groups of `width` placeholders, one per row, each followed by
/// `fixed` (literal columns).
pub(super) fn placeholder_rows(backend: Backend, rows: usize, width: usize, fixed: &str) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=width)
                .map(|c| placeholder(backend, r * width + c))
                .collect();
            format!("({}{fixed})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `n` placeholders separated by commas, numbered from `first`: the list of
/// an `IN (…)`.
pub(super) fn placeholder_list(backend: Backend, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| placeholder(backend, i))
        .collect::<Vec<_>>()
        .join(", ")
}
