//! Object-level authorization: which cases an agency may touch. The gateway has already
//! proven who calls and that its kind may call the RPC; here the question is this one
//! case. A social affairs agency owns the cases of the governorates it covers; the
//! referring agency, the agencies a referral was delivered to and those sent a live
//! service referral have a part in the case (they may read it through the redactor).
//! Everyone else is refused PERMISSION_DENIED, and the refusal is written to the
//! disclosure log.

use himaya_proto::status::{msg, Acting};
use himaya_record::{AgencyType, CaseId, Purpose};
use himaya_settings::AgencySettings;

use crate::{CasesError, State};

/// What a call needs of the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Working the case: only the ministry directorate whose area it is.
    Owner,
    /// Reading it (through the redactor): the owner or an agency with a part in it.
    Part,
}

/// The roles that read a case through their agency's part in it.
const PARTY_ROLES: &[&str] = &[
    "school_officer",
    "committee_member",
    "hotline_operator",
    "agency_staff",
];

/// A social affairs agency owns the cases of the governorates it covers.
pub(crate) fn owns(agency: &AgencySettings, governorate: &str) -> bool {
    agency.agency_type == AgencyType::SocialAffairs && agency.covers(governorate)
}

/// What decides an agency's part in one case.
pub(crate) struct CaseParties {
    pub governorate: String,
    /// The agency that referred the case.
    pub source_agency: Option<String>,
    /// Agencies the referral was delivered to, and those sent a live service referral.
    pub recipients: Vec<String>,
}

impl CaseParties {
    pub(crate) fn allows(&self, agency_id: &str, agency: &AgencySettings, need: Need) -> bool {
        owns(agency, &self.governorate)
            || (need == Need::Part
                && (self.source_agency.as_deref() == Some(agency_id)
                    || self.recipients.iter().any(|a| a == agency_id)))
    }

    /// Whether the agency has a part in the case other than owning it: it referred the
    /// case, or received it or a service referral.
    fn part_of(&self, agency_id: &str) -> bool {
        self.source_agency.as_deref() == Some(agency_id)
            || self.recipients.iter().any(|a| a == agency_id)
    }

    /// The parties of a loaded case, with its recipients from [`recipients`].
    pub(crate) fn of(record: &himaya_record::CaseRecord, recipients: Vec<String>) -> CaseParties {
        CaseParties {
            governorate: record.child.governorate.clone(),
            source_agency: record.referral.source.agency_id.clone(),
            recipients,
        }
    }

    /// The parties of `case_id`; `None` when there is no such case.
    pub(crate) async fn load(
        pool: &sqlx::PgPool,
        case_id: &CaseId,
        need: Need,
    ) -> Result<Option<CaseParties>, CasesError> {
        let Some((governorate, source_agency)) = sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT governorate, record #>> '{referral,source,agency_id}' AS source
               FROM cases WHERE case_id = $1",
        )
        .bind(case_id.to_string())
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let recipients = if need == Need::Part {
            recipients(pool, case_id).await?
        } else {
            Vec::new()
        };
        Ok(Some(CaseParties {
            governorate,
            source_agency,
            recipients,
        }))
    }
}

/// Agencies with a live part in a case as recipients: those whose system accepted the
/// case referral (a rejected or failed delivery gives no part), and those sent a service
/// referral that is not rejected or cancelled. A service referral's own delivery rows do
/// not count: the referral's state decides.
pub(crate) async fn recipients(
    pool: &sqlx::PgPool,
    case_id: &CaseId,
) -> Result<Vec<String>, CasesError> {
    Ok(sqlx::query_scalar(
        "SELECT agency_id FROM referral_deliveries
          WHERE case_id = $1 AND outcome = 'delivered' AND referral_id NOT LIKE 'srv\\_%'
         UNION
         SELECT to_agency FROM service_referrals
          WHERE case_id = $1 AND state NOT IN ('rejected', 'cancelled')",
    )
    .bind(case_id.to_string())
    .fetch_all(pool)
    .await?)
}

/// The SQL condition for "cases `$1` has a live part in as a recipient", over `cases`,
/// for queries listing many cases (the same rule as [`recipients`]).
pub(crate) const RECIPIENT_OF_CASE: &str = "(case_id IN (SELECT case_id FROM referral_deliveries
                   WHERE agency_id = $1 AND outcome = 'delivered' AND referral_id NOT LIKE 'srv\\_%')
          OR case_id IN (SELECT case_id FROM service_referrals
                   WHERE to_agency = $1 AND state NOT IN ('rejected', 'cancelled')))";

/// Whether `agency` covers `governorate` as a case owner's area, for lists that must
/// stay within it (`$everywhere OR governorate = ANY($governorates)`).
pub(crate) fn area(agency: &AgencySettings) -> (bool, &[String]) {
    (
        agency.governorates.iter().any(|g| g == "*"),
        &agency.governorates,
    )
}

impl State {
    /// Refuses `agency_id` on `case_id` unless it has what `need` asks, logging the
    /// refusal. A case that does not exist is refused alike (only a ministry covering
    /// every governorate passes, and is answered NOT_FOUND).
    // The person, their agency and the case: grouping them would only move the count.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn require_case(
        &self,
        acting: Option<&Acting>,
        agency_id: &str,
        agency: &AgencySettings,
        case_id: &CaseId,
        need: Need,
        channel: &str,
        purpose: Purpose,
    ) -> Result<(), CasesError> {
        let parties = CaseParties::load(&self.pool, case_id, need).await?;
        self.require_parties(
            acting,
            parties.as_ref(),
            agency_id,
            agency,
            case_id,
            need,
            channel,
            purpose,
        )
        .await
    }

    /// [`State::require_case`] for a caller that already holds the case's parties
    /// (a read, which has loaded the record anyway).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn require_parties(
        &self,
        acting: Option<&Acting>,
        parties: Option<&CaseParties>,
        agency_id: &str,
        agency: &AgencySettings,
        case_id: &CaseId,
        need: Need,
        channel: &str,
        purpose: Purpose,
    ) -> Result<(), CasesError> {
        if self
            .allowed_by(
                acting, parties, agency_id, agency, case_id, need, channel, purpose,
            )
            .await?
        {
            return Ok(());
        }
        if let Some(a) =
            acting.filter(|_| parties.is_some_and(|p| p.allows(agency_id, agency, need)))
        {
            // The agency may, the person may not: say so in the words of the person's rule.
            return Err(CasesError::PermissionDenied(msg!(
                "case-not-persons",
                case_id = case_id.to_string(),
                person_id = &a.person
            )));
        }
        let case_id = case_id.to_string();
        Err(CasesError::PermissionDenied(match need {
            Need::Owner => msg!("case-not-in-area", case_id = case_id, agency_id = agency_id),
            Need::Part => msg!("case-no-part", agency_id = agency_id, case_id = case_id),
        }))
    }

    /// Whether `agency_id` has what `need` asks of `case_id` (a case that does not exist
    /// passes); a refusal is logged, and the caller words its answer, so that a refusal
    /// reached through another object's id never names the case.
    // The person, their agency and the case: grouping them would only move the count.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn allowed_on_case(
        &self,
        acting: Option<&Acting>,
        agency_id: &str,
        agency: &AgencySettings,
        case_id: &CaseId,
        need: Need,
        channel: &str,
        purpose: Purpose,
    ) -> Result<bool, CasesError> {
        let parties = CaseParties::load(&self.pool, case_id, need).await?;
        self.allowed_by(
            acting,
            parties.as_ref(),
            agency_id,
            agency,
            case_id,
            need,
            channel,
            purpose,
        )
        .await
    }

    /// The one decision of object-level authorization, on the case's parties (`None`:
    /// no such case), with the refusal logged.
    #[allow(clippy::too_many_arguments)]
    async fn allowed_by(
        &self,
        acting: Option<&Acting>,
        parties: Option<&CaseParties>,
        agency_id: &str,
        agency: &AgencySettings,
        case_id: &CaseId,
        need: Need,
        channel: &str,
        purpose: Purpose,
    ) -> Result<bool, CasesError> {
        let reason = match (parties, need) {
            (Some(p), _) if p.allows(agency_id, agency, need) => match acting {
                None => return Ok(true),
                Some(a)
                    if self
                        .person_may(a, p, agency_id, agency, case_id, need)
                        .await? =>
                {
                    return Ok(true)
                }
                Some(_) => "not_persons_case",
            },
            (Some(_), Need::Owner) => "not_case_owner",
            (Some(_), Need::Part) => "no_part_in_case",
            // A ministry owning every governorate learns nothing from "no such case":
            // it is answered NOT_FOUND by the handler.
            (None, Need::Owner) if area(agency).0 => return Ok(true),
            // Anyone else gets the very answer a real case they have no part in gets,
            // so ids cannot be probed for existence; the probe is logged as a denial.
            (None, _) => "no_such_case",
        };
        self.log_refusal(acting, agency_id, case_id, reason, channel, purpose)
            .await?;
        Ok(false)
    }

    /// The per-person rule on a case the person's agency may touch: a caseworker works
    /// and reads the cases assigned to them; a supervisor those of their caseworkers and
    /// the unassigned cases of the agency's area; the other roles read what their agency
    /// has a part in (a school's officer its referrals, a partner's staff the cases sent
    /// to it, an operator the hotline's escalations), never a case by ownership alone.
    async fn person_may(
        &self,
        a: &Acting,
        p: &CaseParties,
        agency_id: &str,
        agency: &AgencySettings,
        case_id: &CaseId,
        need: Need,
    ) -> Result<bool, CasesError> {
        if need == Need::Part && p.part_of(agency_id) && PARTY_ROLES.iter().any(|r| a.has(r)) {
            return Ok(true);
        }
        if !owns(agency, &p.governorate) || !(a.has("caseworker") || a.has("supervisor")) {
            return Ok(false);
        }
        // The caseworker's agency and id, and their supervisor.
        let row = sqlx::query_as::<_, (Option<String>, Option<String>, Option<String>)>(
            "SELECT c.caseworker_agency, c.caseworker_id, s.supervisor_id
               FROM cases c
               LEFT JOIN staff s ON s.agency_id = c.caseworker_agency AND s.staff_id = c.caseworker_id
              WHERE c.case_id = $1",
        )
        .bind(case_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some((worker_agency, worker, supervisor)) = row else {
            return Ok(false);
        };
        let ours = worker_agency.as_deref() == Some(agency_id);
        Ok(match worker {
            // The unassigned queue is the supervisors'.
            None => a.has("supervisor"),
            Some(w) => {
                (ours && w == a.person)
                    || (a.has("supervisor") && ours && supervisor.as_deref() == Some(&a.person))
            }
        })
    }

    /// Writes a refusal on `case_id` to the disclosure log (and the service log).
    pub(crate) async fn log_refusal(
        &self,
        acting: Option<&Acting>,
        agency_id: &str,
        case_id: &CaseId,
        reason: &str,
        channel: &str,
        purpose: Purpose,
    ) -> Result<(), CasesError> {
        tracing::warn!(case_id = %case_id, agency = %agency_id, reason, channel, "call refused: object-level authorization");
        let mut event =
            crate::read::decision_event(channel, case_id, agency_id, purpose, Err(reason));
        // A refusal of a person names them, as their reads do.
        event.person = acting.map(|a| a.person.clone());
        crate::read::log_events(self, &[event]).await
    }
}
