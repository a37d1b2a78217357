//! `cargo bench -p himaya-gateway --bench identify`: what the gateway spends finding the agency a client
//! certificate proves, with 10 and with 10,000 agencies in the directory, in the same
//! run, next to two baselines of the same certificate:
//! - raw: parsing the certificate and verifying one name (the least any identification
//!   does);
//! - scan: trying every agency's name on the certificate, as the gateway did while the
//!   directory was configuration (the cost grows with the directory).
//!
//! Each figure is the time per call over HIMAYA_BENCH_GATEWAY_CALLS calls (default
//! 20,000; 1,000 for the scan of 10,000), median and p99 of batches of 100 calls.

use std::time::Instant;

use himaya_settings::{AgencySettings, Settings};
use rustls_pki_types::{CertificateDer, ServerName};

fn settings_with(n: usize) -> Settings {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut settings = Settings::load(&config, None).expect("the shipped configuration");
    let model: AgencySettings = settings
        .agencies
        .get("health-cairo")
        .map(|a| (*a).clone())
        .expect("health-cairo in the configuration");
    let ids = settings.agencies.ids();
    for id in ids {
        settings.agencies.remove(&id);
    }
    for i in 0..n {
        settings
            .agencies
            .insert(format!("agency-{i:05}"), model.clone());
    }
    settings
}

/// Nanoseconds per call: (median, p99) of batches of 100 calls.
fn measure(calls: usize, mut call: impl FnMut()) -> (f64, f64) {
    let batches = (calls / 100).max(1);
    let mut per_call: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..100 {
                call();
            }
            t.elapsed().as_nanos() as f64 / 100.0
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    let at = |q: f64| per_call[((per_call.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let calls: usize = std::env::var("HIMAYA_BENCH_GATEWAY_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let named = "agency-00007";
    let key = rcgen::generate_simple_self_signed(vec![format!("{named}.agency.himaya")])
        .expect("a certificate");
    let der = CertificateDer::from(key.cert.der().to_vec());
    println!("gateway: the agency a client certificate proves (ns per call; median / p99)");
    println!("{:<34} {:>12} {:>12}", "", "10 agencies", "10,000");
    let mut rows: Vec<(&str, [(f64, f64); 2])> = Vec::new();
    let mut raw = [(0.0, 0.0); 2];
    let mut lookup = [(0.0, 0.0); 2];
    let mut scan = [(0.0, 0.0); 2];
    for (i, n) in [10usize, 10_000].into_iter().enumerate() {
        let settings = settings_with(n);
        raw[i] = measure(calls, || {
            let cert = webpki::EndEntityCert::try_from(&der).expect("parses");
            let name = ServerName::try_from(format!("{named}.agency.himaya")).expect("a name");
            assert!(cert.verify_is_valid_for_subject_name(&name).is_ok());
        });
        lookup[i] = measure(calls, || {
            let found = himaya_gateway::certified_agency(&settings, &der, None);
            assert_eq!(found.as_deref().ok(), Some(named));
        });
        let scan_calls = if n > 100 { 1_000 } else { calls };
        scan[i] = measure(scan_calls, || {
            let cert = webpki::EndEntityCert::try_from(&der).expect("parses");
            let agencies = settings.agencies.snapshot();
            // As the gateway did: every agency tried, so that a second name is seen.
            let found: Vec<&String> = agencies
                .keys()
                .filter(|id| {
                    ServerName::try_from(format!("{id}.agency.himaya"))
                        .map(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
                        .unwrap_or(false)
                })
                .collect();
            assert_eq!(found, [named]);
        });
    }
    rows.push(("raw (parse + verify one name)", raw));
    rows.push(("gateway (names looked up by id)", lookup));
    rows.push(("scan of the directory (before)", scan));
    for (what, [(m10, p10), (m10k, p10k)]) in rows {
        println!(
            "{what:<34} {:>5.0} / {:<5.0} {:>6.0} / {:<6.0}",
            m10, p10, m10k, p10k
        );
    }
}
