//! The social affairs connector, in the shape of Primero's API v2, so a directorate that
//! already runs Primero connects by configuration:
//! - out (`mapping`): a delivery is `POST {endpoint}/api/v2/cases` with `{"data": {…}}` in
//!   the fields of Primero's case forms and the values of its lookups (`profile`: the
//!   stock forms, or the instance's own lookups and custom fields); a withdrawal notice
//!   is a flag on the case (`POST {endpoint}/api/v2/cases/flags`);
//! - in (`inbound`): a case Primero pushes becomes an agency referral into the hub, and a
//!   referral or transfer the directorate accepted or rejected (with its reason) becomes
//!   the service referral's new state.

pub mod inbound;
pub mod mapping;
pub mod profile;
pub mod pull;

pub use mapping::Primero;
pub use profile::Profile;
