//! Himaya in one process or one component at a time: [`hub::Hub`] starts any set of
//! components against real PostgreSQL and RabbitMQ; [`cli`] is the command line.

pub mod cli;
pub mod client;
pub mod connectors;
pub mod demo_agency;
pub mod dev_certs;
pub mod hub;
pub mod observe;
pub mod referral_file;
pub mod telemetry;
