//! One row of a household file: the Avro schema we write, and a lenient reading of
//! whatever schema a programme wrote with. Rows are read field by field from the file's own
//! writer schema (never resolved against ours: a resolution failure stops the Avro reader
//! for good), so a wrong type or an empty required field makes that one row bad, named by
//! row number and field, and the import carries on.

use std::borrow::Cow;
use std::sync::OnceLock;

use apache_avro::schema::Schema;
use apache_avro::types::Value;
use chrono::{Datelike, NaiveDate};
use himaya_record::Sex;
use serde::{Deserialize, Serialize};

use super::BulkError;

/// `proto/avro/cash_household_member.avsc`.
pub const SCHEMA_TEXT: &str = include_str!("../../../proto/avro/cash_household_member.avsc");

/// The parsed row schema (parsed once).
pub fn schema() -> Result<&'static Schema, BulkError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Schema::parse_str(SCHEMA_TEXT).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| BulkError::BuiltInSchema(e.clone()))
}

/// The row as serde sees it (`apache_avro::from_value`): for callers who want owned
/// structs; the import itself reads [`MemberRow`]s, which borrow and name bad fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdMemberRow {
    pub household_id: String,
    pub member_id: String,
    pub national_id: Option<String>,
    pub name_ar: String,
    pub name_latin: Option<String>,
    pub sex: String,
    pub birth_date: Option<BirthDateWire>,
    pub governorate: String,
    pub district: Option<String>,
    pub enrolled_since: Option<i32>,
}

/// The two ways a birth date travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BirthDateWire {
    Text(String),
    Days(i32),
}

/// The fields the import reads, in schema order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    HouseholdId,
    MemberId,
    NationalId,
    NameAr,
    NameLatin,
    Sex,
    BirthDate,
    Governorate,
    District,
    EnrolledSince,
}

const FIELDS: [Field; 10] = [
    Field::HouseholdId,
    Field::MemberId,
    Field::NationalId,
    Field::NameAr,
    Field::NameLatin,
    Field::Sex,
    Field::BirthDate,
    Field::Governorate,
    Field::District,
    Field::EnrolledSince,
];

impl Field {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::HouseholdId => "household_id",
            Field::MemberId => "member_id",
            Field::NationalId => "national_id",
            Field::NameAr => "name_ar",
            Field::NameLatin => "name_latin",
            Field::Sex => "sex",
            Field::BirthDate => "birth_date",
            Field::Governorate => "governorate",
            Field::District => "district",
            Field::EnrolledSince => "enrolled_since",
        }
    }

    fn required(self) -> bool {
        matches!(
            self,
            Field::HouseholdId | Field::MemberId | Field::NameAr | Field::Sex | Field::Governorate
        )
    }
}

/// A field's value, if it has a good one. What is wrong is noted: a bad value, or a
/// required field that is absent.
fn checked<T>(
    f: Field,
    read: Option<Result<Option<T>, Problem>>,
    note: &mut impl FnMut(Field, Problem),
) -> Option<T> {
    match read.unwrap_or(Ok(None)) {
        Ok(Some(x)) => Some(x),
        Ok(None) => {
            if f.required() {
                note(f, Problem::Missing);
            }
            None
        }
        Err(p) => {
            note(f, p);
            None
        }
    }
}

/// What is wrong with one field of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// A required field is null or empty.
    Missing,
    /// A value of a type the field cannot hold (a number for a name, a record, ...).
    WrongType,
    /// Not a date, or a date in the future or before 1900.
    InvalidDate,
    /// Text outside the field's vocabulary (sex).
    UnknownValue,
}

/// One bad field of a bad row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadField {
    pub field: &'static str,
    pub problem: Problem,
}

/// A row as the matcher needs it, borrowing from the decoded Avro value.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow<'a> {
    pub household_id: Cow<'a, str>,
    pub member_id: Cow<'a, str>,
    pub national_id: Option<Cow<'a, str>>,
    pub name_ar: &'a str,
    pub name_latin: Option<&'a str>,
    pub sex: Sex,
    pub birth_date: Option<NaiveDate>,
    pub governorate: &'a str,
    pub district: Option<&'a str>,
    pub enrolled_since: Option<NaiveDate>,
}

/// Where each field sits in the records of one file, found once from its writer schema.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    positions: [Option<usize>; 10],
}

impl Layout {
    /// Refuses a file whose schema is not a record or lacks a required field: every row
    /// would be bad, and the programme should hear that at once.
    pub(crate) fn of(writer: &Schema) -> Result<Layout, BulkError> {
        let Schema::Record(record) = writer else {
            return Err(BulkError::SchemaMismatch("(a record)"));
        };
        let mut positions = [None; 10];
        for (i, f) in FIELDS.iter().enumerate() {
            positions[i] = record.lookup.get(f.name()).copied();
            if positions[i].is_none() && f.required() {
                return Err(BulkError::SchemaMismatch(f.name()));
            }
        }
        Ok(Layout { positions })
    }

    fn get<'v>(&self, fields: &'v [(String, Value)], f: Field) -> Option<&'v Value> {
        let pos = self.positions[f as usize]?;
        match fields.get(pos) {
            Some((name, v)) if name == f.name() => Some(v),
            // Decoded records follow the schema's order; search only if one did not.
            _ => fields.iter().find(|(n, _)| n == f.name()).map(|(_, v)| v),
        }
    }

    /// Reads one row; every bad field is named. `today` bounds birth dates.
    pub(crate) fn read<'v>(
        &self,
        value: &'v Value,
        today: NaiveDate,
    ) -> Result<MemberRow<'v>, Vec<BadField>> {
        let Value::Record(fields) = value else {
            return Err(vec![BadField {
                field: "(row)",
                problem: Problem::WrongType,
            }]);
        };
        let mut bad = Vec::new();
        let mut note = |f: Field, p: Problem| {
            bad.push(BadField {
                field: f.name(),
                problem: p,
            })
        };
        let v = |f: Field| self.get(fields, f).map(unwrap_union);

        let mut id = |f: Field| checked(f, v(f).map(id_text), &mut note);
        let household_id = id(Field::HouseholdId);
        let member_id = id(Field::MemberId);
        let national_id = id(Field::NationalId);

        let mut text = |f: Field| checked(f, v(f).map(text), &mut note);
        let name_ar = text(Field::NameAr);
        let name_latin = text(Field::NameLatin);
        let governorate = text(Field::Governorate);
        let district = text(Field::District);
        let sex = text(Field::Sex);

        let mut date = |f: Field| checked(f, v(f).map(|x| date(x, today)), &mut note);
        let birth_date = date(Field::BirthDate);
        let enrolled_since = date(Field::EnrolledSince);
        let sex = match sex.map(parse_sex) {
            Some(Some(s)) => Some(s),
            Some(None) => {
                note(Field::Sex, Problem::UnknownValue);
                None
            }
            None => None,
        };
        match (household_id, member_id, name_ar, sex, governorate) {
            (Some(household_id), Some(member_id), Some(name_ar), Some(sex), Some(governorate))
                if bad.is_empty() =>
            {
                Ok(MemberRow {
                    household_id,
                    member_id,
                    national_id,
                    name_ar,
                    name_latin,
                    sex,
                    birth_date,
                    governorate,
                    district,
                    enrolled_since,
                })
            }
            _ => Err(bad),
        }
    }
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        v => v,
    }
}

/// Text, with null and blank both meaning "not given".
fn text(v: &Value) -> Result<Option<&str>, Problem> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) | Value::Enum(_, s) => s.as_str(),
        Value::Bytes(b) => std::str::from_utf8(b).map_err(|_| Problem::WrongType)?,
        _ => return Err(Problem::WrongType),
    };
    let s = s.trim();
    Ok((!s.is_empty()).then_some(s))
}

/// Identifiers may come as numbers from some systems.
fn id_text(v: &Value) -> Result<Option<Cow<'_, str>>, Problem> {
    match v {
        Value::Int(i) => Ok(Some(Cow::Owned(i.to_string()))),
        Value::Long(i) => Ok(Some(Cow::Owned(i.to_string()))),
        v => text(v).map(|s| s.map(Cow::Borrowed)),
    }
}

fn date(v: &Value, today: NaiveDate) -> Result<Option<NaiveDate>, Problem> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let d = match v {
        Value::Null => return Ok(None),
        Value::Date(days) | Value::Int(days) => {
            epoch.checked_add_signed(chrono::Duration::days(i64::from(*days)))
        }
        Value::Long(days) => {
            chrono::Duration::try_days(*days).and_then(|d| epoch.checked_add_signed(d))
        }
        Value::String(_) | Value::Bytes(_) => match text(v)? {
            None => return Ok(None),
            Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
        },
        _ => return Err(Problem::WrongType),
    };
    match d {
        Some(d) if d <= today && d.year() >= 1900 => Ok(Some(d)),
        _ => Err(Problem::InvalidDate),
    }
}

fn parse_sex(s: &str) -> Option<Sex> {
    match s {
        "female" | "f" | "F" | "Female" | "FEMALE" | "أنثى" | "انثى" | "انثي" => {
            Some(Sex::Female)
        }
        "male" | "m" | "M" | "Male" | "MALE" | "ذكر" => Some(Sex::Male),
        "not_stated" | "unknown" | "u" | "U" => Some(Sex::NotStated),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    fn record(fields: Vec<(&str, Value)>) -> Value {
        Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn good() -> Vec<(&'static str, Value)> {
        vec![
            ("household_id", Value::String("TK-01-1".into())),
            ("member_id", Value::String("TK-01-1-03".into())),
            ("national_id", Value::Union(0, Box::new(Value::Null))),
            ("name_ar", Value::String("مريم أحمد".into())),
            ("name_latin", Value::Union(0, Box::new(Value::Null))),
            ("sex", Value::Enum(0, "female".into())),
            ("birth_date", Value::Union(2, Box::new(Value::Date(16_000)))),
            ("governorate", Value::String("القاهرة".into())),
            ("district", Value::Union(0, Box::new(Value::Null))),
            ("enrolled_since", Value::Union(0, Box::new(Value::Null))),
        ]
    }

    #[test]
    fn the_schema_parses_and_lays_out() {
        let layout = Layout::of(schema().unwrap()).unwrap();
        let value = record(good());
        let row = layout.read(&value, today()).unwrap();
        assert_eq!(row.sex, Sex::Female);
        assert_eq!(row.birth_date, NaiveDate::from_ymd_opt(2013, 10, 22));
        assert_eq!(row.national_id, None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let layout = Layout::of(schema().unwrap()).unwrap();
        let mut f = good();
        f[3].1 = Value::Long(7);
        f[5].1 = Value::Enum(9, "other".into());
        f[6].1 = Value::Union(1, Box::new(Value::String("2031-02-30".into())));
        f[7].1 = Value::String("  ".into());
        let bad = layout.read(&record(f), today()).unwrap_err();
        let names: Vec<_> = bad.iter().map(|b| (b.field, b.problem)).collect();
        assert_eq!(
            names,
            [
                ("name_ar", Problem::WrongType),
                ("governorate", Problem::Missing),
                ("birth_date", Problem::InvalidDate),
                ("sex", Problem::UnknownValue),
            ]
        );
    }

    #[test]
    fn a_schema_without_a_required_field_is_refused() {
        let s = Schema::parse_str(
            r#"{"type":"record","name":"X","fields":[{"name":"household_id","type":"string"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            Layout::of(&s),
            Err(BulkError::SchemaMismatch("member_id"))
        ));
    }

    #[test]
    fn text_dates_and_numeric_ids_are_read() {
        let layout = Layout::of(schema().unwrap()).unwrap();
        let mut f = good();
        f[0].1 = Value::Long(42);
        f[6].1 = Value::Union(1, Box::new(Value::String("2014-03-09".into())));
        let value = record(f);
        let row = layout.read(&value, today()).unwrap();
        assert_eq!(row.household_id, "42");
        assert_eq!(row.birth_date, NaiveDate::from_ymd_opt(2014, 3, 9));
    }
}
