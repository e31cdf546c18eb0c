//! PostgreSQL's own account of a phase, statement by statement, from `pg_stat_statements`:
//! which statements a request runs, how often, how long each executes and how much WAL it
//! writes. The CPU columns say how much PostgreSQL costs; this says where. It needs a server
//! that preloads the module (`bench/postgres-with-statements` starts one on loopback); on any
//! other server the run has no statement table and is otherwise the same.

use anyhow::Context as _;
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};

/// One statement's share of a phase. Statements inside the session functions are counted
/// on their own too (`track = all`), so nested rows overlap their caller's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatementCost {
    /// Normalised text (`$1` for constants), whitespace collapsed.
    pub query: String,
    /// Run by the client itself, not from inside a function.
    pub top_level: bool,
    pub calls: i64,
    pub rows: i64,
    pub exec_ms: f64,
    pub wal_records: i64,
    pub wal_bytes: f64,
}

/// A connection to the run's database that reads (and resets) its statement counters.
pub struct Statements {
    conn: PgConnection,
}

/// Rows a phase's account keeps: the statements that took the most execution time.
const KEEP: i64 = 12;

impl Statements {
    /// Connects to `database_url` and creates the extension in that (throwaway) database;
    /// `None` when the server does not preload `pg_stat_statements`.
    pub async fn connect(database_url: &str) -> anyhow::Result<Option<Self>> {
        let mut conn = PgConnection::connect(database_url)
            .await
            .context("connecting to the benchmark database")?;
        let preloaded: bool = sqlx::query_scalar(
            "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'",
        )
        .fetch_one(&mut conn)
        .await?;
        if !preloaded {
            return Ok(None);
        }
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await
            .context("creating pg_stat_statements")?;
        Ok(Some(Self { conn }))
    }

    /// Zeroes this database's counters (the start of a phase).
    pub async fn reset(&mut self) -> anyhow::Result<()> {
        sqlx::query(
            "SELECT pg_stat_statements_reset(0, \
             (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
        )
        .execute(&mut self.conn)
        .await?;
        Ok(())
    }

    /// This database's statements since the last reset, most execution time first, the
    /// benchmark's own reads left out.
    pub async fn read(&mut self) -> anyhow::Result<Vec<StatementCost>> {
        let rows: Vec<(String, bool, i64, i64, f64, i64, f64)> = sqlx::query_as(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), toplevel, calls, rows, \
             total_exec_time, wal_records, wal_bytes::float8 \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND query NOT LIKE '%pg_stat_statements%' \
             ORDER BY total_exec_time DESC LIMIT $1",
        )
        .bind(KEEP)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(query, top_level, calls, rows, exec_ms, wal_records, wal_bytes)| StatementCost {
                    query,
                    top_level,
                    calls,
                    rows,
                    exec_ms,
                    wal_records,
                    wal_bytes,
                },
            )
            .collect())
    }
}

/// Adds a later phase's statements to `into`, matching by text and nesting.
pub fn merge(into: &mut Vec<StatementCost>, other: &[StatementCost]) {
    for s in other {
        match into
            .iter_mut()
            .find(|x| x.query == s.query && x.top_level == s.top_level)
        {
            Some(x) => {
                x.calls += s.calls;
                x.rows += s.rows;
                x.exec_ms += s.exec_ms;
                x.wal_records += s.wal_records;
                x.wal_bytes += s.wal_bytes;
            }
            None => into.push(s.clone()),
        }
    }
    into.sort_by(|a, b| b.exec_ms.total_cmp(&a.exec_ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(query: &str, calls: i64, exec_ms: f64) -> StatementCost {
        StatementCost {
            query: query.into(),
            top_level: true,
            calls,
            rows: calls,
            exec_ms,
            wal_records: 2 * calls,
            wal_bytes: 100.0 * calls as f64,
        }
    }

    #[test]
    fn phases_add_up_by_statement_and_stay_sorted_by_time() {
        let mut all = vec![cost("SELECT a", 10, 5.0), cost("INSERT b", 4, 2.0)];
        merge(
            &mut all,
            &[cost("INSERT b", 6, 4.0), cost("UPDATE c", 1, 0.5)],
        );
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].query, "INSERT b");
        assert_eq!((all[0].calls, all[0].wal_records), (10, 20));
        assert_eq!(all[1].query, "SELECT a");
        assert_eq!(all[2].query, "UPDATE c");
    }

    #[test]
    fn a_nested_run_of_the_same_text_is_its_own_row() {
        let mut all = vec![cost("SELECT a", 1, 1.0)];
        let mut nested = cost("SELECT a", 1, 1.0);
        nested.top_level = false;
        merge(&mut all, &[nested]);
        assert_eq!(all.len(), 2);
    }
}
