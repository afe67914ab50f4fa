//! Deterministic synthetic patients and clinical records as FHIR R4 JSON.
//!
//! Everything is drawn from one seeded [`StdRng`], and "today" is a fixed
//! reference date (see [`Synth::with_reference_date`]), so the same seed gives
//! the same resources on every machine and every day (for a given `rand`
//! version in `Cargo.lock`).
//!
//! ```
//! let mut synth = kiorex_synth::Synth::new(1);
//! let bundle = synth.patient_bundle(10, 3);
//! assert_eq!(bundle["entry"].as_array().unwrap().len(), 10 * 4);
//! ```

mod clinical;
mod names;

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};

use clinical::{Ranges, Vital};

/// Identifier system of the national id (`NID` + 9 digits).
pub const NATIONAL_ID_SYSTEM: &str = "urn:kiorex:national-id";
pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const ICD10_CM: &str = clinical::ICD10_CM;
/// LOINC codes of the vital signs that are generated.
pub const VITAL_SIGN_CODES: [&str; 8] = [
    clinical::HEART_RATE,
    clinical::SYSTOLIC,
    clinical::DIASTOLIC,
    clinical::TEMPERATURE,
    clinical::RESPIRATORY_RATE,
    clinical::SPO2,
    clinical::WEIGHT,
    clinical::HEIGHT,
];

const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

/// Oldest generated patient, in days (keeps every age within 0..=95 years).
const MAX_AGE_DAYS: u64 = 95 * 365 + 20;
/// Encounters happen within this many days before the reference date.
const VISIT_WINDOW_DAYS: u64 = 3 * 365;
/// Clinical resources per encounter, the Encounter itself included.
const RECORDS_PER_VISIT: usize = 8;
/// Share of vital signs outside the normal range.
const ABNORMAL_RATE: f64 = 0.1;
/// Share of family names drawn from the small set of very common ones.
const COMMON_FAMILY_RATE: f64 = 0.35;

type Flag = (&'static str, &'static str);
const LOW: Flag = ("L", "Low");
const HIGH: Flag = ("H", "High");

/// The fixed "today" used by [`Synth::new`].
pub fn default_reference_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 7, 1).expect("valid date")
}

/// Multiplier of the national-id permutation (coprime with 10^9).
const NID_STEP: u64 = 387_420_489;
const NID_SPACE: u64 = 1_000_000_000;

/// Seeded generator of synthetic FHIR R4 resources and transaction bundles.
pub struct Synth {
    rng: StdRng,
    today: NaiveDate,
    /// Index (within the whole data set) of the next generated patient.
    next_patient: u64,
    /// Seed-dependent start of the national-id sequence.
    nid_offset: u64,
}

/// The patient that clinical resources refer to.
struct Subject {
    urn: String,
    birth: NaiveDate,
}

/// When clinical resources happen, and the Encounter they belong to (if any).
struct Visit {
    urn: Option<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Synth {
    /// A generator seeded with `seed`, with "today" = [`default_reference_date`].
    pub fn new(seed: u64) -> Self {
        Self::with_reference_date(seed, default_reference_date())
    }

    /// A generator whose ages and encounter dates are relative to `today`.
    pub fn with_reference_date(seed: u64, today: NaiveDate) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            today,
            next_patient: 0,
            nid_offset: mix(seed) % NID_SPACE,
        }
    }

    /// A generator for part `part` of a large data set built in independent
    /// pieces (e.g. one per transaction). Parts have their own random stream,
    /// and national ids stay unique across all parts of the same `seed` as
    /// long as no part makes more than `patients_per_part` patients (and the
    /// whole set stays below 10^9 patients).
    pub fn for_part(seed: u64, part: u64, patients_per_part: u64) -> Self {
        let mut synth = Self::new(mix(seed ^ mix(part)));
        synth.next_patient = part.wrapping_mul(patients_per_part);
        synth.nid_offset = mix(seed) % NID_SPACE;
        synth
    }

    /// The date ages and encounter dates are relative to.
    pub fn reference_date(&self) -> NaiveDate {
        self.today
    }

    /// One FHIR R4 Patient resource (no `id`).
    pub fn patient(&mut self) -> Value {
        self.patient_with_birth().0
    }

    /// A transaction Bundle with `patients` new patients, each followed by
    /// `records_per_patient` clinical resources: an Encounter, then
    /// Observations, Conditions, MedicationRequests, AllergyIntolerances and
    /// Procedures of that encounter (a new Encounter every 8 records).
    pub fn patient_bundle(&mut self, patients: usize, records_per_patient: usize) -> Value {
        let mut entries = Vec::with_capacity(patients * (1 + records_per_patient));
        for _ in 0..patients {
            let subject = self.subject(&mut entries);
            self.clinical_entries(&subject, records_per_patient, &mut entries);
        }
        bundle(entries)
    }

    /// A transaction Bundle of exactly `entries` entries: one Patient and
    /// `entries - 1` vital-sign Observations for it.
    pub fn observation_bundle(&mut self, entries: usize) -> Value {
        let mut out = Vec::with_capacity(entries);
        if entries > 0 {
            let subject = self.subject(&mut out);
            let session = self.period(&subject);
            for _ in 1..entries {
                let observation = self.vital_sign(&subject, &session);
                self.push_new(&mut out, observation);
            }
        }
        bundle(out)
    }

    /// Up to the first 3 letters (lower case) of a family name from the pool,
    /// common names weighted as in generated patients.
    pub fn name_fragment(&mut self) -> String {
        self.family_name()
            .chars()
            .take(3)
            .flat_map(char::to_lowercase)
            .collect()
    }

    fn patient_with_birth(&mut self) -> (Value, NaiveDate) {
        let gender = self.gender();
        let birth = self.birth_date();
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{"system": NATIONAL_ID_SYSTEM, "value": self.national_id()}],
            "active": true,
            "name": [{
                "use": "official",
                "family": self.family_name(),
                "given": self.given_names(gender),
            }],
            "telecom": [{"system": "phone", "value": self.phone(), "use": "mobile"}],
            "gender": gender,
            "birthDate": date(birth),
            "address": [self.address()],
        });
        (patient, birth)
    }

    /// Pushes a new Patient entry and returns it as a reference target.
    fn subject(&mut self, entries: &mut Vec<Value>) -> Subject {
        let (patient, birth) = self.patient_with_birth();
        let urn = self.urn();
        entries.push(entry(&urn, patient));
        Subject { urn, birth }
    }

    fn clinical_entries(&mut self, subject: &Subject, records: usize, out: &mut Vec<Value>) {
        for first in (0..records).step_by(RECORDS_PER_VISIT) {
            let mut visit = self.period(subject);
            let urn = self.urn();
            out.push(entry(&urn, self.encounter(subject, &visit)));
            visit.urn = Some(urn);
            for _ in 1..(records - first).min(RECORDS_PER_VISIT) {
                let record = self.record(subject, &visit);
                self.push_new(out, record);
            }
        }
    }

    fn push_new(&mut self, out: &mut Vec<Value>, resource: Value) {
        let urn = self.urn();
        out.push(entry(&urn, resource));
    }

    fn gender(&mut self) -> &'static str {
        match self.rng.gen_range(0..100) {
            0..49 => "female",
            49..98 => "male",
            98 => "other",
            _ => "unknown",
        }
    }

    fn given_names(&mut self, gender: &str) -> Vec<&'static str> {
        let pool = match gender {
            "female" => names::GIVEN_FEMALE,
            "male" => names::GIVEN_MALE,
            _ if self.rng.gen_bool(0.5) => names::GIVEN_FEMALE,
            _ => names::GIVEN_MALE,
        };
        let count = if self.rng.gen_bool(0.3) { 2 } else { 1 };
        pool.choose_multiple(&mut self.rng, count)
            .copied()
            .collect()
    }

    fn family_name(&mut self) -> &'static str {
        let pool = if self.rng.gen_bool(COMMON_FAMILY_RATE) {
            &names::FAMILY[..names::COMMON_FAMILY]
        } else {
            names::FAMILY
        };
        self.pick::<&str>(pool)
    }

    fn birth_date(&mut self) -> NaiveDate {
        let days = self.rng.gen_range(0..=MAX_AGE_DAYS);
        self.today - Days::new(days)
    }

    fn phone(&mut self) -> String {
        let exchange = self.rng.gen_range(200..1000);
        let line = self.rng.gen_range(0..10_000);
        format!("+1-555-{exchange:03}-{line:04}")
    }

    /// `NID` + 9 digits, unique per patient index (a permutation of 0..10^9).
    fn national_id(&mut self) -> String {
        let index = self.next_patient % NID_SPACE;
        self.next_patient += 1;
        format!("NID{:09}", (index * NID_STEP + self.nid_offset) % NID_SPACE)
    }

    fn address(&mut self) -> Value {
        let number = self.rng.gen_range(1..400);
        let street = self.pick(names::STREETS);
        let kind = self.pick(names::STREET_KINDS);
        json!({
            "use": "home",
            "line": [format!("{number} {street} {kind}")],
            "city": self.pick(names::CITIES),
            "postalCode": format!("{:05}", self.rng.gen_range(1000..100_000)),
        })
    }

    /// A `urn:uuid:` with a version 4 UUID drawn from the seeded rng.
    fn urn(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        format!(
            "urn:uuid:{}",
            uuid::Builder::from_random_bytes(bytes).into_uuid()
        )
    }

    fn pick<T>(&mut self, items: &'static [T]) -> &'static T {
        items.choose(&mut self.rng).expect("non-empty pool")
    }

    /// A visit time window within the last years, never before birth.
    fn period(&mut self, subject: &Subject) -> Visit {
        let earliest = subject.birth.max(self.today - Days::new(VISIT_WINDOW_DAYS));
        let span = u64::try_from((self.today - earliest).num_days()).unwrap_or(0);
        let day = earliest + Days::new(self.rng.gen_range(0..=span));
        let hour = self.rng.gen_range(8..18);
        let minute = self.rng.gen_range(0..4) * 15;
        let start = day
            .and_hms_opt(hour, minute, 0)
            .expect("valid time")
            .and_utc();
        let end = start + Duration::minutes(self.rng.gen_range(15..=120));
        Visit {
            urn: None,
            start,
            end,
        }
    }

    /// A moment within the visit.
    fn moment(&mut self, visit: &Visit) -> DateTime<Utc> {
        let minutes = (visit.end - visit.start).num_minutes();
        visit.start + Duration::minutes(self.rng.gen_range(0..=minutes))
    }

    fn encounter(&mut self, subject: &Subject, visit: &Visit) -> Value {
        json!({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [{"text": self.pick(clinical::VISIT_TYPES)}],
            "subject": reference(&subject.urn),
            "period": {"start": datetime(visit.start), "end": datetime(visit.end)},
        })
    }

    /// One clinical resource of a weighted random kind.
    fn record(&mut self, subject: &Subject, visit: &Visit) -> Value {
        let mut resource = match self.rng.gen_range(0..100) {
            0..60 => self.vital_sign(subject, visit),
            60..75 => self.condition(subject, visit),
            75..87 => self.medication_request(subject, visit),
            87..94 => self.allergy(subject, visit),
            _ => self.procedure(subject, visit),
        };
        if let Some(urn) = &visit.urn {
            resource["encounter"] = reference(urn);
        }
        resource
    }

    fn vital_sign(&mut self, subject: &Subject, visit: &Visit) -> Value {
        let vital = self.pick(clinical::VITALS);
        let when = self.moment(visit);
        let age = age_at(subject.birth, when.date_naive());
        let (value, flag) = self.vital_value(vital, age);
        let mut observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [codeable(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")],
            "code": {
                "coding": [{"system": LOINC, "code": vital.loinc, "display": vital.display}],
                "text": vital.display,
            },
            "subject": reference(&subject.urn),
            "effectiveDateTime": datetime(when),
            "valueQuantity": {
                "value": number(value, vital.decimals),
                "unit": vital.unit,
                "system": UCUM,
                "code": vital.ucum,
            },
        });
        if let Some((code, display)) = flag {
            observation["interpretation"] = json!([codeable(INTERPRETATION, code, display)]);
        }
        observation
    }

    fn vital_value(&mut self, vital: &Vital, age: u32) -> (f64, Option<Flag>) {
        let ranges = clinical::vital_ranges(vital.loinc, age);
        let ((low, high), mut flag) = self.choose_range(&ranges);
        if vital.loinc == clinical::WEIGHT {
            flag = None; // weight is not flagged high/low by itself
        }
        let raw = self.rng.gen_range(low..=high);
        (round(raw, vital.decimals), flag)
    }

    /// The normal range, or (at [`ABNORMAL_RATE`]) an abnormal one.
    fn choose_range(&mut self, ranges: &Ranges) -> ((f64, f64), Option<Flag>) {
        if !self.rng.gen_bool(ABNORMAL_RATE) {
            return (ranges.normal, None);
        }
        match (ranges.low, ranges.high) {
            (Some(low), Some(_)) if self.rng.gen_bool(0.5) => (low, Some(LOW)),
            (_, Some(high)) => (high, Some(HIGH)),
            (Some(low), None) => (low, Some(LOW)),
            (None, None) => (ranges.normal, None),
        }
    }

    fn condition(&mut self, subject: &Subject, visit: &Visit) -> Value {
        let age = age_at(subject.birth, visit.start.date_naive());
        let eligible: Vec<_> = clinical::CONDITIONS
            .iter()
            .filter(|(_, _, min_age)| *min_age <= age)
            .collect();
        let (code, display, _) = eligible
            .choose(&mut self.rng)
            .expect("conditions for age 0");
        json!({
            "resourceType": "Condition",
            "clinicalStatus": codeable(CONDITION_CLINICAL, "active", "Active"),
            "verificationStatus": codeable(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": [codeable(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
            "code": {
                "coding": [{"system": ICD10_CM, "code": code, "display": display}],
                "text": display,
            },
            "subject": reference(&subject.urn),
            "recordedDate": datetime(visit.start),
        })
    }

    fn allergy(&mut self, subject: &Subject, visit: &Visit) -> Value {
        let (substance, category, reaction) = self.pick(clinical::ALLERGIES);
        let criticality = if self.rng.gen_bool(0.2) {
            "high"
        } else {
            "low"
        };
        json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": codeable(ALLERGY_CLINICAL, "active", "Active"),
            "verificationStatus": codeable(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
            "type": "allergy",
            "category": [category],
            "criticality": criticality,
            "code": {"text": substance},
            "patient": reference(&subject.urn),
            "recordedDate": datetime(visit.start),
            "reaction": [{"manifestation": [{"text": reaction}]}],
        })
    }

    fn medication_request(&mut self, subject: &Subject, visit: &Visit) -> Value {
        let (medication, dosage) = self.pick(clinical::MEDICATIONS);
        json!({
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": medication},
            "subject": reference(&subject.urn),
            "authoredOn": datetime(self.moment(visit)),
            "dosageInstruction": [{"text": dosage}],
        })
    }

    fn procedure(&mut self, subject: &Subject, visit: &Visit) -> Value {
        json!({
            "resourceType": "Procedure",
            "status": "completed",
            "code": {"text": self.pick(clinical::PROCEDURES)},
            "subject": reference(&subject.urn),
            "performedDateTime": datetime(self.moment(visit)),
        })
    }
}

/// SplitMix64 finaliser: spreads related seeds over the whole `u64` range.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bundle(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn entry(full_url: &str, resource: Value) -> Value {
    let kind = resource["resourceType"].clone();
    json!({
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": kind},
    })
}

fn reference(urn: &str) -> Value {
    json!({ "reference": urn })
}

fn codeable(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}]})
}

fn date(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn datetime(moment: DateTime<Utc>) -> String {
    moment.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn age_at(birth: NaiveDate, on: NaiveDate) -> u32 {
    on.years_since(birth).unwrap_or(0)
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// Integers for whole-number vitals, so `72` and not `72.0` is sent.
fn number(value: f64, decimals: i32) -> Value {
    if decimals == 0 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests;
