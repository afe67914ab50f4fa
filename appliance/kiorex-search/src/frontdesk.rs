//! What the front desk types into one search box, read as criteria: name fragments in any
//! order (`oka ngo`), a birth date in the formats people type (`12/03/1980` day first, as in
//! Europe and most of the world, or ISO `1980-03-12`), an MRN (`GEN-0001234-7`) or a phone
//! number. No I/O: the engines turn these criteria into their own queries.

use chrono::NaiveDate;
use kiorex_domain::names::{fold, phone_digits};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrontDeskQuery {
    /// Folded name fragments; each must match (by prefix, or with about one typo) a word of
    /// one of the patient's names.
    pub names: Vec<String>,
    pub birth_date: Option<NaiveDate>,
    /// Identifier values typed as such (MRN, national id), upper-cased.
    pub identifiers: Vec<String>,
    /// Phone digits (six or more).
    pub phone: Option<String>,
}

impl FrontDeskQuery {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.birth_date.is_none()
            && self.identifiers.is_empty()
            && self.phone.is_none()
    }
}

/// Reads the search box. Words that are neither dates, identifiers nor phone numbers are names.
pub fn parse(input: &str) -> FrontDeskQuery {
    let mut query = FrontDeskQuery::default();
    if let Some(phone) = phone_number(input) {
        query.phone = Some(phone);
        return query;
    }
    for word in input.split(|c: char| c.is_whitespace() || c == ',') {
        let word = word.trim();
        if word.is_empty() {
            continue;
        }
        if let Some(date) = birth_date(word) {
            query.birth_date = Some(date);
        } else if word.chars().any(|c| c.is_ascii_digit()) {
            query.identifiers.push(word.to_ascii_uppercase());
        } else {
            query.names.extend(
                fold(word)
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    query
}

/// The whole box as a phone number: only digits and `+ ( ) - .` with spaces, six digits or more,
/// and not a date.
fn phone_number(input: &str) -> Option<String> {
    let compact: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    let phone_like = compact
        .chars()
        .all(|c| c.is_ascii_digit() || "+()-.".contains(c));
    let digits = compact.chars().filter(char::is_ascii_digit).count();
    (phone_like && digits >= 6 && birth_date(&compact).is_none()).then(|| phone_digits(&compact))
}

/// `1980-03-12`, `12/03/1980`, `12.03.1980`, `12-03-1980` (day first) or `12/3/1980`.
fn birth_date(word: &str) -> Option<NaiveDate> {
    if let Ok(date) = NaiveDate::parse_from_str(word, "%Y-%m-%d") {
        return Some(date);
    }
    let parts: Vec<&str> = word.split(['/', '.', '-']).collect();
    match parts.as_slice() {
        [day, month, year] if year.len() == 4 && day.len() <= 2 && month.len() <= 2 => {
            NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn names_in_any_order_are_folded_fragments() {
        let q = parse("  Okafor, Ngózi ");
        assert_eq!(q.names, vec!["okafor", "ngozi"]);
        assert_eq!(parse("de la García").names, vec!["de", "la", "garcia"]);
    }

    #[test]
    fn birth_dates_in_the_formats_people_type() {
        assert_eq!(parse("12/03/1980").birth_date, date(1980, 3, 12));
        assert_eq!(parse("1980-03-12").birth_date, date(1980, 3, 12));
        assert_eq!(parse("12.3.1980").birth_date, date(1980, 3, 12));
        assert_eq!(parse("okafor 12-03-1980").names, vec!["okafor"]);
        assert_eq!(parse("31/02/1980").birth_date, None, "no such day");
    }

    #[test]
    fn identifiers_and_phones() {
        let mrn = parse("gen-0001234-7");
        assert_eq!(mrn.identifiers, vec!["GEN-0001234-7"]);
        assert!(mrn.names.is_empty());
        assert_eq!(
            parse("+44 20 7946 0958").phone.as_deref(),
            Some("442079460958")
        );
        assert_eq!(parse("020-7946-0958").phone.as_deref(), Some("02079460958"));
        assert_eq!(parse("12/03/1980").phone, None);
        assert!(parse("").is_empty());
    }
}
