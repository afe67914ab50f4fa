//! The resource types Kiorex holds, and what protects each.

use kiorex_domain::permission::Resource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Patient,
    Practitioner,
    Organization,
    Encounter,
    Observation,
    Condition,
    AllergyIntolerance,
    MedicationRequest,
    Procedure,
    /// A clinician's note on an encounter (see `kiorex-portal` notes for why this type).
    ClinicalImpression,
    /// A formulary entry of the hospital (not patient data).
    Medication,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 11] = [
        ResourceKind::Patient,
        ResourceKind::Practitioner,
        ResourceKind::Organization,
        ResourceKind::Encounter,
        ResourceKind::Observation,
        ResourceKind::Condition,
        ResourceKind::AllergyIntolerance,
        ResourceKind::MedicationRequest,
        ResourceKind::Procedure,
        ResourceKind::ClinicalImpression,
        ResourceKind::Medication,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Patient => "Patient",
            ResourceKind::Practitioner => "Practitioner",
            ResourceKind::Organization => "Organization",
            ResourceKind::Encounter => "Encounter",
            ResourceKind::Observation => "Observation",
            ResourceKind::Condition => "Condition",
            ResourceKind::AllergyIntolerance => "AllergyIntolerance",
            ResourceKind::MedicationRequest => "MedicationRequest",
            ResourceKind::Procedure => "Procedure",
            ResourceKind::ClinicalImpression => "ClinicalImpression",
            ResourceKind::Medication => "Medication",
        }
    }

    pub fn from_name(name: &str) -> Option<ResourceKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The permission resource that guards this type (`patient:read`, `observation:write`, …).
    pub fn guarded_by(self) -> Resource {
        match self {
            ResourceKind::Patient => Resource::Patient,
            ResourceKind::Practitioner => Resource::Practitioner,
            ResourceKind::Organization => Resource::Facility,
            ResourceKind::Encounter => Resource::Encounter,
            ResourceKind::Observation => Resource::Observation,
            ResourceKind::Condition => Resource::Condition,
            ResourceKind::AllergyIntolerance => Resource::Allergy,
            ResourceKind::MedicationRequest => Resource::Medication,
            ResourceKind::Procedure => Resource::Procedure,
            // Notes are clinical findings: written and read by those who record and read
            // observations (physicians, nurses), never by the front desk.
            ResourceKind::ClinicalImpression => Resource::Observation,
            ResourceKind::Medication => Resource::Medication,
        }
    }

    /// Whether the type belongs to a patient's record (its facility is the patient's).
    pub fn in_patient_compartment(self) -> bool {
        !matches!(
            self,
            ResourceKind::Patient
                | ResourceKind::Practitioner
                | ResourceKind::Organization
                | ResourceKind::Medication
        )
    }
}
