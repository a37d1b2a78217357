//! The justice connector (courts, legal aid, police/interior): need-to-know at its
//! strictest. Whatever the sharing policy permits, a legal-protection referral carries only
//! what a court or legal-aid office needs to open a file: who the child is (when the
//! identity category is permitted), sex, age, governorate, the protection concerns and
//! the service asked for. Never an address, a phone, a caregiver, health data or a case
//! note: the agency asks the case manager for more, under its own legal basis.

pub mod mapping;
pub mod status;

pub use mapping::Justice;
