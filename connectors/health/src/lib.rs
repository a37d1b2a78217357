//! The health connector: HL7 FHIR R4 (JSON).
//! - Out (`mapping`): a delivery becomes a transaction Bundle of a Patient carrying only
//!   the fields the consent layer permitted, an optional Condition (disability, when the
//!   health category is permitted) and a ServiceRequest whose priority follows the risk.
//!   A withdrawal notice becomes a Communication.
//! - In (`task`): the agency's answers, as FHIR Task status changes, onto the service
//!   referral's states; `capability`: what that endpoint does, as the CapabilityStatement
//!   it answers at `/metadata`.
//!
//! Identifier systems are the deployment's (`[standards.fhir]`, `mapping::Systems`).

pub mod capability;
pub mod mapping;
pub mod task;

pub use mapping::Fhir;
