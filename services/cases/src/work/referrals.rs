//! `himaya.v1.ServiceReferrals`: a plan action referred to the agency responsible for it,
//! answered by that agency (FHIR Task states). The case-owning agency creates and may
//! cancel; the receiving agency answers and reports progress; nobody else sees it.

use chrono::Duration;
use himaya_bus::Exchange;
use himaya_events::keys;
use himaya_proto::convert::WireEnum;
use himaya_record::service_referral::{
    has_medical_costs, medical_coverage, AbilityToPay, Side, TaskState,
};
use himaya_record::{ServiceReferralId, ServiceType};

use super::*;
use crate::change::{load_locked, open_deadline_for};
use crate::service_referrals::{self as store, ServiceReferralRow};

pub struct ServiceReferralsApi(pub(crate) Arc<State>);

impl ServiceReferralsApi {
    /// The calling agency, which must be in the directory.
    fn agency(&self, meta: &MetadataMap) -> Result<String, CasesError> {
        self.0.calling_agency(meta).map(|(id, _)| id)
    }

    fn referral_id(v: &mut Violations, raw: &str) -> Option<String> {
        match ServiceReferralId::parse(raw.trim()) {
            Ok(id) => Some(id.to_string()),
            Err(_) => {
                v.push(
                    "service_referral_id",
                    Problem::InvalidCode {
                        expected:
                            "a service referral id such as srv_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b",
                    },
                );
                None
            }
        }
    }

    /// Refuses (and logs) a caller who is not party to the referral `raw` names, before
    /// anything else of the request is looked at. An id that does not parse, or names no
    /// referral, is left to the handler.
    async fn require_party(
        &self,
        meta: &MetadataMap,
        agency_id: &str,
        raw: &str,
    ) -> Result<(), CasesError> {
        let Ok(id) = ServiceReferralId::parse(raw.trim()) else {
            return Ok(());
        };
        let Some(sr) = store::load(&self.0.pool, &id.to_string()).await? else {
            return Ok(());
        };
        let acting = himaya_proto::status::acting(meta);
        let case_id = CaseId::parse(&sr.case_id)
            .map_err(|_| himaya_store::StoreError::Corrupt("service_referrals.case_id"))?;
        match (Self::side(&sr, agency_id), &acting) {
            // The ministry's side, for a person: the case must be theirs (or their team's).
            (Ok(Side::Referrer), Some(a)) => {
                let (_, agency) = self.0.calling_agency(meta)?;
                return self
                    .0
                    .require_case(
                        Some(a),
                        agency_id,
                        &agency,
                        &case_id,
                        Need::Owner,
                        "grpc_call",
                        himaya_record::Purpose::ServiceProvision,
                    )
                    .await;
            }
            (Ok(_), _) => return Ok(()),
            (Err(_), _) => {}
        }
        self.0
            .log_refusal(
                acting.as_ref(),
                agency_id,
                &case_id,
                "not_party_to_referral",
                "grpc_call",
                himaya_record::Purpose::ServiceProvision,
            )
            .await?;
        Err(CasesError::PermissionDenied(msg!(
            "service-referral-not-party",
            agency_id = agency_id,
            service_referral_id = id.to_string()
        )))
    }

    /// Loads a referral the caller is party to; which side it is on.
    fn side(r: &ServiceReferralRow, agency: &str) -> Result<Side, CasesError> {
        if r.to_agency == agency {
            Ok(Side::Receiver)
        } else if r.from_agency == agency {
            Ok(Side::Referrer)
        } else {
            tracing::warn!(service_referral_id = %r.id, agency = %agency, "service referral refused: the agency is not party to it");
            Err(CasesError::PermissionDenied(msg!(
                "service-referral-not-party",
                agency_id = agency,
                service_referral_id = &r.id
            )))
        }
    }

    async fn create(
        &self,
        meta: &MetadataMap,
        r: pb::CreateServiceReferralRequest,
    ) -> Result<pb::ServiceReferral, CasesError> {
        let from = self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let lang = e.lang;
        let action_id = r.action_id.trim();
        if action_id.is_empty() {
            e.v.push("action_id", Problem::Required);
        }
        check_text(&mut e.v, "action_id", action_id, 16);
        // Whether it is required depends on the action's service, known once the case is
        // loaded; a value given is checked either way.
        let ability: Option<AbilityToPay> =
            cv::optional(&mut e.v, "ability_to_pay", r.ability_to_pay);
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        // The case lock serializes referrals of one case: no two live ones per action.
        let rec = load_locked(&mut tx, &case_id).await?;
        if rec.status != CaseStatus::Registered {
            return Err(CasesError::Precondition(msg!(
                "service-referral-case-not-registered",
                status = rec.status.to_string()
            )));
        }
        let actions: Vec<_> = rec
            .plan
            .iter()
            .flat_map(|p| &p.goals)
            .flat_map(|g| &g.actions)
            .collect();
        let Some(action) = actions.iter().find(|a| a.action_id == action_id) else {
            let ids: Vec<&str> = actions.iter().map(|a| a.action_id.as_str()).collect();
            let case_id = case_id.to_string();
            return Err(CasesError::NotFound(if ids.is_empty() {
                msg!(
                    "service-referral-action-not-found-no-plan",
                    case_id = case_id,
                    action_id = action_id
                )
            } else {
                msg!(
                    "service-referral-action-not-found",
                    case_id = case_id,
                    action_id = action_id,
                    actions = ids.join(", ")
                )
            }));
        };
        // A health service says who pays: the hub decides it from the case's risk and what
        // the family can pay, which the referrer must say (the caller never types the
        // coverage itself).
        let medical_costs = if has_medical_costs(action.service_type) {
            let Some(ability) = ability else {
                let mut v = Violations::new();
                cv::required::<AbilityToPay>(&mut v, "ability_to_pay", 0);
                return Err(CasesError::Invalid(v, lang));
            };
            Some((ability, medical_coverage(rec.risk_level, ability)))
        } else {
            None
        };
        if action.done {
            return Err(CasesError::Precondition(msg!(
                "service-referral-action-done",
                action_id = action_id
            )));
        }
        if action.responsible_agency == from {
            return Err(CasesError::Precondition(msg!(
                "service-referral-own-agency",
                action_id = action_id
            )));
        }
        let live: Option<String> = sqlx::query_scalar(
            "SELECT service_referral_id FROM service_referrals
              WHERE case_id = $1 AND action_id = $2
                AND state NOT IN ('rejected', 'completed', 'failed', 'cancelled')",
        )
        .bind(case_id.to_string())
        .bind(action_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(live) = live {
            return Err(CasesError::Precondition(msg!(
                "service-referral-already-live",
                action_id = action_id,
                service_referral_id = live
            )));
        }
        let sr = ServiceReferralRow {
            id: ServiceReferralId::new().to_string(),
            case_id: case_id.to_string(),
            action_id: action_id.to_owned(),
            from_agency: from.clone(),
            to_agency: action.responsible_agency.clone(),
            service_type: action.service_type.as_str().to_owned(),
            state: TaskState::Requested,
            reason: None,
            agency_reference: None,
            version: 1,
            created_at: now,
            updated_at: now,
            medical_costs,
        };
        sqlx::query(
            "INSERT INTO service_referrals (service_referral_id, case_id, action_id, from_agency, to_agency,
                                            service_type, state, requested_by, created_at, updated_at,
                                            ability_to_pay, medical_coverage)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)",
        )
        .bind(&sr.id)
        .bind(&sr.case_id)
        .bind(&sr.action_id)
        .bind(&sr.from_agency)
        .bind(&sr.to_agency)
        .bind(&sr.service_type)
        .bind(sr.state.as_str())
        .bind(r.actor.trim())
        .bind(now)
        .bind(medical_costs.map(|(a, _)| a.as_str()))
        .bind(medical_costs.map(|(_, c)| c.as_str()))
        .execute(&mut *tx)
        .await?;
        let answer_within = {
            let d = &self.0.settings.lifecycle.deadlines;
            match rec.risk_level {
                RiskLevel::High => &d.high,
                RiskLevel::Medium => &d.medium,
                RiskLevel::Low => &d.low,
            }
            .service_referral_answer_within_secs
        };
        // A referral that cannot reach its agency now has no answer due from it: the
        // deadline opens when it is delivered (see crate::undelivered).
        let warnings = crate::undelivered::warnings(
            &self.0.settings,
            &rec,
            Some(&sr.to_agency),
            himaya_proto::status::lang(meta),
        );
        if warnings.is_empty() {
            open_deadline_for(
                &mut tx,
                &case_id,
                DeadlineKind::ServiceReferral,
                Some(&sr.id),
                now + Duration::seconds(answer_within),
            )
            .await?;
        }
        store::record_change(&mut tx, &sr, &from, r.actor.trim(), now).await?;
        // The record goes to the router, which alone decides what the agency may see.
        let event = store::requested(&rec, &sr, now);
        himaya_store::outbox::enqueue_event(
            &mut tx,
            Exchange::Events,
            keys::SERVICE_REFERRAL_REQUESTED,
            &event,
            rec.referral.priority.amqp_priority(),
            &sr.id,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(case_id = %case_id, service_referral_id = %sr.id, to = %sr.to_agency, "service referral requested");
        let mut reply = self.reply(sr, &from).await?;
        reply.warnings = warnings;
        Ok(reply)
    }

    async fn update(
        &self,
        meta: &MetadataMap,
        r: pb::UpdateServiceReferralRequest,
    ) -> Result<pb::ServiceReferral, CasesError> {
        let agency = self.agency(meta)?;
        self.require_party(meta, &agency, &r.service_referral_id)
            .await?;
        let lang = himaya_proto::status::lang(meta);
        let mut v = Violations::new();
        let id = Self::referral_id(&mut v, &r.service_referral_id);
        // Any state but the first: a referral is requested only by creating it.
        let to = cv::state_from(r.state).filter(|t| *t != TaskState::Requested);
        if to.is_none() {
            v.push("state", cv::choices(&TaskState::ALL[1..]));
        }
        if r.actor.trim().is_empty() {
            v.push("actor", Problem::Required);
        }
        check_text(&mut v, "actor", &r.actor, 64);
        let reason = r.reason.as_deref().map(str::trim).filter(|s| !s.is_empty());
        match (to, reason) {
            (Some(t), None) if t.needs_reason() => v.push("reason", Problem::Required),
            (_, Some(text)) => check_text(&mut v, "reason", text, MAX_NARRATIVE),
            _ => {}
        }
        let (Some(id), Some(to), true) = (id, to, v.is_empty()) else {
            return Err(CasesError::Invalid(v, lang));
        };
        let mut tx = self.0.pool.begin().await?;
        let mut sr = store::load_for_update(&mut tx, &id).await?.ok_or_else(|| {
            CasesError::NotFound(msg!(
                "service-referral-not-found",
                service_referral_id = &id
            ))
        })?;
        let side = Self::side(&sr, &agency)?;
        if sr.version != r.expected_version {
            return Err(CasesError::StaleReferral {
                id,
                current: sr.version,
                expected: r.expected_version,
            });
        }
        store::move_to(
            &mut tx,
            &mut sr,
            to,
            side,
            &agency,
            r.actor.trim(),
            reason.map(str::to_owned),
            None,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(service_referral_id = %sr.id, agency = %agency, state = %sr.state, "service referral changed");
        self.reply(sr, &agency).await
    }

    async fn get(
        &self,
        meta: &MetadataMap,
        r: pb::GetServiceReferralRequest,
    ) -> Result<pb::ServiceReferral, CasesError> {
        let agency = self.agency(meta)?;
        self.require_party(meta, &agency, &r.service_referral_id)
            .await?;
        let mut v = Violations::new();
        let Some(id) = Self::referral_id(&mut v, &r.service_referral_id) else {
            return Err(CasesError::Invalid(v, himaya_proto::status::lang(meta)));
        };
        let sr = store::load(&self.0.pool, &id).await?.ok_or_else(|| {
            CasesError::NotFound(msg!(
                "service-referral-not-found",
                service_referral_id = &id
            ))
        })?;
        Self::side(&sr, &agency)?;
        self.reply(sr, &agency).await
    }

    async fn list(
        &self,
        meta: &MetadataMap,
        r: pb::ListServiceReferralsRequest,
    ) -> Result<pb::ServiceReferralList, CasesError> {
        let agency = self.agency(meta)?;
        let mut v = Violations::new();
        let case_id = (!r.case_id.trim().is_empty())
            .then(|| {
                CaseId::parse(r.case_id.trim())
                    .map_err(|_| {
                        v.push(
                            "case_id",
                            Problem::InvalidCode {
                                expected: "a case id such as case_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b",
                            },
                        )
                    })
                    .ok()
            })
            .flatten();
        let state: Option<TaskState> = cv::optional(&mut v, "state", r.state);
        if !v.is_empty() {
            return Err(CasesError::Invalid(v, himaya_proto::status::lang(meta)));
        }
        if let Some(case_id) = &case_id {
            let (_, a) = self.0.calling_agency(meta)?;
            self.0
                .require_case(
                    himaya_proto::status::acting(meta).as_ref(),
                    &agency,
                    &a,
                    case_id,
                    Need::Part,
                    "grpc_call",
                    himaya_record::Purpose::ServiceProvision,
                )
                .await?;
        }
        let rows = store::list(
            &self.0.pool,
            &agency,
            case_id.map(|c| c.to_string()).as_deref(),
            state,
        )
        .await?;
        let mut referrals = Vec::with_capacity(rows.len());
        for sr in rows {
            referrals.push(self.reply(sr, &agency).await?);
        }
        Ok(pb::ServiceReferralList { referrals })
    }

    /// The referral as `viewer` (an agency party to it) may see it: what the family can
    /// pay is the referrer's record, so the receiving agency sees only who pays.
    async fn reply(
        &self,
        sr: ServiceReferralRow,
        viewer: &str,
    ) -> Result<pb::ServiceReferral, CasesError> {
        let changes = store::changes(&self.0.pool, &sr.id).await?;
        let due = store::answer_due(&self.0.pool, &sr.id).await?;
        let (ability_to_pay, medical_coverage) = match sr.medical_costs {
            Some((a, c)) if sr.from_agency == viewer => (a.to_wire(), c.to_wire()),
            Some((_, c)) => (0, c.to_wire()),
            None => (0, 0),
        };
        Ok(pb::ServiceReferral {
            service_referral_id: sr.id,
            case_id: sr.case_id,
            action_id: sr.action_id,
            from_agency: sr.from_agency,
            to_agency: sr.to_agency,
            service_type: wire_of::<ServiceType>("service_type", &sr.service_type)?,
            state: sr.state.to_wire(),
            reason: sr.reason,
            version: sr.version,
            created_at: sr.created_at.to_rfc3339(),
            updated_at: sr.updated_at.to_rfc3339(),
            answer_due_at: due.map(|d| d.to_rfc3339()).unwrap_or_default(),
            agency_reference: sr.agency_reference,
            ability_to_pay,
            medical_coverage,
            warnings: Vec::new(),
            changes: changes
                .into_iter()
                .map(|c| {
                    Ok(pb::ServiceReferralChange {
                        state: wire_of::<TaskState>("state", &c.state)?,
                        agency_id: c.agency_id,
                        actor: c.actor,
                        reason: c.reason,
                        at: c.at.to_rfc3339(),
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?,
        })
    }
}

#[tonic::async_trait]
impl pb::service_referrals_server::ServiceReferrals for ServiceReferralsApi {
    async fn create_service_referral(
        &self,
        req: Request<pb::CreateServiceReferralRequest>,
    ) -> Result<Response<pb::ServiceReferral>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(Response::new(self.create(&meta, r).await?))
    }

    async fn update_service_referral(
        &self,
        req: Request<pb::UpdateServiceReferralRequest>,
    ) -> Result<Response<pb::ServiceReferral>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(Response::new(self.update(&meta, r).await?))
    }

    async fn get_service_referral(
        &self,
        req: Request<pb::GetServiceReferralRequest>,
    ) -> Result<Response<pb::ServiceReferral>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(self.get(&meta, r).await?))
    }

    async fn list_service_referrals(
        &self,
        req: Request<pb::ListServiceReferralsRequest>,
    ) -> Result<Response<pb::ServiceReferralList>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(self.list(&meta, r).await?))
    }
}
