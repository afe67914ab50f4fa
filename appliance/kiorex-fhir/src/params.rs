//! The search parameters Kiorex supports, per resource type, and the reading of a FHIR search
//! query string into a [`SearchQuery`]. The same table drives indexing and the
//! CapabilityStatement, so what the server says it supports is what it does.

use crate::dates::period_of;
use crate::kind::ResourceKind;
use crate::outcome::{Issue, IssueCode};
use kiorex_domain::names::fold;
use kiorex_domain::query::{Criterion, DatePrefix, DateRange, SearchQuery, SortKey, TokenValue};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Token,
    Date,
    Reference(ResourceKind),
}

impl ParamKind {
    pub fn fhir_type(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Date => "date",
            ParamKind::Reference(_) => "reference",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: ParamKind,
    pub documentation: &'static str,
}

const fn def(name: &'static str, kind: ParamKind, documentation: &'static str) -> ParamDef {
    ParamDef {
        name,
        kind,
        documentation,
    }
}

use ParamKind::{Date, Reference, String as Str, Token};
use ResourceKind as K;

const PATIENT: &[ParamDef] = &[
    def(
        "name",
        Str,
        "Any part of any name (family, given, text); prefix match, accents and case ignored",
    ),
    def("family", Str, "Family name; prefix match"),
    def("given", Str, "Given name; prefix match"),
    def(
        "identifier",
        Token,
        "An identifier (system|value), e.g. the facility MRN or a national id",
    ),
    def(
        "birthdate",
        Date,
        "Birth date, with eq/lt/le/gt/ge prefixes",
    ),
    def("gender", Token, "Administrative gender"),
    def("phone", Token, "A phone number, digits only"),
    def(
        "organization",
        Reference(K::Organization),
        "The managing facility",
    ),
];
const PRACTITIONER: &[ParamDef] = &[
    def("name", Str, "Any part of any name; prefix match"),
    def("family", Str, "Family name; prefix match"),
    def("given", Str, "Given name; prefix match"),
    def("identifier", Token, "An identifier (system|value)"),
];
const ORGANIZATION: &[ParamDef] = &[
    def("name", Str, "Name; prefix match"),
    def("identifier", Token, "An identifier (system|value)"),
];
const ENCOUNTER: &[ParamDef] = &[
    def("patient", Reference(K::Patient), "The patient"),
    def("subject", Reference(K::Patient), "The patient"),
    def("date", Date, "The encounter's period"),
    def("status", Token, "planned | in-progress | finished | …"),
    def(
        "participant",
        Reference(K::Practitioner),
        "A practitioner taking part (forms the care relationship while open)",
    ),
    def(
        "class",
        Token,
        "Outpatient (AMB), inpatient (IMP), emergency (EMER) …",
    ),
];
const OBSERVATION: &[ParamDef] = &[
    def("patient", Reference(K::Patient), "The patient"),
    def("subject", Reference(K::Patient), "The patient"),
    def("code", Token, "What was observed (LOINC)"),
    def("category", Token, "vital-signs, laboratory, …"),
    def("date", Date, "When it was observed (effective)"),
    def("encounter", Reference(K::Encounter), "The encounter"),
    def(
        "status",
        Token,
        "registered | preliminary | final | amended …",
    ),
];
const CONDITION: &[ParamDef] = &[
    def("patient", Reference(K::Patient), "The patient"),
    def("subject", Reference(K::Patient), "The patient"),
    def("code", Token, "The diagnosis (ICD-10-CM)"),
    def(
        "clinical-status",
        Token,
        "active | recurrence | relapse | inactive | remission | resolved",
    ),
    def("encounter", Reference(K::Encounter), "The encounter"),
];
const ALLERGY: &[ParamDef] = &[
    def("patient", Reference(K::Patient), "The patient"),
    def("code", Token, "The substance"),
    def("clinical-status", Token, "active | inactive | resolved"),
];
const MEDICATION_REQUEST: &[ParamDef] = &[
    def("patient", Reference(K::Patient), "The patient"),
    def("subject", Reference(K::Patient), "The patient"),
    def(
        "status",
        Token,
        "active | on-hold | cancelled | completed …",
    ),
    def("intent", Token, "proposal | plan | order …"),
    def("code", Token, "The medication"),
    def("encounter", Reference(K::Encounter), "The encounter"),
    def("authoredon", Date, "When the request was written"),
];
const PROCEDURE: &[ParamDef] = &[
    def("patient", Reference(K::Patient), "The patient"),
    def("subject", Reference(K::Patient), "The patient"),
    def("code", Token, "The procedure"),
    def("date", Date, "When it was performed"),
    def("status", Token, "preparation | in-progress | completed …"),
    def("encounter", Reference(K::Encounter), "The encounter"),
];

const CLINICAL_IMPRESSION: &[ParamDef] = &[
    def("patient", Reference(K::Patient), "The patient"),
    def("subject", Reference(K::Patient), "The patient"),
    def(
        "encounter",
        Reference(K::Encounter),
        "The encounter the note is about",
    ),
    def("date", Date, "When the note was written"),
    def(
        "status",
        Token,
        "in-progress | completed | entered-in-error",
    ),
];

const MEDICATION: &[ParamDef] = &[
    def("code", Token, "The formulary code"),
    def("form", Token, "tablet | capsule | solution …"),
    def("name", Str, "Words of the name; prefix match"),
];

/// The search parameters of a resource type.
pub fn params_of(kind: ResourceKind) -> &'static [ParamDef] {
    match kind {
        K::Patient => PATIENT,
        K::Practitioner => PRACTITIONER,
        K::Organization => ORGANIZATION,
        K::Encounter => ENCOUNTER,
        K::Observation => OBSERVATION,
        K::Condition => CONDITION,
        K::AllergyIntolerance => ALLERGY,
        K::MedicationRequest => MEDICATION_REQUEST,
        K::Procedure => PROCEDURE,
        K::ClinicalImpression => CLINICAL_IMPRESSION,
        K::Medication => MEDICATION,
    }
}

pub fn param(kind: ResourceKind, name: &str) -> Option<&'static ParamDef> {
    params_of(kind).iter().find(|p| p.name == name)
}

pub const DEFAULT_COUNT: u32 = 20;
pub const MAX_COUNT: u32 = 500;

/// A search as the API runs it: the store query plus what FHIR asks of the response.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirSearch {
    pub query: SearchQuery,
    /// `_include` reference parameters whose targets are added to the page.
    pub includes: Vec<&'static ParamDef>,
    /// The parameters as understood, for the `self`/`next` links.
    pub echo: Vec<(String, String)>,
}

/// Reads a query string's pairs into a search of `kind`. Every parameter must be understood:
/// a misspelt parameter silently ignored would return the wrong patients.
pub fn parse_search(
    kind: ResourceKind,
    pairs: &[(String, String)],
) -> Result<FhirSearch, Vec<Issue>> {
    let mut search = FhirSearch {
        query: SearchQuery {
            resource_type: kind.name(),
            facilities: Vec::new(),
            criteria: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
        },
        includes: Vec::new(),
        echo: Vec::new(),
    };
    let mut issues = Vec::new();
    for (key, value) in pairs {
        if let Err(issue) = apply(kind, &mut search, key, value) {
            issues.push(issue.at(format!("{}?{key}", kind.name())));
        } else if key != "_offset" {
            search.echo.push((key.clone(), value.clone()));
        }
    }
    if issues.is_empty() {
        Ok(search)
    } else {
        Err(issues)
    }
}

fn apply(kind: ResourceKind, search: &mut FhirSearch, key: &str, value: &str) -> Result<(), Issue> {
    let (name, modifier) = key
        .split_once(':')
        .map_or((key, None), |(n, m)| (n, Some(m)));
    let q = &mut search.query;
    match name {
        "_count" => q.count = parse_count(value)?,
        "_offset" => {
            q.offset = value
                .parse()
                .map_err(|_| invalid(format!("_offset must be a whole number, got {value:?}")))?
        }
        "_sort" => q.sort = parse_sort(kind, value)?,
        "_include" => search.includes.push(parse_include(kind, value)?),
        "_format" if value.contains("json") => {}
        "_total" if value == "none" => {}
        "_summary" | "_elements" | "_total" | "_format" | "_contained" | "_revinclude" | "_has" => {
            return Err(Issue::new(
                IssueCode::NotSupported,
                format!("{name} is not supported by this server"),
            ));
        }
        "_id" => q.criteria.push(Criterion::Ids(
            split(value).map(parse_uuid).collect::<Result<_, _>>()?,
        )),
        "_lastUpdated" => q.criteria.push(Criterion::LastUpdated(parse_date(value)?)),
        _ => {
            let def = param(kind, name).ok_or_else(|| {
                Issue::new(
                    IssueCode::NotSupported,
                    format!("{} has no search parameter \"{name}\"", kind.name()),
                )
            })?;
            q.criteria.push(criterion(def, modifier, value)?);
        }
    }
    Ok(())
}

fn criterion(
    def: &'static ParamDef,
    modifier: Option<&str>,
    value: &str,
) -> Result<Criterion, Issue> {
    match (def.kind, modifier) {
        (ParamKind::String, None | Some("exact")) => {
            let values: Vec<String> = split(value).map(fold).filter(|v| !v.is_empty()).collect();
            if values.is_empty() {
                return Err(invalid(format!("{} needs a value", def.name)));
            }
            Ok(Criterion::String {
                param: def.name,
                values,
                exact: modifier == Some("exact"),
            })
        }
        (ParamKind::Token, None) => Ok(Criterion::Token {
            param: def.name,
            values: split(value).map(|t| token(def, t)).collect(),
        }),
        (ParamKind::Date, None) => Ok(Criterion::Date {
            param: def.name,
            range: parse_date(value)?,
        }),
        (ParamKind::Reference(target), None) => {
            let targets = split(value)
                .map(|v| reference_id(target, v))
                .collect::<Result<_, _>>()?;
            Ok(Criterion::Reference {
                param: def.name,
                targets,
            })
        }
        (_, Some(m)) => Err(Issue::new(
            IssueCode::NotSupported,
            format!("the modifier :{m} is not supported on {}", def.name),
        )),
    }
}

fn split(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim)
}

fn token(def: &ParamDef, value: &str) -> TokenValue {
    let normalise = |code: &str| {
        if def.name == "phone" {
            kiorex_domain::names::phone_digits(code)
        } else {
            code.to_owned()
        }
    };
    match value.split_once('|') {
        Some((system, code)) => TokenValue {
            system: Some(system.to_owned()),
            code: normalise(code),
        },
        None => TokenValue {
            system: None,
            code: normalise(value),
        },
    }
}

/// `Patient/<id>` or a bare id.
fn reference_id(target: ResourceKind, value: &str) -> Result<Uuid, Issue> {
    let id = value
        .strip_prefix(target.name())
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(value);
    parse_uuid(id)
}

fn parse_uuid(value: &str) -> Result<Uuid, Issue> {
    Uuid::parse_str(value).map_err(|_| {
        invalid(format!(
            "{value:?} is not a resource id held by this server"
        ))
    })
}

fn parse_count(value: &str) -> Result<u32, Issue> {
    let count: u32 = value
        .parse()
        .map_err(|_| invalid(format!("_count must be a whole number, got {value:?}")))?;
    if count == 0 || count > MAX_COUNT {
        return Err(invalid(format!("_count must be between 1 and {MAX_COUNT}")));
    }
    Ok(count)
}

/// `ge2024-01-01`, `lt1980`, `2024-03-05T10:00:00Z` …
pub fn parse_date(value: &str) -> Result<DateRange, Issue> {
    let (prefix, rest) = match value.get(..2) {
        Some("eq") => (DatePrefix::Eq, &value[2..]),
        Some("lt") => (DatePrefix::Lt, &value[2..]),
        Some("le") => (DatePrefix::Le, &value[2..]),
        Some("gt") => (DatePrefix::Gt, &value[2..]),
        Some("ge") => (DatePrefix::Ge, &value[2..]),
        Some(p) if p.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err(Issue::new(
                IssueCode::NotSupported,
                format!("the date prefix {p:?} is not supported (use eq, lt, le, gt, ge)"),
            ));
        }
        _ => (DatePrefix::Eq, value),
    };
    let (low, high) = period_of(rest).map_err(invalid)?;
    Ok(DateRange { prefix, low, high })
}

fn parse_sort(kind: ResourceKind, value: &str) -> Result<Vec<SortKey>, Issue> {
    split(value)
        .map(|key| {
            let (descending, name) = key.strip_prefix('-').map_or((false, key), |n| (true, n));
            match name {
                "_lastUpdated" => Ok(SortKey::LastUpdated { descending }),
                "_id" => Ok(SortKey::Id { descending }),
                _ => match param(kind, name).map(|d| (d.name, d.kind)) {
                    Some((param, ParamKind::String)) => Ok(SortKey::String { param, descending }),
                    Some((param, ParamKind::Date)) => Ok(SortKey::Date { param, descending }),
                    _ => Err(Issue::new(
                        IssueCode::NotSupported,
                        format!("cannot sort {} by {name:?}", kind.name()),
                    )),
                },
            }
        })
        .collect()
}

/// `Observation:subject` (the source type must be the searched type).
fn parse_include(kind: ResourceKind, value: &str) -> Result<&'static ParamDef, Issue> {
    let (source, name) = value
        .split_once(':')
        .ok_or_else(|| invalid(format!("_include must look like {}:patient", kind.name())))?;
    let name = name.split(':').next().unwrap_or(name);
    match param(kind, name) {
        Some(def) if source == kind.name() && matches!(def.kind, ParamKind::Reference(_)) => {
            Ok(def)
        }
        _ => Err(Issue::new(
            IssueCode::NotSupported,
            format!("cannot _include {value:?} when searching {}", kind.name()),
        )),
    }
}

fn invalid(message: impl Into<String>) -> Issue {
    Issue::new(IssueCode::Invalid, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_a_typical_patient_search() {
        let s = parse_search(
            K::Patient,
            &pairs(&[
                ("name", "Müll"),
                ("birthdate", "ge1980-01-01"),
                ("_count", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(s.query.count, 5);
        assert!(
            matches!(&s.query.criteria[0], Criterion::String { param: "name", values, exact: false } if values == &["mull"])
        );
        assert!(
            matches!(&s.query.criteria[1], Criterion::Date { param: "birthdate", range } if range.prefix == DatePrefix::Ge)
        );
    }

    #[test]
    fn unknown_parameter_is_named() {
        let issues = parse_search(K::Patient, &pairs(&[("nmae", "x")])).unwrap_err();
        assert_eq!(issues[0].expression.as_deref(), Some("Patient?nmae"));
    }

    #[test]
    fn bad_values_are_refused() {
        for (k, v) in [
            ("birthdate", "yesterday"),
            ("_count", "0"),
            ("_count", "lots"),
            ("_id", "42"),
            ("_sort", "gender"),
            ("birthdate", "ap2020"),
        ] {
            assert!(
                parse_search(K::Patient, &pairs(&[(k, v)])).is_err(),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn observation_by_patient_and_code_with_include() {
        let id = Uuid::from_u128(7);
        let s = parse_search(
            K::Observation,
            &pairs(&[
                ("patient", &format!("Patient/{id}")),
                ("code", "http://loinc.org|8867-4"),
                ("_include", "Observation:subject"),
            ]),
        )
        .unwrap();
        assert!(
            matches!(&s.query.criteria[0], Criterion::Reference { targets, .. } if targets == &[id])
        );
        assert!(
            matches!(&s.query.criteria[1], Criterion::Token { values, .. } if values[0].system.as_deref() == Some("http://loinc.org"))
        );
        assert_eq!(s.includes[0].name, "subject");
    }
}
