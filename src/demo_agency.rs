//! A simulated agency system for the demo and the README walkthrough: it receives the
//! hub's deliveries over HTTP, drops duplicates on `Idempotency-Key`, and answers with
//! its own reference. `GET /referrals` lists what arrived (ids only).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Received {
    /// Idempotency key → (our reference, referral id, categories).
    by_key: HashMap<String, (String, String, Vec<String>)>,
}

#[derive(Clone)]
struct AppState {
    received: Arc<Mutex<Received>>,
    print_documents: bool,
}

pub async fn run(listen: SocketAddr, print_documents: bool) -> anyhow::Result<()> {
    let state = AppState {
        received: Arc::default(),
        print_documents,
    };
    let app = Router::new()
        .route("/referrals", post(receive).get(list))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("demo agency listening on http://{listen}/referrals");
    axum::serve(listener, app)
        .await
        .context("demo agency server")
}

async fn receive(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "Idempotency-Key header required"})),
        );
    };
    let referral = body
        .get("referral_id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let categories: Vec<String> = body
        .get("categories")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let Ok(mut r) = s.received.lock() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "state poisoned"})),
        );
    };
    if let Some((reference, _, _)) = r.by_key.get(&key) {
        println!("duplicate delivery of {referral} dropped (Idempotency-Key {key})");
        return (
            StatusCode::OK,
            Json(json!({"reference": reference, "duplicate": true})),
        );
    }
    let reference = format!("AGENCY-{:05}", r.by_key.len() + 1);
    println!(
        "referral {referral} arrived: categories [{}], our reference {reference}",
        categories.join(", ")
    );
    if s.print_documents {
        if let Some(case) = body.get("case") {
            println!("{}", serde_json::to_string_pretty(case).unwrap_or_default());
        }
    }
    r.by_key
        .insert(key, (reference.clone(), referral, categories));
    (StatusCode::CREATED, Json(json!({"reference": reference})))
}

async fn list(State(s): State<AppState>) -> Json<Value> {
    let items: Vec<Value> = s
        .received
        .lock()
        .map(|r| {
            r.by_key
                .iter()
                .map(|(k, (reference, referral, categories))| json!({"idempotency_key": k, "reference": reference, "referral_id": referral, "categories": categories}))
                .collect()
        })
        .unwrap_or_default();
    Json(json!({"count": items.len(), "referrals": items}))
}
