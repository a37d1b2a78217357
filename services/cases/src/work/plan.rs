//! The comprehensive assessment and the protection plan (step 3); each plan action is
//! watched by its own deadline until it is done.

use chrono::NaiveDate;
use himaya_record::lifecycle::{action_due, Assessment, Goal, Need, NeedDomain, Plan, PlanAction};
use himaya_record::validate::within;
use himaya_record::ServiceType;

use super::*;
use crate::change::{close_deadline_for, open_deadline_for};

fn texts(v: &mut Violations, field: &str, list: &[String]) -> Vec<String> {
    let list = within(v, field, list);
    for (i, t) in list.iter().enumerate() {
        required_text(v, &format!("{field}[{i}]"), t);
    }
    list.iter().map(|t| t.trim().to_owned()).collect()
}

impl CaseWorkApi {
    pub(super) async fn assess(
        &self,
        meta: &MetadataMap,
        r: pb::RecordAssessmentRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let risk_factors = texts(&mut e.v, "risk_factors", &r.risk_factors);
        let protective_factors = texts(&mut e.v, "protective_factors", &r.protective_factors);
        if r.needs.is_empty() {
            e.v.push("needs", Problem::AtLeastOne);
        }
        let mut needs = Vec::new();
        for (i, n) in within(&mut e.v, "needs", &r.needs).iter().enumerate() {
            let domain: Option<NeedDomain> =
                cv::required(&mut e.v, format!("needs[{i}].domain"), n.domain);
            required_text(&mut e.v, &format!("needs[{i}].description"), &n.description);
            if let Some(domain) = domain {
                needs.push(Need {
                    domain,
                    description: n.description.trim().into(),
                });
            }
        }
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        apply(rec.status, Move::Assess).map_err(illegal)?;
        rec.assessment = Some(Assessment {
            risk_factors,
            protective_factors,
            needs,
            assessed_by: r.actor.clone(),
            assessed_at: now,
        });
        save(&mut tx, &mut rec, &r.actor, "assessed", now).await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }

    /// Checks one action; returns it numbered, or leaves violations.
    fn action(
        &self,
        v: &mut Violations,
        field: &str,
        a: &pb::ActionInput,
        n: usize,
        today: NaiveDate,
    ) -> Option<PlanAction> {
        required_text(v, &format!("{field}.description"), &a.description);
        let service: Option<ServiceType> =
            cv::required(v, format!("{field}.service_type"), a.service_type);
        let due = NaiveDate::parse_from_str(a.due_on.trim(), "%Y-%m-%d").ok();
        match due {
            None => v.push(format!("{field}.due_on"), Problem::InvalidDate),
            Some(d) if d < today => v.push(
                format!("{field}.due_on"),
                Problem::OutOfRange { min: 0, max: 3650 },
            ),
            Some(_) => {}
        }
        match (self.0.settings.agencies.get(&a.responsible_agency), service) {
            (None, _) => v.push(
                format!("{field}.responsible_agency"),
                Problem::InvalidCode {
                    expected: "an agency id from the directory",
                },
            ),
            (Some(ag), Some(s))
                if s != ServiceType::CaseManagement && !ag.services.contains(&s) =>
            {
                v.push(
                    format!("{field}.service_type"),
                    Problem::InvalidCode {
                        expected: "a service the responsible agency offers (himaya agencies)",
                    },
                )
            }
            _ => {}
        }
        Some(PlanAction {
            action_id: format!("a{n}"),
            description: a.description.trim().into(),
            responsible_agency: a.responsible_agency.clone(),
            service_type: service?,
            due_on: due?,
            done: false,
        })
    }

    pub(super) async fn set_plan(
        &self,
        meta: &MetadataMap,
        r: pb::SetPlanRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        if r.goals.is_empty() {
            e.v.push("goals", Problem::AtLeastOne);
        }
        let today = Utc::now().date_naive();
        let (mut goals, mut n) = (Vec::new(), 0);
        for (gi, g) in within(&mut e.v, "goals", &r.goals).iter().enumerate() {
            required_text(
                &mut e.v,
                &format!("goals[{gi}].description"),
                &g.description,
            );
            if g.actions.is_empty() {
                e.v.push(format!("goals[{gi}].actions"), Problem::AtLeastOne);
            }
            let mut actions = Vec::new();
            let listed = format!("goals[{gi}].actions");
            for (ai, a) in within(&mut e.v, &listed, &g.actions).iter().enumerate() {
                n += 1;
                actions.extend(self.action(
                    &mut e.v,
                    &format!("goals[{gi}].actions[{ai}]"),
                    a,
                    n,
                    today,
                ));
            }
            goals.push(Goal {
                description: g.description.trim().into(),
                actions,
            });
        }
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        apply(rec.status, Move::Plan).map_err(illegal)?;
        if rec.assessment.is_none() {
            return Err(CasesError::Precondition(msg!("case-plan-needs-assessment")));
        }
        // The new plan replaces the old one: its actions' deadlines go with it.
        close_deadlines(&mut tx, &case_id, &[DeadlineKind::PlanAction], "cancelled").await?;
        for a in goals.iter().flat_map(|g| &g.actions) {
            if let Some(due) = action_due(a.due_on) {
                open_deadline_for(
                    &mut tx,
                    &case_id,
                    DeadlineKind::PlanAction,
                    Some(&a.action_id),
                    due,
                )
                .await?;
            }
        }
        rec.plan = Some(Plan {
            goals,
            set_by: r.actor.clone(),
            set_at: now,
        });
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("plan set: {n} actions"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }

    pub(super) async fn complete_action(
        &self,
        meta: &MetadataMap,
        r: pb::CompleteActionRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        if r.action_id.trim().is_empty() {
            e.v.push("action_id", Problem::Required);
        }
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        apply(rec.status, Move::Plan).map_err(illegal)?;
        let action = rec.plan.as_mut().and_then(|p| {
            p.goals
                .iter_mut()
                .flat_map(|g| g.actions.iter_mut())
                .find(|a| a.action_id == r.action_id)
        });
        let Some(action) = action else {
            return Err(CasesError::NotFound(msg!(
                "case-plan-action-not-found",
                case_id = case_id.to_string(),
                action_id = &r.action_id
            )));
        };
        if action.done {
            return Err(CasesError::Precondition(msg!(
                "case-plan-action-done",
                action_id = &r.action_id
            )));
        }
        action.done = true;
        close_deadline_for(
            &mut tx,
            &case_id,
            DeadlineKind::PlanAction,
            &r.action_id,
            "met",
        )
        .await?;
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("action done: {}", r.action_id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }
}
