//! What Kiorex reads out of a parsed resource: the search index entries, the references it
//! makes, the patient it belongs to, and the rules a resource must meet beyond FHIR's own.

use crate::dates::period_of;
use crate::kind::ResourceKind;
use crate::outcome::{Issue, IssueCode};
use crate::parse::Clinical;
use chrono::{DateTime, TimeZone, Utc};
use fhir_model::r4b::codes::ContactPointSystem;
use fhir_model::r4b::resources as r;
use fhir_model::r4b::types::{
    CodeableConcept, ContactPoint, HumanName, Identifier, Period, Reference,
};
use kiorex_domain::index::{
    ChartResult, DateEntry, ReferenceEntry, SearchIndex, StringEntry, TokenEntry,
};
use kiorex_domain::names::{fold, phone_digits};
use uuid::Uuid;

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// A reference from a resource to another resource held by Kiorex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Where it is, as FHIRPath (for error messages).
    pub element: String,
    /// The search parameter it is indexed under, if any.
    pub param: Option<&'static str>,
    pub target: ResourceKind,
    pub id: Uuid,
}

/// Parses `Type/id` references to resources Kiorex holds. Contained (`#x`) references and
/// references with only a display or identifier are not links.
pub fn parse_reference(
    element: &str,
    reference: &Reference,
) -> Result<Option<(ResourceKind, Uuid)>, Issue> {
    let Some(text) = reference.reference.as_deref() else {
        return Ok(None);
    };
    if text.starts_with('#') {
        return Ok(None);
    }
    let bad = || {
        Issue::new(
            IssueCode::Invalid,
            format!("{text:?} is not a reference to a resource on this server (Type/id)"),
        )
        .at(format!("{element}.reference"))
    };
    let (type_name, id) = text.split_once('/').ok_or_else(bad)?;
    let kind = ResourceKind::from_name(type_name).ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(Some((kind, id)))
}

/// A reference found in a resource: element path, search parameter, the reference itself.
type Found<'a> = (String, Option<&'static str>, &'a Reference);

fn add<'a>(
    found: &mut Vec<Found<'a>>,
    element: &str,
    param: Option<&'static str>,
    reference: Option<&'a Reference>,
) {
    if let Some(reference) = reference {
        found.push((element.to_owned(), param, reference));
    }
}

/// Every link a resource makes, with the parameter it is searched by.
pub fn links(resource: &Clinical) -> Result<Vec<Link>, Vec<Issue>> {
    let mut found: Vec<Found<'_>> = Vec::new();
    let f = &mut found;
    match resource {
        Clinical::Patient(p) => {
            add(
                f,
                "Patient.managingOrganization",
                Some("organization"),
                p.managing_organization.as_ref(),
            );
            for (i, gp) in p.general_practitioner.iter().enumerate() {
                add(
                    f,
                    &format!("Patient.generalPractitioner[{i}]"),
                    None,
                    gp.as_ref(),
                );
            }
            for (i, link) in p.link.iter().enumerate() {
                add(
                    f,
                    &format!("Patient.link[{i}].other"),
                    None,
                    link.as_ref().map(|l| &l.other),
                );
            }
        }
        Clinical::Practitioner(_) => {}
        Clinical::Organization(o) => add(f, "Organization.partOf", None, o.part_of.as_ref()),
        Clinical::Encounter(e) => {
            add(f, "Encounter.subject", Some("subject"), e.subject.as_ref());
            for (i, p) in e.participant.iter().flatten().enumerate() {
                add(
                    f,
                    &format!("Encounter.participant[{i}].individual"),
                    Some("participant"),
                    p.individual.as_ref(),
                );
            }
        }
        Clinical::Observation(o) => {
            add(
                f,
                "Observation.subject",
                Some("subject"),
                o.subject.as_ref(),
            );
            add(
                f,
                "Observation.encounter",
                Some("encounter"),
                o.encounter.as_ref(),
            );
            for (i, p) in o.performer.iter().enumerate() {
                add(f, &format!("Observation.performer[{i}]"), None, p.as_ref());
            }
        }
        Clinical::Condition(c) => {
            add(f, "Condition.subject", Some("subject"), Some(&c.subject));
            add(
                f,
                "Condition.encounter",
                Some("encounter"),
                c.encounter.as_ref(),
            );
            add(f, "Condition.recorder", None, c.recorder.as_ref());
            add(f, "Condition.asserter", None, c.asserter.as_ref());
        }
        Clinical::AllergyIntolerance(a) => {
            add(
                f,
                "AllergyIntolerance.patient",
                Some("patient"),
                Some(&a.patient),
            );
            add(
                f,
                "AllergyIntolerance.encounter",
                None,
                a.encounter.as_ref(),
            );
            add(f, "AllergyIntolerance.recorder", None, a.recorder.as_ref());
        }
        Clinical::MedicationRequest(m) => {
            add(
                f,
                "MedicationRequest.subject",
                Some("subject"),
                Some(&m.subject),
            );
            add(
                f,
                "MedicationRequest.encounter",
                Some("encounter"),
                m.encounter.as_ref(),
            );
            add(f, "MedicationRequest.requester", None, m.requester.as_ref());
        }
        Clinical::Procedure(p) => {
            add(f, "Procedure.subject", Some("subject"), Some(&p.subject));
            add(
                f,
                "Procedure.encounter",
                Some("encounter"),
                p.encounter.as_ref(),
            );
        }
        Clinical::ClinicalImpression(c) => {
            add(
                f,
                "ClinicalImpression.subject",
                Some("subject"),
                Some(&c.subject),
            );
            add(
                f,
                "ClinicalImpression.encounter",
                Some("encounter"),
                c.encounter.as_ref(),
            );
            add(f, "ClinicalImpression.assessor", None, c.assessor.as_ref());
        }
        Clinical::Medication(_) => {}
    }
    let mut links = Vec::new();
    let mut issues = Vec::new();
    for (element, param, reference) in found {
        match parse_reference(&element, reference) {
            Ok(Some((target, id))) => links.push(Link {
                element,
                param,
                target,
                id,
            }),
            Ok(None) => {}
            Err(issue) => issues.push(issue),
        }
    }
    if issues.is_empty() {
        Ok(links)
    } else {
        Err(issues)
    }
}

/// The patient whose record a resource belongs to (its compartment).
pub fn patient_of(resource: &Clinical, links: &[Link]) -> Option<Uuid> {
    if let Clinical::Patient(_) = resource {
        return None;
    }
    links
        .iter()
        .find(|l| {
            matches!(l.param, Some("subject" | "patient")) && l.target == ResourceKind::Patient
        })
        .map(|l| l.id)
}

/// Kiorex's rules beyond FHIR's: who a record is about, codes that must be well-formed, units
/// that must match what was measured.
pub fn check_rules(resource: &Clinical) -> Result<(), Vec<Issue>> {
    let links = links(resource)?;
    let mut issues = Vec::new();
    let kind = resource.kind();
    if kind.in_patient_compartment() {
        let subject = links
            .iter()
            .find(|l| matches!(l.param, Some("subject" | "patient")));
        match subject {
            Some(l) if l.target == ResourceKind::Patient => {}
            Some(l) => issues.push(
                Issue::new(
                    IssueCode::Invalid,
                    "Kiorex records are about patients: the subject must be a Patient",
                )
                .at(l.element.clone()),
            ),
            None => issues.push(
                Issue::new(
                    IssueCode::Required,
                    "the record must say which patient it is about (Patient/id)",
                )
                .at(format!("{}.{}", kind.name(), subject_element(kind))),
            ),
        }
    }
    match resource {
        Clinical::Patient(p) => check_patient(p, &mut issues),
        Clinical::Observation(o) => check_observation(o, &mut issues),
        Clinical::Condition(c) => check_condition(c, &mut issues),
        _ => {}
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

fn subject_element(kind: ResourceKind) -> &'static str {
    if kind == ResourceKind::AllergyIntolerance {
        "patient"
    } else {
        "subject"
    }
}

fn check_patient(p: &r::Patient, issues: &mut Vec<Issue>) {
    let named = p.name.iter().flatten().any(|n| {
        n.family.is_some() || n.text.is_some() || n.given.iter().flatten().next().is_some()
    });
    if !named {
        issues.push(
            Issue::new(
                IssueCode::Required,
                "a patient needs a name (family, given or text)",
            )
            .at("Patient.name"),
        );
    }
}

fn check_observation(o: &r::Observation, issues: &mut Vec<Issue>) {
    let Some(r::ObservationValue::Quantity(q)) = &o.value else {
        return;
    };
    if q.code.is_some() && q.system.as_deref() != Some(UCUM) {
        issues.push(
            Issue::new(
                IssueCode::CodeInvalid,
                format!("units must be UCUM codes (system {UCUM})"),
            )
            .at("Observation.valueQuantity.system"),
        );
        return;
    }
    for coding in o.code.coding.iter().flatten() {
        if coding.system.as_deref() != Some(LOINC) {
            continue;
        }
        let Some(vital) = coding
            .code
            .as_deref()
            .and_then(kiorex_domain::observation::vital_sign)
        else {
            continue;
        };
        if q.code.as_deref() != Some(vital.range.unit) {
            issues.push(
                Issue::new(
                    IssueCode::CodeInvalid,
                    format!(
                        "{} is recorded in {} (UCUM), not {:?}",
                        vital.display,
                        vital.range.unit,
                        q.code.as_deref().unwrap_or("no unit")
                    ),
                )
                .at("Observation.valueQuantity.code"),
            );
        }
    }
}

fn check_condition(c: &r::Condition, issues: &mut Vec<Issue>) {
    let Some(code) = &c.code else { return };
    for (i, coding) in code.coding.iter().enumerate() {
        let Some(coding) = coding else { continue };
        if coding.system.as_deref() == Some(ICD10CM)
            && !coding.code.as_deref().is_some_and(is_icd10cm_code)
        {
            issues.push(
                Issue::new(
                    IssueCode::CodeInvalid,
                    format!(
                        "{:?} is not an ICD-10-CM code (like E11.9 or J45.909)",
                        coding.code.as_deref().unwrap_or("")
                    ),
                )
                .at(format!("Condition.code.coding[{i}].code")),
            );
        }
    }
}

/// ICD-10-CM code shape: a letter, two characters, then optionally a dot and up to four more.
pub fn is_icd10cm_code(code: &str) -> bool {
    let b = code.as_bytes();
    let head_ok = b.len() >= 3
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && b[2].is_ascii_alphanumeric();
    match code.get(3..) {
        _ if !head_ok => false,
        Some("") => true,
        Some(rest) => rest.strip_prefix('.').is_some_and(|t| {
            (1..=4).contains(&t.len())
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() && !c.is_ascii_lowercase())
        }),
        None => false,
    }
}

/// The search index entries of a resource.
pub fn index(resource: &Clinical, links: &[Link]) -> SearchIndex {
    let mut ix = SearchIndex::default();
    for link in links {
        if let Some(param) = link.param {
            ix.references.push(ReferenceEntry {
                param,
                target_type: link.target.name().to_owned(),
                target_id: link.id,
            });
            if param == "subject" && link.target == ResourceKind::Patient {
                ix.references.push(ReferenceEntry {
                    param: "patient",
                    target_type: link.target.name().to_owned(),
                    target_id: link.id,
                });
            }
        }
    }
    match resource {
        Clinical::Patient(p) => {
            names(&mut ix, &p.name);
            identifiers(&mut ix, &p.identifier);
            phones(&mut ix, &p.telecom);
            if let Some(g) = p.gender {
                token(&mut ix, "gender", "", g.as_ref());
            }
            if let Some(d) = &p.birth_date {
                date(&mut ix, "birthdate", &json_string(d));
            }
        }
        Clinical::Practitioner(p) => {
            names(&mut ix, &p.name);
            identifiers(&mut ix, &p.identifier);
        }
        Clinical::Organization(o) => {
            if let Some(name) = &o.name {
                ix.strings.push(StringEntry {
                    param: "name",
                    value: fold(name),
                });
            }
            identifiers(&mut ix, &o.identifier);
        }
        Clinical::Encounter(e) => {
            token(&mut ix, "status", "", e.status.as_ref());
            token(
                &mut ix,
                "class",
                e.class.system.as_deref().unwrap_or(""),
                e.class.code.as_deref().unwrap_or(""),
            );
            if let Some(p) = &e.period {
                period(&mut ix, "date", p);
            }
        }
        Clinical::Observation(o) => {
            token(&mut ix, "status", "", o.status.as_ref());
            codeable(&mut ix, "code", &o.code);
            for c in o.category.iter().flatten() {
                codeable(&mut ix, "category", c);
            }
            match &o.effective {
                Some(r::ObservationEffective::DateTime(d)) => {
                    date(&mut ix, "date", &json_string(d))
                }
                Some(r::ObservationEffective::Period(p)) => period(&mut ix, "date", p),
                Some(r::ObservationEffective::Instant(i)) => date(&mut ix, "date", &json_string(i)),
                _ => {}
            }
            ix.chart_result = chart_result(o, &ix);
        }
        Clinical::Condition(c) => {
            if let Some(code) = &c.code {
                codeable(&mut ix, "code", code);
            }
            if let Some(s) = &c.clinical_status {
                codeable(&mut ix, "clinical-status", s);
            }
        }
        Clinical::AllergyIntolerance(a) => {
            if let Some(code) = &a.code {
                codeable(&mut ix, "code", code);
            }
            if let Some(s) = &a.clinical_status {
                codeable(&mut ix, "clinical-status", s);
            }
        }
        Clinical::MedicationRequest(m) => {
            token(&mut ix, "status", "", &m.status);
            token(&mut ix, "intent", "", &m.intent);
            if let r::MedicationRequestMedication::CodeableConcept(c) = &m.medication {
                codeable(&mut ix, "code", c);
            }
            if let Some(d) = &m.authored_on {
                date(&mut ix, "authoredon", &json_string(d));
            }
        }
        Clinical::Procedure(p) => {
            token(&mut ix, "status", "", p.status.as_ref());
            if let Some(code) = &p.code {
                codeable(&mut ix, "code", code);
            }
            match &p.performed {
                Some(r::ProcedurePerformed::DateTime(d)) => date(&mut ix, "date", &json_string(d)),
                Some(r::ProcedurePerformed::Period(per)) => period(&mut ix, "date", per),
                _ => {}
            }
        }
        Clinical::ClinicalImpression(c) => {
            token(&mut ix, "status", "", &c.status);
            if let Some(d) = &c.date {
                date(&mut ix, "date", &json_string(d));
            }
        }
        Clinical::Medication(m) => medication(&mut ix, m),
    }
    ix
}

/// A formulary entry is found by the words of its name (the code's text or display), of its
/// ingredients and of its form, typed with a typo or as a prefix (kiorex-search's medicines).
fn medication(ix: &mut SearchIndex, m: &r::Medication) {
    let concept_words = |ix: &mut SearchIndex, param: &'static str, c: &CodeableConcept| {
        let text = c.text.as_deref().or_else(|| {
            c.coding
                .iter()
                .flatten()
                .find_map(|coding| coding.display.as_deref())
        });
        if let Some(text) = text {
            push_words(ix, param, text);
        }
    };
    if let Some(code) = &m.code {
        concept_words(ix, "name", code);
        codeable(ix, "code", code);
    }
    if let Some(form) = &m.form {
        concept_words(ix, "form", form);
        codeable(ix, "form", form);
    }
    for ingredient in m.ingredient.iter().flatten() {
        if let r::MedicationIngredientItem::CodeableConcept(c) = &ingredient.item {
            concept_words(ix, "ingredient", c);
        }
    }
}

fn names(ix: &mut SearchIndex, names: &[Option<HumanName>]) {
    for n in names.iter().flatten() {
        if let Some(family) = &n.family {
            push_words(ix, "family", family);
            push_words(ix, "name", family);
        }
        for given in n.given.iter().flatten() {
            push_words(ix, "given", given);
            push_words(ix, "name", given);
        }
        if let Some(text) = &n.text {
            push_words(ix, "name", text);
        }
    }
}

/// Indexes the whole folded value and each word of it, so "Garcia" finds "de la Garcia".
fn push_words(ix: &mut SearchIndex, param: &'static str, value: &str) {
    let folded = fold(value);
    for word in folded.split(' ').filter(|w| !w.is_empty() && *w != folded) {
        push_unique_string(ix, param, word.to_owned());
    }
    push_unique_string(ix, param, folded);
}

fn push_unique_string(ix: &mut SearchIndex, param: &'static str, value: String) {
    if !value.is_empty()
        && !ix
            .strings
            .iter()
            .any(|s| s.param == param && s.value == value)
    {
        ix.strings.push(StringEntry { param, value });
    }
}

fn identifiers(ix: &mut SearchIndex, identifiers: &[Option<Identifier>]) {
    for id in identifiers.iter().flatten() {
        if let Some(value) = &id.value {
            token(ix, "identifier", id.system.as_deref().unwrap_or(""), value);
        }
    }
}

fn phones(ix: &mut SearchIndex, telecom: &[Option<ContactPoint>]) {
    for t in telecom.iter().flatten() {
        if matches!(
            t.system,
            Some(ContactPointSystem::Phone | ContactPointSystem::Sms)
        ) && let Some(v) = &t.value
        {
            let digits = phone_digits(v);
            if !digits.is_empty() {
                token(ix, "phone", "", &digits);
            }
        }
    }
}

/// The chart's entry for an observation (Kiorex requires every one to be about a patient). Its
/// time is the start of the indexed effective time, so partial dates and
/// periods sort like they search.
fn chart_result(o: &r::Observation, ix: &SearchIndex) -> Option<ChartResult> {
    let patient_id = ix
        .references
        .iter()
        .find(|r| r.param == "patient")?
        .target_id;
    let coding = o.code.coding.iter().flatten().next();
    let quantity = match &o.value {
        Some(r::ObservationValue::Quantity(q)) => Some(q),
        _ => None,
    };
    let first_code = |c: &CodeableConcept| {
        c.coding
            .iter()
            .flatten()
            .find_map(|c| c.code.clone())
            .unwrap_or_default()
    };
    Some(ChartResult {
        patient_id,
        code: coding.and_then(|c| c.code.clone()).unwrap_or_default(),
        display: coding
            .and_then(|c| c.display.clone())
            .or_else(|| o.code.text.clone())
            .unwrap_or_else(|| "Observation".to_owned()),
        value: quantity.and_then(|q| q.value),
        unit: quantity.and_then(|q| q.unit.clone()).unwrap_or_default(),
        effective: ix.dates.iter().find(|d| d.param == "date").map(|d| d.low),
        flag: o
            .interpretation
            .iter()
            .flatten()
            .next()
            .map(first_code)
            .unwrap_or_default(),
        vital: o.category.iter().flatten().any(|c| {
            c.coding
                .iter()
                .flatten()
                .any(|c| c.code.as_deref() == Some("vital-signs"))
        }),
    })
}

fn codeable(ix: &mut SearchIndex, param: &'static str, concept: &CodeableConcept) {
    for coding in concept.coding.iter().flatten() {
        if let Some(code) = &coding.code {
            token(ix, param, coding.system.as_deref().unwrap_or(""), code);
        }
    }
}

fn token(ix: &mut SearchIndex, param: &'static str, system: &str, code: &str) {
    if !code.is_empty() {
        ix.tokens.push(TokenEntry {
            param,
            system: system.to_owned(),
            code: code.to_owned(),
        });
    }
}

fn date(ix: &mut SearchIndex, param: &'static str, value: &str) {
    if let Ok((low, high)) = period_of(value) {
        ix.dates.push(DateEntry { param, low, high });
    }
}

fn period(ix: &mut SearchIndex, param: &'static str, p: &Period) {
    let low = p
        .start
        .as_ref()
        .and_then(|s| period_of(&json_string(s)).ok())
        .map(|(l, _)| l);
    let high = p
        .end
        .as_ref()
        .and_then(|e| period_of(&json_string(e)).ok())
        .map(|(_, h)| h);
    if low.is_none() && high.is_none() {
        return;
    }
    ix.dates.push(DateEntry {
        param,
        low: low.unwrap_or_else(beginning_of_time),
        high: high.unwrap_or_else(end_of_time),
    });
}

/// Open ends of a period, within PostgreSQL's timestamp range.
fn beginning_of_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn end_of_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .unwrap_or_default()
}

/// The FHIR string form of a model date type.
fn json_string<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_value;
    use serde_json::json;

    const P: &str = "4b5c8d0e-1111-4222-8333-444455556666";

    #[test]
    fn patient_index_has_names_words_identifier_phone_and_birthdate() {
        let parsed = parse_value(
            ResourceKind::Patient,
            json!({"resourceType": "Patient", "name": [{"family": "de la García", "given": ["José"]}],
                   "identifier": [{"system": "urn:kiorex:national-id", "value": "NID123"}],
                   "telecom": [{"system": "phone", "value": "+44 20 7946 0958"}], "birthDate": "1980-04-02"}),
        )
        .unwrap();
        let ix = index(&parsed.resource, &links(&parsed.resource).unwrap());
        let strings: Vec<(&str, &str)> = ix
            .strings
            .iter()
            .map(|s| (s.param, s.value.as_str()))
            .collect();
        assert!(strings.contains(&("family", "garcia")));
        assert!(strings.contains(&("family", "de la garcia")));
        assert!(strings.contains(&("given", "jose")));
        assert!(
            ix.tokens
                .iter()
                .any(|t| t.param == "identifier" && t.code == "NID123")
        );
        assert!(
            ix.tokens
                .iter()
                .any(|t| t.param == "phone" && t.code == "442079460958")
        );
        assert_eq!(ix.dates[0].low.date_naive().to_string(), "1980-04-02");
    }

    #[test]
    fn observation_links_to_its_patient_and_is_indexed_by_code_and_date() {
        let parsed = parse_value(
            ResourceKind::Observation,
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                   "subject": {"reference": format!("Patient/{P}")}, "effectiveDateTime": "2024-03-05T10:15:00+00:00",
                   "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"}}),
        )
        .unwrap();
        let links = links(&parsed.resource).unwrap();
        assert_eq!(
            patient_of(&parsed.resource, &links),
            Some(Uuid::parse_str(P).unwrap())
        );
        let ix = index(&parsed.resource, &links);
        assert!(ix.references.iter().any(|r| r.param == "patient"));
        assert!(
            ix.tokens
                .iter()
                .any(|t| t.param == "code" && t.code == "8867-4")
        );
        assert_eq!(ix.dates.len(), 1);
    }

    #[test]
    fn a_flagged_vital_sign_about_a_patient_gets_a_chart_entry() {
        let parsed = parse_value(
            ResourceKind::Observation,
            json!({"resourceType": "Observation", "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                   "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
                   "subject": {"reference": format!("Patient/{P}")}, "effectiveDateTime": "2024-03-05",
                   "interpretation": [{"coding": [{"code": "H"}]}],
                   "valueQuantity": {"value": 131.5, "unit": "/min", "system": UCUM, "code": "/min"}}),
        )
        .unwrap();
        let ix = index(&parsed.resource, &links(&parsed.resource).unwrap());
        let entry = ix.chart_result.expect("a chart entry");
        assert_eq!(entry.patient_id, Uuid::parse_str(P).unwrap());
        assert_eq!(
            (
                entry.code.as_str(),
                entry.display.as_str(),
                entry.unit.as_str()
            ),
            ("8867-4", "Heart rate", "/min")
        );
        assert_eq!(
            (entry.value, entry.flag.as_str(), entry.vital),
            (Some(131.5), "H", true)
        );
        // A date without a time sorts at the start of its day, as it searches.
        assert_eq!(
            entry.effective.unwrap().to_rfc3339(),
            "2024-03-05T00:00:00+00:00"
        );
    }

    #[test]
    fn heart_rate_in_the_wrong_unit_is_refused() {
        let issues = parse_value(
            ResourceKind::Observation,
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                   "subject": {"reference": format!("Patient/{P}")},
                   "valueQuantity": {"value": 72, "system": UCUM, "code": "kg"}}),
        )
        .unwrap_err();
        assert_eq!(
            issues[0].expression.as_deref(),
            Some("Observation.valueQuantity.code")
        );
    }

    #[test]
    fn observation_without_a_patient_is_refused() {
        let issues = parse_value(
            ResourceKind::Observation,
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "note"}}),
        )
        .unwrap_err();
        assert_eq!(issues[0].code, IssueCode::Required);
    }

    #[test]
    fn icd10cm_shapes() {
        for ok in ["E11.9", "J45.909", "I10", "S72.001A", "Z00.00"] {
            assert!(is_icd10cm_code(ok), "{ok}");
        }
        for bad in ["e11.9", "E1", "E11.", "E11.12345", "11.9", "E11-9"] {
            assert!(!is_icd10cm_code(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_reference_is_refused_with_its_path() {
        let issues = parse_value(
            ResourceKind::Condition,
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/not-a-uuid"}}),
        )
        .unwrap_err();
        assert_eq!(
            issues[0].expression.as_deref(),
            Some("Condition.subject.reference")
        );
    }
}
