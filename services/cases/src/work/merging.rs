//! `himaya.v1.Duplicates`: find, link, merge.

use himaya_record::lifecycle::LinkKind;

use super::*;

/// `himaya.v1.Duplicates`.
pub struct DuplicatesApi(pub(crate) Arc<State>);

#[tonic::async_trait]
impl pb::duplicates_server::Duplicates for DuplicatesApi {
    async fn find_duplicates(
        &self,
        req: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<pb::DuplicateList>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(
            DuplicatesApi::find_duplicates(self, &meta, r).await?,
        ))
    }

    async fn link_cases(
        &self,
        req: Request<pb::LinkCasesRequest>,
    ) -> Result<Response<pb::LinkCasesResponse>, Status> {
        let (meta, r) = acted(req);
        Ok(Response::new(
            DuplicatesApi::link_cases(self, &meta, r).await?,
        ))
    }

    async fn merge_cases(
        &self,
        req: Request<pb::MergeCasesRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(DuplicatesApi::merge_cases(self, &meta, r).await?)
    }
}

impl DuplicatesApi {
    async fn find_duplicates(
        &self,
        meta: &MetadataMap,
        r: pb::FindDuplicatesRequest,
    ) -> Result<pb::DuplicateList, CasesError> {
        self.0.owner_of(meta, &[&r.case_id]).await?;
        let (_, agency) = self.0.calling_agency(meta)?;
        let e = envelope(meta, &r.case_id, "finder");
        let case_id = e.finish()?;
        let rec = crate::db::load_case(&self.0.pool, &case_id)
            .await?
            .ok_or_else(|| {
                CasesError::NotFound(msg!("case-not-found", case_id = case_id.to_string()))
            })?;
        let min = if r.min_score > 0.0 {
            r.min_score.min(1.0)
        } else {
            0.6
        };
        let found = crate::duplicates::candidates(
            &self.0.pool,
            &crate::duplicates::key_of(&rec),
            Some(&case_id.to_string()),
            min,
            10,
        )
        .await?;
        let mut candidates = Vec::with_capacity(found.len());
        for (id, score) in found {
            let row: Option<(String, String)> =
                sqlx::query_as("SELECT status, governorate FROM cases WHERE case_id = $1")
                    .bind(&id)
                    .fetch_optional(&self.0.pool)
                    .await?;
            // Only cases of the caller's own area: a child known elsewhere is found by a
            // directorate covering both (`*`).
            let Some((status, governorate)) = row else {
                continue;
            };
            if !crate::access::owns(&agency, &governorate) {
                continue;
            }
            candidates.push(pb::DuplicateCandidate {
                case_id: id,
                score,
                status: wire_of::<CaseStatus>("status", &status)?,
            });
        }
        tracing::info!(case_id = %case_id, candidates = candidates.len(), "duplicates searched");
        Ok(pb::DuplicateList { candidates })
    }

    async fn link_cases(
        &self,
        meta: &MetadataMap,
        r: pb::LinkCasesRequest,
    ) -> Result<pb::LinkCasesResponse, CasesError> {
        self.0
            .owner_of(meta, &[&r.case_id, &r.other_case_id])
            .await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let other = CaseId::parse(&r.other_case_id).ok();
        if other.is_none() || r.other_case_id == r.case_id {
            e.v.push(
                "other_case_id",
                Problem::InvalidCode {
                    expected: "the id of another case",
                },
            );
        }
        let kind: Option<LinkKind> = cv::required(&mut e.v, "kind", r.kind);
        let case_id = e.finish()?;
        let Some(kind) = kind else {
            return Err(CasesError::Precondition(msg!("case-link-kind-missing")));
        };
        let Some(other) = other else {
            return Err(CasesError::NotFound(msg!("case-link-other-missing")));
        };
        let mut tx = self.0.pool.begin().await?;
        for id in [&case_id, &other] {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT version FROM cases WHERE case_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(CasesError::NotFound(msg!(
                    "case-not-found",
                    case_id = id.to_string()
                )));
            }
        }
        let created =
            crate::duplicates::link(&mut tx, &case_id, &other, kind.as_str(), &r.actor).await?;
        tx.commit().await?;
        Ok(pb::LinkCasesResponse { created })
    }

    async fn merge_cases(
        &self,
        meta: &MetadataMap,
        r: pb::MergeCasesRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.0
            .owner_of(meta, &[&r.keep_case_id, &r.merge_case_id])
            .await?;
        let mut e = envelope(meta, &r.keep_case_id, &r.actor);
        let merged_id = CaseId::parse(&r.merge_case_id).ok();
        if merged_id.is_none() || r.merge_case_id == r.keep_case_id {
            e.v.push(
                "merge_case_id",
                Problem::InvalidCode {
                    expected: "the id of another case",
                },
            );
        }
        let keep_id = e.finish()?;
        let Some(merged_id) = merged_id else {
            return Err(CasesError::NotFound(msg!("case-merge-other-missing")));
        };
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        // Lock in id order so two opposite merges cannot deadlock.
        let (keep, mut merged) = if keep_id.to_string() < merged_id.to_string() {
            let k = load_for_update(&mut tx, &keep_id, r.keep_version).await?;
            (
                k,
                load_for_update(&mut tx, &merged_id, r.merge_version).await?,
            )
        } else {
            let m = load_for_update(&mut tx, &merged_id, r.merge_version).await?;
            (load_for_update(&mut tx, &keep_id, r.keep_version).await?, m)
        };
        let mut keep = keep;
        if keep.status == CaseStatus::Merged {
            let case_id = keep_id.to_string();
            return Err(CasesError::Precondition(
                match keep.merged_into.as_deref() {
                    Some(into) => msg!(
                        "case-merge-keep-merged",
                        case_id = case_id,
                        merged_into = into
                    ),
                    None => msg!("case-merge-keep-merged-elsewhere", case_id = case_id),
                },
            ));
        }
        merged.status = apply(merged.status, Move::Merge).map_err(illegal)?;
        merged.merged_into = Some(keep_id.to_string());
        close_deadlines(&mut tx, &merged_id, &[], "cancelled").await?;
        save(
            &mut tx,
            &mut merged,
            &r.actor,
            &format!("merged into {keep_id}"),
            now,
        )
        .await?;
        save(
            &mut tx,
            &mut keep,
            &r.actor,
            &format!("merged: {merged_id} folded into this case"),
            now,
        )
        .await?;
        crate::duplicates::fold_history(&mut tx, &keep_id, &merged_id, keep.version).await?;
        tx.commit().await?;
        tracing::info!(keep = %keep_id, merged = %merged_id, "cases merged");
        Ok(change_reply(
            &keep,
            Some(format!("{merged_id} merged into this case")),
        ))
    }
}
