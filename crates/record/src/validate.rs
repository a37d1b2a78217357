//! Validation with field-level answers a person can act on, in Arabic and English.
//! A violation names the field and the rule, never the offending value: values are
//! personal data and must not travel into error messages or logs.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use himaya_words::{msg, Lang, Msg};

use crate::record::{ConcernKind, ReferralDetails, SourceKind};

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Required,
    TooLong {
        max: usize,
    },
    ControlCharacters,
    NotLatinScript,
    NoLetters,
    InvalidDate,
    DateInFuture,
    NotAChild,
    AgeOutOfRange,
    BothBirthDateAndAge,
    NeitherBirthDateNorAge,
    NotChosen {
        choices: String,
    },
    AtLeastOne,
    LabourCriteriaRequired,
    LabourCriteriaOnlyForLabour,
    InvalidPhone,
    InvalidCode {
        expected: &'static str,
    },
    TooMany {
        max: usize,
    },
    SourceMismatch,
    OutOfRange {
        min: i64,
        max: i64,
    },
    /// Says the opposite of another part of the same request.
    Contradicts {
        other: String,
    },
    /// A period that has already ended (or ends before it starts).
    Expired,
    /// Only one of this and `other` may be given.
    NotBoth {
        other: &'static str,
    },
    /// A place the gazetteer does not know.
    NotInGazetteer {
        choices: String,
    },
    /// Characters that reorder or hide text (bidi controls, zero-width marks).
    InvisibleCharacters,
    /// Not an id of the kind asked for (`prefix` and 32 hex digits).
    NotAnId {
        prefix: &'static str,
    },
}

impl Problem {
    /// A stable machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::Required => "required",
            Problem::TooLong { .. } => "too_long",
            Problem::ControlCharacters => "control_characters",
            Problem::NotLatinScript => "not_latin_script",
            Problem::NoLetters => "no_letters",
            Problem::InvalidDate => "invalid_date",
            Problem::DateInFuture => "date_in_future",
            Problem::NotAChild => "not_a_child",
            Problem::AgeOutOfRange => "age_out_of_range",
            Problem::BothBirthDateAndAge => "both_birth_date_and_age",
            Problem::NeitherBirthDateNorAge => "neither_birth_date_nor_age",
            Problem::NotChosen { .. } => "not_chosen",
            Problem::AtLeastOne => "at_least_one",
            Problem::LabourCriteriaRequired => "labour_criteria_required",
            Problem::LabourCriteriaOnlyForLabour => "labour_criteria_only_for_labour",
            Problem::InvalidPhone => "invalid_phone",
            Problem::InvalidCode { .. } => "invalid_code",
            Problem::TooMany { .. } => "too_many",
            Problem::SourceMismatch => "source_mismatch",
            Problem::OutOfRange { .. } => "out_of_range",
            Problem::Contradicts { .. } => "contradicts",
            Problem::Expired => "expired",
            Problem::NotBoth { .. } => "not_both",
            Problem::NotInGazetteer { .. } => "not_in_gazetteer",
            Problem::InvisibleCharacters => "invisible_characters",
            Problem::NotAnId { .. } => "not_an_id",
        }
    }

    /// The rule as a message of the catalogue (`himaya_words`), for a field violation.
    pub fn msg(&self) -> Msg {
        match self {
            Problem::Required => msg!("problem-required"),
            Problem::TooLong { max } => msg!("problem-too-long", max = *max),
            Problem::ControlCharacters => msg!("problem-control-characters"),
            Problem::NotLatinScript => msg!("problem-not-latin-script"),
            Problem::NoLetters => msg!("problem-no-letters"),
            Problem::InvalidDate => msg!("problem-invalid-date"),
            Problem::DateInFuture => msg!("problem-date-in-future"),
            Problem::NotAChild => msg!("problem-not-a-child"),
            Problem::AgeOutOfRange => msg!("problem-age-out-of-range"),
            Problem::BothBirthDateAndAge => msg!("problem-both-birth-date-and-age"),
            Problem::NeitherBirthDateNorAge => msg!("problem-neither-birth-date-nor-age"),
            Problem::NotChosen { choices } => msg!("problem-not-chosen", choices = choices),
            Problem::AtLeastOne => msg!("problem-at-least-one"),
            Problem::LabourCriteriaRequired => msg!("problem-labour-criteria-required"),
            Problem::LabourCriteriaOnlyForLabour => {
                msg!("problem-labour-criteria-only-for-labour")
            }
            Problem::InvalidPhone => msg!("problem-invalid-phone"),
            Problem::InvalidCode { expected } => msg!("problem-invalid-code", expected = *expected),
            Problem::TooMany { max } => msg!("problem-too-many", max = *max),
            Problem::SourceMismatch => msg!("problem-source-mismatch"),
            Problem::OutOfRange { min, max } => {
                msg!("problem-out-of-range", min = *min, max = *max)
            }
            Problem::Contradicts { other } => msg!("problem-contradicts", other = other),
            Problem::Expired => msg!("problem-expired"),
            Problem::NotBoth { other } => msg!("problem-not-both", other = *other),
            Problem::NotInGazetteer { choices } => {
                msg!("problem-not-in-gazetteer", choices = choices)
            }
            Problem::InvisibleCharacters => msg!("problem-invisible-characters"),
            Problem::NotAnId { prefix } => msg!("problem-not-an-id", prefix = *prefix),
        }
    }

    /// What the rule says, in `lang`.
    pub fn text(&self, lang: Lang) -> String {
        self.msg().render(lang)
    }
}

/// One field's violation. `field` is a dotted path in the request (`referral.child.sex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub problem: Problem,
}

/// Every violation found in one request; validation never stops at the first, but keeps
/// at most [`MAX_VIOLATIONS`] (and counts the rest), so that no request can make an
/// answer or a log line as large as itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>, usize);

/// The most violations one answer lists; the rest are counted.
// An error's headers must stay well under 16 KiB, the HTTP/2 header list a gRPC client
// accepts by default (hyper's), with the details in Arabic.
pub const MAX_VIOLATIONS: usize = 20;

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, problem: Problem) {
        if self.0.len() >= MAX_VIOLATIONS {
            self.1 += 1;
            return;
        }
        self.0.push(FieldViolation {
            field: field.into(),
            problem,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }

    /// Violations found but not listed (past [`MAX_VIOLATIONS`]).
    pub fn more(&self) -> usize {
        self.1
    }

    pub fn extend(&mut self, other: Violations) {
        self.1 += other.1;
        for v in other.0 {
            self.push(v.field, v.problem);
        }
    }

    /// `Ok(value)` when nothing was found, else the violations.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    pub fn has(&self, field: &str, code: &str) -> bool {
        self.0
            .iter()
            .any(|v| v.field == field && v.problem.code() == code)
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.problem.text(Lang::English)))
            .collect();
        write!(f, "{}", parts.join("; "))?;
        if self.1 > 0 {
            write!(f, "; and {} more", self.1)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Limits on free text; generous for real use, small enough that nobody stores a file.
pub const MAX_NAME: usize = 200;
pub const MAX_SHORT_TEXT: usize = 200;
pub const MAX_NARRATIVE: usize = 4000;
pub const MAX_LIST: usize = 20;

/// A list cut at [`MAX_LIST`]: a longer one is a violation naming the limit (not one per
/// entry), and only its first `MAX_LIST` entries are looked at, so a request of 100,000
/// entries costs no more to check than one of 20.
pub fn within<'a, T>(v: &mut Violations, field: &str, list: &'a [T]) -> &'a [T] {
    within_max(v, field, list, MAX_LIST)
}

/// [`within`] with a limit of its own.
pub fn within_max<'a, T>(v: &mut Violations, field: &str, list: &'a [T], max: usize) -> &'a [T] {
    if list.len() > max {
        v.push(field, Problem::TooMany { max });
        return &list[..max];
    }
    list
}

/// [`within`] for a list taken by value.
pub fn within_vec<T>(v: &mut Violations, field: &str, mut list: Vec<T>) -> Vec<T> {
    if list.len() > MAX_LIST {
        v.push(field, Problem::TooMany { max: MAX_LIST });
        list.truncate(MAX_LIST);
    }
    list
}

/// Checks a free-text field; `required` decides whether empty is a violation.
pub fn check_text(v: &mut Violations, field: &str, text: &str, max: usize) {
    if text.chars().count() > max {
        v.push(field, Problem::TooLong { max });
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        v.push(field, Problem::ControlCharacters);
    }
    // Embeddings, overrides and isolates reorder what a reader sees (an agency's screen, a
    // caseworker's): no field of a referral needs them.
    if text
        .chars()
        .any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    {
        v.push(field, Problem::InvisibleCharacters);
    }
}

/// Zero-width and direction marks: a name never needs them, and they make two spellings
/// of one name look alike on screen while differing underneath.
fn has_invisible(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}' | '\u{061C}'
        )
    })
}

fn check_required(v: &mut Violations, field: &str, text: &str, max: usize) {
    if text.trim().is_empty() {
        v.push(field, Problem::Required);
    } else {
        check_text(v, field, text, max);
    }
}

fn check_optional(v: &mut Violations, field: &str, text: Option<&str>, max: usize) {
    if let Some(t) = text {
        check_text(v, field, t, max);
    }
}

fn check_name(v: &mut Violations, field: &str, name: &crate::record::PersonName) {
    let given = format!("{field}.as_given");
    check_required(v, &given, &name.as_given, MAX_NAME);
    if !name.as_given.trim().is_empty() && !name.as_given.chars().any(char::is_alphabetic) {
        v.push(given.clone(), Problem::NoLetters);
    }
    if has_invisible(&name.as_given) {
        v.push(given, Problem::InvisibleCharacters);
    }
    if let Some(t) = &name.transliteration {
        let f = format!("{field}.transliteration");
        check_text(v, &f, t, MAX_NAME);
        let latin = t
            .chars()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, ' ' | '-' | '\'' | '.'));
        if !latin {
            v.push(f, Problem::NotLatinScript);
        }
    }
}

fn check_phone(v: &mut Violations, field: &str, phone: &str) {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    let ok = digits
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    let count = digits.chars().filter(char::is_ascii_digit).count();
    if !ok || !(6..=20).contains(&count) {
        v.push(field, Problem::InvalidPhone);
    }
}

fn check_list_len<T>(v: &mut Violations, field: &str, list: &[T]) {
    if list.len() > MAX_LIST {
        v.push(field, Problem::TooMany { max: MAX_LIST });
    }
}

/// Age in whole years on `today`.
pub fn age_on(birth: NaiveDate, today: NaiveDate) -> i32 {
    let mut years = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    years
}

/// Validates a referral's details. `prefix` is where the details sit in the request
/// (`referral`), so paths in violations match what the caller sent.
pub fn validate_details(details: &ReferralDetails, today: NaiveDate, prefix: &str) -> Violations {
    let mut v = Violations::new();
    let c = &details.child;
    let p = |f: &str| format!("{prefix}.{f}");
    check_name(&mut v, &p("child.name"), &c.name);
    match (c.date_of_birth, c.estimated_age_years) {
        (Some(_), Some(_)) => v.push(p("child.date_of_birth"), Problem::BothBirthDateAndAge),
        (None, None) => v.push(p("child.date_of_birth"), Problem::NeitherBirthDateNorAge),
        (Some(dob), None) => {
            if dob > today {
                v.push(p("child.date_of_birth"), Problem::DateInFuture);
            } else if age_on(dob, today) >= 18 {
                v.push(p("child.date_of_birth"), Problem::NotAChild);
            }
        }
        (None, Some(age)) => {
            if age > 17 {
                v.push(p("child.estimated_age_years"), Problem::AgeOutOfRange);
            }
        }
    }
    if let Some(n) = &c.nationality {
        if n.len() != 3 || !n.chars().all(|ch| ch.is_ascii_uppercase()) {
            v.push(
                p("child.nationality"),
                Problem::InvalidCode {
                    expected: "an ISO 3166-1 alpha-3 code such as EGY or SYR",
                },
            );
        }
    }
    check_list_len(
        &mut v,
        &p("child.identity_documents"),
        &c.identity_documents,
    );
    for (i, d) in c.identity_documents.iter().enumerate() {
        let f = p(&format!("child.identity_documents[{i}].number"));
        check_required(&mut v, &f, &d.number, 64);
        check_optional(
            &mut v,
            &p(&format!("child.identity_documents[{i}].issuer")),
            d.issuer.as_deref(),
            MAX_SHORT_TEXT,
        );
    }
    check_required(&mut v, &p("child.governorate"), &c.governorate, 100);
    check_optional(&mut v, &p("child.district"), c.district.as_deref(), 100);
    check_optional(&mut v, &p("child.address"), c.address.as_deref(), 500);
    check_optional(&mut v, &p("child.disability"), c.disability.as_deref(), 500);
    if let Some(s) = &c.school {
        check_required(&mut v, &p("child.school.name"), &s.name, MAX_SHORT_TEXT);
        check_optional(&mut v, &p("child.school.grade"), s.grade.as_deref(), 50);
    }
    check_list_len(&mut v, &p("caregivers"), &details.caregivers);
    for (i, cg) in details.caregivers.iter().enumerate() {
        check_name(&mut v, &p(&format!("caregivers[{i}].name")), &cg.name);
        if let Some(phone) = &cg.phone {
            check_phone(&mut v, &p(&format!("caregivers[{i}].phone")), phone);
        }
        check_optional(
            &mut v,
            &p(&format!("caregivers[{i}].address")),
            cg.address.as_deref(),
            500,
        );
    }
    if let Some(size) = details.household.size {
        if !(1..=50).contains(&size) {
            v.push(p("household.size"), Problem::OutOfRange { min: 1, max: 50 });
        }
    }
    check_optional(
        &mut v,
        &p("household.income_source"),
        details.household.income_source.as_deref(),
        MAX_SHORT_TEXT,
    );
    if details.concerns.is_empty() {
        v.push(p("concerns"), Problem::AtLeastOne);
    }
    check_list_len(&mut v, &p("concerns"), &details.concerns);
    for (i, concern) in details.concerns.iter().enumerate() {
        let f = p(&format!("concerns[{i}].labour_criteria"));
        match (concern.kind, concern.labour_criteria.is_empty()) {
            (ConcernKind::ExploitativeLabour, true) => v.push(f, Problem::LabourCriteriaRequired),
            (ConcernKind::ExploitativeLabour, false) | (_, true) => {}
            (_, false) => v.push(f, Problem::LabourCriteriaOnlyForLabour),
        }
    }
    if details.requested_services.is_empty() {
        v.push(p("requested_services"), Problem::AtLeastOne);
    }
    check_list_len(
        &mut v,
        &p("requested_services"),
        &details.requested_services,
    );
    check_list_len(&mut v, &p("consent_refs"), &details.consent_refs);
    for (i, c) in details.consent_refs.iter().enumerate() {
        check_required(
            &mut v,
            &p(&format!("consent_refs[{i}].consent_id")),
            &c.consent_id,
            128,
        );
    }
    check_optional(
        &mut v,
        &p("narrative"),
        details.narrative.as_deref(),
        MAX_NARRATIVE,
    );
    v
}

/// Checks a submission's envelope: the idempotency key and the referrer's references
/// (each a `(field, value)` pair that must be present).
pub fn validate_envelope(v: &mut Violations, submission_id: &str, refs: &[(&str, &str)]) {
    if submission_id.trim().is_empty() {
        v.push("submission_id", Problem::Required);
    } else if submission_id.len() > 128
        || !submission_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        v.push(
            "submission_id",
            Problem::InvalidCode {
                expected: "1 to 128 characters of A-Z, a-z, 0-9, - _ . :",
            },
        );
    }
    for (field, value) in refs {
        check_required(v, field, value, 128);
    }
}

/// Source kinds an agency may name in `SubmitAgencyReferral`; schools and the hotline have
/// their own RPCs so their rules (officer, priority) cannot be bypassed.
pub fn agency_source_allowed(kind: SourceKind) -> bool {
    !matches!(kind, SourceKind::School | SourceKind::Hotline)
}
