//! Reading a referral file for `himaya referral submit --file` (see `examples/`).
//!
//! serde's and chrono's messages quote the offending value (`invalid type: string "…"`
//! holds a child's name, `unknown variant` the word written) and are English only, so
//! none of their text is kept. serde_json checks the syntax and cuts the file into
//! [`RawValue`] slices; the typed structs are read from the slices (`RawDe`) with
//! [`ReferralFileError`] as serde's error type, which keeps only the kind of problem and
//! what serde asked for, placed where the slice it arose in starts; `serde_path_to_error`
//! gives the field path. The message is written here, in the caller's language.

use std::cell::Cell;
use std::fmt;
use std::path::Path;

use himaya_record::{ReferralDetails, SourceKind};
use serde::de::value::{MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, IgnoredAny, IntoDeserializer, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
// serde_json's `raw_value` feature, on in this build through axum's and sqlx's `json`.
use serde_json::value::RawValue;
use serde_path_to_error::Segment;

use crate::client::{Lang, ReferralFile};

/// Every field name of the schema. A broken file's path is made of keys serde has not
/// checked (a name written by mistake could be one), so only these are shown.
const KNOWN_FIELDS: &str = "path submission_id school_agency_id officer_ref \
    hotline_agency_id call_ref operator_ref agency_id source_kind referral child caregivers \
    household concerns risk_level requested_services target_groups consent_refs narrative \
    name as_given transliteration sex date_of_birth estimated_age_years nationality \
    identity_documents governorate district address disability school kind number issuer \
    grade relationship phone primary size cash_transfer_beneficiary income_source \
    labour_criteria consent_id given_by";

/// Read first, alone, to choose the struct (serde's internally tagged enums buffer the
/// body and lose the field path).
#[derive(Deserialize)]
struct Tag {
    path: PathKind,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PathKind {
    School,
    Hotline,
    Agency,
}

/// One struct per `path`, which it accepts again so that it is among the allowed fields.
macro_rules! shape {
    ($name:ident => $variant:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            #[serde(rename = "path")]
            _path: IgnoredAny,
            $($field: $ty),*
        }

        impl From<$name> for ReferralFile {
            fn from(f: $name) -> Self {
                ReferralFile::$variant { $($field: f.$field),* }
            }
        }
    };
}

shape!(SchoolFile => School { submission_id: Option<String>, school_agency_id: String,
    officer_ref: String, referral: ReferralDetails });
shape!(HotlineFile => Hotline { submission_id: Option<String>, hotline_agency_id: String,
    call_ref: String, operator_ref: String, referral: ReferralDetails });
shape!(AgencyFile => Agency { submission_id: Option<String>, agency_id: String,
    source_kind: SourceKind, referral: ReferralDetails });

/// Reads the referral file at `path`; every error is in `lang` and names the file, the
/// line and column and the field, never a value from the file.
pub fn load(path: &Path, lang: Lang) -> anyhow::Result<ReferralFile> {
    let bytes = std::fs::read(path).map_err(|e| {
        // The OS's message is English; its kind is all a person needs here.
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => lang.pick("the file does not exist", "الملف غير موجود"),
            std::io::ErrorKind::PermissionDenied => {
                lang.pick("permission denied", "لا صلاحية لقراءة الملف")
            }
            _ => lang.pick("the file could not be read", "تعذّر فتح الملف"),
        };
        let lead = lang.pick("cannot read", "تعذّرت قراءة");
        anyhow::anyhow!("{lead} {}: {why}", path.display())
    })?;
    parse_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message(lang)))
}

/// Reads a referral file's bytes, which must be UTF-8 (a leading byte-order mark, as some
/// editors save Arabic text, is allowed).
pub fn parse_bytes(bytes: &[u8]) -> Result<ReferralFile, ReferralFileError> {
    let e = match std::str::from_utf8(bytes) {
        Ok(text) => return parse(text),
        Err(e) => e,
    };
    let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
    let valid = std::str::from_utf8(valid).unwrap_or_default();
    let valid = valid.strip_prefix('\u{feff}').unwrap_or(valid);
    // The valid part ends inside some field: the path where reading it stops.
    let (_, path) = trace(valid);
    let e = ReferralFileError::new(Problem::NotUtf8, Some(Expect::Utf8));
    Err(e.placed(pos_of(valid, valid.len()), None).under(path))
}

/// Reads a referral file's text.
pub fn parse(text: &str) -> Result<ReferralFile, ReferralFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (read, path) = trace(text);
    let root: &RawValue = match read.and_then(|()| serde_json::from_str(text)) {
        Ok(root) => root,
        Err(e) => {
            let problem = match e.is_eof() {
                true => Problem::Truncated,
                false => Problem::Syntax,
            };
            let pos = pos_of(text, byte_offset(text, e.line(), e.column()));
            let e = ReferralFileError::new(problem, Some(Expect::Json));
            return Err(e.placed(pos, None).under(path));
        }
    };
    match typed::<Tag>(text, root)?.path {
        PathKind::School => typed::<SchoolFile>(text, root).map(Into::into),
        PathKind::Hotline => typed::<HotlineFile>(text, root).map(Into::into),
        PathKind::Agency => typed::<AgencyFile>(text, root).map(Into::into),
    }
}

fn typed<T: de::DeserializeOwned>(text: &str, raw: &RawValue) -> Result<T, ReferralFileError> {
    serde_path_to_error::deserialize(RawDe { text, raw }).map_err(|e| {
        let mut segments: Vec<&Segment> = e.path().iter().collect();
        if e.inner().problem == Problem::UnknownField {
            segments.pop(); // the unknown key, the file's own: the error is its object's
        }
        let mut path: Vec<String> = segments
            .into_iter()
            .filter_map(|segment| match segment {
                Segment::Map { key } => Some(named(key)),
                Segment::Seq { index } => Some(format!("[{index}]")),
                _ => None,
            })
            .collect();
        // A missing or repeated field's name is on the error's own path.
        path.extend(e.inner().path.iter().cloned());
        e.into_inner().under(path)
    })
}

/// A field path's step for the file's `key`: the key if it is a field name, else `…`.
fn named(key: &str) -> String {
    match KNOWN_FIELDS.split_whitespace().any(|f| f == key) {
        true => key.to_owned(),
        false => "…".to_owned(),
    }
}

/// What kind of value was found where another was expected (never the value itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Text,
    Number,
    Bool,
    Null,
    List,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Syntax,
    Truncated,
    NotUtf8,
    WrongType(Found),
    /// The right type, but not a value the field takes: a word outside its vocabulary, a
    /// number out of range, a date in another form (chrono's `custom` error).
    NotAccepted,
    UnknownField,
    Missing,
    Duplicate,
}

/// What a field expects, learnt from what serde asked the deserializer for (the names of
/// an enum's values and of a struct's fields are the schema's, not the file's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Text,
    Date,
    Name,
    YesNo,
    Whole(u64),
    List,
    Object(&'static [&'static str]),
    OneOf(&'static [&'static str]),
    Fields(&'static [&'static str]),
    TopLevel,
    Once,
    Json,
    Utf8,
    Example,
}

/// Why a referral file could not be read: the kind of problem, the field path, the place
/// (1-based line, and column in characters as an editor counts them, not bytes) and what
/// was expected. It holds nothing from the file but structure, so it can be shown and
/// logged as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralFileError {
    problem: Problem,
    path: Vec<String>,
    pos: Option<(usize, usize)>,
    expect: Option<Expect>,
}

impl ReferralFileError {
    fn new(problem: Problem, expect: Option<Expect>) -> Self {
        let (path, pos) = (Vec::new(), None);
        ReferralFileError {
            problem,
            path,
            pos,
            expect,
        }
    }

    /// The first place and expectation stick: those of the value the error arose in.
    fn placed(mut self, pos: (usize, usize), expect: Option<Expect>) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
            self.expect = self.expect.or(expect);
        }
        self
    }

    fn under(mut self, path: Vec<String>) -> Self {
        self.path = path;
        self
    }

    /// The field path, e.g. `referral.caregivers[0].name` (empty for the top level).
    pub fn field(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            if !out.is_empty() && !step.starts_with('[') {
                out.push('.');
            }
            out.push_str(step);
        }
        out
    }

    pub fn line(&self) -> Option<usize> {
        self.pos.map(|p| p.0)
    }

    pub fn column(&self) -> Option<usize> {
        self.pos.map(|p| p.1)
    }

    /// The message for a person, in `lang`: where, what is wrong, what is expected.
    pub fn message(&self, lang: Lang) -> String {
        let pick = |[en, ar]: [&'static str; 2]| lang.pick(en, ar);
        let field = match self.field() {
            f if f.is_empty() => pick(["the top level", "المستوى الأعلى"]).to_owned(),
            f => format!("`{f}`"),
        };
        // A broken file's path is where reading stopped, which is near the fault.
        let at = match self.problem {
            Problem::Syntax | Problem::Truncated | Problem::NotUtf8 => pick(["near", "قرب"]),
            _ => pick(["at", "عند"]),
        };
        let place = match (self.pos, lang) {
            (Some((l, c)), Lang::En) => format!("line {l}, column {c}, {at} {field}"),
            (Some((l, c)), Lang::Ar) => format!("السطر {l}، العمود {c}، {at} {field}"),
            (None, _) => format!("{at} {field}"),
        };
        let found = match self.problem {
            Problem::WrongType(found) => pick(found_text(found)),
            _ => "",
        };
        let problem = pick(problem_text(self.problem)).replace("{}", found);
        // A date is read as text (chrono asks for a string), so the field name says more.
        let last = self.path.last().map_or("", String::as_str);
        let expect = match self.expect.unwrap_or(Expect::Example) {
            Expect::Text if last == "date_of_birth" || last.ends_with("_date") => Expect::Date,
            expect => expect,
        };
        let expected = match expect {
            Expect::Whole(max) => pick(expect_text(expect)).replace("{}", &max.to_string()),
            Expect::Object(list) | Expect::OneOf(list) | Expect::Fields(list) => {
                format!(
                    "{} {}",
                    pick(expect_text(expect)),
                    list.join(pick([", ", "، "]))
                )
            }
            _ => pick(expect_text(expect)).to_owned(),
        };
        let lead = pick(["Expected", "المتوقع"]);
        format!("{place}: {problem}. {lead}: {expected}.")
    }
}

// The texts, English then Arabic; `{}` is filled in by `message`.

#[rustfmt::skip]
fn problem_text(problem: Problem) -> [&'static str; 2] {
    match problem {
        Problem::Syntax => ["the file is not valid JSON here", "الملف ليس JSON صالحًا في هذا الموضع"],
        Problem::Truncated => ["the file ends before the JSON is complete", "ينتهي الملف قبل اكتمال JSON"],
        Problem::NotUtf8 => ["the file is not UTF-8 text from here on", "الملف ليس نصًا بترميز UTF-8 ابتداءً من هنا"],
        Problem::WrongType(_) => ["found {} here, which this field does not take", "وُجد هنا {}، وهذا الحقل لا يقبله"],
        Problem::NotAccepted => ["the value is not one this field accepts", "القيمة ليست مما يقبله هذا الحقل"],
        Problem::UnknownField => ["this field does not belong here", "هذا الحقل لا ينتمي إلى هذا الموضع"],
        Problem::Missing => ["this required field is missing", "هذا الحقل مطلوب وغير موجود"],
        Problem::Duplicate => ["this field appears more than once", "هذا الحقل مكرر"],
    }
}

#[rustfmt::skip]
fn found_text(found: Found) -> [&'static str; 2] {
    match found {
        Found::Text => ["text", "نص"],
        Found::Number => ["a number", "رقم"],
        Found::Bool => ["true or false", "قيمة true أو false"],
        Found::Null => ["null", "قيمة null"],
        Found::List => ["a list", "قائمة"],
        Found::Object => ["an object", "كائن"],
    }
}

#[rustfmt::skip]
fn expect_text(expect: Expect) -> [&'static str; 2] {
    match expect {
        Expect::Text => ["text in double quotes", "نص بين علامتي تنصيص مزدوجتين"],
        Expect::Date => ["a date written YYYY-MM-DD in double quotes, e.g. \"2014-03-09\" for 9 March 2014", "تاريخ مكتوب بالصيغة YYYY-MM-DD بين علامتي تنصيص، مثل \"2014-03-09\" ليوم 9 مارس 2014"],
        Expect::Name => ["an object with `as_given` (the name as given, in Arabic script) and optionally `transliteration` (in Latin letters): {\"as_given\": \"…\", \"transliteration\": \"…\"}", "كائن فيه `as_given` (الاسم كما ورد، بالحروف العربية) و`transliteration` اختياريًا (بالحروف اللاتينية): {\"as_given\": \"…\", \"transliteration\": \"…\"}"],
        Expect::YesNo => ["true or false", "true أو false"],
        Expect::Whole(_) => ["a whole number from 0 to {}", "عدد صحيح من 0 إلى {}"],
        Expect::List => ["a list in square brackets [ … ]", "قائمة بين قوسين مربعين [ … ]"],
        Expect::Object(_) => ["an object { … } with the fields:", "كائن { … } بالحقول:"],
        Expect::OneOf(_) => ["one of:", "إحدى القيم:"],
        Expect::Fields(_) => ["only these fields here:", "الحقول المسموح بها هنا فقط:"],
        Expect::TopLevel => ["an object { … } whose `path` is school, hotline or agency (see examples/school-referral.json)", "كائن { … } قيمة `path` فيه school أو hotline أو agency (انظر examples/school-referral.json)"],
        Expect::Once => ["the field once only", "أن يرد الحقل مرة واحدة فقط"],
        Expect::Json => ["JSON as in examples/school-referral.json: text in double quotes, a comma between items and none after the last", "JSON كما في examples/school-referral.json: النصوص بين علامتي تنصيص مزدوجتين، وفاصلة بين العناصر ولا فاصلة بعد آخرها"],
        Expect::Utf8 => ["a file saved as UTF-8 text", "ملف محفوظ كنص بترميز UTF-8"],
        Expect::Example => ["the form shown in examples/school-referral.json", "الشكل المبين في examples/school-referral.json"],
    }
}

impl fmt::Display for ReferralFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message(Lang::En))
    }
}

impl std::error::Error for ReferralFileError {}

// Each constructor keeps the kind of problem and drops its arguments that come from the
// file (the unexpected value, the unknown variant or key, chrono's text); the static lists
// it is given (a type's variants, a struct's fields) are the schema's and are kept.
impl de::Error for ReferralFileError {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Self::new(Problem::NotAccepted, None)
    }

    fn invalid_type(unexpected: Unexpected<'_>, _exp: &dyn de::Expected) -> Self {
        let found = match unexpected {
            Unexpected::Bool(_) => Found::Bool,
            Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => Found::Number,
            Unexpected::Unit | Unexpected::Option => Found::Null,
            Unexpected::Seq => Found::List,
            Unexpected::Map => Found::Object,
            _ => Found::Text,
        };
        Self::new(Problem::WrongType(found), None)
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Problem::NotAccepted, Some(Expect::OneOf(expected)))
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Problem::UnknownField, Some(Expect::Fields(expected)))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(Problem::Missing, None).under(vec![field.to_owned()])
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(Problem::Duplicate, Some(Expect::Once)).under(vec![field.to_owned()])
    }
}

/// serde's view of one slice of the file `text`. An error arising in it is placed where
/// the slice starts, with what serde asked for (a struct's fields, an enum's values).
#[derive(Clone, Copy)]
struct RawDe<'a> {
    text: &'a str,
    raw: &'a RawValue,
}

impl<'a> RawDe<'a> {
    fn at(self, raw: &'a RawValue) -> Self {
        RawDe { raw, ..self }
    }

    fn pos(self) -> (usize, usize) {
        let start = self.raw.get().as_ptr() as usize;
        pos_of(self.text, start.saturating_sub(self.text.as_ptr() as usize))
    }

    fn found(self) -> Found {
        match self.raw.get().as_bytes().first() {
            Some(b'{') => Found::Object,
            Some(b'[') => Found::List,
            Some(b'"') => Found::Text,
            Some(b't' | b'f') => Found::Bool,
            Some(b'n') => Found::Null,
            _ => Found::Number,
        }
    }

    fn read<'de, V>(self, v: V, expect: Option<Expect>) -> Result<V::Value, ReferralFileError>
    where
        V: Visitor<'de>,
    {
        self.visit(v).map_err(|e| e.placed(self.pos(), expect))
    }

    /// Hands the slice to `v`; an error of `v`'s own is left for the caller to place.
    fn visit<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, ReferralFileError> {
        // serde_json accepted the whole file, so a slice of it reads again without fault.
        let unreadable = |_| ReferralFileError::new(Problem::Syntax, None);
        let json = self.raw.get();
        match self.found() {
            Found::Object => {
                let pairs = serde_json::from_str::<Pairs<'_>>(json)
                    .map_err(unreadable)?
                    .0;
                // serde notices a repeated field just after its key: the error goes there.
                let key = Cell::new(self);
                let pairs = pairs.into_iter().inspect(|(k, _)| key.set(self.at(k)));
                let mut map = MapDeserializer::new(pairs.map(|(k, v)| (self.at(k), self.at(v))));
                v.visit_map(&mut map).map_err(|e| match e.problem {
                    Problem::Duplicate => e.placed(key.get().pos(), None),
                    _ => e,
                })
            }
            Found::List => {
                let items: Vec<&RawValue> = serde_json::from_str(json).map_err(unreadable)?;
                v.visit_seq(SeqDeserializer::new(items.into_iter().map(|i| self.at(i))))
            }
            _ => match serde_json::from_str(json).map_err(unreadable)? {
                serde_json::Value::String(s) => v.visit_string(s),
                serde_json::Value::Bool(b) => v.visit_bool(b),
                serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => v.visit_u64(u),
                    (_, Some(i), _) => v.visit_i64(i),
                    (_, _, f) => v.visit_f64(f.unwrap_or(f64::NAN)),
                },
                _ => v.visit_unit(),
            },
        }
    }
}

impl<'de> IntoDeserializer<'de, ReferralFileError> for RawDe<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! asking {
    ($($method:ident => $expect:expr),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ReferralFileError> {
            self.read(v, Some($expect))
        }
    )*};
}

impl<'de> Deserializer<'de> for RawDe<'_> {
    type Error = ReferralFileError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ReferralFileError> {
        self.read(v, None)
    }

    asking! {
        deserialize_bool => Expect::YesNo,
        deserialize_u8 => Expect::Whole(u8::MAX.into()),
        deserialize_u16 => Expect::Whole(u16::MAX.into()),
        deserialize_str => Expect::Text,
        deserialize_string => Expect::Text,
        deserialize_seq => Expect::List,
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ReferralFileError> {
        match self.found() {
            Found::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ReferralFileError> {
        let expect = match name {
            "PersonName" => Expect::Name, // a plain string there is the usual slip
            "Tag" => Expect::TopLevel,
            _ => Expect::Object(fields),
        };
        match self.found() {
            Found::Object => self.read(v, Some(expect)),
            // serde would take a list for a struct too; a referral file has none.
            found => Err(
                ReferralFileError::new(Problem::WrongType(found), Some(expect))
                    .placed(self.pos(), None),
            ),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ReferralFileError> {
        match serde_json::from_str::<String>(self.raw.get()) {
            Ok(word) => v.visit_enum(StringDeserializer::new(word)),
            Err(_) => self.visit(v),
        }
        .map_err(|e| e.placed(self.pos(), Some(Expect::OneOf(variants))))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, ReferralFileError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ReferralFileError> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u32 u64 u128 f32 f64 char bytes byte_buf unit unit_struct tuple
        tuple_struct map identifier
    }
}

/// An object's keys and values as slices, in the file's order, a repeated key kept.
struct Pairs<'a>(Vec<(&'a RawValue, &'a RawValue)>);

impl<'de> Deserialize<'de> for Pairs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Pairs<'de>, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// Reads `text` as JSON only, noting the field path on the way: where serde_json stops in
/// a broken file, the path is the field it stopped in (a key stays on it until the comma
/// after its value, so `"date_of_birth": 9/3/2014` stops in `date_of_birth`).
fn trace(text: &str) -> (serde_json::Result<()>, Vec<String>) {
    let mut path = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let read = Trace(&mut path)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    (read, path)
}

struct Trace<'p>(&'p mut Vec<String>);

impl<'de> DeserializeSeed<'de> for Trace<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! ignore {
    ($($method:ident($($ty:ty)?)),*) => {$(
        fn $method<E>(self, $(_: $ty)?) -> Result<(), E> {
            Ok(())
        }
    )*};
}

impl<'de> Visitor<'de> for Trace<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    ignore! { visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str),
    visit_unit() }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.0.len();
        for i in 0.. {
            self.0.truncate(at);
            self.0.push(format!("[{i}]"));
            if seq.next_element_seed(Trace(&mut *self.0))?.is_none() {
                break;
            }
        }
        self.0.truncate(at);
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.0.len();
        while let Some(key) = map.next_key::<String>()? {
            self.0.truncate(at);
            self.0.push(named(&key));
            map.next_value_seed(Trace(&mut *self.0))?;
        }
        self.0.truncate(at);
        Ok(())
    }
}

/// The line and character column of byte `offset` of `text`.
fn pos_of(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.rsplit('\n').next().unwrap_or("");
    (before.matches('\n').count() + 1, line.chars().count() + 1)
}

/// The byte offset of serde_json's place (line, and column in bytes), moved back to the
/// start of the character it falls in.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let lines = text.split_inclusive('\n').take(line.saturating_sub(1));
    let start: usize = lines.map(str::len).sum();
    let mut offset = (start + column.saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use himaya_record::Sex;

    use super::*;

    /// A referral file with fictional data; each test breaks one thing in it.
    const GOOD: &str = r#"{
  "path": "school",
  "school_agency_id": "school-test",
  "officer_ref": "officer-1",
  "referral": {
    "child": {
      "name": { "as_given": "مريم أحمد", "transliteration": "Maryam Ahmad" },
      "sex": "female",
      "date_of_birth": "2014-03-09",
      "governorate": "القاهرة"
    },
    "caregivers": [
      { "name": { "as_given": "فاطمة حسن" }, "relationship": "mother" }
    ],
    "concerns": [ { "kind": "school_dropout" } ],
    "risk_level": "high",
    "requested_services": ["health"]
  }
}"#;

    fn broken(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "the fixture has no {from}");
        GOOD.replacen(from, to, 1)
    }

    fn error(text: &str) -> ReferralFileError {
        match parse(text) {
            Ok(_) => panic!("the file was accepted"),
            Err(e) => e,
        }
    }

    /// Line and character column of `needle`'s first byte, counted independently.
    fn place_of(text: &str, needle: &str) -> (usize, usize) {
        let at = text.find(needle).unwrap_or_else(|| panic!("no {needle}"));
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    }

    /// Both languages: the field and place are named, the value and serde's wording
    /// never appear, and each message is in its own language.
    fn check(e: &ReferralFileError, field: &str, place: (usize, usize), hidden: &[&str]) {
        assert_eq!(e.field(), field);
        assert_eq!((e.line(), e.column()), (Some(place.0), Some(place.1)));
        let (en, ar) = (e.message(Lang::En), e.message(Lang::Ar));
        for msg in [&en, &ar] {
            assert!(msg.contains(&format!("`{field}`")), "{msg}");
            for h in hidden
                .iter()
                .chain(&["invalid type", "unknown variant", "invalid characters"])
            {
                assert!(!msg.contains(h), "{msg} shows {h}");
            }
        }
        assert!(
            en.contains(&format!("line {}, column {}", place.0, place.1)),
            "{en}"
        );
        assert!(en.contains("Expected:"), "{en}");
        assert!(
            ar.contains(&format!("السطر {}، العمود {}", place.0, place.1)),
            "{ar}"
        );
        assert!(ar.contains("المتوقع:"), "{ar}");
        // Not "line" alone: the vocabulary's `hotline` is rightly in Arabic messages.
        for english in ["line ", "column", "Expected", "field ", "value", " the "] {
            assert!(!ar.contains(english), "{ar} has {english}");
        }
    }

    #[test]
    fn the_fixture_and_the_shipped_examples_are_read() {
        assert!(matches!(parse(GOOD), Ok(ReferralFile::School { .. })));
        for text in [
            include_str!("../examples/school-referral.json"),
            // Refused by the hub's validation, but well formed: the hub explains it.
            include_str!("../examples/invalid-referral.json"),
        ] {
            let file = parse(text).map_err(|e| e.message(Lang::En));
            assert_eq!(file.as_ref().map(|f| f.agency()), Ok("school-cairo-alnour"));
        }
    }

    #[test]
    fn a_date_in_another_form_names_the_field_and_asks_for_yyyy_mm_dd() {
        let text = broken("\"2014-03-09\"", "\"9/3/2014\"");
        let e = error(&text);
        let place = place_of(&text, "\"9/3/2014\"");
        check(&e, "referral.child.date_of_birth", place, &["9/3/2014"]);
        assert!(e.message(Lang::En).contains("a date written YYYY-MM-DD"));
        assert!(e
            .message(Lang::Ar)
            .contains("تاريخ مكتوب بالصيغة YYYY-MM-DD"));
    }

    #[test]
    fn a_plain_string_name_asks_for_the_object_and_never_quotes_the_name() {
        let text = broken(
            r#"{ "as_given": "مريم أحمد", "transliteration": "Maryam Ahmad" }"#,
            r#""مريم أحمد""#,
        );
        let e = error(&text);
        let place = place_of(&text, r#""مريم أحمد""#);
        check(
            &e,
            "referral.child.name",
            place,
            &["مريم", "أحمد", "Maryam"],
        );
        for msg in [e.message(Lang::En), e.message(Lang::Ar)] {
            assert!(
                msg.contains("`as_given`") && msg.contains("`transliteration`"),
                "{msg}"
            );
        }
        assert!(e.message(Lang::En).contains("found text"));
    }

    #[test]
    fn a_sex_outside_the_vocabulary_lists_the_allowed_values_not_the_word_written() {
        let text = broken("\"female\"", "\"بنت\"");
        let e = error(&text);
        check(
            &e,
            "referral.child.sex",
            place_of(&text, "\"بنت\""),
            &["بنت"],
        );
        let allowed: Vec<&str> = Sex::ALL.iter().map(|s| s.as_str()).collect();
        assert!(e
            .message(Lang::En)
            .contains(&format!("one of: {}", allowed.join(", "))));
        assert!(e
            .message(Lang::Ar)
            .contains(&format!("إحدى القيم: {}", allowed.join("، "))));
    }

    #[test]
    fn columns_count_characters_so_arabic_earlier_on_the_line_does_not_shift_them() {
        let text = broken("\"mother\"", "\"aunt\"");
        let e = error(&text);
        let place = place_of(&text, "\"aunt\"");
        check(
            &e,
            "referral.caregivers[0].relationship",
            place,
            &["aunt", "فاطمة"],
        );
        let line = text.lines().nth(place.0 - 1).unwrap_or("");
        let byte_column = line.find("\"aunt\"").map_or(0, |b| b + 1);
        assert!(place.1 < byte_column, "{} is a byte column", place.1);
    }

    #[test]
    fn a_bare_date_is_a_syntax_error_placed_at_the_field() {
        let text = broken("\"2014-03-09\"", "9/3/2014");
        let e = error(&text);
        // serde_json stops at the `/`: the number 9 was read, then the fault.
        check(
            &e,
            "referral.child.date_of_birth",
            place_of(&text, "/3/2014"),
            &["9/3"],
        );
        assert!(e.message(Lang::En).contains("not valid JSON"));
    }

    #[test]
    fn a_cut_off_file_says_so_where_it_ends() {
        let text = &GOOD[..GOOD.find("\"sex\"").unwrap_or(0) + 8];
        let e = error(text);
        assert_eq!(e.problem, Problem::Truncated);
        assert_eq!(e.field(), "referral.child.sex");
        assert!(e.message(Lang::Ar).contains("ينتهي الملف"));
    }

    #[test]
    fn a_syntax_error_under_an_unknown_key_does_not_show_the_key() {
        let text = broken("\"officer_ref\": \"officer-1\"", "\"maryam\": ,");
        let e = error(&text);
        assert_eq!(e.field(), "…");
        for msg in [e.message(Lang::En), e.message(Lang::Ar)] {
            assert!(!msg.contains("maryam"), "{msg}");
        }
    }

    #[test]
    fn a_missing_field_is_named_at_its_object() {
        let text = broken("\"sex\": \"female\",", "");
        let e = error(&text);
        let child = place_of(&text, "\"child\": {");
        check(&e, "referral.child.sex", (child.0, child.1 + 9), &[]);
        assert_eq!(e.problem, Problem::Missing);
    }

    #[test]
    fn an_unknown_top_level_field_lists_the_allowed_ones_without_echoing_the_key() {
        let text = broken("\"officer_ref\"", "\"maryam\": 1, \"officer_ref\"");
        let e = error(&text);
        assert_eq!(e.problem, Problem::UnknownField);
        assert_eq!(e.field(), "");
        assert_eq!((e.line(), e.column()), (Some(4), Some(3)));
        let en = e.message(Lang::En);
        assert!(
            en.contains("the top level") && en.contains("school_agency_id"),
            "{en}"
        );
        assert!(!en.contains("maryam") && !e.message(Lang::Ar).contains("maryam"));
    }

    #[test]
    fn an_age_out_of_range_gives_the_range_not_the_number() {
        let text = broken(
            "\"date_of_birth\": \"2014-03-09\"",
            "\"estimated_age_years\": 1234",
        );
        let e = error(&text);
        check(
            &e,
            "referral.child.estimated_age_years",
            place_of(&text, "1234"),
            &["1234"],
        );
        assert!(e.message(Lang::En).contains("from 0 to 255"));
    }

    #[test]
    fn a_wrong_path_or_a_repeated_field_is_named() {
        let text = broken("\"school\",", "\"clinic\",");
        let e = error(&text);
        check(&e, "path", place_of(&text, "\"clinic\""), &["clinic"]);
        assert!(e
            .message(Lang::En)
            .contains("one of: school, hotline, agency"));

        let text = broken(
            "\"sex\": \"female\",",
            "\"sex\": \"female\", \"sex\": \"male\",",
        );
        let e = error(&text);
        check(
            &e,
            "referral.child.sex",
            place_of(&text, "\"sex\": \"male\""),
            &[],
        );
        assert_eq!(e.problem, Problem::Duplicate);
    }

    #[test]
    fn each_path_takes_its_own_fields() {
        let text = broken("\"school\",", "\"hotline\",");
        let e = error(&text);
        assert_eq!(
            (e.problem, e.field()),
            (Problem::UnknownField, String::new())
        );
        assert_eq!((e.line(), e.column()), (Some(3), Some(3)));
        let en = e.message(Lang::En);
        assert!(
            en.contains("hotline_agency_id, call_ref, operator_ref"),
            "{en}"
        );

        let head = "\"path\": \"school\",\n  \"school_agency_id\": \"school-test\",";
        let text = broken(head, "\"path\": \"agency\", \"source_kind\": \"مدرسة\",");
        let text = text.replacen("\"officer_ref\"", "\"agency_id\"", 1);
        let e = error(&text);
        check(&e, "source_kind", place_of(&text, "\"مدرسة\""), &["مدرسة"]);
        let allowed: Vec<&str> = SourceKind::ALL.iter().map(|s| s.as_str()).collect();
        assert!(e.message(Lang::En).contains(&allowed.join(", ")));
    }

    #[test]
    fn a_byte_order_mark_is_allowed_and_other_encodings_are_placed() {
        let mut bytes = "\u{feff}".as_bytes().to_vec();
        bytes.extend_from_slice(GOOD.as_bytes());
        assert!(parse_bytes(&bytes).is_ok());

        let at = GOOD.find("القاهرة").unwrap_or(0);
        let mut latin1 = GOOD.as_bytes()[..at].to_vec();
        latin1.extend_from_slice(&[0xC7, 0xE1, b'"']);
        let e = match parse_bytes(&latin1) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        };
        assert_eq!(e.problem, Problem::NotUtf8);
        assert_eq!(e.field(), "referral.child.governorate");
        let (line, column) = place_of(GOOD, "القاهرة");
        assert_eq!((e.line(), e.column()), (Some(line), Some(column)));
    }

    #[test]
    fn a_top_level_list_and_deep_nesting_are_refused_without_a_crash() {
        let e = error("[1, 2]");
        assert_eq!(e.problem, Problem::WrongType(Found::List));
        assert!(e.message(Lang::Ar).contains("المستوى الأعلى"));
        let deep = "[".repeat(100_000);
        assert!(matches!(
            error(&deep).problem,
            Problem::Syntax | Problem::Truncated
        ));
    }

    #[test]
    fn every_key_of_the_shipped_example_is_a_known_field() {
        fn walk(value: &serde_json::Value) {
            match value {
                serde_json::Value::Object(entries) => entries.iter().for_each(|(key, value)| {
                    assert_eq!(&named(key), key);
                    walk(value);
                }),
                serde_json::Value::Array(items) => items.iter().for_each(walk),
                _ => {}
            }
        }
        match serde_json::from_str(include_str!("../examples/school-referral.json")) {
            Ok(root) => walk(&root),
            Err(_) => panic!("the example is not JSON"),
        }
    }
}
