//! Himaya in one process or one component at a time: [`hub::Hub`] starts any set of
//! components against real PostgreSQL and RabbitMQ; [`cli`] is the command line.

/// Every process of this package allocates through mimalloc: glibc's malloc and free were
/// 28 % of the hub's workers' CPU at its ceiling (`docs/decisions.md`, "What the hub's own
/// CPU went on"). Declared in the library, so that what links it (the `himaya` binary, the
/// pipeline benchmark, the end-to-end tests in `tests/it`) measures what ships; a target
/// that does not use this library (a member crate's own tests and benchmarks, the
/// matching and pages benchmarks) keeps the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cli;
pub mod client;
pub mod connectors;
pub mod demo_agency;
pub mod dev_certs;
pub mod hub;
pub mod observe;
pub mod referral_file;
pub mod telemetry;
