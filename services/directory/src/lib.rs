//! `himaya.v1.Directory`: the agencies connected to the hub and their services, from
//! configuration. (The service map of the lifecycle issue will make it editable.)

use std::sync::Arc;

use himaya_proto::convert::{service_from, service_to};
use himaya_proto::v1 as pb;
use himaya_settings::{AgencySettings, Settings};
use tonic::{Request, Response, Status};

pub struct DirectoryApi {
    settings: Arc<Settings>,
}

impl DirectoryApi {
    pub fn server(settings: Arc<Settings>) -> pb::directory_server::DirectoryServer<DirectoryApi> {
        pb::directory_server::DirectoryServer::new(DirectoryApi { settings })
    }
}

fn to_pb(id: &str, a: &AgencySettings) -> pb::Agency {
    pb::Agency {
        agency_id: id.to_owned(),
        agency_type: a.agency_type.as_str().to_owned(),
        name_ar: a.name_ar.clone(),
        name_en: a.name_en.clone(),
        services: a.services.iter().map(|s| service_to(*s).into()).collect(),
        governorates: a.governorates.clone(),
    }
}

#[tonic::async_trait]
impl pb::directory_server::Directory for DirectoryApi {
    async fn list_agencies(
        &self,
        req: Request<pb::ListAgenciesRequest>,
    ) -> Result<Response<pb::ListAgenciesResponse>, Status> {
        let r = req.into_inner();
        let service = match r.service {
            0 => None,
            n => Some(
                service_from(n)
                    .ok_or_else(|| Status::invalid_argument("service: unknown service type"))?,
            ),
        };
        let governorate = r.governorate.trim();
        let agencies = self
            .settings
            .agencies
            .iter()
            .filter(|(_, a)| service.is_none_or(|s| a.services.contains(&s)))
            .filter(|(_, a)| governorate.is_empty() || a.covers(governorate))
            .map(|(id, a)| to_pb(id, a))
            .collect();
        Ok(Response::new(pb::ListAgenciesResponse { agencies }))
    }

    async fn get_agency(
        &self,
        req: Request<pb::GetAgencyRequest>,
    ) -> Result<Response<pb::Agency>, Status> {
        let id = req.into_inner().agency_id;
        self.settings
            .agencies
            .get(&id)
            .map(|a| Response::new(to_pb(&id, a)))
            .ok_or_else(|| Status::not_found(format!("no agency `{id}` in the directory")))
    }
}
