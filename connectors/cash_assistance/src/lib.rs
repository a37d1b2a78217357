//! The cash-assistance connector: a search of the programme's registry for a child's
//! household, in the style of the SPDCI social-registry API (`mapping`). The bulk
//! exchange of household files is a job of its own (`jobs/household_match`).

pub mod mapping;
pub use mapping::Spdci;
