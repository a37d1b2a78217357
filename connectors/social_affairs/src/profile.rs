//! One Primero instance's case form as the connector fills and reads it: the fields of
//! Primero's stock case forms (`db/configuration/forms/case/` in Primero v2), the custom
//! fields an instance declares, and the lookup values of its select fields (the stock
//! lookups, with the instance's own values over them, `[standards.primero.<agency>]`).

use himaya_settings::{PrimeroLookups, PrimeroSettings};

/// Primero's stock `lookup-gender`.
const SEX: &[(&str, &str)] = &[("female", "female"), ("male", "male")];

/// Primero's stock `lookup-country` (the stock `nationality` field's lookup), for the
/// nationalities a directorate in the region meets, by ISO 3166 alpha-3 code.
const NATIONALITY: &[(&str, &str)] = &[
    ("EGY", "egypt"),
    ("SYR", "syria"),
    ("SDN", "sudan"),
    ("SSD", "south_sudan"),
    ("YEM", "yemen"),
    ("IRQ", "iraq"),
    ("PSE", "palestine"),
    ("LBY", "libya"),
    ("ERI", "eritrea"),
    ("ETH", "ethiopia"),
    ("SOM", "somalia"),
    ("JOR", "jordan"),
    ("LBN", "lebanon"),
    ("AFG", "afghanistan"),
    ("SAU", "saudi_arabia"),
    ("TUN", "tunisia"),
    ("MAR", "morocco"),
    ("DZA", "algeria"),
    ("KWT", "kuwait"),
    ("QAT", "qatar"),
    ("ARE", "united_arab_emirates"),
    ("OMN", "oman"),
    ("BHR", "bahrain"),
    ("MRT", "mauritania"),
    ("DJI", "djibouti"),
    ("COM", "comoros"),
    ("TCD", "chad"),
];

/// Primero's stock `lookup-protection-concerns`, where one of its values means what the
/// hub's concern means; every other concern is sent as `other`, named in
/// `protection_concerns_other`.
const CONCERNS: &[(&str, &str)] = &[
    ("physical_abuse", "physically_or_mentally_abused"),
    ("emotional_abuse", "physically_or_mentally_abused"),
    ("psychosocial_distress", "mentally_distressed"),
    ("other", "other"),
];

/// Primero's stock `lookup-family-relationship` (which tells grandmother from
/// grandfather and brother from sister, as the hub does not).
const RELATION: &[(&str, &str)] = &[
    ("mother", "mother"),
    ("father", "father"),
    ("grandparent", "other_family"),
    ("sibling", "other_family"),
    ("other_relative", "other_family"),
    ("foster_carer", "other_nonfamily"),
    ("institution_staff", "other_nonfamily"),
];

/// Primero's stock `lookup-service-type`.
const SERVICE: &[(&str, &str)] = &[
    ("health", "health_medical_service"),
    ("psychosocial", "psychosocial_service"),
    ("education", "education_service"),
    ("legal", "legal_assistance_service"),
    ("economic", "livelihoods_service"),
    ("case_management", "child_protection_service"),
];

/// A lookup: the hub's word → the instance's value id, the instance's own entries first
/// (so they win both ways), then the stock ones it did not set. An empty id means the
/// word is left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lookup(Vec<(String, String)>);

impl Lookup {
    fn new(own: &std::collections::BTreeMap<String, String>, stock: &[(&str, &str)]) -> Lookup {
        let mut pairs: Vec<(String, String)> =
            own.iter().map(|(w, v)| (w.clone(), v.clone())).collect();
        pairs.extend(
            stock
                .iter()
                .filter(|(w, _)| !own.contains_key(*w))
                .map(|(w, v)| ((*w).to_owned(), (*v).to_owned())),
        );
        Lookup(pairs)
    }

    /// `Some("")`: the instance leaves the word out; `None`: it has not said.
    fn entry(&self, word: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(w, _)| w == word)
            .map(|(_, v)| v.as_str())
    }

    /// The value id for the hub's word, if the instance has one.
    pub fn value(&self, word: &str) -> Option<&str> {
        self.entry(word).filter(|v| !v.is_empty())
    }

    /// The hub's word for one of the instance's value ids.
    pub fn word(&self, value: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, v)| !v.is_empty() && v == value)
            .map(|(w, _)| w.as_str())
    }
}

/// What the connector knows of one Primero instance's case form.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    custom_fields: std::collections::BTreeSet<String>,
    pub sex: Lookup,
    pub nationality: Lookup,
    pub protection_concerns: Lookup,
    pub disability_type: Lookup,
    pub relation: Lookup,
    pub service_type: Lookup,
}

impl Default for Profile {
    /// Primero's stock forms and lookups.
    fn default() -> Self {
        Profile::new(&PrimeroSettings::default())
    }
}

impl Profile {
    pub fn new(s: &PrimeroSettings) -> Profile {
        let PrimeroLookups {
            sex,
            nationality,
            protection_concerns,
            disability_type,
            relation,
            service_type,
        } = &s.lookups;
        Profile {
            custom_fields: s.custom_fields.clone(),
            sex: Lookup::new(sex, SEX),
            nationality: Lookup::new(nationality, NATIONALITY),
            protection_concerns: Lookup::new(protection_concerns, CONCERNS),
            disability_type: Lookup::new(disability_type, &[]),
            relation: Lookup::new(relation, RELATION),
            service_type: Lookup::new(service_type, SERVICE),
        }
    }

    /// Whether the instance declared this custom field (one the stock forms lack).
    pub fn declares(&self, field: &str) -> bool {
        self.custom_fields.contains(field)
    }

    /// The protection concern for the hub's concern: its value id, `None` to leave it
    /// out, and whether it is only `other`.
    pub fn concern(&self, word: &str) -> Option<(&str, bool)> {
        match self.protection_concerns.entry(word) {
            Some("") => None,
            Some(v) => Some((v, false)),
            None => Some(("other", true)),
        }
    }
}

/// A full name as Primero's name fields: the first name, the middle names, the last
/// name (Primero's own split, first word and last word, with Arabic compound names kept
/// whole: "عبد الله", "أبو بكر", "نور الدين" are one name each).
pub fn name_parts(full: &str) -> (Option<String>, Option<String>, Option<String>) {
    const JOINS_NEXT: &[&str] = &["عبد", "أبو", "ابو", "أبي", "ابي", "بن", "ابن", "بنت", "آل"];
    const JOINS_PREVIOUS: &[&str] = &["الدين", "الله", "الإسلام"];
    let mut names: Vec<String> = Vec::new();
    let mut glue_next = false;
    for word in full.split_whitespace() {
        match names.last_mut() {
            Some(last) if glue_next || JOINS_PREVIOUS.contains(&word) => {
                last.push(' ');
                last.push_str(word);
            }
            _ => names.push(word.to_owned()),
        }
        glue_next = JOINS_NEXT.contains(&word);
    }
    let mut names = names.into_iter();
    let first = names.next();
    let mut rest: Vec<String> = names.collect();
    let last = rest.pop();
    let middle = (!rest.is_empty()).then(|| rest.join(" "));
    (first, middle, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_as_primero_does_with_arabic_compounds_whole() {
        let s = |t: &str| name_parts(t);
        let owned = |v: [Option<&str>; 3]| v.map(|x| x.map(str::to_owned));
        assert_eq!(
            <[_; 3]>::from(s("مريم أحمد عبد الله")),
            owned([Some("مريم"), Some("أحمد"), Some("عبد الله")])
        );
        assert_eq!(
            <[_; 3]>::from(s("يوسف محمود")),
            owned([Some("يوسف"), None, Some("محمود")])
        );
        assert_eq!(<[_; 3]>::from(s("مريم")), owned([Some("مريم"), None, None]));
        assert_eq!(
            <[_; 3]>::from(s("نور الدين محمد أبو بكر")),
            owned([Some("نور الدين"), Some("محمد"), Some("أبو بكر")])
        );
        assert_eq!(
            <[_; 3]>::from(s("Mariam Ahmed  Abdallah")),
            owned([Some("Mariam"), Some("Ahmed"), Some("Abdallah")])
        );
        assert_eq!(<[_; 3]>::from(s("  ")), owned([None, None, None]));
    }

    #[test]
    fn the_instance_s_own_values_win_both_ways() {
        let mut s = PrimeroSettings::default();
        s.lookups
            .protection_concerns
            .insert("emotional_abuse".into(), "emotional_abuse".into());
        s.lookups
            .protection_concerns
            .insert("neglect".into(), String::new());
        s.lookups
            .nationality
            .insert("SYR".into(), "syrian_arab_republic".into());
        let p = Profile::new(&s);
        assert_eq!(
            p.concern("emotional_abuse"),
            Some(("emotional_abuse", false))
        );
        assert_eq!(p.concern("neglect"), None);
        assert_eq!(
            p.concern("physical_abuse"),
            Some(("physically_or_mentally_abused", false))
        );
        assert_eq!(p.concern("child_marriage"), Some(("other", true)));
        assert_eq!(p.nationality.value("SYR"), Some("syrian_arab_republic"));
        assert_eq!(p.nationality.word("syrian_arab_republic"), Some("SYR"));
        assert_eq!(p.nationality.word("syria"), None);
        let stock = Profile::default();
        assert_eq!(stock.sex.value("not_stated"), None);
        assert_eq!(
            stock
                .protection_concerns
                .word("physically_or_mentally_abused"),
            Some("physical_abuse")
        );
        assert!(!stock.declares("himaya_referral_id"));
    }
}
