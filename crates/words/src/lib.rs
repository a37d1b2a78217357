//! The words people read in the hub's answers (gRPC statuses, field violations, webhook
//! problems), in Arabic and English, from one catalogue: the Project Fluent files under
//! `locales/<tag>/<area>.ftl`, one file per part of the hub, the same message ids in both
//! languages (a test holds them to it).
//!
//! Code names a message by its id and arguments ([`Msg`], built with [`msg!`]) and never
//! writes its text: the text is rendered in the reader's language where the reader is
//! known. For gRPC that is the gateway, which re-renders every status carrying a message id
//! (`google.rpc.ErrorInfo`, see `himaya_proto::status::status`) in the caller's
//! `accept-language`. Arguments are ids, codes, counts and field names: never a value a
//! person typed, so no child's data can reach a message through the catalogue.
//!
//! The web front's page words are not here: they live beside the pages
//! (`services/web/src/text.rs`), with their own labels for every closed vocabulary.

use std::fmt;
use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

/// The language of text meant for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Arabic,
    English,
}

impl Lang {
    /// Both languages, Arabic first.
    pub const ALL: [Lang; 2] = [Lang::Arabic, Lang::English];

    /// From an `Accept-Language` value (HTTP header or gRPC metadata); Arabic when it
    /// comes first, English otherwise (and when the caller said nothing: the systems that
    /// call without saying are read by their developers).
    pub fn from_header(header: &str) -> Lang {
        if header.trim_start().to_ascii_lowercase().starts_with("ar") {
            Lang::Arabic
        } else {
            Lang::English
        }
    }

    /// The BCP 47 tag (`ar`, `en`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Arabic => "ar",
            Lang::English => "en",
        }
    }
}

/// One argument of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    /// A count: Fluent picks the plural form from it (Arabic has six).
    Number(i64),
    /// Other messages of the catalogue (without arguments), each read in the message's
    /// language and listed with that language's separator: the moves a case allows, say.
    Words(Vec<String>),
}

/// How a list of words travels as text (in `google.rpc.ErrorInfo`): `words:a,b`.
const WORDS: &str = "words:";

impl Arg {
    /// The argument as text, for carrying it where only text goes; [`render`] reads it
    /// back.
    pub fn wire(&self) -> String {
        match self {
            Arg::Text(t) => t.clone(),
            Arg::Number(n) => n.to_string(),
            Arg::Words(ids) => format!("{WORDS}{}", ids.join(",")),
        }
    }

    fn from_wire(v: &str) -> Arg {
        if let Some(ids) = v.strip_prefix(WORDS) {
            return Arg::Words(
                ids.split(',')
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
        v.parse::<i64>()
            .map_or_else(|_| Arg::Text(v.to_owned()), Arg::Number)
    }
}

/// A list of catalogue words (message ids without arguments).
pub fn words<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Arg {
    Arg::Words(ids.into_iter().map(Into::into).collect())
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_owned())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}
macro_rules! number_arg {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Arg {
                Arg::Number(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
    )*};
}
number_arg!(i64, i32, u32, u64, usize);

/// A message of the catalogue: its id and arguments. Rendered with [`Msg::render`];
/// `Display` renders it in English (what a log line or an English default shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    id: &'static str,
    args: Vec<(&'static str, Arg)>,
}

/// Builds a [`Msg`]: `msg!("case-not-found", case_id = id)`. The id is a literal so that
/// a test can find every id the code uses in the catalogue.
#[macro_export]
macro_rules! msg {
    ($id:literal $(, $name:ident = $value:expr)* $(,)?) => {
        $crate::Msg::new($id)$(.arg(stringify!($name), $value))*
    };
}

impl Msg {
    pub fn new(id: &'static str) -> Msg {
        Msg {
            id,
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, name: &'static str, value: impl Into<Arg>) -> Msg {
        self.args.push((name, value.into()));
        self
    }

    /// The message id (`case-not-found`).
    pub fn id(&self) -> &'static str {
        self.id
    }

    pub fn args(&self) -> impl Iterator<Item = (&'static str, &Arg)> {
        self.args.iter().map(|(k, v)| (*k, v))
    }

    /// The text in `lang`. Never fails: a message missing from the catalogue (a test
    /// keeps that from happening) reads as its id.
    pub fn render(&self, lang: Lang) -> String {
        let args = self.args.iter().map(|(k, v)| (*k, v.clone()));
        render_with(lang, self.id, args).unwrap_or_else(|| self.id.to_owned())
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Lang::English))
    }
}

/// Renders the message `id` with arguments received as text (as `google.rpc.ErrorInfo`
/// carries them, written by [`Arg::wire`]): an argument that reads as a whole number is
/// one, for plural forms.
/// `None` when the catalogue has no such message.
pub fn render<'a>(
    lang: Lang,
    id: &str,
    args: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let args = args.into_iter().map(|(k, v)| (k, Arg::from_wire(v)));
    render_with(lang, id, args)
}

/// Whether the catalogue has the message `id`.
pub fn has(id: &str) -> bool {
    CATALOGUE.english.has_message(id)
}

fn render_with<'a>(
    lang: Lang,
    id: &str,
    args: impl Iterator<Item = (&'a str, Arg)>,
) -> Option<String> {
    let bundle = match lang {
        Lang::Arabic => &CATALOGUE.arabic,
        Lang::English => &CATALOGUE.english,
    };
    let pattern = bundle.get_message(id)?.value()?;
    let mut fluent_args = FluentArgs::new();
    for (k, v) in args {
        match v {
            Arg::Text(t) => fluent_args.set(k, FluentValue::from(t)),
            Arg::Number(n) => fluent_args.set(k, FluentValue::from(n)),
            Arg::Words(ids) => {
                let words: Vec<String> = ids
                    .iter()
                    .map(|w| render_with(lang, w, std::iter::empty()).unwrap_or_else(|| w.clone()))
                    .collect();
                let separator = match lang {
                    Lang::Arabic => "، ",
                    Lang::English => ", ",
                };
                fluent_args.set(k, FluentValue::from(words.join(separator)))
            }
        }
    }
    let mut errors = Vec::new();
    let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
    if !errors.is_empty() {
        // Names of the message and of the missing variables only; never argument values.
        tracing::warn!(message = id, lang = lang.tag(), errors = ?errors, "a message rendered with errors");
    }
    Some(text.into_owned())
}

/// The catalogue's files, `(area, English, Arabic)`.
const AREAS: &[(&str, &str, &str)] = &[
    (
        "common",
        include_str!("../locales/en/common.ftl"),
        include_str!("../locales/ar/common.ftl"),
    ),
    (
        "gateway",
        include_str!("../locales/en/gateway.ftl"),
        include_str!("../locales/ar/gateway.ftl"),
    ),
    (
        "record",
        include_str!("../locales/en/record.ftl"),
        include_str!("../locales/ar/record.ftl"),
    ),
    (
        "cases",
        include_str!("../locales/en/cases.ftl"),
        include_str!("../locales/ar/cases.ftl"),
    ),
    (
        "directory",
        include_str!("../locales/en/directory.ftl"),
        include_str!("../locales/ar/directory.ftl"),
    ),
    (
        "audit",
        include_str!("../locales/en/audit.ftl"),
        include_str!("../locales/ar/audit.ftl"),
    ),
    (
        "webhooks",
        include_str!("../locales/en/webhooks.ftl"),
        include_str!("../locales/ar/webhooks.ftl"),
    ),
];

struct Catalogue {
    arabic: FluentBundle<FluentResource>,
    english: FluentBundle<FluentResource>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| Catalogue {
    arabic: bundle(Lang::Arabic),
    english: bundle(Lang::English),
});

fn bundle(lang: Lang) -> FluentBundle<FluentResource> {
    let id = match lang {
        Lang::Arabic => unic_langid::langid!("ar"),
        Lang::English => unic_langid::langid!("en"),
    };
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // No Unicode isolation marks around arguments: these texts travel in gRPC status
    // messages and problem documents that agencies' systems log and show as plain text,
    // where the invisible marks would be noise. The ids placed in Arabic sentences are
    // short Latin tokens, which the bidirectional algorithm already sets apart.
    bundle.set_use_isolating(false);
    for (area, en, ar) in AREAS {
        let source = match lang {
            Lang::Arabic => ar,
            Lang::English => en,
        };
        // The files are compiled in and checked by the tests: a syntax error cannot reach
        // a release. Still, a broken entry only loses that entry, never the process.
        let resource = match FluentResource::try_new((*source).to_owned()) {
            Ok(r) => r,
            Err((r, errors)) => {
                tracing::error!(
                    area,
                    lang = lang.tag(),
                    errors = errors.len(),
                    "catalogue file has syntax errors"
                );
                r
            }
        };
        if let Err(errors) = bundle.add_resource(resource) {
            tracing::error!(area, lang = lang.tag(), errors = ?errors, "catalogue file repeats message ids");
        }
    }
    bundle
}

#[cfg(test)]
mod tests;
