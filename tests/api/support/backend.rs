//! The backend rows every scenario runs on, and the macro that generates one test per row.

/// Generates, for each scenario `async fn name(backend: Backend)`, a module `name` with one
/// test per backend: `name::sqlite`, `name::postgres` and `name::postgres_redis`.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::backend::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::backend::Backend::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() {
                    super::$name($crate::support::backend::Backend::PostgresRedis).await;
                }
            }
        )+
    };
}
pub(crate) use backend_tests;

/// Which stores the app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Users, codes and sessions in one SQLite file.
    Sqlite,
    /// Everything in PostgreSQL, codes and cooldowns included (the SQL code store).
    Postgres,
    /// Users in PostgreSQL; codes, cooldowns and sessions in Redis.
    PostgresRedis,
}

impl Backend {
    /// Whether the app gets a Redis URL on this row.
    pub fn has_redis(self) -> bool {
        self == Backend::PostgresRedis
    }

    /// Whether the SQL stores are on PostgreSQL (not SQLite).
    pub fn is_postgres(self) -> bool {
        self != Backend::Sqlite
    }
}
