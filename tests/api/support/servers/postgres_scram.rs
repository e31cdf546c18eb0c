//! A second private PostgreSQL that checks passwords (`scram-sha-256` on 127.0.0.1; the
//! suite's own cluster trusts every local connection), for the tests where a password must
//! be right: a URL built from a secret, a password rotated under a running service.

use std::sync::OnceLock;

use sqlx::{AssertSqlSafe, Connection};

use super::postgres::Postgres;
use super::server::fatal;

/// The superuser's password on this cluster.
const ADMIN_PASSWORD: &str = "scram-admin";

/// A role (and a database it owns) on [`postgres_with_passwords`], made for one test.
pub struct PasswordRole {
    /// The role's name; its database has the same name.
    pub name: String,
    /// `127.0.0.1`.
    pub host: String,
    /// The cluster's port.
    pub port: u16,
}

impl PasswordRole {
    /// A new role with `password` and a database of its own, created through the superuser.
    pub async fn create(password: &str) -> Self {
        let cluster = postgres_with_passwords();
        let name = format!("aidlc_pw_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&cluster.admin_url)
            .await
            .expect("connecting to the password-checking PostgreSQL");
        for statement in [
            format!("CREATE ROLE {name} LOGIN PASSWORD {}", literal(password)),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ] {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .expect("creating the role and its database");
        }
        let _ = admin.close().await;
        let url = url::Url::parse(&cluster.admin_url).expect("the admin URL");
        Self {
            name,
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port().unwrap_or(5432),
        }
    }

    /// Gives the role a new password and ends its open sessions, so every connection after
    /// this one must log in with the new password (as after a rotation and a restart of the
    /// database, or once the pool's connections age out).
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub async fn change_password(&self, password: &str) {
        let mut admin = sqlx::PgConnection::connect(&postgres_with_passwords().admin_url)
            .await
            .expect("connecting to the password-checking PostgreSQL");
        sqlx::query(AssertSqlSafe(format!(
            "ALTER ROLE {} PASSWORD {}",
            self.name,
            literal(password)
        )))
        .execute(&mut admin)
        .await
        .expect("changing the password");
        // Termination is a signal, and a connection that was still authenticating (with the
        // old password) is not listed yet: end the role's sessions until none is left twice in
        // a row, so no pooled connection that still works is left to hide the new password.
        let mut empty_in_a_row = 0;
        for _ in 0..200 {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            )
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .expect("ending the role's sessions");
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
                    .bind(&self.name)
                    .fetch_one(&mut admin)
                    .await
                    .expect("counting the role's sessions");
            empty_in_a_row = if open == 0 { empty_in_a_row + 1 } else { 0 };
            if empty_in_a_row == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let _ = admin.close().await;
    }

    /// `SELECT count(*) FROM users` in the role's database, through the superuser.
    pub async fn count_users(&self) -> i64 {
        let cluster = postgres_with_passwords();
        let mut db = sqlx::PgConnection::connect(&cluster.database_url(&self.name))
            .await
            .expect("connecting to the role's database");
        let count = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&mut db)
            .await
            .expect("counting users");
        let _ = db.close().await;
        count
    }
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The password-checking cluster: started on first use; ends the run with one line if it
/// cannot be. (Never `AIDLC_TEST_DATABASE_URL`: its authentication is not ours to know.)
pub fn postgres_with_passwords() -> &'static Postgres {
    static POSTGRES: OnceLock<Result<Postgres, String>> = OnceLock::new();
    POSTGRES
        .get_or_init(start_with_passwords)
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// A cluster checking passwords on TCP (`scram-sha-256`), its superuser's being
/// [`ADMIN_PASSWORD`], with the suite cluster's throwaway settings.
fn start_with_passwords() -> Result<Postgres, String> {
    let server =
        Postgres::start_cluster("postgres-scram", &[], Some(ADMIN_PASSWORD), |_, _, _| {
            Ok(vec!["password_encryption=scram-sha-256".to_owned()])
        })?;
    let url = format!(
        "postgres://postgres:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    );
    Postgres::at(&url, Some(server))
}
