//! Who is calling: the agency a call names, which must be in the directory. The gateway
//! has already proven it (or refused the call); the services look it up again to get the
//! agency's settings, and because a service reached without the gateway (a test, a
//! deployment mistake) must refuse the same way.

pub use himaya_proto::status::CallerError;

use std::sync::Arc;

use himaya_proto::status::caller;
use himaya_settings::{AgencySettings, Settings};
use tonic::metadata::MetadataMap;

/// The calling agency's id and settings, as the directory has them now. A suspended
/// agency is refused like one the directory does not know.
pub fn calling_agency(
    settings: &Settings,
    meta: &MetadataMap,
) -> Result<(String, Arc<AgencySettings>), CallerError> {
    let id = caller(meta).ok_or(CallerError::Unidentified)?;
    match settings.agencies.get(&id) {
        Some(a) if !a.suspended => Ok((id, a)),
        _ => Err(CallerError::Unknown),
    }
}
