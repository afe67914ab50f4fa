//! What a record is found by: the search index entries extracted from a resource when it is
//! written. The store keeps them in one table per kind; the FHIR layer decides what goes in.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The index entries of one resource version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchIndex {
    pub strings: Vec<StringEntry>,
    pub tokens: Vec<TokenEntry>,
    pub dates: Vec<DateEntry>,
    pub references: Vec<ReferenceEntry>,
    /// What the patient's chart shows of an observation about a patient.
    pub chart_result: Option<ChartResult>,
}

/// A folded string (see [`crate::names::fold`]) matched by prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringEntry {
    pub param: &'static str,
    pub value: String,
}

/// A code, optionally qualified by its system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub param: &'static str,
    pub system: String,
    pub code: String,
}

/// A period; a date without time covers its whole day, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateEntry {
    pub param: &'static str,
    pub low: DateTime<Utc>,
    pub high: DateTime<Utc>,
}

/// A reference to another resource held by Kiorex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceEntry {
    pub param: &'static str,
    pub target_type: String,
    pub target_id: Uuid,
}

/// One result as a patient's chart shows it: what, the value, when and the flag.
///
/// A patient followed for years has thousands of observations. The chart reads these narrow
/// entries from one index range of the patient instead of every observation whole, so it opens
/// in the same time whatever the size of the hospital's record store.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartResult {
    pub patient_id: Uuid,
    /// The first coding's code (LOINC for vital signs).
    pub code: String,
    pub display: String,
    pub value: Option<f64>,
    pub unit: String,
    /// The start of the effective time, if any.
    pub effective: Option<DateTime<Utc>>,
    /// The first interpretation code (H, L, HH, LL, A, N); empty when not flagged.
    pub flag: String,
    /// Whether the observation is categorised as a vital sign.
    pub vital: bool,
}
