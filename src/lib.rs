//! Himaya in one process or one component at a time: [`hub::Hub`] starts any set of
//! components against real PostgreSQL and RabbitMQ; [`cli`] is the command line.

pub mod audit_cli;
pub mod casework_cli;
pub mod cash_cli;
pub mod cli;
pub mod client;
pub mod connectors;
pub mod consent_cli;
pub mod demo_agency;
pub mod dev_certs;
pub mod hub;
pub mod notices_cli;
pub mod parked_cli;
pub mod person_cli;
pub mod plan_cli;
pub mod referral_file;
pub mod services_cli;
pub mod telemetry;
pub mod webhooks;
