//! `himaya.v1.Consents`: consents and legal bases on a case (FHIR Consent-like): grant,
//! amend, withdraw, list. The sharing layer reads them from the record at every
//! disclosure, so a change takes effect on the next one: a withdrawal stops disclosures at
//! once.

use chrono::DateTime;
use himaya_bus::Exchange;
use himaya_events::{keys, ConsentWithdrawn};
use himaya_proto::convert::WireEnum;
use himaya_record::consent::{
    contradictions, Consent, ConsentMethod, LegalBasis, Provision, ProvisionKind,
};
use himaya_record::validate::within;
use himaya_record::{ConsentGiver, DataCategory, Purpose};

use super::*;

fn time(v: &mut Violations, field: &str, raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            v.push(field, Problem::InvalidDate);
            None
        }
    }
}

/// `himaya.v1.Consents`.
pub struct ConsentsApi(pub(crate) Arc<State>);

#[tonic::async_trait]
impl pb::consents_server::Consents for ConsentsApi {
    async fn grant_consent(
        &self,
        req: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(ConsentsApi::grant_consent(self, &meta, r).await?)
    }

    async fn amend_consent(
        &self,
        req: Request<pb::AmendConsentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(ConsentsApi::amend_consent(self, &meta, r).await?)
    }

    async fn withdraw_consent(
        &self,
        req: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(ConsentsApi::withdraw_consent(self, &meta, r).await?)
    }

    async fn list_consents(
        &self,
        req: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ConsentList>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(
            ConsentsApi::list_consents(self, &meta, r).await?,
        ))
    }
}

impl ConsentsApi {
    /// Checks provisions against the directory and the vocabularies, and against each
    /// other (a consent that both permits and denies the same thing contradicts itself).
    fn provisions(&self, v: &mut Violations, list: &[pb::Provision]) -> Vec<Provision> {
        if list.is_empty() {
            v.push("provisions", Problem::AtLeastOne);
        }
        let list = within(v, "provisions", list);
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let f = |name: &str| format!("provisions[{i}].{name}");
            let kind: Option<ProvisionKind> = cv::required(v, f("kind"), p.kind);
            if let Some(a) = &p.recipient_agency {
                if !self.0.settings.agencies.contains_key(a) {
                    v.push(
                        f("recipient_agency"),
                        Problem::InvalidCode {
                            expected: "an agency id from the directory",
                        },
                    );
                }
            }
            let recipient_type: Option<AgencyType> =
                cv::optional(v, f("recipient_type"), p.recipient_type);
            let purposes: Vec<Purpose> = cv::list(v, &f("purposes"), &p.purposes);
            let categories: Vec<DataCategory> = cv::list(v, &f("categories"), &p.categories);
            if let Some(kind) = kind {
                out.push(Provision {
                    kind,
                    recipient_agency: p.recipient_agency.clone(),
                    recipient_type,
                    purposes,
                    categories,
                });
            }
        }
        if out.len() == list.len() {
            for (i, j) in contradictions(&out) {
                v.push(
                    format!("provisions[{j}]"),
                    Problem::Contradicts {
                        other: format!("provisions[{i}]"),
                    },
                );
            }
        }
        out
    }

    async fn grant_consent(
        &self,
        meta: &MetadataMap,
        r: pb::GrantConsentRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let now = Utc::now();
        // UNSPECIFIED is "not given": a consent names its giver and method, a legal basis
        // its reference; a number outside a vocabulary is refused listing the choices.
        let given_by: Option<ConsentGiver> = cv::optional(&mut e.v, "given_by", r.given_by);
        let method: Option<ConsentMethod> = cv::optional(&mut e.v, "method", r.method);
        let legal_basis: Option<LegalBasis> = cv::optional(&mut e.v, "legal_basis", r.legal_basis);
        let legal_reference = r
            .legal_reference
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        match (r.given_by != 0, r.legal_basis != 0) {
            (true, true) => {
                e.v.push("legal_basis", Problem::NotBoth { other: "given_by" })
            }
            (false, false) => e.v.push("given_by", Problem::Required),
            (true, false) if r.method == 0 => e.v.push("method", Problem::Required),
            (false, true) if legal_reference.is_none() => {
                e.v.push("legal_reference", Problem::Required)
            }
            _ => {}
        }
        if let Some(text) = legal_reference {
            check_text(&mut e.v, "legal_reference", text, 200);
        }
        let provisions = self.provisions(&mut e.v, &r.provisions);
        let valid_from = time(&mut e.v, "valid_from", &r.valid_from).unwrap_or(now);
        let valid_until = time(&mut e.v, "valid_until", &r.valid_until);
        if valid_until.is_some_and(|u| u <= valid_from || u <= now) {
            e.v.push("valid_until", Problem::Expired);
        }
        let case_id = e.finish()?;
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        not_merged(&rec)?;
        let consent_id = format!("cns_{}", himaya_record::MessageId::new().uuid().simple());
        rec.consents.push(Consent {
            consent_id: consent_id.clone(),
            given_by,
            method,
            legal_basis,
            legal_reference: legal_reference.map(str::to_owned),
            provisions,
            valid_from,
            valid_until,
            recorded_by: r.actor.clone(),
            recorded_at: now,
            withdrawn_at: None,
            revision: 1,
        });
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("consent granted: {consent_id}"),
            now,
        )
        .await?;
        // What could not be sent for want of this consent goes now.
        crate::undelivered::reroute(&mut tx, &self.0.settings, &rec, now).await?;
        tx.commit().await?;
        Ok(change_reply(&rec, Some(consent_id)))
    }

    async fn amend_consent(
        &self,
        meta: &MetadataMap,
        r: pb::AmendConsentRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let now = Utc::now();
        let provisions = self.provisions(&mut e.v, &r.provisions);
        let valid_until = time(&mut e.v, "valid_until", &r.valid_until);
        if valid_until.is_some_and(|u| u <= now) {
            e.v.push("valid_until", Problem::Expired);
        }
        let case_id = e.finish()?;
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        not_merged(&rec)?;
        let c = live_consent(&mut rec, &r.consent_id)?;
        c.provisions = provisions;
        c.valid_until = valid_until;
        c.revision += 1;
        let change = format!(
            "consent amended: {} (revision {})",
            c.consent_id, c.revision
        );
        save(&mut tx, &mut rec, &r.actor, &change, now).await?;
        crate::undelivered::reroute(&mut tx, &self.0.settings, &rec, now).await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }

    async fn withdraw_consent(
        &self,
        meta: &MetadataMap,
        r: pb::WithdrawConsentRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let case_id = envelope(meta, &r.case_id, &r.actor).finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        not_merged(&rec)?;
        let c = live_consent(&mut rec, &r.consent_id)?;
        c.withdrawn_at = Some(now);
        // Earlier recipients are told through the disclosure log (the audit component).
        let event = ConsentWithdrawn {
            message_id: himaya_events::new_message_id(),
            occurred_at: now.to_rfc3339(),
            case_id: case_id.to_string(),
            consent_id: c.consent_id.clone(),
            categories: permitted_categories(c),
            withdrawn_at: now.to_rfc3339(),
        };
        let change = format!("consent withdrawn: {}", c.consent_id);
        save(&mut tx, &mut rec, &r.actor, &change, now).await?;
        himaya_store::outbox::enqueue_event(
            &mut tx,
            Exchange::Events,
            keys::CONSENT_WITHDRAWN,
            &event,
            9,
            &event.case_id,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(case_id = %case_id, "consent withdrawn: further disclosures under it stop");
        Ok(change_reply(&rec, None))
    }

    async fn list_consents(
        &self,
        meta: &MetadataMap,
        r: pb::ListConsentsRequest,
    ) -> Result<pb::ConsentList, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let case_id = envelope(meta, &r.case_id, "reader").finish()?;
        let rec = crate::db::load_case(&self.0.pool, &case_id)
            .await?
            .ok_or_else(|| {
                CasesError::NotFound(msg!("case-not-found", case_id = case_id.to_string()))
            })?;
        let now = Utc::now();
        let wire = |t: Option<i32>| t.unwrap_or(0);
        Ok(pb::ConsentList {
            consents: rec
                .consents
                .iter()
                .map(|c| pb::ConsentView {
                    consent_id: c.consent_id.clone(),
                    given_by: wire(c.given_by.map(WireEnum::to_wire)),
                    method: wire(c.method.map(WireEnum::to_wire)),
                    legal_basis: wire(c.legal_basis.map(WireEnum::to_wire)),
                    legal_reference: c.legal_reference.clone(),
                    provisions: c
                        .provisions
                        .iter()
                        .map(|p| pb::Provision {
                            kind: p.kind.to_wire(),
                            recipient_agency: p.recipient_agency.clone(),
                            recipient_type: wire(p.recipient_type.map(WireEnum::to_wire)),
                            purposes: cv::wires(&p.purposes),
                            categories: cv::wires(&p.categories),
                        })
                        .collect(),
                    valid_from: c.valid_from.to_rfc3339(),
                    valid_until: c.valid_until.map(|t| t.to_rfc3339()),
                    recorded_by: c.recorded_by.clone(),
                    recorded_at: c.recorded_at.to_rfc3339(),
                    withdrawn_at: c.withdrawn_at.map(|t| t.to_rfc3339()),
                    revision: c.revision,
                    active: c.is_active(now),
                })
                .collect(),
        })
    }
}

/// The categories a consent's permits named (every category when one named none).
fn permitted_categories(c: &Consent) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for p in c
        .provisions
        .iter()
        .filter(|p| p.kind == ProvisionKind::Permit)
    {
        if p.categories.is_empty() {
            out.extend(DataCategory::ALL);
        } else {
            out.extend(p.categories.iter().copied());
        }
    }
    out.into_iter().map(|c| c.as_str().to_owned()).collect()
}

fn not_merged(rec: &CaseRecord) -> Result<(), CasesError> {
    if rec.status == CaseStatus::Merged {
        return Err(CasesError::Precondition(msg!("case-consent-merged")));
    }
    Ok(())
}

/// The consent `id`, which must not be withdrawn.
fn live_consent<'a>(rec: &'a mut CaseRecord, id: &str) -> Result<&'a mut Consent, CasesError> {
    let case_id = rec.case_id.to_string();
    let known: Vec<String> = rec.consents.iter().map(|c| c.consent_id.clone()).collect();
    let id = id.trim();
    let Some(c) = rec.consents.iter_mut().find(|c| c.consent_id == id) else {
        return Err(CasesError::NotFound(if known.is_empty() {
            msg!(
                "case-consent-not-found-none",
                case_id = case_id,
                consent_id = id
            )
        } else {
            msg!(
                "case-consent-not-found",
                case_id = case_id,
                consent_id = id,
                consents = known.join(", ")
            )
        }));
    };
    if c.withdrawn_at.is_some() {
        return Err(CasesError::Precondition(msg!(
            "case-consent-withdrawn",
            consent_id = id
        )));
    }
    Ok(c)
}
