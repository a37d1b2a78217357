//! `Cases.ExportCases`: the bulk path out of the hub, through the same redactor and
//! disclosure log as a single read. The cases an agency may export are exactly those it
//! has a part in (see `crate::access`); each is decided on its own, so a case whose
//! consent does not cover the agency is left out and its refusal is logged. A page's
//! entries are committed before any of its cases is sent, so a caller who stops reading
//! mid-page leaves entries for cases it never received: the log errs toward disclosure.

use himaya_proto::convert::purpose_from;
use himaya_proto::status::{msg, Lang};
use himaya_proto::v1 as pb;
use himaya_record::{AgencyType, CaseId, CaseRecord, Problem, Purpose, Violations};
use himaya_settings::AgencySettings;
use himaya_store::StoreError;
use tokio::sync::mpsc;

use crate::access::{area, RECIPIENT_OF_CASE};
use crate::db::deliveries_of;
use crate::read::{decide, log_events};
use crate::{CasesError, State};

/// Cases looked up per query: memory stays flat however many cases are exported.
const PAGE: i64 = 200;

/// What one export asks for, checked.
pub(crate) struct ExportRequest {
    pub agency_id: String,
    pub purpose: Purpose,
    pub after: String,
}

impl ExportRequest {
    pub(crate) fn check(
        agency_id: String,
        r: &pb::ExportCasesRequest,
        lang: Lang,
    ) -> Result<ExportRequest, CasesError> {
        let mut v = Violations::new();
        let purpose = purpose_from(r.purpose);
        if purpose.is_none() {
            v.push(
                "purpose",
                Problem::NotChosen {
                    choices: "service_provision, emergency_response, legal_proceedings".into(),
                },
            );
        }
        let after = r.after_case_id.trim();
        if !after.is_empty() && CaseId::parse(after).is_err() {
            v.push(
                "after_case_id",
                Problem::InvalidCode {
                    expected: "the id of the last case received, or empty",
                },
            );
        }
        let Some(purpose) = purpose.filter(|_| v.is_empty()) else {
            return Err(CasesError::Invalid(v, lang));
        };
        if purpose == Purpose::Statistics {
            return Err(CasesError::PermissionDenied(msg!(
                "sharing-statistics-aggregates-only"
            )));
        }
        Ok(ExportRequest {
            agency_id,
            purpose,
            after: after.to_owned(),
        })
    }
}

/// Streams the export into `tx` until the cases run out, the receiver goes away, or a
/// storage error (sent as the stream's last item).
pub(crate) async fn run(
    state: std::sync::Arc<State>,
    agency: AgencySettings,
    req: ExportRequest,
    tx: mpsc::Sender<Result<pb::SharedCase, tonic::Status>>,
) {
    let (mut sent, mut refused) = (0u64, 0u64);
    let outcome = async {
        let mut after = req.after.clone();
        loop {
            let page = candidates(&state.pool, &req.agency_id, &agency, &after).await?;
            let Some((last, _)) = page.last() else {
                return Ok::<(), CasesError>(());
            };
            after = last.clone();
            let ids: Vec<String> = page.iter().map(|(id, _)| id.clone()).collect();
            let mut delivered = deliveries_of(&state.pool, &ids).await?;
            // Decide the whole page, commit its disclosure-log entries together, and only
            // then let the cases leave.
            let mut answers = Vec::with_capacity(page.len());
            let mut events = Vec::with_capacity(page.len());
            for (id, json) in page {
                let record: CaseRecord = serde_json::from_value(json)
                    .map_err(|_| StoreError::Corrupt("cases.record"))?;
                let rows = delivered.remove(&id).unwrap_or_default();
                let (answer, event) = decide(
                    &state,
                    "export",
                    &req.agency_id,
                    &agency,
                    &record,
                    req.purpose,
                    rows,
                )?;
                answers.push(answer);
                events.push(event);
            }
            log_events(&state, &events).await?;
            for answer in answers {
                match answer {
                    Ok(shared) => {
                        if tx.send(Ok(shared)).await.is_err() {
                            return Ok(()); // the caller went away
                        }
                        sent += 1;
                    }
                    // Refused by policy or consent: left out, the refusal logged.
                    Err(CasesError::PermissionDenied(_)) => refused += 1,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    .await;
    tracing::info!(agency = %req.agency_id, purpose = %req.purpose, sent, refused, "export finished");
    if let Err(e) = outcome {
        let _ = tx.send(Err(e.into())).await;
    }
}

/// The next page of cases `agency_id` has a part in, with their records, after `after`
/// in id order (ids are time-ordered, so this is oldest first).
async fn candidates(
    pool: &sqlx::PgPool,
    agency_id: &str,
    agency: &AgencySettings,
    after: &str,
) -> Result<Vec<(String, serde_json::Value)>, CasesError> {
    let owner = agency.agency_type == AgencyType::SocialAffairs;
    let sql = format!(
        "SELECT case_id, record FROM cases
          WHERE case_id > $2
            AND (($3 AND ($4 OR governorate = ANY($5)))
                 OR record #>> '{{referral,source,agency_id}}' = $1
                 OR {RECIPIENT_OF_CASE})
          ORDER BY case_id LIMIT $6"
    );
    let (everywhere, governorates) = area(agency);
    Ok(sqlx::query_as(&sql)
        .bind(agency_id)
        .bind(after)
        .bind(owner)
        .bind(everywhere)
        .bind(governorates)
        .bind(PAGE)
        .fetch_all(pool)
        .await?)
}
