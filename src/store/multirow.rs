//! Multi-row statements: many rows per round trip, in the SQL both
//! backends speak.

use super::Backend;

/// Rows per multi-row statement: far below both backends' limits on bound
/// parameters (up to 11 per row), large enough that round trips stop mattering.
pub(super) const ROWS_PER_STATEMENT: usize = 100;

/// The `n`-th (from 1) of a statement's bound parameters.
pub(super) fn placeholder(backend: Backend, n: usize) -> String {
    placeholder_list(backend, n, 1)
}

/// `(…)` groups of `width` placeholders, one per row, each followed by
/// `fixed` (literal columns). Written into one string: a group commit's
/// statements hold thousands of placeholders, and a string apiece was a
/// tenth of intake's writer's time in a storm.
pub(super) fn placeholder_rows(backend: Backend, rows: usize, width: usize, fixed: &str) -> String {
    let mut sql = String::with_capacity(rows * (width * 6 + fixed.len() + 4));
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_placeholders(&mut sql, backend, r * width + 1, width);
        sql.push_str(fixed);
        sql.push(')');
    }
    sql
}

/// `n` placeholders separated by commas, numbered from `first`: the list of
/// an `IN (…)`.
pub(super) fn placeholder_list(backend: Backend, first: usize, n: usize) -> String {
    let mut sql = String::with_capacity(n * 6);
    push_placeholders(&mut sql, backend, first, n);
    sql
}

/// Appends `n` placeholders numbered from `first`. SQLite gets anonymous
/// `?`: it finds a numbered parameter's name by a linear scan, and sqlx asks
/// for every parameter's name, which made a statement of a thousand
/// parameters cost a million steps.
fn push_placeholders(sql: &mut String, backend: Backend, first: usize, n: usize) {
    use std::fmt::Write;
    for i in first..first + n {
        if i > first {
            sql.push_str(", ");
        }
        match backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => {
                // Writing to a String cannot fail.
                let _ = write!(sql, "${i}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_lists_number_their_placeholders_on_postgres_only() {
        assert_eq!(
            placeholder_rows(Backend::Postgres, 2, 2, ", 1"),
            "($1, $2, 1), ($3, $4, 1)"
        );
        assert_eq!(
            placeholder_rows(Backend::Sqlite, 2, 3, ""),
            "(?, ?, ?), (?, ?, ?)"
        );
        assert_eq!(placeholder_list(Backend::Postgres, 3, 3), "$3, $4, $5");
        assert_eq!(placeholder_list(Backend::Sqlite, 1, 2), "?, ?");
        assert_eq!(placeholder(Backend::Postgres, 7), "$7");
        assert_eq!(placeholder(Backend::Sqlite, 7), "?");
    }
}
