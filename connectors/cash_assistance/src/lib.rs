//! The cash-assistance connector: (a) a search of the programme's registry for a child's
//! household, in the style of the SPDCI social-registry API (`mapping`); (b) bulk
//! exchange of household lists as Avro object container files (`bulk`).

pub mod bulk;
pub mod enrolment;
pub mod mapping;
pub use mapping::Spdci;
