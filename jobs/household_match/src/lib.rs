//! The bulk household exchange with cash-assistance programmes, a job run by an operator
//! (`himaya cash-assistance import|generate|export`), not a component.
//!
//! Household files (Avro object containers, millions of rows): each member is matched
//! against the children of open cases, so a case manager learns that a child's household
//! already receives assistance. The open cases are read from `cases.open_children`, the
//! view the cases service publishes as its contract for this job (`open_cases`), never
//! from its tables; the job's own state lives in its own schema (`connector_cash`).
//! Referrals for enrolment go the other way (`enrolment`), read through the cases
//! service's gRPC export.
//!
//! - streaming: one decoded block in memory at a time, whatever the file's size;
//! - resumable: a checkpoint (rows done, counts, report length) is committed every 50,000
//!   rows, keyed by the file's SHA-256; a re-run continues and never counts twice;
//! - a report in JSON Lines: one line per match (row, case, household, basis, score) and
//!   one per bad row (row and fields), never a name or a number of the child;
//! - bad rows are counted and reported, never fatal;
//! - bounded: every size a file declares is checked against `limits` before anything is
//!   allocated for it; a file over a limit is refused, its import left finished and failed
//!   with the reason (as is one that is not a container, or corrupt).
//!
//! Run `import` on a blocking thread: it is a synchronous loop, and the PostgreSQL
//! checkpoint bridges to the runtime it was created in.

mod checkpoint;
mod container;
mod datum;
mod egypt;
pub mod enrolment;
mod generate;
mod guard;
mod import;
mod index;
pub mod limits;
mod open_cases;
mod report;
mod row;

#[cfg(test)]
mod crafted;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use checkpoint::{Checkpoint, CheckpointState, MemoryCheckpoint, PgCheckpoint};
pub use container::{count_rows, file_sha256};
pub use egypt::{Governorates, GOVERNORATES};
pub use generate::{generate, synthetic_children, PlantedChild};
pub use import::{import, import_with, BadRow, ImportOptions, ImportReport, Progress};
pub use index::{normalize_national_id, ChildKey, Match, MatchBasis, MatchIndex, MIN_NAME_SCORE};
pub use limits::{limit_avro_allocations, Refusal};
pub use open_cases::{load_open_cases, LoadedIndex, OPEN_CHILDREN_VIEW};
pub use report::ReportFile;
pub use row::{
    schema, BadField, BirthDateWire, HouseholdMemberRow, MemberRow, Problem, SCHEMA_TEXT,
};

/// The checkpoint's import kind for household member files.
pub const KIND_HOUSEHOLD_MEMBERS: &str = "cash_household_members.v1";

/// The job's own schema (checkpoints). The name is the one the import had inside the
/// connector: existing checkpoints carry over.
pub const SCHEMA: &str = "connector_cash";

/// The checkpoint table's migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The job's pool: its `search_path` is `connector_cash`, migrated with the job's own
/// migrations only. The open cases are read through it by their qualified name
/// (`cases.open_children`); the cases service's schema is neither created nor migrated
/// here.
pub async fn connect(settings: &himaya_settings::Settings) -> Result<sqlx::PgPool, BulkError> {
    let pool = himaya_store::connect_service(&settings.database, SCHEMA).await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Why a bulk operation failed. Messages carry row numbers, field names, paths and
/// counts, never a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the match report")]
    Report(#[source] std::io::Error),
    #[error("not an Avro object container file (bad header)")]
    NotAContainer,
    #[error("the file's schema lacks the required field {0}: every row would be bad")]
    SchemaMismatch(&'static str),
    /// The library's message is dropped on purpose: it can quote the row's bytes.
    #[error("the file is corrupt or truncated at row {row}; the rows before it are done")]
    Corrupt { row: u64 },
    /// A part of the file is larger than the import allows (`limits`).
    #[error("the file is refused")]
    Refused(#[source] Refusal),
    #[error(
        "an earlier run failed on this file ({reason}); start over with a restart to read it again"
    )]
    Failed { reason: String },
    #[error("the checkpoint says {rows_done} rows are done but the file has {rows}")]
    CheckpointAhead { rows_done: u64, rows: u64 },
    #[error("the report holds {found} bytes but the checkpoint recorded {expected}: it was moved or cut (start over with a restart)")]
    ReportShorter { expected: u64, found: u64 },
    #[error("another import of this file is running")]
    Locked,
    #[error("import interrupted after row {rows_done}")]
    Interrupted { rows_done: u64 },
    #[error("the stored checkpoint is malformed")]
    CorruptCheckpoint,
    /// The cases service publishes the open cases as a view in its migrations; the job
    /// never creates it.
    #[error("the view cases.open_children is missing or of an older version: start the cases service of this release once (`himaya up` or `himaya serve cases`) so it migrates its schema, then run the import again — العرض cases.open_children غير موجود أو من إصدار أقدم: شغّل خدمة الحالات من هذا الإصدار مرة واحدة (`himaya up` أو `himaya serve cases`) لتُحدِّث مخططها، ثم أعد الاستيراد")]
    OpenCasesViewMissing,
    #[error("this database role may not read the view cases.open_children: grant it SELECT on that view (and USAGE on the schema cases) — لا يحق لدور قاعدة البيانات هذا قراءة العرض cases.open_children: امنحه صلاحية SELECT عليه (وUSAGE على المخطط cases)")]
    OpenCasesViewDenied,
    #[error("checkpoint store")]
    Database(#[from] sqlx::Error),
    #[error("checkpoint store")]
    Store(#[from] himaya_store::StoreError),
    #[error("checkpoint store migration")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the built-in row schema does not parse: {0}")]
    BuiltInSchema(String),
    /// As for `Corrupt`, the library's message (which quotes the row) is dropped.
    #[error("could not encode row {row} (it does not fit the schema)")]
    Encode { row: u64 },
    #[error("planted row {row} is outside 1..={rows} or given twice")]
    Plant { row: u64, rows: u64 },
}

impl BulkError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> BulkError {
        BulkError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The reason recorded when this error ends an import as failed: the file itself is
    /// at fault, so running again on the same bytes would fail the same way.
    pub fn failure_code(&self) -> Option<&'static str> {
        match self {
            BulkError::NotAContainer => Some("not_a_container"),
            BulkError::SchemaMismatch(_) => Some("schema_mismatch"),
            BulkError::Corrupt { .. } => Some("corrupt"),
            BulkError::Refused(why) => Some(why.code()),
            _ => None,
        }
    }

    /// Worth running again as it is: the checkpoint makes a re-run continue.
    pub fn is_retryable(&self) -> bool {
        match self {
            BulkError::Interrupted { .. } | BulkError::Io { .. } | BulkError::Report(_) => true,
            BulkError::Database(e) => sqlx_retryable(e),
            BulkError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// As `himaya_store::StoreError::is_retryable`: connection, rollback, resource and
/// operator SQLSTATE classes, lost connections and pool timeouts.
fn sqlx_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let class = code.as_deref().map(|c| &c[..c.len().min(2)]);
            matches!(class, Some("08" | "40" | "53" | "57" | "58"))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}
