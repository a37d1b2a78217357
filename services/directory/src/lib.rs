//! `himaya.v1.Directory`: the agencies connected to the hub (data of this schema, seeded
//! from configuration and changed by administrators: see [`agencies`]) and the service map (schema `directory`): each agency's concrete services, where they are
//! offered, how many places are free and in which languages, kept current by the agency
//! over the API. Every change is published whole as `directory.service.changed`, so other
//! services (the cases service's referral proposals) keep a copy without reading here.

// The helpers return `tonic::Status` like the handlers they serve (which must); boxing it
// for clippy's size lint would only move the allocation.
#![allow(clippy::result_large_err)]

pub mod agencies;
pub mod certificates;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use himaya_bus::Exchange;
use himaya_component::{Component, Context, StartError, Started};
use himaya_events::{keys, new_message_id, ServiceMapChanged};
use himaya_proto::convert::service_from;
use himaya_proto::convert::MappedServiceRow;
use himaya_proto::status::{invalid_argument, lang, msg, status};
use himaya_proto::v1 as pb;
use himaya_record::validate::{check_text, within, within_max, MAX_LIST};
use himaya_record::{Problem, ServiceId, ServiceType, Violations};
use himaya_settings::{AgencySettings, Settings};
use sqlx::PgPool;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

pub const SCHEMA: &str = "directory";

/// Most districts one service may list.
const MAX_DISTRICTS: usize = 50;
/// Most results of one search.
const MAX_FOUND: i64 = 50;

pub struct DirectoryApi {
    settings: Arc<Settings>,
    pool: PgPool,
    /// The issuing authority (`grpc.issuer`), when the hub issues agencies' certificates.
    issuer: Option<Arc<certificates::Issuer>>,
}

impl DirectoryApi {
    /// A governorate under its official name where the gazetteer knows it, so that
    /// "القاهره" finds what "القاهرة" offers; as written (trimmed) otherwise.
    fn place(&self, raw: &str) -> String {
        match self.settings.gazetteer.governorate(raw) {
            Some(g) => g.name_ar.clone(),
            None => raw.trim().to_owned(),
        }
    }

    fn agency(&self, meta: &MetadataMap) -> Result<(String, Arc<AgencySettings>), Status> {
        himaya_component::calling_agency(&self.settings, meta).map_err(|e| e.status())
    }

    async fn load(&self, id: &str) -> Result<Option<pb::MappedService>, Status> {
        let row =
            sqlx::query_as::<_, MappedServiceRow>("SELECT * FROM services WHERE service_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(storage)?;
        Ok(row.map(MappedServiceRow::into_service))
    }

    /// Writes the entry and its event in one transaction.
    async fn save(&self, s: &pb::MappedService, by: &str) -> Result<(), Status> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        let kind = service_kind(s.service_type);
        let updated_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO services (service_id, agency_id, service_type, name_ar, name_en, governorate,
                                   districts, capacity, languages, accepting, removed, version, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (service_id) DO UPDATE SET
                service_type = EXCLUDED.service_type, name_ar = EXCLUDED.name_ar,
                name_en = EXCLUDED.name_en, governorate = EXCLUDED.governorate,
                districts = EXCLUDED.districts, capacity = EXCLUDED.capacity,
                languages = EXCLUDED.languages, accepting = EXCLUDED.accepting,
                removed = EXCLUDED.removed, version = EXCLUDED.version,
                updated_by = EXCLUDED.updated_by, updated_at = now()
              WHERE services.version = EXCLUDED.version - 1
             RETURNING updated_at",
        )
        .bind(&s.service_id)
        .bind(&s.agency_id)
        .bind(kind)
        .bind(&s.name_ar)
        .bind(&s.name_en)
        .bind(&s.governorate)
        .bind(&s.districts)
        .bind(s.capacity)
        .bind(&s.languages)
        .bind(s.accepting)
        .bind(s.removed)
        .bind(s.version)
        .bind(by)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?
        .ok_or_else(|| {
            status(
                Code::Aborted,
                &msg!("directory-service-changed", service_id = &s.service_id),
            )
        })?;
        let event = ServiceMapChanged {
            message_id: new_message_id(),
            occurred_at: Utc::now().to_rfc3339(),
            service_id: s.service_id.clone(),
            agency_id: s.agency_id.clone(),
            service_type: kind.into(),
            name_ar: s.name_ar.clone(),
            name_en: s.name_en.clone(),
            governorate: s.governorate.clone(),
            districts: s.districts.clone(),
            capacity: s.capacity,
            languages: s.languages.clone(),
            accepting: s.accepting,
            removed: s.removed,
            version: s.version,
            updated_at: updated_at.to_rfc3339(),
        };
        himaya_store::outbox::enqueue_event(
            &mut tx,
            Exchange::Events,
            keys::SERVICE_MAP_CHANGED,
            &event,
            1,
            &s.service_id,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "service map outbox failed");
            status(Code::Unavailable, &msg!("storage-unavailable"))
        })?;
        tx.commit().await.map_err(storage)?;
        tracing::info!(service_id = %s.service_id, agency = %s.agency_id, version = s.version, "service map changed");
        Ok(())
    }

    /// The stored entry the caller may change at `expected` version.
    async fn owned(
        &self,
        id: &str,
        agency: &str,
        expected: i64,
    ) -> Result<pb::MappedService, Status> {
        let s = self.load(id).await?.ok_or_else(|| {
            status(
                Code::NotFound,
                &msg!("directory-service-not-found", service_id = id),
            )
        })?;
        if s.agency_id != agency {
            tracing::warn!(service_id = %id, agency = %agency, "service map change refused: another agency's service");
            return Err(status(
                Code::PermissionDenied,
                &msg!(
                    "directory-service-not-yours",
                    service_id = id,
                    agency_id = &s.agency_id
                ),
            ));
        }
        if s.version != expected {
            return Err(status(
                Code::Aborted,
                &msg!(
                    "directory-service-stale",
                    service_id = id,
                    current = s.version,
                    expected = expected
                ),
            ));
        }
        Ok(s)
    }
}

fn storage(e: sqlx::Error) -> Status {
    tracing::warn!(error = %e, "service map storage failed");
    status(Code::Unavailable, &msg!("storage-unavailable"))
}

/// A service type the vocabulary does not have, naming the ones it has.
fn unknown_service_type() -> Problem {
    Problem::NotChosen {
        choices: ServiceType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `service_id` is not a service id.
fn bad_id(e: &himaya_record::IdError, meta: &MetadataMap) -> Status {
    let mut v = Violations::new();
    v.push("service_id", e.problem());
    invalid_argument(&v, lang(meta))
}

fn service_kind(n: i32) -> &'static str {
    service_from(n)
        .map(ServiceType::as_str)
        .unwrap_or("unspecified")
}

fn is_language(code: &str) -> bool {
    (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase())
}

/// Checks an upsert against the calling agency's mandate; every violation at once.
fn check(r: &pb::UpsertServiceRequest, agency: &AgencySettings) -> Violations {
    let mut v = Violations::new();
    match service_from(r.service_type) {
        None => v.push(
            "service_type",
            Problem::NotChosen {
                choices: ServiceType::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        ),
        Some(s) if !agency.services.contains(&s) => v.push(
            "service_type",
            Problem::InvalidCode {
                expected: "a service your agency offers (himaya agencies)",
            },
        ),
        Some(_) => {}
    }
    if r.name_ar.trim().is_empty() {
        v.push("name_ar", Problem::Required);
    }
    check_text(&mut v, "name_ar", &r.name_ar, 200);
    check_text(&mut v, "name_en", &r.name_en, 200);
    let g = r.governorate.trim();
    if g.is_empty() {
        v.push("governorate", Problem::Required);
    } else if !agency.covers(g) {
        v.push(
            "governorate",
            Problem::InvalidCode {
                expected: "a governorate your agency covers",
            },
        );
    }
    check_text(&mut v, "governorate", g, 100);
    let districts = within_max(&mut v, "districts", &r.districts, MAX_DISTRICTS);
    for (i, d) in districts.iter().enumerate() {
        if d.trim().is_empty() {
            v.push(format!("districts[{i}]"), Problem::Required);
        }
        check_text(&mut v, &format!("districts[{i}]"), d, 100);
    }
    if !(0..=100_000).contains(&r.capacity) {
        v.push(
            "capacity",
            Problem::OutOfRange {
                min: 0,
                max: 100_000,
            },
        );
    }
    if r.languages.is_empty() {
        v.push("languages", Problem::AtLeastOne);
    }
    for (i, l) in within(&mut v, "languages", &r.languages).iter().enumerate() {
        if !is_language(l) {
            v.push(
                format!("languages[{i}]"),
                Problem::InvalidCode {
                    expected: "an ISO 639-1 code in lower case, such as ar or en",
                },
            );
        }
    }
    v
}

#[tonic::async_trait]
impl pb::directory_server::Directory for DirectoryApi {
    async fn list_agencies(
        &self,
        req: Request<pb::ListAgenciesRequest>,
    ) -> Result<Response<pb::ListAgenciesResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        let service = match r.service {
            0 => None,
            n => Some(service_from(n).ok_or_else(|| {
                let mut v = Violations::new();
                v.push("service", unknown_service_type());
                invalid_argument(&v, lang(&meta))
            })?),
        };
        let governorate = self.place(&r.governorate);
        let governorate = governorate.as_str();
        // One page of the table (filtered here: a page may hold fewer than it could).
        let mut rows = agencies::page(&self.pool, r.after.trim()).await?;
        let more = rows.len() as i64 > agencies::MAX_LISTED;
        rows.truncate(agencies::MAX_LISTED as usize);
        let last = if more {
            rows.last().map(|a| a.agency_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let agencies = rows
            .iter()
            .filter(|a| service.is_none_or(|s| a.services.iter().any(|x| x == s.as_str())))
            .filter(|a| {
                governorate.is_empty()
                    || a.governorates.iter().any(|g| g == "*" || g == governorate)
            })
            .map(agencies::AgencyRow::to_pb)
            .collect();
        Ok(Response::new(pb::ListAgenciesResponse {
            agencies,
            next_after: last,
        }))
    }

    async fn get_agency(
        &self,
        req: Request<pb::GetAgencyRequest>,
    ) -> Result<Response<pb::Agency>, Status> {
        let id = req.into_inner().agency_id;
        let found = agencies::load(&self.pool, id.trim(), false)
            .await
            .map_err(storage)?
            .filter(|a| a.status != "removed");
        found.map(|a| Response::new(a.to_pb())).ok_or_else(|| {
            status(
                Code::NotFound,
                &msg!("directory-agency-not-found", agency_id = id),
            )
        })
    }

    async fn put_agency(
        &self,
        req: Request<pb::PutAgencyRequest>,
    ) -> Result<Response<pb::Agency>, Status> {
        let (meta, _, r) = req.into_parts();
        let row = agencies::put(&self.pool, &self.settings, &meta, r).await?;
        Ok(Response::new(row.to_pb()))
    }

    async fn set_agency_status(
        &self,
        req: Request<pb::SetAgencyStatusRequest>,
    ) -> Result<Response<pb::Agency>, Status> {
        let (meta, _, r) = req.into_parts();
        let row = agencies::set_status(&self.pool, &self.settings, &meta, r).await?;
        Ok(Response::new(row.to_pb()))
    }

    async fn create_enrolment(
        &self,
        req: Request<pb::CreateEnrolmentRequest>,
    ) -> Result<Response<pb::EnrolmentCode>, Status> {
        let (meta, _, r) = req.into_parts();
        let issuer = self.issuer.as_deref();
        certificates::create_enrolment(&self.pool, &self.settings, issuer, &meta, r)
            .await
            .map(Response::new)
    }

    async fn list_certificates(
        &self,
        req: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        certificates::list(&self.pool, &self.settings, &meta, r)
            .await
            .map(Response::new)
    }

    async fn revoke_certificate(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        let (meta, _, r) = req.into_parts();
        certificates::revoke(&self.pool, &self.settings, &meta, r)
            .await
            .map(Response::new)
    }

    async fn upsert_service(
        &self,
        req: Request<pb::UpsertServiceRequest>,
    ) -> Result<Response<pb::MappedService>, Status> {
        let (meta, _, mut r) = req.into_parts();
        let (agency_id, agency) = self.agency(&meta)?;
        r.governorate = self.place(&r.governorate);
        let (service_id, version) = if r.service_id.trim().is_empty() {
            if r.expected_version != 0 {
                let mut v = Violations::new();
                v.push("expected_version", Problem::OutOfRange { min: 0, max: 0 });
                return Err(invalid_argument(&v, lang(&meta)));
            }
            (ServiceId::new().to_string(), 1)
        } else {
            let id = ServiceId::parse(r.service_id.trim())
                .map_err(|e| bad_id(&e, &meta))?
                .to_string();
            let old = self.owned(&id, &agency_id, r.expected_version).await?;
            (id, old.version + 1)
        };
        let v = check(&r, &agency);
        if !v.is_empty() {
            return Err(invalid_argument(&v, lang(&meta)));
        }
        let s = pb::MappedService {
            service_id,
            agency_id: agency_id.clone(),
            service_type: r.service_type,
            name_ar: r.name_ar.trim().into(),
            name_en: r.name_en.trim().into(),
            governorate: r.governorate.trim().into(),
            districts: r.districts.iter().map(|d| d.trim().to_owned()).collect(),
            capacity: r.capacity,
            languages: r.languages,
            accepting: r.accepting,
            removed: false,
            version,
            updated_at: String::new(),
        };
        // Two writers racing past the version check: the conditional upsert refuses the
        // second (ABORTED).
        self.save(&s, &agency_id).await?;
        Ok(Response::new(self.load(&s.service_id).await?.unwrap_or(s)))
    }

    async fn remove_service(
        &self,
        req: Request<pb::RemoveServiceRequest>,
    ) -> Result<Response<pb::MappedService>, Status> {
        let (meta, _, r) = req.into_parts();
        let (agency_id, _) = self.agency(&meta)?;
        let id = ServiceId::parse(r.service_id.trim())
            .map_err(|e| bad_id(&e, &meta))?
            .to_string();
        let mut s = self.owned(&id, &agency_id, r.expected_version).await?;
        if s.removed {
            return Err(status(
                Code::FailedPrecondition,
                &msg!("directory-service-removed", service_id = &id),
            ));
        }
        s.removed = true;
        s.version += 1;
        self.save(&s, &agency_id).await?;
        Ok(Response::new(self.load(&id).await?.unwrap_or(s)))
    }

    async fn find_services(
        &self,
        req: Request<pb::FindServicesRequest>,
    ) -> Result<Response<pb::FindServicesResponse>, Status> {
        let (meta, _, mut r) = req.into_parts();
        r.governorate = self.place(&r.governorate);
        if r.service_types.len() > MAX_LIST {
            let mut v = Violations::new();
            v.push("service_types", Problem::TooMany { max: MAX_LIST });
            return Err(invalid_argument(&v, lang(&meta)));
        }
        let mut types = Vec::new();
        for (i, t) in r.service_types.iter().enumerate() {
            let s = service_from(*t).ok_or_else(|| {
                let mut v = Violations::new();
                v.push(format!("service_types[{i}]"), unknown_service_type());
                invalid_argument(&v, lang(&meta))
            })?;
            types.push(s.as_str());
        }
        let language = r.language.trim();
        if !language.is_empty() && !is_language(language) {
            let mut v = Violations::new();
            v.push(
                "language",
                Problem::InvalidCode {
                    expected: "an ISO 639-1 code in lower case, such as ar or en",
                },
            );
            return Err(invalid_argument(&v, lang(&meta)));
        }
        let rows = sqlx::query_as::<_, MappedServiceRow>(
            "SELECT * FROM services
              WHERE NOT removed
                AND (cardinality($1::text[]) = 0 OR service_type = ANY($1))
                AND ($2 = '' OR governorate = $2 OR governorate = '*')
                AND ($3 = '' OR $3 = ANY(languages))
                AND ($5 OR (accepting AND capacity > 0))
              ORDER BY ($4 <> '' AND $4 = ANY(districts)) DESC,
                       (governorate = $2) DESC,
                       capacity DESC, service_id
              LIMIT $6",
        )
        .bind(&types)
        .bind(r.governorate.trim())
        .bind(language)
        .bind(r.district.trim())
        .bind(r.include_unavailable)
        .bind(MAX_FOUND)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        let services = rows
            .into_iter()
            .map(MappedServiceRow::into_service)
            .collect();
        Ok(Response::new(pb::FindServicesResponse { services }))
    }
}

/// `himaya.v1.Enrolment`: agencies getting and renewing their certificates.
pub struct EnrolmentApi {
    settings: Arc<Settings>,
    pool: PgPool,
    issuer: Option<Arc<certificates::Issuer>>,
}

#[tonic::async_trait]
impl pb::enrolment_server::Enrolment for EnrolmentApi {
    async fn enrol(
        &self,
        req: Request<pb::EnrolRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        let (meta, _, r) = req.into_parts();
        let issuer = self.issuer.as_deref();
        certificates::enrol(&self.pool, issuer, &meta, r)
            .await
            .map(Response::new)
    }

    async fn renew(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        let (meta, _, r) = req.into_parts();
        let issuer = self.issuer.as_deref();
        certificates::renew(&self.pool, &self.settings, issuer, &meta, r)
            .await
            .map(Response::new)
    }
}

/// The directory as a component of the hub.
pub struct Directory;

impl Component for Directory {
    const NAME: &'static str = "directory";

    /// Connects, migrates the service map and starts its outbox relay.
    async fn start(ctx: Context) -> Result<Started, StartError> {
        let (pool, relay) = himaya_store::start_service(
            &ctx.settings,
            SCHEMA,
            &sqlx::migrate!("./migrations"),
            ctx.bus.clone(),
            himaya_bus::Stage::OnTheWay,
            ctx.shutdown.clone(),
        )
        .await?;
        agencies::seed(&pool, &ctx.settings).await?;
        let issuer = certificates::load(&ctx.settings)?.map(Arc::new);
        let max = ctx.settings.grpc.max_message_bytes;
        let enrolment = EnrolmentApi {
            settings: ctx.settings.clone(),
            pool: pool.clone(),
            issuer: issuer.clone(),
        };
        let api = DirectoryApi {
            settings: ctx.settings,
            pool,
            issuer,
        };
        Ok(Started::default()
            .grpc(pb::directory_server::DirectoryServer::new(api).max_decoding_message_size(max))
            .grpc(
                pb::enrolment_server::EnrolmentServer::new(enrolment)
                    .max_decoding_message_size(max),
            )
            .task(relay))
    }
}
