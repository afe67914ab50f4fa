//! Clinical code tables: vital signs (LOINC + UCUM), conditions (ICD-10-CM),
//! allergies, medications, procedures and visit types.

/// A vital-sign Observation kind.
pub struct Vital {
    pub loinc: &'static str,
    pub display: &'static str,
    /// UCUM code, e.g. `mm[Hg]`.
    pub ucum: &'static str,
    /// Human readable unit shown to clinicians.
    pub unit: &'static str,
    /// Decimal places of the value.
    pub decimals: i32,
}

pub const HEART_RATE: &str = "8867-4";
pub const SYSTOLIC: &str = "8480-6";
pub const DIASTOLIC: &str = "8462-4";
pub const TEMPERATURE: &str = "8310-5";
pub const RESPIRATORY_RATE: &str = "9279-1";
pub const SPO2: &str = "59408-5";
pub const WEIGHT: &str = "29463-7";
pub const HEIGHT: &str = "8302-2";

const fn vital(
    loinc: &'static str,
    display: &'static str,
    ucum: &'static str,
    unit: &'static str,
    decimals: i32,
) -> Vital {
    Vital {
        loinc,
        display,
        ucum,
        unit,
        decimals,
    }
}

pub const VITALS: &[Vital] = &[
    vital(HEART_RATE, "Heart rate", "/min", "beats/minute", 0),
    vital(SYSTOLIC, "Systolic blood pressure", "mm[Hg]", "mmHg", 0),
    vital(DIASTOLIC, "Diastolic blood pressure", "mm[Hg]", "mmHg", 0),
    vital(TEMPERATURE, "Body temperature", "Cel", "°C", 1),
    vital(
        RESPIRATORY_RATE,
        "Respiratory rate",
        "/min",
        "breaths/minute",
        0,
    ),
    vital(
        SPO2,
        "Oxygen saturation in Arterial blood by Pulse oximetry",
        "%",
        "%",
        0,
    ),
    vital(WEIGHT, "Body weight", "kg", "kg", 1),
    vital(HEIGHT, "Body height", "cm", "cm", 0),
];

/// Value ranges of one vital sign for one age: a normal range and the
/// abnormal ranges below and above it (if clinically meaningful).
pub struct Ranges {
    pub normal: (f64, f64),
    pub low: Option<(f64, f64)>,
    pub high: Option<(f64, f64)>,
}

const fn ranges(normal: (f64, f64), low: Option<(f64, f64)>, high: Option<(f64, f64)>) -> Ranges {
    Ranges { normal, low, high }
}

/// Plausible ranges for `loinc` at `age` (in whole years).
pub fn vital_ranges(loinc: &str, age: u32) -> Ranges {
    match loinc {
        HEART_RATE => heart_rate(age),
        SYSTOLIC => ranges((100.0, 135.0), Some((80.0, 95.0)), Some((140.0, 190.0))),
        DIASTOLIC => ranges((60.0, 85.0), Some((45.0, 55.0)), Some((90.0, 115.0))),
        TEMPERATURE => ranges((36.1, 37.4), Some((34.5, 35.5)), Some((37.8, 40.2))),
        RESPIRATORY_RATE => respiratory_rate(age),
        SPO2 => ranges((95.0, 100.0), Some((84.0, 93.0)), None),
        WEIGHT => weight(age),
        HEIGHT => height(age),
        other => panic!("no ranges for LOINC {other}"),
    }
}

fn heart_rate(age: u32) -> Ranges {
    match age {
        0 => ranges((100.0, 160.0), Some((70.0, 90.0)), Some((170.0, 200.0))),
        1..=11 => ranges((70.0, 120.0), Some((50.0, 60.0)), Some((130.0, 170.0))),
        _ => ranges((55.0, 100.0), Some((35.0, 50.0)), Some((105.0, 150.0))),
    }
}

fn respiratory_rate(age: u32) -> Ranges {
    match age {
        0 => ranges((30.0, 50.0), Some((18.0, 25.0)), Some((55.0, 70.0))),
        1..=11 => ranges((18.0, 30.0), Some((10.0, 15.0)), Some((32.0, 45.0))),
        _ => ranges((12.0, 20.0), Some((8.0, 10.0)), Some((22.0, 32.0))),
    }
}

fn weight(age: u32) -> Ranges {
    let normal = match age {
        0 => (3.0, 10.0),
        1 => (9.0, 13.0),
        2..=17 => {
            let mid = 12.0 + f64::from(age - 2) * 3.6;
            (mid - 4.0, mid + 6.0)
        }
        _ => (48.0, 105.0),
    };
    let high = (age >= 18).then_some((110.0, 160.0));
    ranges(normal, None, high)
}

fn height(age: u32) -> Ranges {
    let normal = match age {
        0 => (48.0, 76.0),
        1 => (72.0, 90.0),
        2..=17 => {
            let mid = 86.0 + f64::from(age - 2) * 6.2;
            (mid - 8.0, mid + 8.0)
        }
        _ => (150.0, 195.0),
    };
    ranges(normal, None, None)
}

pub const ICD10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// ICD-10-CM code, display, and minimum patient age in years.
pub const CONDITIONS: &[(&str, &str, u32)] = &[
    (
        "E11.9",
        "Type 2 diabetes mellitus without complications",
        18,
    ),
    ("I10", "Essential (primary) hypertension", 18),
    ("J45.909", "Unspecified asthma, uncomplicated", 2),
    ("N39.0", "Urinary tract infection, site not specified", 0),
    (
        "K21.9",
        "Gastro-esophageal reflux disease without esophagitis",
        0,
    ),
    ("E78.5", "Hyperlipidemia, unspecified", 18),
    ("J06.9", "Acute upper respiratory infection, unspecified", 0),
    ("M54.50", "Low back pain, unspecified", 12),
    ("F41.1", "Generalized anxiety disorder", 12),
    (
        "F32.9",
        "Major depressive disorder, single episode, unspecified",
        12,
    ),
    ("E03.9", "Hypothyroidism, unspecified", 0),
    ("I48.91", "Unspecified atrial fibrillation", 30),
    (
        "J44.9",
        "Chronic obstructive pulmonary disease, unspecified",
        35,
    ),
    ("N18.30", "Chronic kidney disease, stage 3 unspecified", 30),
    ("E66.9", "Obesity, unspecified", 6),
    (
        "G43.909",
        "Migraine, unspecified, not intractable, without status migrainosus",
        6,
    ),
    ("J02.9", "Acute pharyngitis, unspecified", 0),
    ("H66.90", "Otitis media, unspecified, unspecified ear", 0),
    ("K59.00", "Constipation, unspecified", 0),
    (
        "I25.10",
        "Atherosclerotic heart disease of native coronary artery without angina pectoris",
        35,
    ),
    ("D64.9", "Anemia, unspecified", 0),
    ("M17.9", "Osteoarthritis of knee, unspecified", 35),
    ("L20.9", "Atopic dermatitis, unspecified", 0),
];

/// Substance, AllergyIntolerance category, typical reaction.
pub const ALLERGIES: &[(&str, &str, &str)] = &[
    ("Penicillin", "medication", "Hives"),
    ("Amoxicillin", "medication", "Skin rash"),
    ("Sulfonamide antibiotics", "medication", "Skin rash"),
    ("Aspirin", "medication", "Wheezing"),
    ("Ibuprofen", "medication", "Angioedema"),
    ("Codeine", "medication", "Nausea and vomiting"),
    ("Iodinated contrast media", "medication", "Hives"),
    ("Peanut", "food", "Anaphylaxis"),
    ("Tree nuts", "food", "Throat swelling"),
    ("Shellfish", "food", "Hives"),
    ("Egg", "food", "Eczema flare"),
    ("Cow's milk", "food", "Diarrhea"),
    ("Latex", "environment", "Contact dermatitis"),
    ("Bee venom", "environment", "Anaphylaxis"),
    ("House dust mite", "environment", "Rhinitis"),
    ("Grass pollen", "environment", "Rhinitis"),
    ("Cat dander", "environment", "Conjunctivitis"),
];

/// Medication text and dosage instruction text.
pub const MEDICATIONS: &[(&str, &str)] = &[
    ("Metformin 500 mg tablet", "1 tablet twice daily with meals"),
    ("Lisinopril 10 mg tablet", "1 tablet once daily"),
    ("Amlodipine 5 mg tablet", "1 tablet once daily"),
    ("Atorvastatin 20 mg tablet", "1 tablet once daily at night"),
    (
        "Salbutamol 100 micrograms/dose inhaler",
        "2 puffs as needed, up to 4 times daily",
    ),
    (
        "Omeprazole 20 mg capsule",
        "1 capsule once daily before breakfast",
    ),
    (
        "Levothyroxine 50 micrograms tablet",
        "1 tablet once daily on an empty stomach",
    ),
    ("Sertraline 50 mg tablet", "1 tablet once daily"),
    (
        "Amoxicillin 500 mg capsule",
        "1 capsule three times daily for 7 days",
    ),
    (
        "Paracetamol 500 mg tablet",
        "1-2 tablets every 6 hours as needed, max 8 daily",
    ),
    (
        "Ibuprofen 400 mg tablet",
        "1 tablet every 8 hours with food as needed",
    ),
    ("Metoprolol 50 mg tablet", "1 tablet twice daily"),
    ("Apixaban 5 mg tablet", "1 tablet twice daily"),
    (
        "Nitrofurantoin 100 mg capsule",
        "1 capsule twice daily for 5 days",
    ),
    (
        "Insulin glargine 100 units/mL pen",
        "20 units subcutaneously once daily at bedtime",
    ),
    ("Losartan 50 mg tablet", "1 tablet once daily"),
    ("Cetirizine 10 mg tablet", "1 tablet once daily"),
];

pub const PROCEDURES: &[&str] = &[
    "Venipuncture",
    "Electrocardiogram",
    "Chest X-ray",
    "Influenza vaccination",
    "Spirometry",
    "Wound dressing",
    "Urinalysis",
    "Abdominal ultrasound",
    "Suture of skin laceration",
    "Ear irrigation",
    "Blood glucose measurement",
    "Physical therapy session",
];

pub const VISIT_TYPES: &[&str] = &[
    "General practice consultation",
    "Follow-up visit",
    "Chronic disease review",
    "Walk-in clinic visit",
    "Specialist outpatient consultation",
    "Pre-operative assessment",
];
