//! Reviews, closure for the seeds' reasons only, and reopening.

use super::*;

impl CaseWorkApi {
    pub(super) async fn review(
        &self,
        meta: &MetadataMap,
        r: pb::RecordReviewRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let kind: Option<ReviewKind> = cv::required(&mut e.v, "kind", r.kind);
        required_text(&mut e.v, "findings", &r.findings);
        let case_id = e.finish()?;
        let kind = kind.unwrap_or(ReviewKind::Phone);
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        apply(rec.status, Move::Review).map_err(illegal)?;
        if rec.assignment.is_none() {
            return Err(CasesError::Precondition(msg!(
                "case-review-needs-caseworker"
            )));
        }
        sqlx::query("INSERT INTO reviews (case_id, kind, child_seen, findings, reviewed_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(case_id.to_string())
            .bind(kind.as_str())
            .bind(r.child_seen)
            .bind(r.findings.trim())
            .bind(&r.actor)
            .execute(&mut *tx)
            .await?;
        if r.child_seen {
            close_deadlines(&mut tx, &case_id, &[DeadlineKind::FirstContact], "met").await?;
        }
        let every = self.0.risk_deadlines(rec.risk_level).review_every;
        close_deadlines(&mut tx, &case_id, &[DeadlineKind::Review], "met").await?;
        open_deadline(&mut tx, &case_id, DeadlineKind::Review, now + every).await?;
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("reviewed: {kind}"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(
            &rec,
            Some(format!("next review due {}", (now + every).to_rfc3339())),
        ))
    }

    pub(super) async fn close(
        &self,
        meta: &MetadataMap,
        r: pb::CloseCaseRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let reason: Option<ClosureReason> = cv::required(&mut e.v, "reason", r.reason);
        if r.parents_consulted.is_none() {
            e.v.push("parents_consulted", Problem::Required);
        }
        required_text(&mut e.v, "final_evaluation", &r.final_evaluation);
        required_text(&mut e.v, "recommendations", &r.recommendations);
        let case_id = e.finish()?;
        let (Some(reason), Some(consulted)) = (reason, r.parents_consulted) else {
            return Err(CasesError::Precondition(msg!("case-closure-incomplete")));
        };
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        rec.status = apply(rec.status, Move::Close).map_err(illegal)?;
        closure_rules(&mut tx, &rec, reason, consulted, now).await?;
        rec.closure = Some(lifecycle::Closure {
            reason,
            parents_consulted: consulted,
            final_evaluation: r.final_evaluation.trim().into(),
            recommendations: r.recommendations.trim().into(),
            closed_by: r.actor.clone(),
            closed_at: now,
        });
        close_deadlines(&mut tx, &case_id, &[], "cancelled").await?;
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("closed: {reason}"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }

    pub(super) async fn reopen(
        &self,
        meta: &MetadataMap,
        r: pb::ReopenCaseRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        required_text(&mut e.v, "reason", &r.reason);
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        rec.status = apply(rec.status, Move::Reopen).map_err(illegal)?;
        // The closure stays in the history; the record shows the case open again.
        rec.closure = None;
        let d = self.0.risk_deadlines(rec.risk_level);
        if rec.assignment.is_some() {
            open_deadline(
                &mut tx,
                &case_id,
                DeadlineKind::Review,
                now + d.review_every,
            )
            .await?;
        } else {
            open_deadline(
                &mut tx,
                &case_id,
                DeadlineKind::Assignment,
                now + d.assign_within,
            )
            .await?;
        }
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("reopened: {}", r.reason.trim()),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }
}

/// The seeds' conditions for each closure reason.
async fn closure_rules(
    tx: &mut PgConnection,
    rec: &CaseRecord,
    reason: ClosureReason,
    consulted: bool,
    now: chrono::DateTime<Utc>,
) -> Result<(), CasesError> {
    match reason {
        ClosureReason::NeedEnded => {
            if !consulted {
                return Err(CasesError::Precondition(msg!(
                    "case-closure-parents-not-consulted"
                )));
            }
            let reviews: i64 =
                sqlx::query_scalar("SELECT count(*) FROM reviews WHERE case_id = $1")
                    .bind(rec.case_id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
            if reviews == 0 {
                return Err(CasesError::Precondition(msg!("case-closure-no-review")));
            }
        }
        ClosureReason::TurnedEighteen => {
            if let Some(dob) = rec.child.date_of_birth {
                if age_on(dob, now.date_naive()) < 18 {
                    return Err(CasesError::Precondition(msg!("case-closure-not-18")));
                }
            }
        }
        ClosureReason::Death | ClosureReason::MovedOutOfReach | ClosureReason::ContactLost => {}
    }
    Ok(())
}
