//! The cases service's copy of the directory's service map, and the services it proposes
//! for a new referral: those offering a requested service where the child lives, with
//! places free, in the child's district first.

use chrono::{DateTime, Utc};
use himaya_bus::{HandleError, Handler, Incoming};
use himaya_events::{decode, ServiceMapChanged};
use himaya_proto::convert::MappedServiceRow;
use himaya_proto::v1 as pb;
use himaya_record::CaseRecord;
use sqlx::PgPool;

use crate::CasesError;

/// Services proposed per referral, at most.
const PROPOSALS: i64 = 5;

pub struct ServiceMap {
    pool: PgPool,
}

impl ServiceMap {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies one entry unless a newer version is already here (so redeliveries and
    /// reordering are harmless without an inbox).
    async fn apply(&self, e: &ServiceMapChanged) -> Result<(), CasesError> {
        let updated_at = DateTime::parse_from_rfc3339(&e.updated_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        sqlx::query(
            "INSERT INTO service_map (service_id, agency_id, service_type, name_ar, name_en, governorate,
                                      districts, capacity, languages, accepting, removed, version, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (service_id) DO UPDATE SET
                agency_id = EXCLUDED.agency_id, service_type = EXCLUDED.service_type,
                name_ar = EXCLUDED.name_ar, name_en = EXCLUDED.name_en,
                governorate = EXCLUDED.governorate, districts = EXCLUDED.districts,
                capacity = EXCLUDED.capacity, languages = EXCLUDED.languages,
                accepting = EXCLUDED.accepting, removed = EXCLUDED.removed,
                version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
              WHERE service_map.version < EXCLUDED.version",
        )
        .bind(&e.service_id)
        .bind(&e.agency_id)
        .bind(&e.service_type)
        .bind(&e.name_ar)
        .bind(&e.name_en)
        .bind(&e.governorate)
        .bind(&e.districts)
        .bind(e.capacity)
        .bind(&e.languages)
        .bind(e.accepting)
        .bind(e.removed)
        .bind(e.version)
        .bind(updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Handler for ServiceMap {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let event = decode::<ServiceMapChanged>(msg.payload()).map_err(HandleError::park)?;
        self.apply(&event).await.map_err(HandleError::retry)
    }
}

/// Matching services for a referral, best first.
pub async fn propose(
    pool: &PgPool,
    record: &CaseRecord,
) -> Result<Vec<pb::MappedService>, CasesError> {
    let types: Vec<&str> = record
        .referral
        .requested_services
        .iter()
        .map(|s| s.as_str())
        .collect();
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let child = &record.child;
    let rows = sqlx::query_as::<_, MappedServiceRow>(
        "SELECT * FROM service_map
          WHERE NOT removed AND accepting AND capacity > 0
            AND service_type = ANY($1)
            AND (governorate = $2 OR governorate = '*')
          ORDER BY ($3::text IS NOT NULL AND $3 = ANY(districts)) DESC,
                   (governorate = $2) DESC, capacity DESC, service_id
          LIMIT $4",
    )
    .bind(&types)
    .bind(&child.governorate)
    .bind(child.district.as_deref())
    .bind(PROPOSALS)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(MappedServiceRow::into_service)
        .collect())
}
