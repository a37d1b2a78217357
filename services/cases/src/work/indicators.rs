//! The numbers a ministry reports (docs/domain.md, "Scale": 19,000 cases across 14
//! governorates need more than rows). Aggregates only: ids of children never appear here.

use himaya_record::service_referral::MedicalCoverage;

use super::*;

impl OversightApi {
    pub(super) async fn indicators(
        &self,
        req: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::Indicators>, Status> {
        let (meta, _, r) = req.into_parts();
        let caller = self.0.owner(&meta)?;
        let (_, agency) = self.0.calling_agency(&meta)?;
        let gov = indicator_area(&agency, r.governorate.trim())?;
        let pool = &self.0.pool;
        let max = self.0.settings.lifecycle.max_cases_per_caseworker;
        let cases = crate::db::case_counts(pool, gov).await?;
        let caseloads = sqlx::query_as::<_, (String, i64)>(
            "SELECT s.staff_id, count(c.case_id) AS n FROM staff s
               LEFT JOIN cases c ON c.caseworker_agency = s.agency_id AND c.caseworker_id = s.staff_id
                                AND c.status = 'registered'
                                AND ($1::text IS NULL OR c.governorate = $1)
              WHERE s.role = 'caseworker' AND s.agency_id = $2 GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(gov)
        .bind(&caller)
        .fetch_all(pool)
        .await
        .map_err(CasesError::from)?
        .into_iter()
        .map(|(caseworker_id, open_cases)| pb::Caseload {
            caseworker_id,
            open_cases,
            limit: max,
        })
        .collect();
        let overdue = counts(
            pool,
            gov,
            "SELECT d.kind,
                    count(*) FILTER (WHERE d.state = 'open' AND d.due_at < now()) AS open_past_due,
                    count(*) FILTER (WHERE d.state = 'fired') AS escalated
               FROM deadlines d JOIN cases c USING (case_id)
              WHERE ($1::text IS NULL OR c.governorate = $1)
              GROUP BY 1 ORDER BY 1",
            |row: OverdueRow| {
                Ok(pb::OverdueCount {
                    kind: wire_of::<DeadlineKind>("kind", &row.kind)?,
                    open_past_due: row.open_past_due,
                    escalated: row.escalated,
                })
            },
        )
        .await?;
        let agencies = counts(
            pool,
            gov,
            "SELECT d.agency_id,
                    count(*) FILTER (WHERE d.outcome = 'delivered') AS delivered,
                    count(*) FILTER (WHERE d.outcome = 'rejected') AS rejected,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.recorded_at - c.created_at) * 1000) AS median_ms
               FROM referral_deliveries d JOIN cases c USING (case_id)
              WHERE ($1::text IS NULL OR c.governorate = $1)
              GROUP BY 1 ORDER BY 1",
            |row: AgencyRow| {
                let answered = row.delivered + row.rejected;
                Ok(pb::AgencyResponse {
                    agency_id: row.agency_id,
                    delivered: row.delivered,
                    rejected: row.rejected,
                    acceptance_rate: if answered == 0 {
                        0.0
                    } else {
                        row.delivered as f64 / answered as f64
                    },
                    median_response_ms: row.median_ms.unwrap_or(0.0),
                })
            },
        )
        .await?;
        let service_referrals = counts(
            pool,
            gov,
            "SELECT s.to_agency,
                    count(*) AS sent,
                    count(*) FILTER (WHERE s.state IN ('accepted', 'in_progress', 'completed', 'failed')) AS accepted,
                    count(*) FILTER (WHERE s.state = 'rejected') AS rejected,
                    count(*) FILTER (WHERE s.state IN ('requested', 'received')) AS unanswered,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.answered_at - s.created_at) / 3600.0)
                      FILTER (WHERE s.answered_at IS NOT NULL) AS median_hours
               FROM service_referrals s JOIN cases c USING (case_id)
              WHERE ($1::text IS NULL OR c.governorate = $1)
              GROUP BY 1 ORDER BY 1",
            |row: ServiceAnswersRow| {
                let answered = row.accepted + row.rejected;
                Ok(pb::ServiceReferralResponse {
                    agency_id: row.to_agency,
                    sent: row.sent,
                    accepted: row.accepted,
                    rejected: row.rejected,
                    unanswered: row.unanswered,
                    acceptance_rate: if answered == 0 {
                        0.0
                    } else {
                        row.accepted as f64 / answered as f64
                    },
                    median_answer_hours: row.median_hours.unwrap_or(0.0),
                })
            },
        )
        .await?;
        // Who pays for health services, per governorate: every health referral made. Not
        // suppressed like statistics for other agencies: the ministry owns these cases.
        let medical_coverage = counts(
            pool,
            gov,
            "SELECT c.governorate, s.medical_coverage, count(*) AS n
               FROM service_referrals s JOIN cases c USING (case_id)
              WHERE s.medical_coverage IS NOT NULL
                AND ($1::text IS NULL OR c.governorate = $1)
              GROUP BY 1, 2 ORDER BY 1, 2",
            |(governorate, coverage, count): (String, String, i64)| {
                Ok(pb::MedicalCoverageCount {
                    governorate,
                    coverage: wire_of::<MedicalCoverage>("medical_coverage", &coverage)?,
                    count,
                })
            },
        )
        .await?;
        Ok(Response::new(pb::Indicators {
            cases,
            caseloads,
            overdue,
            agencies,
            service_referrals,
            medical_coverage,
            computed_at: Utc::now().to_rfc3339(),
        }))
    }
}

/// A row of the overdue deadlines per kind.
#[derive(sqlx::FromRow)]
struct OverdueRow {
    kind: String,
    open_past_due: i64,
    escalated: i64,
}

/// A row of the answers to referrals per agency.
#[derive(sqlx::FromRow)]
struct AgencyRow {
    agency_id: String,
    delivered: i64,
    rejected: i64,
    median_ms: Option<f64>,
}

/// A row of the answers to service referrals per receiving agency.
#[derive(sqlx::FromRow)]
struct ServiceAnswersRow {
    to_agency: String,
    sent: i64,
    accepted: i64,
    rejected: i64,
    unanswered: i64,
    median_hours: Option<f64>,
}

/// The rows of one aggregate over the cases of `gov` (all: `None`; the query's `$1`),
/// each read as `R` and turned into its message by `row`.
async fn counts<R, T>(
    pool: &sqlx::PgPool,
    gov: Option<&str>,
    sql: &str,
    row: impl Fn(R) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, CasesError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let rows = sqlx::query_as::<_, R>(sql)
        .bind(gov)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(row)
        .collect::<Result<_, sqlx::Error>>()?)
}

/// The governorate the indicators cover. A directorate covering everywhere may ask for
/// one or for all (empty); any other only for one of its own, and by default its only
/// one: a directorate does not see another area's numbers.
fn indicator_area<'a>(
    agency: &'a himaya_settings::AgencySettings,
    asked: &'a str,
) -> Result<Option<&'a str>, CasesError> {
    let (everywhere, own) = crate::access::area(agency);
    match (everywhere, asked) {
        (true, "") => Ok(None),
        (true, g) => Ok(Some(g)),
        (false, "") if own.len() == 1 => Ok(Some(own[0].as_str())),
        (false, g) if own.iter().any(|o| o == g) => Ok(Some(g)),
        _ => Err(CasesError::PermissionDenied(msg!(
            "indicators-not-your-governorate",
            governorates = own.join(", ")
        ))),
    }
}
