//! How far an import got: rows done, matches and bad rows so far, and how many bytes of
//! report belong to those rows. Committed every N rows; a re-run of the same file (same
//! SHA-256) resumes after `rows_done`, with the report cut back to `report_bytes`, so no
//! match is counted or written twice.

use sqlx::{Connection, PgConnection, PgPool};

use super::BulkError;

/// The committed progress of one import of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointState {
    /// Rows 1..=rows_done are done (matched, or counted bad).
    pub rows_done: u64,
    pub matches_national_id: u64,
    pub matches_name: u64,
    pub bad_rows: u64,
    /// The report's length when `rows_done` was committed.
    pub report_bytes: u64,
    /// No more rows will be read: the whole file was, or it failed (below).
    pub finished: bool,
    /// Why the file failed (a `BulkError::failure_code`): a re-run is refused with it.
    pub failed: Option<String>,
}

impl CheckpointState {
    pub fn matches(&self) -> u64 {
        self.matches_national_id + self.matches_name
    }
}

/// Where an import keeps its checkpoint. Synchronous: the import is a blocking loop over
/// the file (run it on a blocking thread); an async store bridges with its runtime handle.
pub trait Checkpoint {
    /// The last committed state (the default one for a new import).
    fn load(&mut self) -> Result<CheckpointState, BulkError>;
    /// Records `state`. The import flushes the report before calling this.
    fn commit(&mut self, state: &CheckpointState) -> Result<(), BulkError>;
}

/// A checkpoint in memory, for tests and benchmarks. `fail_from_row` simulates a crash: a
/// commit at or beyond that row fails without being recorded, as if the process died
/// after writing report lines but before the commit landed.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoint {
    pub state: CheckpointState,
    pub commits: u64,
    pub fail_from_row: Option<u64>,
}

impl Checkpoint for MemoryCheckpoint {
    fn load(&mut self) -> Result<CheckpointState, BulkError> {
        Ok(self.state.clone())
    }

    fn commit(&mut self, state: &CheckpointState) -> Result<(), BulkError> {
        if self.fail_from_row.is_some_and(|k| state.rows_done >= k) {
            return Err(BulkError::Interrupted {
                rows_done: self.state.rows_done,
            });
        }
        self.state = state.clone();
        self.commits += 1;
        Ok(())
    }
}

/// The checkpoint in PostgreSQL (`connector_cash.bulk_imports`, keyed by the file's SHA-256
/// and the import kind). Holds its own connection with a session advisory lock on the key,
/// so two runs over the same file cannot interleave; the lock goes with the connection.
#[derive(Debug)]
pub struct PgCheckpoint {
    conn: PgConnection,
    runtime: tokio::runtime::Handle,
    file_sha256: String,
    kind: String,
}

impl PgCheckpoint {
    /// Takes the import's lock (refused with [`BulkError::Locked`] while another run holds
    /// it) and creates the row for a new import. Call from inside the Tokio runtime.
    pub async fn acquire(
        pool: &PgPool,
        file_sha256: &str,
        kind: &str,
    ) -> Result<PgCheckpoint, BulkError> {
        let mut conn = pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('himaya.bulk_import:' || $1 || ':' || $2, 0))",
        )
        .bind(kind)
        .bind(file_sha256)
        .fetch_one(&mut conn)
        .await?;
        if !locked {
            return Err(BulkError::Locked);
        }
        sqlx::query(
            "INSERT INTO bulk_imports (file_sha256, kind) VALUES ($1, $2)
             ON CONFLICT (file_sha256, kind) DO NOTHING",
        )
        .bind(file_sha256)
        .bind(kind)
        .execute(&mut conn)
        .await?;
        Ok(PgCheckpoint {
            conn,
            runtime: tokio::runtime::Handle::current(),
            file_sha256: file_sha256.to_owned(),
            kind: kind.to_owned(),
        })
    }

    pub async fn state(&mut self) -> Result<CheckpointState, BulkError> {
        let row: (i64, i64, i64, i64, i64, bool, Option<String>) = sqlx::query_as(
            "SELECT rows_done, matches_national_id, matches_name, bad_rows, report_bytes,
                    finished_at IS NOT NULL, failed_reason
             FROM bulk_imports WHERE file_sha256 = $1 AND kind = $2",
        )
        .bind(&self.file_sha256)
        .bind(&self.kind)
        .fetch_one(&mut self.conn)
        .await?;
        let n = |v: i64| u64::try_from(v).map_err(|_| BulkError::CorruptCheckpoint);
        Ok(CheckpointState {
            rows_done: n(row.0)?,
            matches_national_id: n(row.1)?,
            matches_name: n(row.2)?,
            bad_rows: n(row.3)?,
            report_bytes: n(row.4)?,
            finished: row.5,
            failed: row.6,
        })
    }

    pub async fn save(&mut self, s: &CheckpointState) -> Result<(), BulkError> {
        let n = |v: u64| i64::try_from(v).map_err(|_| BulkError::CorruptCheckpoint);
        sqlx::query(
            "UPDATE bulk_imports SET rows_done = $3, matches_national_id = $4, matches_name = $5,
                    bad_rows = $6, report_bytes = $7, updated_at = now(),
                    finished_at = CASE WHEN $8 THEN coalesce(finished_at, now()) END,
                    failed_reason = $9
             WHERE file_sha256 = $1 AND kind = $2",
        )
        .bind(&self.file_sha256)
        .bind(&self.kind)
        .bind(n(s.rows_done)?)
        .bind(n(s.matches_national_id)?)
        .bind(n(s.matches_name)?)
        .bind(n(s.bad_rows)?)
        .bind(n(s.report_bytes)?)
        .bind(s.finished || s.failed.is_some())
        .bind(s.failed.as_deref())
        .execute(&mut self.conn)
        .await?;
        Ok(())
    }

    /// Starts the import of this file over (the operator's `--restart`).
    pub async fn reset(&mut self) -> Result<(), BulkError> {
        self.save(&CheckpointState::default()).await
    }

    /// Releases the lock and the connection. The lock is released first, explicitly: the
    /// server drops a closed session's locks only when its backend has exited, after
    /// `close` returns, so an immediate re-run could find the file still locked.
    pub async fn close(mut self) -> Result<(), BulkError> {
        sqlx::query(
            "SELECT pg_advisory_unlock(hashtextextended('himaya.bulk_import:' || $1 || ':' || $2, 0))",
        )
        .bind(&self.kind)
        .bind(&self.file_sha256)
        .execute(&mut self.conn)
        .await?;
        self.conn.close().await?;
        Ok(())
    }
}

impl Checkpoint for PgCheckpoint {
    fn load(&mut self) -> Result<CheckpointState, BulkError> {
        let rt = self.runtime.clone();
        rt.block_on(self.state())
    }

    fn commit(&mut self, state: &CheckpointState) -> Result<(), BulkError> {
        let rt = self.runtime.clone();
        rt.block_on(self.save(state))
    }
}
