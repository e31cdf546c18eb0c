//! The sealed tables in SQL (signing keys, server secrets): the check every start makes before
//! anything is written (each row opens under a key-encryption key we hold; rows kept in clear
//! by earlier versions are sealed), and `keys rewrap`. Each is one transaction.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::sqlite::SqliteConnectOptions;

use super::{SqlStore, SqlTx, sql, sql_tx};
use crate::config::{DatabaseKind, Settings};
use crate::store::at_rest::{AtRestError, Keks, Table};
use crate::store::bounded;

/// Where the development key-encryption key lives when the database is not a SQLite file
/// (the default SQLite database's directory).
const DEVELOPMENT_DATA_DIR: &str = "data";

/// The store of the sealed tables: the SQL pool and the key-encryption keys.
pub(crate) struct SqlKeyStore {
    pub(crate) sql: Arc<SqlStore>,
    pub(crate) keks: Keks,
}

/// What `keys rewrap` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapCounts {
    /// The key-encryption key every row is sealed under now.
    pub kek_id: String,
    /// Signing keys re-sealed.
    pub signing_keys: u64,
    /// Server secrets re-sealed.
    pub server_secrets: u64,
    /// Of those, rows that were under the previous key-encryption key.
    pub from_previous: u64,
}

#[derive(sqlx::FromRow)]
struct SealedRow {
    name: String,
    value: Vec<u8>,
    kek_id: Option<String>,
}

const SEALED_ROWS: &str = "SELECT count(*) FROM (SELECT kek_id FROM signing_keys \
     WHERE kek_id IS NOT NULL UNION ALL SELECT kek_id FROM server_secrets \
     WHERE kek_id IS NOT NULL) AS sealed";

impl Table {
    fn select_all(self) -> &'static str {
        match self {
            Self::SigningKeys => {
                "SELECT kid AS name, private_key AS value, kek_id FROM signing_keys ORDER BY kid"
            }
            Self::ServerSecrets => "SELECT name, value, kek_id FROM server_secrets ORDER BY name",
        }
    }

    /// Replaces a row's sealed value if it is still what was read (`kek_id` $4, NULL for clear:
    /// two instances sealing one old database at once seal each row once).
    fn reseal(self) -> &'static str {
        match self {
            Self::SigningKeys => {
                "UPDATE signing_keys SET private_key = $2, kek_id = $3 \
                 WHERE kid = $1 AND kek_id IS NOT DISTINCT FROM $4"
            }
            Self::ServerSecrets => {
                "UPDATE server_secrets SET value = $2, kek_id = $3 \
                 WHERE name = $1 AND kek_id IS NOT DISTINCT FROM $4"
            }
        }
    }
}

impl SqlKeyStore {
    /// Resolves the key-encryption keys for `sql` and runs the start-up check: every sealed
    /// row must open, and rows in clear are sealed, in one transaction. On a wrong key it fails
    /// with a message naming the setting, having written nothing (no development key file
    /// either, when the database is already sealed).
    pub(crate) async fn open(settings: &Settings, sql: Arc<SqlStore>) -> anyhow::Result<Self> {
        let sealed_rows: i64 = bounded(sql.timeout, "reading the keys at rest", async {
            sql!(&sql.pool, |db| {
                sqlx::query_scalar(SEALED_ROWS).fetch_one(db).await
            })
        })
        .await?;
        let keks = Keks::resolve(settings, &data_dir(settings), sealed_rows > 0)?;
        let store = Self { sql, keks };
        let newly_sealed = store.seal_clear_rows().await?;
        if newly_sealed > 0 {
            tracing::info!(
                rows = newly_sealed,
                kek_id = store.keks.current_id(),
                "keys stored in clear by an earlier version are now sealed"
            );
        }
        tracing::info!(
            kek_id = store.keks.current_id(),
            previous_kek_id = store.keks.previous_id(),
            "keys at rest open under the key-encryption key"
        );
        Ok(store)
    }

    async fn seal_clear_rows(&self) -> anyhow::Result<u64> {
        let work = async {
            let mut tx = self.sql.pool.begin_immediate().await?;
            let mut tables = Vec::new();
            for table in Table::ALL {
                tables.push((table, read_rows(&mut tx, table).await?));
            }
            // Every sealed row is checked before any row is written: a wrong key changes nothing.
            for (table, rows) in &tables {
                for row in rows.iter().filter(|r| r.kek_id.is_some()) {
                    if let Err(e) = self.opens(*table, row) {
                        return Ok(Err(e));
                    }
                }
            }
            let mut sealed = 0;
            for (table, rows) in &tables {
                for row in rows.iter().filter(|r| r.kek_id.is_none()) {
                    sealed += self.reseal(&mut tx, *table, row, &row.value).await?;
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(sealed))
        };
        let checked = bounded(self.sql.timeout, "sealing the keys at rest", work).await?;
        checked.context("the keys at rest do not open (nothing was changed)")
    }

    /// `keys rewrap`: every row opened with its key and sealed again under the current one, in
    /// one transaction (any row that does not open leaves every row as it was).
    pub(crate) async fn rewrap(&self) -> anyhow::Result<RewrapCounts> {
        let work = async {
            let mut tx = self.sql.pool.begin_immediate().await?;
            let mut counts = RewrapCounts {
                kek_id: self.keks.current_id().to_owned(),
                signing_keys: 0,
                server_secrets: 0,
                from_previous: 0,
            };
            for table in Table::ALL {
                for row in read_rows(&mut tx, table).await? {
                    let plain = match self.opens(table, &row) {
                        Ok(plain) => plain,
                        Err(e) => return Ok(Err(e)),
                    };
                    let done = self.reseal(&mut tx, table, &row, &plain).await?;
                    match table {
                        Table::SigningKeys => counts.signing_keys += done,
                        Table::ServerSecrets => counts.server_secrets += done,
                    }
                    if row.kek_id.as_deref() == self.keks.previous_id() {
                        counts.from_previous += done;
                    }
                }
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(counts))
        };
        let rewrapped = bounded(self.sql.timeout, "rewrapping the keys at rest", work).await?;
        rewrapped.context("nothing was rewrapped")
    }

    fn opens(
        &self,
        table: Table,
        row: &SealedRow,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, AtRestError> {
        self.keks
            .open(table, &row.name, row.kek_id.as_deref(), &row.value)
    }

    /// Seals `plain` as row `row`'s new value, if the row is still as read; 1 or 0.
    async fn reseal(
        &self,
        tx: &mut SqlTx,
        table: Table,
        row: &SealedRow,
        plain: &[u8],
    ) -> Result<u64, sqlx::Error> {
        let sealed = self.keks.seal(table, &row.name, plain);
        sql_tx!(tx, |db| {
            sqlx::query(table.reseal())
                .bind(row.name.as_str())
                .bind(sealed.value.as_slice())
                .bind(sealed.kek_id.as_str())
                .bind(row.kek_id.as_deref())
                .execute(db)
                .await
                .map(|done| done.rows_affected())
        })
    }
}

async fn read_rows(tx: &mut SqlTx, table: Table) -> Result<Vec<SealedRow>, sqlx::Error> {
    sql_tx!(tx, |db| {
        sqlx::query_as::<_, SealedRow>(table.select_all())
            .fetch_all(db)
            .await
    })
}

/// The data directory: the SQLite file's directory, or `data` (relative to the working
/// directory) for PostgreSQL.
fn data_dir(settings: &Settings) -> PathBuf {
    let sqlite_dir = match settings.database_kind() {
        Some(DatabaseKind::Sqlite) => {
            SqliteConnectOptions::from_str(settings.database_url.expose_secret())
                .ok()
                .and_then(|options| options.get_filename().parent().map(Path::to_path_buf))
        }
        _ => None,
    };
    match sqlite_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        Some(_) => PathBuf::from("."),
        None => PathBuf::from(DEVELOPMENT_DATA_DIR),
    }
}
