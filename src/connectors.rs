//! The connectors component: one delivery consumer per connected agency, each speaking
//! its agency's standard (`agencies.<id>.protocol`), and the webhooks agencies post to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use himaya_component::{Component, Context, StartError, Started};
use himaya_connect::Wire;
use himaya_settings::{Protocol, Settings};

/// The connectors as a component of the hub: deliveries out (`himaya_connect`), answers
/// in (the webhooks and the pollers of agencies that cannot push).
pub struct Connectors;

impl Component for Connectors {
    const NAME: &'static str = "connectors";

    async fn start(ctx: Context) -> Result<Started, StartError> {
        let running = himaya_connect::start(
            ctx.settings.clone(),
            ctx.bus.clone(),
            &wires(&ctx.settings),
            ctx.shutdown.clone(),
        )
        .await?;
        let himaya_connect::Running {
            pool,
            executor,
            credentials,
            tasks,
        } = running;
        let client = webhook_client(&ctx.settings, ctx.grpc_addr);
        let (inbound, server) = crate::webhooks::start(
            ctx.settings.clone(),
            pool,
            (executor, credentials),
            client,
            ctx.shutdown.clone(),
        );
        let started = Started::default().tasks(tasks).tasks(inbound);
        Ok(match server {
            Some(server) => started.http(server),
            None => started,
        })
    }
}

/// How the webhooks reach the hub's gRPC: `connectors.hub_url` when the connectors run
/// apart, else this process's own server (over mutual TLS with each agency's certificate
/// when the hub requires it).
fn webhook_client(settings: &Settings, grpc_addr: SocketAddr) -> crate::webhooks::HubClient {
    let certs = settings.connectors.client_certs_dir.clone();
    match &settings.connectors.hub_url {
        Some(url) => {
            let tls = url.starts_with("https://");
            crate::webhooks::HubClient::new(url.clone(), tls.then_some(certs))
        }
        None => {
            let tls = settings.grpc.tls.is_some();
            let scheme = if tls { "https" } else { "http" };
            let url = format!("{scheme}://127.0.0.1:{}", grpc_addr.port());
            crate::webhooks::HubClient::new(url, tls.then_some(certs))
        }
    }
}

/// Every protocol this build speaks, with its mapping from `connectors/` and the
/// deployment's choices for it (`[standards]`).
pub fn wires(settings: &Settings) -> HashMap<Protocol, Arc<dyn Wire>> {
    let standards = &settings.standards;
    let all: Vec<(Protocol, Arc<dyn Wire>)> = vec![
        (
            Protocol::HimayaJson,
            Arc::new(himaya_connect::envelope::Envelope),
        ),
        (
            Protocol::FhirR4,
            Arc::new(himaya_connector_health::Fhir::new(&standards.fhir)),
        ),
        (
            Protocol::PrimeroV2,
            Arc::new(himaya_connector_social_affairs::Primero::new(standards)),
        ),
        (
            Protocol::JusticeMinimal,
            Arc::new(himaya_connector_justice::Justice),
        ),
        (
            Protocol::SpdciRegistry,
            Arc::new(himaya_connector_cash_assistance::Spdci::new(
                standards.spdci.clone(),
            )),
        ),
        (
            Protocol::School,
            Arc::new(himaya_connector_schools::SchoolWire),
        ),
        (
            Protocol::EmergencyLine,
            Arc::new(himaya_connector_emergency_line::EmergencyLineWire),
        ),
    ];
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_protocol_has_a_wire() {
        use himaya_settings::Protocol::*;
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let settings = himaya_settings::Settings::load(&config, None).unwrap();
        let wires = super::wires(&settings);
        for p in [
            HimayaJson,
            FhirR4,
            PrimeroV2,
            JusticeMinimal,
            SpdciRegistry,
            School,
            EmergencyLine,
        ] {
            assert_eq!(wires.get(&p).map(|w| w.protocol()), Some(p.as_str()));
        }
    }
}
