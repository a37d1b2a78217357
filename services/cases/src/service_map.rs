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

/// Matching services for each referral, best first, in one statement for them all (a
/// group of referrals written together is proposed for together: one round trip per
/// group instead of one per referral on intake's answer path).
pub async fn propose_all(
    pool: &PgPool,
    records: &[&CaseRecord],
) -> Result<Vec<Vec<pb::MappedService>>, CasesError> {
    let mut proposals: Vec<Vec<pb::MappedService>> = vec![Vec::new(); records.len()];
    // Service types are vocabulary words (no commas): a list per referral, one text each.
    let mut wanted = Vec::new();
    let (mut types, mut places, mut districts) = (Vec::new(), Vec::new(), Vec::new());
    for (i, record) in (0i32..).zip(records) {
        let requested = &record.referral.requested_services;
        if requested.is_empty() {
            continue;
        }
        wanted.push(i);
        types.push(
            requested
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        places.push(record.child.governorate.as_str());
        districts.push(record.child.district.as_deref());
    }
    if wanted.is_empty() {
        return Ok(proposals);
    }
    let rows = sqlx::query_as::<_, Proposed>(
        "SELECT k.i, m.*
           FROM unnest($1::int[], $2::text[], $3::text[], $4::text[]) AS k (i, types, place, district)
          CROSS JOIN LATERAL (
                SELECT s.*, row_number() OVER (
                         ORDER BY (k.district IS NOT NULL AND k.district = ANY(s.districts)) DESC,
                                  (s.governorate = k.place) DESC, s.capacity DESC, s.service_id) AS rank
                  FROM service_map s
                 WHERE NOT s.removed AND s.accepting AND s.capacity > 0
                   AND s.service_type = ANY(string_to_array(k.types, ','))
                   AND (s.governorate = k.place OR s.governorate = '*')
                 ORDER BY rank
                 LIMIT $5) m
          ORDER BY k.i, m.rank",
    )
    .bind(&wanted)
    .bind(&types)
    .bind(&places)
    .bind(&districts)
    .bind(PROPOSALS)
    .fetch_all(pool)
    .await?;
    for row in rows {
        if let Some(list) = usize::try_from(row.i)
            .ok()
            .and_then(|i| proposals.get_mut(i))
        {
            list.push(row.service.into_service());
        }
    }
    Ok(proposals)
}

/// A proposed service and the referral (its place in the group) it is proposed for.
#[derive(sqlx::FromRow)]
struct Proposed {
    i: i32,
    #[sqlx(flatten)]
    service: MappedServiceRow,
}
