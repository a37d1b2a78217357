//! The connectors component: one delivery consumer per connected agency, each speaking
//! its agency's standard (`agencies.<id>.protocol`), and the webhooks agencies post to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use himaya_component::{Component, Context, StartError, Started};
use himaya_connect::{Standard, Wire};
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
        let (inbound, server) = himaya_webhooks::start(
            ctx.settings.clone(),
            pool,
            (executor, credentials),
            client,
            &standards(),
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
fn webhook_client(settings: &Settings, grpc_addr: SocketAddr) -> himaya_webhooks::HubClient {
    let certs = settings.connectors.client_certs_dir.clone();
    match &settings.connectors.hub_url {
        Some(url) => {
            let tls = url.starts_with("https://");
            himaya_webhooks::HubClient::new(url.clone(), tls.then_some(certs))
        }
        None => {
            let tls = settings.grpc.tls.is_some();
            let scheme = if tls { "https" } else { "http" };
            let url = format!("{scheme}://127.0.0.1:{}", grpc_addr.port());
            himaya_webhooks::HubClient::new(url, tls.then_some(certs))
        }
    }
}

/// Every standard this build speaks: **the one place a connector is added** (its folder
/// under `connectors/` implements [`Standard`]; its name is a `Protocol` in settings).
pub fn standards() -> Vec<Arc<dyn Standard>> {
    vec![
        Arc::new(himaya_connect::envelope::HimayaJson),
        Arc::new(himaya_connector_health::FhirR4),
        Arc::new(himaya_connector_social_affairs::PrimeroV2),
        Arc::new(himaya_connector_justice::JusticeMinimal),
        Arc::new(himaya_connector_cash_assistance::SpdciRegistry),
        Arc::new(himaya_connector_schools::School),
        Arc::new(himaya_connector_emergency_line::EmergencyLine),
    ]
}

/// Each standard's outbound mapping, with the deployment's choices for it (`[standards]`).
pub fn wires(settings: &Settings) -> HashMap<Protocol, Arc<dyn Wire>> {
    standards()
        .iter()
        .map(|s| (s.protocol(), s.wire(settings)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_protocol_has_one_standard_and_routes_are_unique() {
        use himaya_settings::Protocol::*;
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let settings = himaya_settings::Settings::load(&config, None).unwrap();
        let wires = super::wires(&settings);
        let all = [
            HimayaJson,
            FhirR4,
            PrimeroV2,
            JusticeMinimal,
            SpdciRegistry,
            School,
            EmergencyLine,
        ];
        for p in all {
            assert!(wires.contains_key(&p), "no standard for {}", p.as_str());
        }
        assert_eq!(
            super::standards().len(),
            all.len(),
            "a protocol has two standards"
        );
        let routes = himaya_webhooks::Route::all(&super::standards());
        let mut names: Vec<_> = routes.iter().map(|r| r.name()).collect();
        let mut paths: Vec<_> = routes.iter().map(|r| r.path()).collect();
        names.sort_unstable();
        names.dedup();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!((names.len(), paths.len()), (routes.len(), routes.len()));
        assert_eq!(routes.len(), 6);
    }
}
