//! `himaya.v1.Oversight`: the area's indicators (`indicators`) and the supervisor review
//! of break-glass accesses to the ministry's cases.

use super::*;

/// `himaya.v1.Oversight`.
pub struct OversightApi(pub(crate) Arc<State>);

#[tonic::async_trait]
impl pb::oversight_server::Oversight for OversightApi {
    async fn get_indicators(
        &self,
        req: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::Indicators>, Status> {
        self.indicators(req).await
    }

    async fn list_break_glass(
        &self,
        req: Request<pb::ListBreakGlassRequest>,
    ) -> Result<Response<pb::BreakGlassList>, Status> {
        let (meta, _, r) = req.into_parts();
        self.0.owner(&meta)?;
        let (_, reviewer) = self.0.calling_agency(&meta)?;
        let accesses = crate::break_glass::list(&self.0, r.all, &reviewer).await?;
        Ok(Response::new(pb::BreakGlassList { accesses }))
    }

    async fn review_break_glass(
        &self,
        req: Request<pb::ReviewBreakGlassRequest>,
    ) -> Result<Response<pb::BreakGlassAccess>, Status> {
        let (meta, r) = acted(req);
        let id = self.0.owner(&meta)?;
        let (_, reviewer) = self.0.calling_agency(&meta)?;
        let case_id = crate::break_glass::case_of(&self.0, &r.break_glass_id).await?;
        if let Some(case_id) = case_id.as_deref().and_then(|c| CaseId::parse(c).ok()) {
            let allowed = self
                .0
                .allowed_on_case(
                    himaya_proto::status::acting(&meta).as_ref(),
                    &id,
                    &reviewer,
                    &case_id,
                    Need::Owner,
                    "grpc_call",
                    himaya_record::Purpose::ServiceProvision,
                )
                .await?;
            if !allowed {
                // Named by the access, never by its case.
                return Err(CasesError::PermissionDenied(msg!(
                    "break-glass-not-in-area",
                    break_glass_id = r.break_glass_id.trim(),
                    agency_id = &id
                ))
                .into());
            }
        }
        Ok(Response::new(
            crate::break_glass::review(&self.0, &meta, r).await?,
        ))
    }
}
