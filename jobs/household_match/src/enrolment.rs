//! Export of referrals for enrolment: each case a programme may see, as the consent layer
//! disclosed it, becomes one Avro record (`proto/avro/cash_enrolment_referral.avsc`).
//! Pure: the CLI feeds it the redacted cases it reads through `Cases.ExportCases`.

use apache_avro::types::{Record, Value};
use apache_avro::Schema;
use himaya_connect::shared::SharedCase;
use himaya_record::DocumentKind;

pub const SCHEMA_JSON: &str = include_str!("../../../proto/avro/cash_enrolment_referral.avsc");

pub fn schema() -> Result<Schema, Box<apache_avro::Error>> {
    Schema::parse_str(SCHEMA_JSON).map_err(Box::new)
}

fn opt_str(v: Option<&str>) -> Value {
    Value::Union(
        u32::from(v.is_some()),
        Box::new(v.map_or(Value::Null, |s| Value::String(s.to_owned()))),
    )
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> Value) -> Value {
    match v {
        Some(x) => Value::Union(1, Box::new(f(x))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

/// The record of one disclosed case; `None` if the schema cannot make one (never, for
/// the schema above).
pub fn record<'s>(
    schema: &'s Schema,
    case_id: &str,
    case: &SharedCase,
    exported_at: &str,
) -> Option<Record<'s>> {
    let c = &case.child;
    let mut r = Record::new(schema)?;
    r.put("case_id", Value::String(case_id.to_owned()));
    r.put("exported_at", Value::String(exported_at.to_owned()));
    let name = c.name.as_ref();
    r.put("name_ar", opt_str(name.and_then(|n| n.as_given.as_deref())));
    r.put(
        "name_latin",
        opt_str(name.and_then(|n| n.transliteration.as_deref())),
    );
    r.put("sex", opt_str(c.sex.map(|s| s.as_str())));
    r.put(
        "birth_date",
        opt(c.date_of_birth, |d| Value::String(d.to_string())),
    );
    r.put(
        "estimated_age_years",
        opt(c.estimated_age_years, |a| Value::Int(i32::from(a))),
    );
    let national = c
        .identity_documents
        .iter()
        .find(|d| d.kind == Some(DocumentKind::NationalId))
        .and_then(|d| d.number.as_deref());
    r.put("national_id", opt_str(national));
    r.put("governorate", opt_str(c.governorate.as_deref()));
    r.put("district", opt_str(c.district.as_deref()));
    r.put(
        "household_size",
        opt(case.household.size, |s| Value::Int(i32::from(s))),
    );
    r.put(
        "cash_transfer_beneficiary",
        opt(case.household.cash_transfer_beneficiary, Value::Boolean),
    );
    r.put(
        "income_source",
        opt_str(case.household.income_source.as_deref()),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::{Reader, Writer};

    #[test]
    fn a_redacted_case_round_trips_with_the_withheld_fields_null() {
        let schema = schema().unwrap();
        // As the cash programme's rule discloses it: identity, location, economic.
        let doc = r#"{"case_id":"case_1","child":{"name":{"as_given":"مريم","transliteration":"Mariam"},"sex":"female","date_of_birth":"2015-03-14","identity_documents":[{"kind":"national_id","number":"31503140101234"}],"governorate":"القاهرة"},"household":{"size":6,"cash_transfer_beneficiary":false}}"#;
        let case = SharedCase::parse(doc).unwrap();
        let mut w = Writer::new(&schema, Vec::new()).unwrap();
        w.append_value(record(&schema, "case_1", &case, "2026-11-24T08:00:00Z").unwrap())
            .unwrap();
        let bytes = w.into_inner().unwrap();
        let rows: Vec<_> = Reader::new(&bytes[..])
            .unwrap()
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(rows.len(), 1);
        let Value::Record(fields) = &rows[0] else {
            panic!("a record")
        };
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(
            get("name_ar"),
            Value::Union(1, Box::new(Value::String("مريم".into())))
        );
        assert_eq!(
            get("national_id"),
            Value::Union(1, Box::new(Value::String("31503140101234".into())))
        );
        assert_eq!(get("district"), Value::Union(0, Box::new(Value::Null)));
        assert_eq!(
            get("household_size"),
            Value::Union(1, Box::new(Value::Int(6)))
        );
        assert_eq!(get("income_source"), Value::Union(0, Box::new(Value::Null)));
    }
}
