//! Walks a block's rows against the file's writer schema, without decoding them, before
//! apache-avro decodes them. apache-avro (0.17 when this was written; 0.22 checks a count
//! only against its process-wide allocation limit) trusts declared counts: it reserves room for
//! an array's declared items at once (56 bytes each, however few bytes they take in the
//! file: a null takes none) and recurses once per nesting level. The walk adds up an upper
//! estimate of what decoding each row allocates, refusing a row past
//! [`MAX_ROW_DECODED_BYTES`] or nested past [`MAX_ROW_DEPTH`], and checks that every row
//! lies within the block: once a block passes, decoding it follows the same path over
//! the same bytes, so apache-avro's allocations stay within the estimate.

use apache_avro::schema::{
    InnerDecimalSchema, Name, NamesRef, NamespaceRef, ResolvedSchema, Schema, UuidSchema,
};

use super::container::Stop;
use super::limits::{Refusal, MAX_BLOCK_DECODED_BYTES, MAX_ROW_DECODED_BYTES, MAX_ROW_DEPTH};

/// One decoded `apache_avro::types::Value` (56 bytes in 0.17, checked by a test), rounded
/// up for the allocator.
pub(crate) const VALUE: u64 = 64;
/// A record field's `(String, Value)` slot beyond its value: the name's `String` and its
/// heap block (plus the name's length).
const FIELD: u64 = 48;
/// A map entry beyond its value: the key's `String`, the table's slot and control bytes.
const ENTRY: u64 = 48;

/// Checks `rows` rows of `body`, the rows of block `block` after `rows_before` earlier
/// ones. A row that does not fit the schema or the block is corruption. The block's rows
/// together are held to [`MAX_BLOCK_DECODED_BYTES`]: decoded one at a time they need no
/// more memory, but a block of a million tiny rows each declaring ten thousand nulls would
/// take hours to decode.
pub(crate) fn check_rows(
    schema: &Schema,
    body: &[u8],
    rows: u64,
    block: u64,
    rows_before: u64,
) -> Result<(), Stop> {
    let resolved = ResolvedSchema::try_from(schema).map_err(|_| Stop::Refused(Refusal::Schema))?;
    let mut walk = Walk {
        input: body,
        names: resolved.get_names(),
        budget: 0,
    };
    let mut block_budget = MAX_BLOCK_DECODED_BYTES;
    for i in 1..=rows {
        walk.budget = MAX_ROW_DECODED_BYTES;
        let row = rows_before + i;
        let left = walk.input.len();
        walk.value(schema, None, 1).map_err(|fault| match fault {
            Fault::Corrupt => Stop::Corrupt,
            Fault::Size => Stop::Refused(Refusal::RowSize {
                block,
                row,
                max: MAX_ROW_DECODED_BYTES,
            }),
            Fault::Depth => Stop::Refused(Refusal::RowDepth {
                block,
                row,
                max: MAX_ROW_DEPTH,
            }),
        })?;
        // A row of no bytes (a schema of nulls): an empty block could declare millions.
        // apache-avro 0.17 refused such a row; 0.22 decodes it, so it is refused here.
        if walk.input.len() == left {
            return Err(Stop::Corrupt);
        }
        block_budget = block_budget
            .checked_sub(MAX_ROW_DECODED_BYTES - walk.budget)
            .ok_or(Stop::Refused(Refusal::BlockDecoded {
                block,
                max: MAX_BLOCK_DECODED_BYTES,
            }))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Past the block's end, or a union branch or enum symbol the schema does not have.
    Corrupt,
    Size,
    Depth,
}

struct Walk<'b, 'n, 's> {
    input: &'b [u8],
    names: &'n NamesRef<'s>,
    /// What the current row may still allocate.
    budget: u64,
}

impl Walk<'_, '_, '_> {
    /// As apache-avro's `decode_internal`, arm for arm, reading instead of building.
    fn value(&mut self, schema: &Schema, ns: NamespaceRef, depth: u32) -> Result<(), Fault> {
        if depth > MAX_ROW_DEPTH {
            return Err(Fault::Depth);
        }
        self.spend(VALUE)?;
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                self.take(1)?;
            }
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                self.long()?;
            }
            Schema::Float => self.take(4)?,
            Schema::Double => self.take(8)?,
            Schema::Duration(_) => self.take(12)?,
            Schema::Bytes
            | Schema::String
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes) => self.text(1)?,
            // Decoded as text, then parsed.
            Schema::Uuid(UuidSchema::String) => self.text(2)?,
            Schema::Fixed(f) | Schema::Uuid(UuidSchema::Fixed(f)) => self.fixed(f.size)?,
            // The bytes, then a big integer made of them (a negative one through a
            // second copy).
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => self.text(3)?,
                InnerDecimalSchema::Fixed(f) => {
                    self.fixed(f.size)?;
                    self.spend(2 * f.size as u64)?;
                }
            },
            Schema::Enum(e) => {
                let symbol = self.index(&e.symbols)?;
                // The symbol is cloned into the value.
                self.spend(symbol.len() as u64)?;
            }
            Schema::Union(u) => {
                let variant = self.index(u.variants())?;
                self.value(variant, ns, depth + 1)?;
            }
            Schema::Record(r) => {
                let name = r.name.fully_qualified_name(ns);
                for field in &r.fields {
                    // The field's name is cloned into every decoded record.
                    self.spend(FIELD + field.name.len() as u64)?;
                    self.value(&field.schema, name.namespace(), depth + 1)?;
                }
            }
            Schema::Array(a) => self.items(VALUE, |w| w.value(&a.items, ns, depth + 1))?,
            Schema::Map(m) => self.items(ENTRY + VALUE, |w| {
                w.text(1)?;
                w.spend(ENTRY)?;
                w.value(&m.types, ns, depth + 1)
            })?,
            Schema::Ref { name } => self.named(name, ns, depth)?,
        }
        Ok(())
    }

    fn named(&mut self, name: &Name, ns: NamespaceRef, depth: u32) -> Result<(), Fault> {
        let name = name.fully_qualified_name(ns);
        let schema = *self.names.get(name.as_ref()).ok_or(Fault::Corrupt)?;
        self.value(schema, name.namespace(), depth + 1)
    }

    /// An array's or a map's blocks of items. apache-avro reserves a block's declared items
    /// before reading any, so the declared count is paid for first, at `least` bytes each.
    fn items(
        &mut self,
        least: u64,
        mut each: impl FnMut(&mut Self) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?; // the block's byte size, which apache-avro ignores
            }
            let count = count.unsigned_abs();
            if count.saturating_mul(least) > self.budget {
                return Err(Fault::Size);
            }
            for _ in 0..count {
                each(self)?;
            }
        }
    }

    /// A fixed-size value: its bytes, copied once when decoded.
    fn fixed(&mut self, size: usize) -> Result<(), Fault> {
        let size = size as u64;
        self.take(size)?;
        self.spend(size)
    }

    /// Bytes or text: a length, then that many bytes, copied `copies` times when decoded.
    fn text(&mut self, copies: u64) -> Result<(), Fault> {
        let len = u64::try_from(self.long()?).map_err(|_| Fault::Corrupt)?;
        self.take(len)?;
        self.spend(len.saturating_mul(copies))
    }

    /// A union branch or an enum symbol, by its index.
    fn index<'x, T>(&mut self, of: &'x [T]) -> Result<&'x T, Fault> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| of.get(i))
            .ok_or(Fault::Corrupt)
    }

    fn spend(&mut self, n: u64) -> Result<(), Fault> {
        self.budget = self.budget.checked_sub(n).ok_or(Fault::Size)?;
        Ok(())
    }

    fn take(&mut self, n: u64) -> Result<(), Fault> {
        let n = usize::try_from(n).map_err(|_| Fault::Corrupt)?;
        self.input = self.input.get(n..).ok_or(Fault::Corrupt)?;
        Ok(())
    }

    /// Avro's zig-zag varint long, at most ten bytes.
    fn long(&mut self) -> Result<i64, Fault> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let (&b, rest) = self.input.split_first().ok_or(Fault::Corrupt)?;
            self.input = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(Fault::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use apache_avro::types::Value;
    use apache_avro::{
        Codec, Days, Decimal, DeflateSettings, Duration, Millis, Months, Uuid, Writer,
    };

    use super::*;
    use crate::tests::Scratch;
    use crate::{import, MatchIndex, MemoryCheckpoint};

    /// The five required fields, then one extra field of every kind a programme might add,
    /// named types referenced again by name included.
    const SCHEMA: &str = r#"{"type":"record","name":"Member","namespace":"programme","fields":[
        {"name":"household_id","type":"string"},{"name":"member_id","type":"string"},
        {"name":"name_ar","type":"string"},{"name":"sex","type":"string"},
        {"name":"governorate","type":"string"},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"scores","type":{"type":"map","values":"double"}},
        {"name":"flag","type":"boolean"},{"name":"n","type":"int"},{"name":"big","type":"long"},
        {"name":"f","type":"float"},{"name":"raw","type":"bytes"},
        {"name":"code","type":{"type":"fixed","name":"Code","size":4}},
        {"name":"level","type":{"type":"enum","name":"Level","symbols":["low","high"]}},
        {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
        {"name":"seen","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"when","type":{"type":"int","logicalType":"date"}},
        {"name":"uid","type":{"type":"string","logicalType":"uuid"}},
        {"name":"span","type":{"type":"fixed","name":"Span","size":12,"logicalType":"duration"}},
        {"name":"parent","type":["null",{"type":"record","name":"Parent","fields":[
            {"name":"code","type":"Code"},{"name":"level","type":"Level"}]}]}]}"#;

    fn row(i: i64) -> Value {
        let s = |t: &str| Value::String(t.to_owned());
        let fields = vec![
            ("household_id", s("H-1")),
            ("member_id", Value::String(format!("M-{i}"))),
            ("name_ar", s("اسم")),
            ("sex", s("female")),
            ("governorate", s("قنا")),
            ("tags", Value::Array(vec![s("a"); (i % 4) as usize])),
            (
                "scores",
                Value::Map(HashMap::from([("x".to_owned(), Value::Double(1.5))])),
            ),
            ("flag", Value::Boolean(i % 2 == 0)),
            ("n", Value::Int(-7)),
            ("big", Value::Long(i << 40)),
            ("f", Value::Float(0.5)),
            ("raw", Value::Bytes(vec![1, 2, 3])),
            ("code", Value::Fixed(4, vec![9; 4])),
            ("level", Value::Enum(1, "high".into())),
            ("amount", Value::Decimal(Decimal::from(vec![1, 2]))),
            ("seen", Value::TimestampMillis(1_700_000_000_000)),
            ("when", Value::Date(19_000)),
            ("uid", Value::Uuid(Uuid::nil())),
            (
                "span",
                Value::Duration(Duration::new(Months::new(1), Days::new(2), Millis::new(3))),
            ),
            (
                "parent",
                match i % 2 {
                    0 => Value::Union(0, Box::new(Value::Null)),
                    _ => Value::Union(
                        1,
                        Box::new(Value::Record(vec![
                            ("code".into(), Value::Fixed(4, vec![1; 4])),
                            ("level".into(), Value::Enum(0, "low".into())),
                        ])),
                    ),
                },
            ),
        ];
        Value::Record(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    #[test]
    fn every_kind_of_value_walks_as_apache_avro_encodes_it() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let mut body = Vec::new();
        for i in 0..20 {
            body.extend(
                apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
                    .build()
                    .unwrap()
                    .write_value_to_vec(row(i))
                    .unwrap(),
            );
        }
        check_rows(&schema, &body, 20, 1, 0).unwrap();
        // One byte short, or a row more than the block holds: corrupt, not refused.
        let cut = &body[..body.len() - 1];
        assert!(matches!(
            check_rows(&schema, cut, 20, 1, 0),
            Err(Stop::Corrupt)
        ));
        assert!(matches!(
            check_rows(&schema, &body, 21, 1, 0),
            Err(Stop::Corrupt)
        ));
    }

    #[test]
    fn a_programme_file_with_every_kind_of_extra_field_imports() {
        let dir = Scratch::new("kinds");
        let file = dir.path("programme.avro");
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let out = std::fs::File::create(&file).unwrap();
        let mut w = Writer::builder()
            .schema(&schema)
            .writer(out)
            .codec(Codec::Deflate(DeflateSettings::default()))
            .block_size(1024)
            .build()
            .unwrap();
        for i in 0..500 {
            w.append_value(row(i)).unwrap();
        }
        w.flush().unwrap();
        let index = MatchIndex::build([], chrono::Utc::now().date_naive());
        let mut cp = MemoryCheckpoint::default();
        let r = import(&file, &index, &mut cp, |_| {}, Vec::new()).unwrap();
        assert_eq!((r.rows, r.bad_rows), (500, 0));
    }

    #[test]
    fn a_block_of_many_rows_near_the_row_limit_is_refused_whole() {
        // Each row declares 10,000 nulls in three bytes: 640 KB decoded, under the row
        // limit; 500 of them are over the block's.
        let schema = Schema::parse_str(r#"{"type":"array","items":"null"}"#).unwrap();
        let body = [0xa0, 0x9c, 0x01, 0x00].repeat(500);
        assert_eq!(
            check_rows(&schema, &body[..4], 1, 7, 0).map_err(|_| ()),
            Ok(())
        );
        match check_rows(&schema, &body, 500, 7, 0) {
            Err(Stop::Refused(why)) => assert_eq!(
                why,
                Refusal::BlockDecoded {
                    block: 7,
                    max: MAX_BLOCK_DECODED_BYTES
                }
            ),
            other => panic!("{other:?}"),
        }
    }
}
