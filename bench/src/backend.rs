//! The stores a run uses: a SQLite file in a fresh directory, or a fresh PostgreSQL database
//! (dropped afterwards) with a Redis key prefix of its own.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::server::Stores;
use crate::statements::Statements;

/// One backend's stores and what to clean up.
pub struct Backend {
    pub name: &'static str,
    pub dir: PathBuf,
    pub stores: Stores,
    postgres: Option<Postgres>,
}

struct Postgres {
    admin: PgConnection,
    database: String,
}

impl Backend {
    /// SQLite in a new directory under `work`.
    pub fn sqlite(work: &Path, run: &str) -> anyhow::Result<Self> {
        let dir = work.join(format!("sqlite-{run}"));
        std::fs::create_dir_all(&dir)?;
        let database_url = format!("sqlite://{}/bench.db", dir.display());
        Ok(Self {
            name: "sqlite",
            dir,
            stores: Stores {
                database_url,
                redis: None,
            },
            postgres: None,
        })
    }

    /// A fresh database `aidlc_bench_<pid>_<n>` on the server of `admin_url`, and Redis.
    pub async fn postgres(
        work: &Path,
        run: &str,
        admin_url: &str,
        redis_url: &str,
    ) -> anyhow::Result<Self> {
        let dir = work.join(format!("postgres-{run}"));
        std::fs::create_dir_all(&dir)?;
        let mut admin = PgConnection::connect(admin_url).await.with_context(|| {
            format!(
                "connecting to PostgreSQL at {}",
                crate::cli::redact(admin_url)
            )
        })?;
        let database = format!("aidlc_bench_{}_{run}", std::process::id());
        sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
            .execute(&mut admin)
            .await
            .context("creating the benchmark database")?;
        let database_url = with_database(admin_url, &database);
        Ok(Self {
            name: "postgres",
            dir,
            stores: Stores {
                database_url,
                redis: Some((
                    redis_url.to_owned(),
                    format!("aidlc-bench:{}:{run}:", std::process::id()),
                )),
            },
            postgres: Some(Postgres { admin, database }),
        })
    }

    /// What the titles of this database's PostgreSQL backends contain (` <database> `).
    pub fn postgres_needle(&self) -> Option<String> {
        self.postgres.as_ref().map(|p| format!(" {} ", p.database))
    }

    /// Connections open to this database (`pg_stat_activity`); `None` on SQLite.
    pub async fn database_connections(&mut self) -> Option<i64> {
        let pg = self.postgres.as_mut()?;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&pg.database)
            .fetch_one(&mut pg.admin)
            .await
            .ok()
    }

    /// The statement counters of this run's database, where the server keeps them; `None`
    /// on SQLite or a server without `pg_stat_statements` preloaded.
    pub async fn statements(&self) -> anyhow::Result<Option<Statements>> {
        match &self.postgres {
            Some(_) => Statements::connect(&self.stores.database_url).await,
            None => Ok(None),
        }
    }

    /// The PostgreSQL server's version, for the report.
    pub async fn server_version(&mut self) -> Option<String> {
        let pg = self.postgres.as_mut()?;
        sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&mut pg.admin)
            .await
            .ok()
    }

    /// Drops the database and removes the directory. (Redis keys expire by themselves: every
    /// key the service writes has a TTL.)
    pub async fn clean_up(self) {
        if let Some(mut pg) = self.postgres {
            let drop = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, pg.database);
            if let Err(e) = sqlx::query(AssertSqlSafe(drop))
                .execute(&mut pg.admin)
                .await
            {
                eprintln!("dropping {}: {e}", pg.database);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `admin_url` with its database name replaced by `database`.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1", "b"),
            "postgres://u@127.0.0.1/b"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1/x?sslmode=disable", "b"),
            "postgres://u@127.0.0.1/b?sslmode=disable"
        );
    }
}
