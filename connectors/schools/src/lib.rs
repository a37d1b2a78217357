//! The schools connector: a school's system posts its protection officers' referrals to
//! the hub (`inbound`), and receives, in return, only what the sharing policy lets a
//! school see (`mapping`): ids, status and place, never the child's record.

pub mod inbound;
pub mod mapping;

pub use mapping::SchoolWire;
