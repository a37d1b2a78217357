//! `himaya.v1.Staff`: staff within the seeds' caps; and assignment (CaseWork) within the
//! caseload limit.

use himaya_record::lifecycle::StaffRole;

use super::*;

/// `himaya.v1.Staff`: the case-owning agency's caseworkers and supervisors.
pub struct StaffApi(pub(crate) Arc<State>);

#[tonic::async_trait]
impl pb::staff_server::Staff for StaffApi {
    async fn add_staff(
        &self,
        req: Request<pb::AddStaffRequest>,
    ) -> Result<Response<pb::StaffMember>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(StaffApi::add_staff(self, &meta, r).await?)
    }
}

impl StaffApi {
    async fn add_staff(
        &self,
        meta: &MetadataMap,
        r: pb::AddStaffRequest,
    ) -> Result<Response<pb::StaffMember>, CasesError> {
        let agency = self.0.owner(meta)?;
        let lang = himaya_proto::status::lang(meta);
        let mut v = Violations::new();
        let id_ok = !r.staff_id.is_empty()
            && r.staff_id.len() <= 64
            && r.staff_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            v.push(
                "staff_id",
                Problem::InvalidCode {
                    expected: "1-64 characters of letters, digits, - and _ (a person's id, psn_…, or the agency's own staff reference)",
                },
            );
        }
        let role: Option<StaffRole> = cv::required(&mut v, "role", r.role);
        if role == Some(StaffRole::Caseworker) && r.supervisor_id.is_none() {
            v.push("supervisor_id", Problem::Required);
        }
        let (Some(role), true) = (role, v.is_empty()) else {
            return Err(CasesError::Invalid(v, lang));
        };
        let supervisor = if role == StaffRole::Caseworker {
            r.supervisor_id.clone()
        } else {
            None
        };
        let mut tx = self.0.pool.begin().await?;
        if let Some(sup) = &supervisor {
            lock_staff(&mut tx, &agency, sup).await?;
            // Staff are the agency's own: another agency's supervisor is "no such
            // supervisor", the same answer as an id no one has.
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM staff WHERE agency_id = $1 AND staff_id = $2 AND role = 'supervisor'",
            )
            .bind(&agency)
            .bind(sup)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_none() {
                return Err(CasesError::Precondition(msg!(
                    "staff-not-a-supervisor",
                    staff_id = sup,
                    agency_id = &agency
                )));
            }
            let max = self.0.settings.lifecycle.max_caseworkers_per_supervisor;
            let team: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM staff WHERE agency_id = $1 AND supervisor_id = $2",
            )
            .bind(&agency)
            .bind(sup)
            .fetch_one(&mut *tx)
            .await?;
            if team >= max {
                let room = with_room(&mut tx, &agency, StaffRole::Supervisor, max).await?;
                return Err(CasesError::Precondition(match room {
                    Some(room) => msg!(
                        "staff-team-full",
                        supervisor_id = sup,
                        team = team,
                        max = max,
                        room = room
                    ),
                    None => msg!(
                        "staff-team-full-no-room",
                        supervisor_id = sup,
                        team = team,
                        max = max
                    ),
                }));
            }
        }
        // The key is (agency_id, staff_id): only the agency's own ids conflict.
        let inserted = sqlx::query("INSERT INTO staff (staff_id, agency_id, role, supervisor_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(&r.staff_id)
            .bind(&agency)
            .bind(role.as_str())
            .bind(&supervisor)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(CasesError::Precondition(msg!(
                "staff-exists",
                staff_id = &r.staff_id
            )));
        }
        tx.commit().await?;
        Ok(Response::new(pb::StaffMember {
            staff_id: r.staff_id,
            agency_id: agency,
            role: cv::staff_role_to(role).into(),
            supervisor_id: supervisor,
        }))
    }
}

impl CaseWorkApi {
    pub(super) async fn assign(
        &self,
        meta: &MetadataMap,
        r: pb::AssignCaseRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        let agency = self.0.owner_of(meta, &[&r.case_id]).await?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        if r.caseworker_id.trim().is_empty() {
            e.v.push("caseworker_id", Problem::Required);
        }
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        // Serialise assignments to one caseworker so two cannot both take the last place.
        lock_staff(&mut tx, &agency, &r.caseworker_id).await?;
        // Only the agency's own caseworkers: another agency's is "not a caseworker of"
        // this one, the same answer as an id no one has.
        let sup: Option<Option<String>> =
            sqlx::query_scalar("SELECT supervisor_id FROM staff WHERE staff_id = $1 AND agency_id = $2 AND role = 'caseworker'")
                .bind(&r.caseworker_id)
                .bind(&agency)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(Some(supervisor_id)) = sup else {
            return Err(CasesError::Precondition(msg!(
                "staff-not-a-caseworker",
                staff_id = &r.caseworker_id,
                agency_id = &agency
            )));
        };
        // A supervisor assigns within their own team.
        if let Some(a) = himaya_proto::status::acting(meta) {
            if supervisor_id != a.person {
                return Err(CasesError::Precondition(msg!(
                    "staff-not-in-team",
                    staff_id = &r.caseworker_id
                )));
            }
        }
        let max = self.0.settings.lifecycle.max_cases_per_caseworker;
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM cases WHERE caseworker_agency = $1 AND caseworker_id = $2 AND status = 'registered' AND case_id <> $3")
            .bind(&agency)
            .bind(&r.caseworker_id)
            .bind(case_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if open >= max {
            let room = with_room(&mut tx, &agency, StaffRole::Caseworker, max).await?;
            return Err(CasesError::Precondition(match room {
                Some(room) => msg!(
                    "staff-caseload-full",
                    staff_id = &r.caseworker_id,
                    open = open,
                    max = max,
                    room = room
                ),
                None => msg!(
                    "staff-caseload-full-no-room",
                    staff_id = &r.caseworker_id,
                    open = open,
                    max = max
                ),
            }));
        }
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        apply(rec.status, Move::Assign).map_err(illegal)?;
        let first = rec.assignment.is_none();
        rec.assignment = Some(lifecycle::Assignment {
            caseworker_id: r.caseworker_id.clone(),
            supervisor_id,
            assigned_at: now,
        });
        // The caseworker's agency goes with the id (`save` writes the id from the record):
        // caseloads and escalations find the staff member by both.
        sqlx::query(
            "UPDATE cases SET caseworker_agency = $2, caseworker_id = $3 WHERE case_id = $1",
        )
        .bind(case_id.to_string())
        .bind(&agency)
        .bind(&r.caseworker_id)
        .execute(&mut *tx)
        .await?;
        close_deadlines(&mut tx, &case_id, &[DeadlineKind::Assignment], "met").await?;
        if first {
            let within = self.0.risk_deadlines(rec.risk_level).first_contact_within;
            open_deadline(&mut tx, &case_id, DeadlineKind::FirstContact, now + within).await?;
        }
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("assigned: {}", r.caseworker_id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }
}

/// Serialises changes to one staff member's caseload or team, within `agency` (another
/// agency's staff member of the same id is someone else).
async fn lock_staff(tx: &mut PgConnection, agency: &str, staff_id: &str) -> Result<(), CasesError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
        .bind(agency)
        .bind(staff_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Staff of `role` in `agency` with fewer than `max` open cases (caseworkers) or team
/// members (supervisors): "sw-2 (3), sw-5 (10)", or "none".
async fn with_room(
    tx: &mut PgConnection,
    agency: &str,
    role: StaffRole,
    max: i64,
) -> Result<Option<String>, CasesError> {
    let sql = if role == StaffRole::Caseworker {
        "SELECT s.staff_id, count(c.case_id) AS n FROM staff s
           LEFT JOIN cases c ON c.caseworker_agency = s.agency_id AND c.caseworker_id = s.staff_id
                            AND c.status = 'registered'
          WHERE s.agency_id = $1 AND s.role = 'caseworker'
          GROUP BY s.staff_id HAVING count(c.case_id) < $2 ORDER BY n, s.staff_id LIMIT 5"
    } else {
        "SELECT s.staff_id, count(w.staff_id) AS n FROM staff s
           LEFT JOIN staff w ON w.agency_id = s.agency_id AND w.supervisor_id = s.staff_id
          WHERE s.agency_id = $1 AND s.role = 'supervisor'
          GROUP BY s.staff_id HAVING count(w.staff_id) < $2 ORDER BY n, s.staff_id LIMIT 5"
    };
    let rows = sqlx::query_as::<_, (String, i64)>(sql)
        .bind(agency)
        .bind(max)
        .fetch_all(&mut *tx)
        .await?;
    let names: Vec<String> = rows
        .iter()
        .map(|(staff_id, n)| format!("{staff_id} ({n})"))
        .collect();
    Ok((!names.is_empty()).then(|| names.join(", ")))
}
