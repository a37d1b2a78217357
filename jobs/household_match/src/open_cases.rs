//! The children of open cases, read from `cases.open_children`: the view the cases service
//! publishes for this job (its migration `0012_open_children.sql`), streamed, read-only.
//! The job never reads the cases service's tables and never runs its migrations: a
//! database where the view is missing has not been migrated by the cases service yet.

use chrono::NaiveDate;
use futures_util::TryStreamExt;
use himaya_record::Sex;
use sqlx::PgPool;

use super::index::{ChildKey, MatchIndex};
use super::BulkError;

/// The view's name, qualified: the pool's own schema is the job's.
pub const OPEN_CHILDREN_VIEW: &str = "cases.open_children";

const OPEN_CHILDREN: &str = "
SELECT case_id, name_ar, name_latin, date_of_birth, estimated_age, sex, governorate, national_id
  FROM cases.open_children";

/// One row of the view, as the contract names its columns (all text).
#[derive(Debug, sqlx::FromRow)]
struct OpenChild {
    case_id: String,
    name_ar: Option<String>,
    name_latin: Option<String>,
    date_of_birth: Option<String>,
    estimated_age: Option<String>,
    sex: Option<String>,
    governorate: Option<String>,
    national_id: Option<String>,
}

/// What loading the index found.
#[derive(Debug)]
pub struct LoadedIndex {
    pub index: MatchIndex,
    /// Open cases whose child has no name or governorate (cannot be matched).
    pub skipped: u64,
}

fn text(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl OpenChild {
    /// The child's keys; `None` without a name or a governorate.
    fn key(self) -> Option<ChildKey> {
        let (Some(name_ar), Some(governorate)) = (text(self.name_ar), text(self.governorate))
        else {
            return None;
        };
        Some(ChildKey {
            case_id: self.case_id,
            national_id: text(self.national_id),
            name_ar,
            name_latin: text(self.name_latin),
            birth_date: text(self.date_of_birth)
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
            estimated_age_years: text(self.estimated_age).and_then(|a| a.parse().ok()),
            sex: text(self.sex)
                .and_then(|s| Sex::parse(&s))
                .unwrap_or(Sex::NotStated),
            governorate,
        })
    }
}

/// Builds the match index from every open case, streaming the rows of the view.
#[tracing::instrument(skip_all)]
pub async fn load_open_cases(pool: &PgPool, today: NaiveDate) -> Result<LoadedIndex, BulkError> {
    let mut rows = sqlx::query_as::<_, OpenChild>(OPEN_CHILDREN).fetch(pool);
    let (mut children, mut skipped) = (Vec::new(), 0u64);
    while let Some(child) = rows.try_next().await.map_err(view_error)? {
        match child.key() {
            Some(key) => children.push(key),
            None => skipped += 1,
        }
    }
    tracing::info!(children = children.len(), skipped, "open cases indexed");
    Ok(LoadedIndex {
        index: MatchIndex::build(children, today),
        skipped,
    })
}

/// A view that is not there (or not as this job reads it) or not granted says so; any
/// other error is the database's.
fn view_error(e: sqlx::Error) -> BulkError {
    let code = match &e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    match code.as_deref() {
        // undefined_table, invalid_schema_name, undefined_column
        Some("42P01" | "3F000" | "42703") => BulkError::OpenCasesViewMissing,
        // insufficient_privilege
        Some("42501") => BulkError::OpenCasesViewDenied,
        _ => BulkError::Database(e),
    }
}
