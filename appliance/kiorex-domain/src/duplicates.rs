//! Likely-duplicate patients. The store finds candidates that share a blocking key (birth date,
//! identifier, phone, similar family name); these rules score each candidate the way a registrar
//! would weigh the evidence, and say why.

use crate::names::{fold, phone_digits};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;

/// The facts about a person that registration compares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientTraits {
    pub family: String,
    pub given: Vec<String>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    /// (system, value) pairs, e.g. a national id.
    pub identifiers: Vec<(String, String)>,
    pub phones: Vec<String>,
}

/// A score in 0..=1 with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchScore {
    pub score: f64,
    pub strength: MatchStrength,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchStrength {
    /// Not worth showing.
    Weak,
    /// Shown to the registrar as a possible duplicate.
    Possible,
    /// Registration refuses to go on without an explicit override.
    Strong,
}

/// Scores at or above this need an explicit override to register anyway.
pub const STRONG: f64 = 0.88;
/// Scores at or above this are shown as possible duplicates.
pub const POSSIBLE: f64 = 0.70;

/// How alike two patients are.
pub fn score(new: &PatientTraits, existing: &PatientTraits) -> MatchScore {
    let mut reasons = Vec::new();
    let mut score =
        name_score(new, existing, &mut reasons) + birth_date_score(new, existing, &mut reasons);
    if shares_phone(new, existing) {
        score += 0.10;
        reasons.push("same phone number".into());
    }
    if let (Some(a), Some(b)) = (&new.gender, &existing.gender)
        && a != b
        && a != "unknown"
        && b != "unknown"
    {
        score -= 0.10;
        reasons.push("different gender".into());
    }
    match identifier_evidence(new, existing) {
        IdentifierEvidence::Same(system) => {
            score = score.max(0.97);
            reasons.push(format!("same identifier ({system})"));
        }
        IdentifierEvidence::Conflicting(system) => {
            score -= 0.40;
            reasons.push(format!("different identifier ({system})"));
        }
        IdentifierEvidence::None => {}
    }
    let score = score.clamp(0.0, 1.0);
    MatchScore {
        score,
        strength: strength(score),
        reasons,
    }
}

fn strength(score: f64) -> MatchStrength {
    if score >= STRONG {
        MatchStrength::Strong
    } else if score >= POSSIBLE {
        MatchStrength::Possible
    } else {
        MatchStrength::Weak
    }
}

/// Up to 0.55: family name carries more weight than given names, which are often abbreviated.
fn name_score(new: &PatientTraits, existing: &PatientTraits, reasons: &mut Vec<String>) -> f64 {
    let family = strsim::jaro_winkler(&fold(&new.family), &fold(&existing.family));
    let given = best_given_similarity(&new.given, &existing.given);
    let combined = 0.35 * family + 0.20 * given;
    if family >= 0.99 && given >= 0.99 {
        reasons.push("same name".into());
    } else if family >= 0.85 && given >= 0.80 {
        reasons.push(format!(
            "similar name ({:.0}%)",
            100.0 * (family + given) / 2.0
        ));
    }
    combined
}

fn best_given_similarity(a: &[String], b: &[String]) -> f64 {
    let mut best: f64 = 0.0;
    for x in a.iter().map(|g| fold(g)) {
        for y in b.iter().map(|g| fold(g)) {
            let sim = if x.len() == 1 || y.len() == 1 {
                // An initial matches the name it abbreviates, but is weaker evidence.
                if x.chars().next() == y.chars().next() {
                    0.85
                } else {
                    0.0
                }
            } else {
                strsim::jaro_winkler(&x, &y)
            };
            best = best.max(sim);
        }
    }
    best
}

/// Up to 0.35 for the same date; less for the typing slips registrars make (day and month swapped,
/// one digit off in the day).
fn birth_date_score(
    new: &PatientTraits,
    existing: &PatientTraits,
    reasons: &mut Vec<String>,
) -> f64 {
    let (Some(a), Some(b)) = (new.birth_date, existing.birth_date) else {
        return 0.0;
    };
    if a == b {
        reasons.push("same birth date".into());
        0.35
    } else if a.year() == b.year() && a.month() == b.day() && a.day() == b.month() {
        reasons.push("birth date with day and month swapped".into());
        0.20
    } else if a.year() == b.year() && a.month() == b.month() && a.day().abs_diff(b.day()) <= 1 {
        reasons.push("birth date one day apart".into());
        0.15
    } else {
        -0.15
    }
}

/// The birth dates worth looking up for a new patient: the date itself and the slips that
/// [`score`] still counts as evidence (day and month swapped, one day off).
pub fn birth_date_keys(date: NaiveDate) -> Vec<NaiveDate> {
    let mut keys = vec![date];
    if let Some(swapped) = NaiveDate::from_ymd_opt(date.year(), date.day(), date.month()) {
        keys.push(swapped);
    }
    keys.extend(date.pred_opt().filter(|d| d.month() == date.month()));
    keys.extend(date.succ_opt().filter(|d| d.month() == date.month()));
    keys.sort();
    keys.dedup();
    keys
}

fn shares_phone(new: &PatientTraits, existing: &PatientTraits) -> bool {
    let theirs: Vec<String> = existing
        .phones
        .iter()
        .map(|p| phone_digits(p))
        .filter(|p| p.len() >= 6)
        .collect();
    new.phones
        .iter()
        .map(|p| phone_digits(p))
        .any(|p| p.len() >= 6 && theirs.contains(&p))
}

enum IdentifierEvidence {
    Same(String),
    Conflicting(String),
    None,
}

fn identifier_evidence(new: &PatientTraits, existing: &PatientTraits) -> IdentifierEvidence {
    let mut conflict = None;
    for (system, value) in &new.identifiers {
        for (other_system, other_value) in &existing.identifiers {
            if system != other_system {
                continue;
            }
            if normalise_identifier(value) == normalise_identifier(other_value) {
                return IdentifierEvidence::Same(system.clone());
            }
            conflict = Some(system.clone());
        }
    }
    conflict.map_or(IdentifierEvidence::None, IdentifierEvidence::Conflicting)
}

fn normalise_identifier(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(family: &str, given: &str, born: &str) -> PatientTraits {
        PatientTraits {
            family: family.into(),
            given: vec![given.into()],
            birth_date: Some(born.parse().unwrap()),
            gender: Some("female".into()),
            ..Default::default()
        }
    }

    #[test]
    fn same_name_and_birth_date_is_strong() {
        let s = score(
            &person("Müller", "Anna", "1980-04-02"),
            &person("Muller", "Anna", "1980-04-02"),
        );
        assert_eq!(s.strength, MatchStrength::Strong, "{s:?}");
        assert!(s.reasons.contains(&"same birth date".to_string()));
    }

    #[test]
    fn misspelt_name_same_birth_date_is_possible() {
        let s = score(
            &person("Johnson", "Katherine", "1975-11-20"),
            &person("Jonson", "Catherine", "1975-11-20"),
        );
        assert!(s.strength >= MatchStrength::Possible, "{s:?}");
    }

    #[test]
    fn swapped_day_and_month_still_counts() {
        let s = score(
            &person("Okafor", "Chidi", "1990-03-07"),
            &person("Okafor", "Chidi", "1990-07-03"),
        );
        assert!(s.strength >= MatchStrength::Possible, "{s:?}");
    }

    #[test]
    fn different_people_with_common_name_are_weak() {
        let s = score(
            &person("Smith", "John", "1950-01-01"),
            &person("Smith", "John", "1987-06-30"),
        );
        assert_eq!(s.strength, MatchStrength::Weak, "{s:?}");
    }

    #[test]
    fn birth_date_keys_cover_the_slips_that_score_counts() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let keys = birth_date_keys(d("1990-03-07"));
        assert_eq!(
            keys,
            [
                d("1990-03-06"),
                d("1990-03-07"),
                d("1990-03-08"),
                d("1990-07-03")
            ]
        );
        assert_eq!(
            birth_date_keys(d("1990-05-05")),
            [d("1990-05-04"), d("1990-05-05"), d("1990-05-06")]
        );
        assert_eq!(
            birth_date_keys(d("1990-01-31")),
            [d("1990-01-30"), d("1990-01-31")],
            "no day 31 of a month 31"
        );
    }

    #[test]
    fn same_national_id_is_strong_even_with_a_typo_in_the_name() {
        let mut a = person("Nguyen", "Van", "1960-02-02");
        let mut b = person("Nguyenn", "Vann", "1961-02-02");
        a.identifiers
            .push(("urn:kiorex:national-id".into(), "NID-123 456".into()));
        b.identifiers
            .push(("urn:kiorex:national-id".into(), "nid123456".into()));
        assert_eq!(score(&a, &b).strength, MatchStrength::Strong);
    }

    #[test]
    fn different_national_ids_outweigh_a_similar_name() {
        let mut a = person("Dubois", "Marie", "1970-05-05");
        let mut b = person("Dubois", "Marie", "1970-05-05");
        a.identifiers
            .push(("urn:kiorex:national-id".into(), "1".into()));
        b.identifiers
            .push(("urn:kiorex:national-id".into(), "2".into()));
        assert!(score(&a, &b).strength < MatchStrength::Strong);
    }
}
