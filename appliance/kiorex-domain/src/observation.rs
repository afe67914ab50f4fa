//! Observation interpretation: where a measured value falls against its reference range.
//!
//! Reference ranges for laboratory values are configured by each laboratory; the defaults below
//! cover adult vital signs only and are marked as defaults wherever they are shown.

use serde::{Deserialize, Serialize};

/// HL7 v3 ObservationInterpretation codes Kiorex computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpretation {
    /// Critically low: act now.
    LL,
    Low,
    Normal,
    High,
    /// Critically high: act now.
    HH,
}

impl Interpretation {
    /// The code in `http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation`.
    pub fn code(self) -> &'static str {
        match self {
            Interpretation::LL => "LL",
            Interpretation::Low => "L",
            Interpretation::Normal => "N",
            Interpretation::High => "H",
            Interpretation::HH => "HH",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Interpretation::LL => "Critical low",
            Interpretation::Low => "Low",
            Interpretation::Normal => "Normal",
            Interpretation::High => "High",
            Interpretation::HH => "Critical high",
        }
    }
}

/// A normal range with optional critical limits, in one UCUM unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRange {
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub critical_low: Option<f64>,
    pub critical_high: Option<f64>,
    pub unit: &'static str,
    /// True for the ranges shipped with Kiorex rather than set by the laboratory.
    pub is_default: bool,
}

/// Where `value` falls against `range`. Critical limits win over the normal range.
pub fn interpret(value: f64, range: &ReferenceRange) -> Interpretation {
    if range.critical_low.is_some_and(|limit| value <= limit) {
        Interpretation::LL
    } else if range.critical_high.is_some_and(|limit| value >= limit) {
        Interpretation::HH
    } else if range.low.is_some_and(|limit| value < limit) {
        Interpretation::Low
    } else if range.high.is_some_and(|limit| value > limit) {
        Interpretation::High
    } else {
        Interpretation::Normal
    }
}

/// A vital sign Kiorex knows by its LOINC code.
#[derive(Debug, Clone, PartialEq)]
pub struct VitalSign {
    pub loinc: &'static str,
    pub display: &'static str,
    pub range: ReferenceRange,
}

const fn adult(
    low: f64,
    high: f64,
    critical_low: f64,
    critical_high: f64,
    unit: &'static str,
) -> ReferenceRange {
    ReferenceRange {
        low: Some(low),
        high: Some(high),
        critical_low: Some(critical_low),
        critical_high: Some(critical_high),
        unit,
        is_default: true,
    }
}

/// Default adult ranges for vital signs (sensible defaults, marked as such; a site overrides them).
static VITAL_SIGNS: &[VitalSign] = &[
    VitalSign {
        loinc: "8867-4",
        display: "Heart rate",
        range: adult(60.0, 100.0, 40.0, 140.0, "/min"),
    },
    VitalSign {
        loinc: "8480-6",
        display: "Systolic blood pressure",
        range: adult(90.0, 140.0, 70.0, 200.0, "mm[Hg]"),
    },
    VitalSign {
        loinc: "8462-4",
        display: "Diastolic blood pressure",
        range: adult(60.0, 90.0, 40.0, 120.0, "mm[Hg]"),
    },
    VitalSign {
        loinc: "8310-5",
        display: "Body temperature",
        range: adult(36.1, 37.8, 35.0, 40.0, "Cel"),
    },
    VitalSign {
        loinc: "9279-1",
        display: "Respiratory rate",
        range: adult(12.0, 20.0, 8.0, 30.0, "/min"),
    },
    VitalSign {
        loinc: "59408-5",
        display: "Oxygen saturation",
        range: adult(94.0, 100.0, 88.0, 101.0, "%"),
    },
    VitalSign {
        loinc: "29463-7",
        display: "Body weight",
        range: unbounded("kg"),
    },
    VitalSign {
        loinc: "8302-2",
        display: "Body height",
        range: unbounded("cm"),
    },
];

/// The vital sign with this LOINC code, if Kiorex has a default range for it.
pub fn vital_sign(loinc: &str) -> Option<&'static VitalSign> {
    VITAL_SIGNS.iter().find(|v| v.loinc == loinc)
}

const fn unbounded(unit: &'static str) -> ReferenceRange {
    ReferenceRange {
        low: None,
        high: None,
        critical_low: None,
        critical_high: None,
        unit,
        is_default: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heart_rate() -> ReferenceRange {
        vital_sign("8867-4").unwrap().range.clone()
    }

    #[test]
    fn heart_rate_bands() {
        let r = heart_rate();
        assert_eq!(interpret(72.0, &r), Interpretation::Normal);
        assert_eq!(
            interpret(60.0, &r),
            Interpretation::Normal,
            "the limits are inside the range"
        );
        assert_eq!(interpret(100.0, &r), Interpretation::Normal);
        assert_eq!(interpret(55.0, &r), Interpretation::Low);
        assert_eq!(interpret(120.0, &r), Interpretation::High);
        assert_eq!(interpret(40.0, &r), Interpretation::LL);
        assert_eq!(interpret(180.0, &r), Interpretation::HH);
    }

    #[test]
    fn weight_has_no_abnormal_band() {
        let r = &vital_sign("29463-7").unwrap().range;
        assert_eq!(interpret(300.0, r), Interpretation::Normal);
        assert_eq!(r.unit, "kg");
    }

    #[test]
    fn unknown_code_has_no_default_range() {
        assert!(vital_sign("1234-5").is_none());
    }
}
