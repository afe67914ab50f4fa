//! The staff portal's chart through the records service: the patient (an audited read), the
//! care-relationship check (break-the-glass otherwise), every record of the patient the caller's
//! roles may read, and one audit entry for the chart view.
//!
//! One entry per chart view, naming the patient and how many records of each type were shown,
//! as the document list does, rather than one per record as `$everything` writes: a five-year
//! chart holds thousands of records, and an entry for each on every opening would multiply the
//! audit log by that much without telling the privacy officer more than "this person opened
//! this patient's chart at this time". The records shown are the patient's live records at that
//! moment, which the version history can reconstruct.

use crate::audit::Event;
use crate::error::ApiError;
use crate::records::{self, Ctx};
use crate::state::AppState;
use kiorex_domain::permission::{Action, Permission};
use kiorex_fhir::ResourceKind;
use kiorex_store::chart::ChartResultRow;
use kiorex_store::resources::Stored;
use std::collections::BTreeMap;

/// What the chart of a patient shows: the patient's records other than observations, whole,
/// and the results (observations) as the chart shows them, newest first.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub records: Vec<Stored>,
    pub results: Vec<ChartResultRow>,
}

/// The chart of `patient` (read by the caller with [`records::read`], which checks and audits
/// the read of the patient itself), with what the caller's roles may read.
pub async fn open(state: &AppState, ctx: &Ctx, patient: &Stored) -> Result<Chart, ApiError> {
    records::ensure_clinical_access(state, ctx, patient, Action::Read).await?;
    let patient_id = patient.id;
    let (records, results) = state
        .store
        .run(move |conn| {
            Ok((
                kiorex_store::chart::records_of(conn, patient_id)?,
                kiorex_store::chart::results_of(conn, patient_id)?,
            ))
        })
        .await?;
    let principal = &ctx.principal;
    let may_read = |kind: ResourceKind, facility| {
        kind.in_patient_compartment()
            && principal.may(Permission::new(kind.guarded_by(), Action::Read), facility)
    };
    let chart = Chart {
        records: records
            .into_iter()
            .filter(|s| {
                ResourceKind::from_name(&s.resource_type)
                    .is_some_and(|k| may_read(k, s.facility_id))
            })
            .collect(),
        results: results
            .into_iter()
            .filter(|r| may_read(ResourceKind::Observation, r.facility_id))
            .collect(),
    };
    state
        .audit
        .by(
            principal,
            &ctx.request_id,
            vec![Event {
                action: "chart",
                outcome: "success",
                resource_type: "Patient",
                resource_id: patient.id.to_string(),
                patient_id: Some(patient.id),
                facility_id: Some(patient.facility_id),
                detail: format!("chart shown: {}", shown(&chart)),
            }],
        )
        .await?;
    Ok(chart)
}

/// How many records of each type the chart showed, for the audit entry.
fn shown(chart: &Chart) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &chart.records {
        *counts.entry(r.resource_type.as_str()).or_default() += 1;
    }
    if !chart.results.is_empty() {
        counts.insert("Observation", chart.results.len());
    }
    counts
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}
