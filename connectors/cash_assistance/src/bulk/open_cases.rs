//! The children of open cases, read straight from the cases service's table (read-only,
//! streamed, only the JSON paths the index needs): the other side of the match.

use chrono::NaiveDate;
use futures_util::TryStreamExt;
use himaya_record::Sex;
use sqlx::{PgPool, Row};

use super::index::{ChildKey, MatchIndex};
use super::BulkError;

/// Open means a child protection case is being worked: referred or registered.
const OPEN_CHILDREN: &str = "
SELECT case_id,
       record #>> '{child,name,as_given}'          AS name_ar,
       record #>> '{child,name,transliteration}'   AS name_latin,
       record #>> '{child,date_of_birth}'          AS date_of_birth,
       record #>> '{child,estimated_age_years}'    AS estimated_age,
       record #>> '{child,sex}'                    AS sex,
       record #>> '{child,governorate}'            AS governorate,
       (SELECT d ->> 'number'
          FROM jsonb_array_elements(CASE jsonb_typeof(record #> '{child,identity_documents}')
                                    WHEN 'array' THEN record #> '{child,identity_documents}'
                                    ELSE '[]'::jsonb END) AS d
         -- Egyptian birth certificates carry the 14-digit national number.
         WHERE d ->> 'kind' = 'national_id'
            OR (d ->> 'kind' = 'birth_certificate' AND d ->> 'number' ~ '^[0-9]{14}$')
         ORDER BY (d ->> 'kind' = 'national_id') DESC
         LIMIT 1)                                  AS national_id
  FROM cases.cases
 WHERE status IN ('referred', 'registered')";

/// What loading the index found.
#[derive(Debug)]
pub struct LoadedIndex {
    pub index: MatchIndex,
    /// Open cases whose child has no name or governorate (cannot be matched).
    pub skipped: u64,
}

/// Builds the match index from every open case, streaming the rows.
#[tracing::instrument(skip_all)]
pub async fn load_open_cases(pool: &PgPool, today: NaiveDate) -> Result<LoadedIndex, BulkError> {
    let mut rows = sqlx::query(OPEN_CHILDREN).fetch(pool);
    let (mut children, mut skipped) = (Vec::new(), 0u64);
    while let Some(r) = rows.try_next().await? {
        let text = |col: &str| -> Result<Option<String>, BulkError> {
            let v: Option<String> = r.try_get(col)?;
            Ok(v.filter(|s| !s.trim().is_empty()))
        };
        let (Some(name_ar), Some(governorate)) = (text("name_ar")?, text("governorate")?) else {
            skipped += 1;
            continue;
        };
        children.push(ChildKey {
            case_id: r.try_get("case_id")?,
            national_id: text("national_id")?,
            name_ar,
            name_latin: text("name_latin")?,
            birth_date: text("date_of_birth")?
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
            estimated_age_years: text("estimated_age")?.and_then(|a| a.parse().ok()),
            sex: text("sex")?
                .and_then(|s| Sex::parse(&s))
                .unwrap_or(Sex::NotStated),
            governorate,
        });
    }
    tracing::info!(children = children.len(), skipped, "open cases indexed");
    Ok(LoadedIndex {
        index: MatchIndex::build(children, today),
        skipped,
    })
}
