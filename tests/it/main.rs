//! The hub's end-to-end tests, in one test binary: each module starts the real hub (or
//! the parts it needs) against real PostgreSQL and RabbitMQ, each test in a database and
//! a broker vhost of its own, and the web front's in a real Chromium.
//!
//! One binary links the hub once instead of once per file. The one test that needs a
//! process of its own, because it installs a process-wide log subscriber and panic hook
//! to catch personal data, is `tests/no_personal_data_in_logs.rs`.

mod helpers;

mod backup;
mod batched_answers;
mod batched_delivery;
mod batched_routing;
mod bus_behaviour;
mod case_lifecycle;
mod certificates;
mod connectors;
mod directory;
mod disclosure_log;
mod duplicate_search;
mod encrypted_links;
mod exports_and_notices;
mod identity;
mod metrics;
mod overload;
mod prometheus;
mod referral_flow;
mod relay_lease;
mod relay_pace;
mod retention;
mod rotation;
mod service_proposals;
mod traces;
mod web;
mod webhooks;
