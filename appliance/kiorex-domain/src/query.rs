//! A parsed search: the criteria the FHIR layer understood, the facilities the principal may
//! search in, sort order and paging. The store turns it into SQL.

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub resource_type: &'static str,
    /// Only resources of these facilities are searched (the principal's scope).
    pub facilities: Vec<Uuid>,
    /// All criteria must hold (AND); each criterion holds when any of its values matches (OR).
    pub criteria: Vec<Criterion>,
    pub sort: Vec<SortKey>,
    pub count: u32,
    pub offset: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Criterion {
    Ids(Vec<Uuid>),
    LastUpdated(DateRange),
    /// Folded prefixes (or whole values when `exact`).
    String {
        param: &'static str,
        values: Vec<String>,
        exact: bool,
    },
    Token {
        param: &'static str,
        values: Vec<TokenValue>,
    },
    Date {
        param: &'static str,
        range: DateRange,
    },
    Reference {
        param: &'static str,
        targets: Vec<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    /// `None` matches any system; `Some("")` matches codes without a system.
    pub system: Option<String>,
    pub code: String,
}

/// FHIR date comparison prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePrefix {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A searched date: the prefix and the period its precision covers (both ends inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub prefix: DatePrefix,
    pub low: DateTime<Utc>,
    pub high: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    LastUpdated {
        descending: bool,
    },
    Id {
        descending: bool,
    },
    String {
        param: &'static str,
        descending: bool,
    },
    Date {
        param: &'static str,
        descending: bool,
    },
}
