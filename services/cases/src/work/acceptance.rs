//! The first assessment's decision: register, refer on (material need alone goes to
//! relief), or decline.

use himaya_record::validate::within;

use super::*;
use chrono::DateTime;
use himaya_bus::Exchange;
use himaya_events::{keys, new_message_id, ReferralCreated, ServiceRequest};
use himaya_record::{ServiceType, TargetGroup};

impl CaseWorkApi {
    pub(super) async fn decide(
        &self,
        meta: &MetadataMap,
        r: pb::DecideAcceptanceRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let l = &self.0.settings.lifecycle;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let decision: Option<AcceptanceDecision> = cv::required(&mut e.v, "decision", r.decision);
        let known = |c: &String| {
            l.vulnerability_criteria.contains(c) || l.material_need_criteria.contains(c)
        };
        for (i, c) in within(
            &mut e.v,
            "vulnerability_criteria",
            &r.vulnerability_criteria,
        )
        .iter()
        .enumerate()
        {
            if !known(c) {
                let all: Vec<&str> = l
                    .vulnerability_criteria
                    .iter()
                    .chain(&l.material_need_criteria)
                    .map(String::as_str)
                    .collect();
                e.v.push(
                    format!("vulnerability_criteria[{i}]"),
                    Problem::NotChosen {
                        choices: all.join(", "),
                    },
                );
            }
        }
        // Target groups are a closed vocabulary; a deployment uses some of them.
        let mut target_groups = Vec::new();
        for (i, g) in within(&mut e.v, "target_groups", &r.target_groups)
            .iter()
            .enumerate()
        {
            match cv::code::<TargetGroup>(*g) {
                c if !c.is_empty() && l.target_groups.iter().any(|t| t == c) => {
                    target_groups.push(c.to_owned())
                }
                _ => e.v.push(
                    format!("target_groups[{i}]"),
                    Problem::NotChosen {
                        choices: l.target_groups.join(", "),
                    },
                ),
            }
        }
        let reason = r.reason.as_deref().map(str::trim).filter(|s| !s.is_empty());
        match decision {
            Some(AcceptanceDecision::Register) if r.vulnerability_criteria.is_empty() => {
                e.v.push("vulnerability_criteria", Problem::AtLeastOne)
            }
            Some(AcceptanceDecision::ReferOn | AcceptanceDecision::Decline) if reason.is_none() => {
                e.v.push("reason", Problem::Required)
            }
            _ => {}
        }
        if decision == Some(AcceptanceDecision::ReferOn)
            && !r
                .referred_on_to
                .as_ref()
                .is_some_and(|a| self.0.settings.agencies.contains_key(a))
        {
            e.v.push(
                "referred_on_to",
                Problem::InvalidCode {
                    expected: "an agency id from the directory",
                },
            );
        }
        if let Some(text) = reason {
            check_text(&mut e.v, "reason", text, MAX_NARRATIVE);
        }
        let case_id = e.finish()?;
        let Some(mut decision) = decision else {
            return Err(CasesError::Precondition(msg!("case-decision-missing")));
        };
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        let (mut reason, mut to, mut note) =
            (reason.map(str::to_owned), r.referred_on_to.clone(), None);
        // Poverty or material need alone never registers a case: refer to relief instead.
        if decision == AcceptanceDecision::Register
            && r.vulnerability_criteria
                .iter()
                .all(|c| l.material_need_criteria.contains(c))
        {
            decision = AcceptanceDecision::ReferOn;
            reason = Some(lifecycle::MATERIAL_NEED_ONLY.into());
            to = Some(l.relief_agency.clone());
            note = Some(format!(
                "not registered: {}; referred on to {}",
                lifecycle::MATERIAL_NEED_ONLY,
                l.relief_agency
            ));
        }
        rec.status = apply(rec.status, decision.into()).map_err(illegal)?;
        rec.acceptance = Some(lifecycle::Acceptance {
            decision,
            vulnerability_criteria: r.vulnerability_criteria.clone(),
            target_groups: if target_groups.is_empty() {
                rec.target_groups
                    .iter()
                    .map(|g| g.as_str().to_owned())
                    .filter(|g| l.target_groups.contains(g))
                    .collect()
            } else {
                target_groups
            },
            reason,
            referred_on_to: if decision == AcceptanceDecision::ReferOn {
                to
            } else {
                None
            },
            decided_by: r.actor.clone(),
            decided_at: now,
        });
        if rec.status == CaseStatus::Registered {
            for (kind, due) in on_registration(
                now,
                &self.0.risk_deadlines(rec.risk_level),
                rec.child.date_of_birth,
                Duration::days(l.turns_18_warning_days),
            ) {
                open_deadline(&mut tx, &case_id, kind, due).await?;
            }
        }
        let change = rec.status.as_str();
        save(&mut tx, &mut rec, &r.actor, change, now).await?;
        if let Some(agency) = rec
            .acceptance
            .as_ref()
            .and_then(|a| a.referred_on_to.clone())
        {
            self.refer_on(&mut tx, &rec, &agency, now).await?;
        }
        tx.commit().await?;
        tracing::info!(case_id = %case_id, status = %rec.status, "acceptance decided");
        let mut reply = change_reply(&rec, note);
        if let Some(to) = rec
            .acceptance
            .as_ref()
            .and_then(|a| a.referred_on_to.as_deref())
        {
            reply.get_mut().warnings = crate::undelivered::warnings(
                &self.0.settings,
                &rec,
                Some(to),
                himaya_proto::status::lang(meta),
            );
        }
        Ok(reply)
    }
}

impl CaseWorkApi {
    /// A case referred on goes to the agency it was referred to, through the router like
    /// any referral (the consent layer decides what that agency sees). For a relief agency
    /// speaking the SPDCI registry standard, that delivery is the search of its registry
    /// for the child's household; the household found comes back as the agency's reference.
    async fn refer_on(
        &self,
        tx: &mut sqlx::PgConnection,
        rec: &CaseRecord,
        agency: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CasesError> {
        let event = referral_on(&self.0.settings, rec, agency, now);
        let referral_id = rec.referral.referral_id.to_string();
        let service = event
            .service_request
            .as_ref()
            .map(|s| s.service_type.clone())
            .unwrap_or_default();
        himaya_store::outbox::enqueue_event(
            tx,
            Exchange::Events,
            keys::SERVICE_REFERRAL_REQUESTED,
            &event,
            rec.referral.priority.amqp_priority(),
            &referral_id,
        )
        .await?;
        tracing::info!(case_id = %rec.case_id, to = agency, service = %service, "case referred on");
        Ok(())
    }
}

/// The onward referral of a case referred on to `agency` (also what is sent again when
/// it could not be delivered and its cause was fixed).
pub(crate) fn referral_on(
    settings: &himaya_settings::Settings,
    rec: &CaseRecord,
    agency: &str,
    now: DateTime<Utc>,
) -> ReferralCreated {
    let material = rec
        .acceptance
        .as_ref()
        .and_then(|a| a.reason.as_deref())
        .is_some_and(|r| r == lifecycle::MATERIAL_NEED_ONLY);
    let service = if material {
        ServiceType::Economic
    } else {
        settings
            .agencies
            .get(agency)
            .and_then(|a| a.services.first().copied())
            .unwrap_or(ServiceType::CaseManagement)
    };
    ReferralCreated {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        case: rec.clone(),
        service_request: Some(ServiceRequest {
            service_referral_id: rec.referral.referral_id.to_string(),
            agency_id: agency.to_owned(),
            service_type: service.as_str().to_owned(),
            action_id: "referred_on".into(),
            // Referred on, not a health service the hub orders: no medical costs.
            medical_coverage: None,
        }),
    }
}
