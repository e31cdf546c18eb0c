//! A fresh store per test: a SQLite file, or a PostgreSQL database (and a Redis key prefix) on
//! the servers the suite started.

use std::path::PathBuf;

use sqlx::{AssertSqlSafe, Connection};
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use super::at_rest::SealedRow;
use super::backend::Backend;
use super::proxy::TcpProxy;
use super::servers;
use super::servers::postgres::Postgres;

/// One outbox row, read directly.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// The template.
    pub kind: String,
    /// The address.
    pub recipient: String,
    /// The greeting's name.
    pub name: Option<String>,
    /// The language.
    pub locale: String,
    /// The sealed code (None once sent or expired, or for mail without a code).
    pub payload: Option<Vec<u8>>,
    /// The sealing key's name.
    pub key_id: Option<String>,
    /// queued, sending, sent, dead or expired.
    pub status: String,
    /// Sends tried.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// One audit row, every column as text.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthEventRow {
    /// Row id.
    pub id: String,
    /// The account's id (hex without dashes on SQLite), if known.
    pub user_id: Option<String>,
    /// What happened.
    pub event: String,
    /// success or failure.
    pub outcome: String,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// When.
    pub created_at: String,
}

impl AuthEventRow {
    /// Every column joined, for searching.
    pub fn raw(&self) -> String {
        [
            Some(self.id.as_str()),
            self.user_id.as_deref(),
            Some(self.event.as_str()),
            Some(self.outcome.as_str()),
            self.ip.as_deref(),
            self.user_agent.as_deref(),
            self.request_id.as_deref(),
            Some(self.created_at.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("|")
    }
}

/// A time as the app's SQLite rows hold it (fixed-width RFC 3339, so text order is time order).
fn sqlite_time(t: OffsetDateTime) -> String {
    let fixed =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fixed)
        .expect("formatting a time")
}

/// Runs one query directly against a [`TestDatabase`], written once for both backends (the
/// twin of the service's `sql!`): opens a connection of the database's kind, binds it to
/// `conn` for `body`, closes it and gives `body`'s value:
/// `on_connection!(self, |conn| sqlx::query(sql).execute(&mut conn).await.expect(sql))`.
/// With `let v = (sqlite: a, postgres: b)` before the closure, `v` is `a` on SQLite and `b` on
/// PostgreSQL in `body` (a time as each stores it, a statement in each dialect).
macro_rules! on_connection {
    ($db:expr, |$conn:ident| $body:expr) => {
        on_connection!($db, let _unused = (sqlite: (), postgres: ()), |$conn| $body)
    };
    (
        $db:expr,
        let $var:ident = (sqlite: $sqlite:expr, postgres: $postgres:expr),
        |$conn:ident| $body:expr
    ) => {
        match $db.backend {
            Backend::Sqlite => {
                let $var = $sqlite;
                let mut $conn = $db.sqlite().await;
                let value = $body;
                let _ = $conn.close().await;
                value
            }
            Backend::Postgres | Backend::PostgresRedis => {
                let $var = $postgres;
                let mut $conn = $db.postgres().await;
                let value = $body;
                let _ = $conn.close().await;
                value
            }
        }
    };
}

/// A database (and Redis prefix) created for one test, removed when its last app stops.
pub struct TestDatabase {
    backend: Backend,
    /// The real database URL (apps may reach it through a proxy instead).
    pub direct_url: String,
    /// The Redis key prefix (empty without Redis).
    pub redis_prefix: String,
    pg_name: Option<String>,
    /// The PostgreSQL server `pg_name` is on.
    server: Option<&'static Postgres>,
    sqlite_dir: Option<PathBuf>,
}

impl TestDatabase {
    /// Creates the store for `backend`: a SQLite file in the run's directory, or a database on
    /// the suite's PostgreSQL (and, with Redis, a key prefix of its own).
    pub async fn create(backend: Backend) -> Self {
        if backend.is_postgres() {
            return Self::create_on(backend, servers::postgres()).await;
        }
        let id = Uuid::new_v4().simple().to_string();
        // Under the run's directory, so a killed run leaves no file behind.
        let dir = servers::run_dir().join(format!("sqlite_{id}"));
        std::fs::create_dir_all(&dir).expect("creating the test database directory");
        Self {
            backend,
            direct_url: format!("sqlite://{}/test.db", dir.display()),
            redis_prefix: String::new(),
            pg_name: None,
            server: None,
            sqlite_dir: Some(dir),
        }
    }

    /// A database on `postgres` (e.g. the TLS-only cluster) for a PostgreSQL `backend`.
    pub async fn create_on(backend: Backend, postgres: &'static Postgres) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let name = format!("aidlc_test_{id}");
        let mut admin = sqlx::PgConnection::connect(&postgres.admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to PostgreSQL at {}: {e}", postgres.addr));
        sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        let _ = admin.close().await;
        Self {
            backend,
            direct_url: postgres.database_url(&name),
            redis_prefix: if backend.has_redis() {
                format!("test:{id}:")
            } else {
                String::new()
            },
            pg_name: Some(name),
            server: Some(postgres),
            sqlite_dir: None,
        }
    }

    /// The URL an app reaching PostgreSQL through `proxy` uses.
    pub fn url_through(&self, proxy: &TcpProxy) -> String {
        let name = self
            .pg_name
            .as_deref()
            .expect("only PostgreSQL databases can be proxied");
        self.server
            .unwrap_or_else(servers::postgres)
            .database_url_via(name, proxy.port)
    }

    /// `SELECT count(*) FROM users`, read directly (not through any proxy).
    pub async fn count_users(&self) -> i64 {
        self.scalar_i64("SELECT count(*) FROM users").await
    }

    /// Runs a query returning one integer, directly against the test database.
    pub async fn scalar_i64(&self, sql: &'static str) -> i64 {
        on_connection!(self, |conn| sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect(sql))
    }

    /// Runs a query returning one text column, directly against the test database.
    pub async fn strings(&self, sql: &'static str) -> Vec<String> {
        on_connection!(self, |conn| sqlx::query_scalar(sql)
            .fetch_all(&mut conn)
            .await
            .expect(sql))
    }

    /// Outbox rows in flight, or queued and due (or past expiry) at `now`: what the apps'
    /// senders still have to act on.
    pub async fn outbox_busy(&self, now: OffsetDateTime) -> i64 {
        const SQL: &str = "SELECT count(*) FROM outbox WHERE status = 'sending' \
             OR (status = 'queued' AND (next_attempt_at <= $1 OR expires_at <= $1))";
        on_connection!(
            self,
            let at = (sqlite: sqlite_time(now), postgres: now),
            |conn| sqlx::query_scalar(SQL)
                .bind(at)
                .fetch_one(&mut conn)
                .await
                .expect(SQL)
        )
    }

    /// Runs one statement directly against the test database (to stage what a crash leaves).
    pub async fn execute(&self, sql: &'static str) -> u64 {
        on_connection!(self, |conn| sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect(sql)
            .rows_affected())
    }

    /// Every outbox row, oldest first, as it is stored.
    pub async fn outbox_rows(&self) -> Vec<OutboxRow> {
        const SQL: &str = "SELECT kind, recipient, name, locale, payload, key_id, status, \
             attempts, last_error FROM outbox ORDER BY created_at";
        on_connection!(self, |conn| sqlx::query_as(SQL)
            .fetch_all(&mut conn)
            .await
            .expect(SQL))
    }

    /// PostgreSQL: takes a SHARE lock on `table`, so inserts into it wait (reads do not)
    /// until the returned connection's transaction ends: `COMMIT` it, or drop it. None on
    /// SQLite, whose writers take turns anyway.
    pub async fn block_inserts_into(&self, table: &'static str) -> Option<sqlx::PgConnection> {
        if self.backend == Backend::Sqlite {
            return None;
        }
        let mut conn = self.postgres().await;
        let lock = format!("BEGIN; LOCK TABLE {table} IN SHARE MODE");
        sqlx::raw_sql(AssertSqlSafe(lock))
            .execute(&mut conn)
            .await
            .expect("locking the table");
        Some(conn)
    }

    /// PostgreSQL: how many statements on the test database wait for a lock now.
    pub async fn lock_waiters(&self) -> i64 {
        self.scalar_i64(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
    }

    async fn sqlite(&self) -> sqlx::SqliteConnection {
        sqlx::SqliteConnection::connect(&self.direct_url)
            .await
            .expect("opening the SQLite test database")
    }

    async fn postgres(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.direct_url)
            .await
            .expect("connecting to the PostgreSQL test database")
    }

    /// Every row of `signing_keys` and `server_secrets` (those tables, in that order, each by
    /// name), as stored.
    pub async fn sealed_rows(&self) -> Vec<SealedRow> {
        const TABLES: [(&str, &str); 2] = [
            (
                "signing_keys",
                "SELECT kid, private_key, kek_id FROM signing_keys ORDER BY kid",
            ),
            (
                "server_secrets",
                "SELECT name, value, kek_id FROM server_secrets ORDER BY name",
            ),
        ];
        let mut all = Vec::new();
        for (table, sql) in TABLES {
            let rows: Vec<(String, Vec<u8>, Option<String>)> =
                on_connection!(self, |conn| sqlx::query_as(sql)
                    .fetch_all(&mut conn)
                    .await
                    .expect(sql));
            all.extend(rows.into_iter().map(|(name, value, kek_id)| SealedRow {
                table,
                name,
                value,
                kek_id,
            }));
        }
        all
    }

    /// Overwrites the stored value and KEK id of `row` (its table and name) with `row`'s.
    pub async fn write_sealed_row(&self, row: &SealedRow) {
        let sql = match row.table {
            "signing_keys" => {
                "UPDATE signing_keys SET private_key = $2, kek_id = $3 WHERE kid = $1"
            }
            _ => "UPDATE server_secrets SET value = $2, kek_id = $3 WHERE name = $1",
        };
        let done = on_connection!(self, |conn| sqlx::query(sql)
            .bind(&row.name)
            .bind(&row.value)
            .bind(&row.kek_id)
            .execute(&mut conn)
            .await
            .expect(sql)
            .rows_affected());
        assert_eq!(done, 1, "no {} row {}", row.table, row.name);
    }

    /// The SQLite database's files (the database and its write-ahead log), for a look at every
    /// byte; empty on PostgreSQL.
    pub fn sqlite_files(&self) -> Vec<PathBuf> {
        self.sqlite_dir
            .iter()
            .flat_map(|dir| ["test.db", "test.db-wal"].map(|file| dir.join(file)))
            .filter(|path| path.exists())
            .collect()
    }

    /// The directory of the SQLite file (None on PostgreSQL).
    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        self.sqlite_dir.as_deref()
    }

    /// The stored password hash (PHC string) of the account at `email`.
    pub async fn password_hash(&self, email: &str) -> String {
        const SQL: &str = "SELECT password_hash FROM users WHERE email = $1";
        on_connection!(self, |conn| sqlx::query_scalar(SQL)
            .bind(email)
            .fetch_one(&mut conn)
            .await
            .expect(SQL))
    }

    /// Every audit row, oldest first, each column as the database renders it as text.
    pub async fn auth_event_rows(&self) -> Vec<AuthEventRow> {
        // Every column, so a test searching the rows for a secret misses none.
        const PG: &str = "SELECT id::text AS id, user_id::text AS user_id, event, outcome, ip, \
             user_agent, request_id, created_at::text AS created_at FROM auth_events \
             ORDER BY created_at, id";
        const SQLITE: &str = "SELECT lower(hex(id)) AS id, \
             CASE WHEN user_id IS NULL THEN NULL ELSE lower(hex(user_id)) END AS user_id, event, \
             outcome, ip, user_agent, request_id, created_at FROM auth_events \
             ORDER BY created_at, id";
        on_connection!(
            self,
            let sql = (sqlite: SQLITE, postgres: PG),
            |conn| sqlx::query_as(sql).fetch_all(&mut conn).await.expect(sql)
        )
    }

    /// Drops the database, the Redis keys and the temp dir (best effort).
    async fn remove(&mut self) {
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take()
            && let Some(server) = self.server
            && let Ok(mut admin) = sqlx::PgConnection::connect(&server.admin_url).await
        {
            let _ = sqlx::query(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
        let prefix = std::mem::take(&mut self.redis_prefix);
        if !prefix.is_empty()
            && let Ok(client) = redis::Client::open(servers::redis().url.as_str())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }
}

impl Drop for TestDatabase {
    /// Runs on its own thread and runtime: the test's runtime may be shutting down.
    fn drop(&mut self) {
        if self.pg_name.is_none() && self.sqlite_dir.is_none() && self.redis_prefix.is_empty() {
            return;
        }
        let mut this = Self {
            backend: self.backend,
            direct_url: std::mem::take(&mut self.direct_url),
            redis_prefix: std::mem::take(&mut self.redis_prefix),
            pg_name: self.pg_name.take(),
            server: self.server,
            sqlite_dir: self.sqlite_dir.take(),
        };
        let cleaner = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(this.remove());
            }
        });
        let _ = cleaner.join();
    }
}
