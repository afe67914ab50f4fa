//! Patient registration at the front desk: likely duplicates with scores, a refusal to create
//! over a strong match without an explicit override, and reversible merges of two records.

use crate::audit::Event;
use crate::error::ApiError;
use crate::records::{Ctx, Known, create_in};
use crate::state::AppState;
use chrono::{NaiveDate, Utc};
use diesel::PgConnection;
use kiorex_domain::duplicates::{
    MatchScore, MatchStrength, POSSIBLE, PatientTraits, birth_date_keys, score,
};
use kiorex_domain::names::phone_digits;
use kiorex_domain::permission::{Action, Permission, Resource};
use kiorex_fhir::ResourceKind;
use kiorex_fhir::parse::parse_value;
use kiorex_store::merge::{self, MergeRecord, MergedResource};
use kiorex_store::resources::{self, Change, Draft, Stored};
use kiorex_store::review::{self, BlockingKeys};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

/// The facts registration compares, read from a stored or submitted FHIR Patient.
pub fn traits_of(patient: &Value) -> PatientTraits {
    let name = patient.pointer("/name/0");
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    PatientTraits {
        family: name
            .and_then(|n| n.get("family"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        given: strings(name.and_then(|n| n.get("given"))),
        birth_date: patient
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
        gender: patient
            .get("gender")
            .and_then(Value::as_str)
            .map(str::to_owned),
        identifiers: patient
            .get("identifier")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| {
                        Some((
                            i.get("system")?.as_str()?.to_owned(),
                            i.get("value")?.as_str()?.to_owned(),
                        ))
                    })
                    .filter(|(system, _)| !system.starts_with(crate::records::MRN_SYSTEM_PREFIX))
                    .collect()
            })
            .unwrap_or_default(),
        phones: patient
            .get("telecom")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|c| c.get("value")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Existing patients of these facilities that may be the same person, best first.
pub fn likely_duplicates(
    conn: &mut PgConnection,
    facilities: &[Uuid],
    traits: &PatientTraits,
    exclude: Option<Uuid>,
) -> Result<Vec<(Stored, MatchScore)>, ApiError> {
    let keys = BlockingKeys {
        birth_dates: traits.birth_date.map(birth_date_keys).unwrap_or_default(),
        identifiers: traits.identifiers.iter().map(|(_, v)| v.clone()).collect(),
        phones: traits
            .phones
            .iter()
            .map(|p| phone_digits(p))
            .filter(|p| !p.is_empty())
            .collect(),
    };
    let mut scored: Vec<(Stored, MatchScore)> = review::candidates(conn, facilities, &keys, 50)?
        .into_iter()
        .filter(|c| Some(c.id) != exclude && c.content.get("active") != Some(&Value::Bool(false)))
        .map(|c| {
            let s = score(traits, &traits_of(&c.content));
            (c, s)
        })
        .filter(|(_, s)| s.score >= POSSIBLE)
        .collect();
    scored.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    scored.truncate(10);
    Ok(scored)
}

/// A registration from the front desk.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The facility registering the patient; may be left out by staff who work at one facility.
    pub facility_id: Option<Uuid>,
    pub family: String,
    pub given: Vec<String>,
    /// female | male | other | unknown
    pub gender: String,
    /// YYYY-MM-DD
    pub birth_date: String,
    pub phone: Option<String>,
    pub national_id: Option<String>,
    pub address: Option<Address>,
    /// Set to register despite a strong duplicate match; the reason is audited.
    pub override_reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub line: Vec<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

pub const NATIONAL_ID_SYSTEM: &str = "urn:kiorex:national-id";

impl Registration {
    fn to_fhir(&self) -> Value {
        let mut patient = json!({
            "resourceType": "Patient",
            "active": true,
            "name": [{"use": "official", "family": self.family, "given": self.given}],
            "gender": self.gender,
            "birthDate": self.birth_date,
        });
        if let Some(phone) = &self.phone {
            patient["telecom"] = json!([{"system": "phone", "value": phone}]);
        }
        if let Some(nid) = &self.national_id {
            patient["identifier"] = json!([{"system": NATIONAL_ID_SYSTEM, "value": nid}]);
        }
        if let Some(a) = &self.address {
            let mut address = json!({"line": a.line});
            for (key, value) in [
                ("city", &a.city),
                ("postalCode", &a.postal_code),
                ("country", &a.country),
            ] {
                if let Some(v) = value {
                    address[key] = json!(v);
                }
            }
            patient["address"] = json!([address]);
        }
        if let Some(f) = self.facility_id {
            patient["managingOrganization"] = json!({"reference": format!("Organization/{f}")});
        }
        patient
    }
}

/// A likely duplicate as the registrar sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Candidate {
    pub patient_id: Uuid,
    pub score: f64,
    /// weak | possible | strong
    pub strength: String,
    pub reasons: Vec<String>,
    #[schema(value_type = Object)]
    pub patient: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    #[schema(value_type = Object)]
    pub patient: Value,
    pub mrn: Option<String>,
    pub possible_duplicates: Vec<Candidate>,
}

fn candidate(stored: Stored, s: MatchScore) -> Candidate {
    let strength = match s.strength {
        MatchStrength::Strong => "strong",
        MatchStrength::Possible => "possible",
        MatchStrength::Weak => "weak",
    };
    Candidate {
        patient_id: stored.id,
        score: (s.score * 1000.0).round() / 1000.0,
        strength: strength.into(),
        reasons: s.reasons,
        patient: stored.content,
    }
}

/// Registers a patient, or refuses with the strong matches when there is no override.
pub async fn register(
    state: &AppState,
    ctx: &Ctx,
    registration: Registration,
) -> Result<Registered, ApiError> {
    let parsed =
        parse_value(ResourceKind::Patient, registration.to_fhir()).map_err(ApiError::invalid)?;
    let traits = traits_of(&parsed.json);
    let facilities = ctx
        .principal
        .facilities_with(Permission::new(Resource::Patient, Action::Read));
    let override_reason = registration
        .override_reason
        .clone()
        .filter(|r| !r.trim().is_empty());
    let c = ctx.clone();
    let (created, candidates) = state
        .store
        .transaction_with(move |conn| -> Result<_, ApiError> {
            {
                let candidates = likely_duplicates(conn, &facilities, &traits, None)?;
                if override_reason.is_none()
                    && candidates
                        .iter()
                        .any(|(_, s)| s.strength == MatchStrength::Strong)
                {
                    return Ok((None, candidates));
                }
                let created = create_in(
                    conn,
                    &c,
                    parsed,
                    None,
                    &write_context(&c),
                    Uuid::new_v4(),
                    &mut Known::default(),
                )?;
                Ok((Some(created.stored), candidates))
            }
        })
        .await?;
    let candidates: Vec<Candidate> = candidates
        .into_iter()
        .map(|(s, m)| candidate(s, m))
        .collect();
    let events: Vec<Event<'_>> = candidates
        .iter()
        .map(|c| Event {
            action: "duplicate-check",
            outcome: "success",
            resource_type: "Patient",
            resource_id: c.patient_id.to_string(),
            patient_id: Some(c.patient_id),
            facility_id: None,
            detail: format!("score {}", c.score),
        })
        .collect();
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, events)
        .await?;
    let Some(stored) = created else {
        return Err(ApiError::conflict("KX-PAT-001", "This patient may already be registered. Check the matches, or register anyway with a reason.")
            .with_extra(json!({"duplicates": candidates})));
    };
    let detail = registration
        .override_reason
        .map(|r| format!("registered despite a strong match: {r}"))
        .unwrap_or_default();
    state
        .audit
        .by(
            &ctx.principal,
            &ctx.request_id,
            vec![Event {
                action: "create",
                outcome: "success",
                resource_type: "Patient",
                resource_id: stored.id.to_string(),
                patient_id: Some(stored.id),
                facility_id: Some(stored.facility_id),
                detail,
            }],
        )
        .await?;
    let mrn = stored
        .content
        .pointer("/identifier/0/value")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Registered {
        patient: stored.content,
        mrn,
        possible_duplicates: candidates,
    })
}

fn write_context(ctx: &Ctx) -> resources::WriteContext {
    resources::WriteContext {
        author: ctx.principal.username.clone(),
        request_id: ctx.request_id.clone(),
        at: Utc::now(),
    }
}

/// The result of a merge.
#[derive(Debug, Serialize, ToSchema)]
pub struct Merged {
    pub merge_id: Uuid,
    pub survivor_id: Uuid,
    pub retired_id: Uuid,
    /// How many records were moved to the survivor.
    pub records_moved: usize,
}

/// Merges `loser` into `survivor`: every record of the loser is re-pointed to the survivor (a
/// new version each), the loser is retired with a `replaced-by` link. Undone by [`unmerge`].
pub async fn merge_patients(
    state: &AppState,
    ctx: &Ctx,
    loser: Uuid,
    survivor: Uuid,
) -> Result<Merged, ApiError> {
    if loser == survivor {
        return Err(ApiError::bad_request(
            "KX-PAT-002",
            "a patient cannot be merged into itself",
        ));
    }
    let c = ctx.clone();
    let merged = state
        .store
        .transaction_with(move |conn| merge_in(conn, &c, loser, survivor))
        .await?;
    let events = [loser, survivor]
        .into_iter()
        .map(|p| Event {
            action: "merge",
            outcome: "success",
            resource_type: "Patient",
            resource_id: p.to_string(),
            patient_id: Some(p),
            facility_id: None,
            detail: format!("merge {}", merged.merge_id),
        })
        .collect();
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, events)
        .await?;
    Ok(merged)
}

fn merge_in(
    conn: &mut PgConnection,
    ctx: &Ctx,
    loser_id: Uuid,
    survivor_id: Uuid,
) -> Result<Merged, ApiError> {
    let wctx = write_context(ctx);
    let loser = live_patient(conn, loser_id)?;
    let survivor = live_patient(conn, survivor_id)?;
    if loser.facility_id != survivor.facility_id {
        return Err(ApiError::conflict(
            "KX-PAT-003",
            "only records of the same facility can be merged",
        ));
    }
    if !ctx.principal.may(
        Permission::new(Resource::Patient, Action::Merge),
        loser.facility_id,
    ) {
        return Err(ApiError::forbidden(
            "you may not merge patient records at this facility",
        ));
    }
    if merge::active_for_loser(conn, loser_id)?.is_some()
        || loser.content.get("active") == Some(&Value::Bool(false))
    {
        return Err(ApiError::conflict(
            "KX-PAT-004",
            "this record was already merged into another one",
        ));
    }
    let mut changes = Vec::new();
    let from = format!("Patient/{loser_id}");
    let to = format!("Patient/{survivor_id}");
    for id in resources::referencing(conn, loser_id)? {
        let current = read_any(conn, id)?;
        if current.deleted || current.resource_type == "Patient" {
            continue;
        }
        let mut content = current.content.clone();
        replace_reference(&mut content, &from, &to);
        let after = rewrite(conn, &wctx, &current, content, Change::Merge)?;
        changes.push(MergedResource {
            id,
            before: current.version_id,
            after,
        });
    }
    let mut retired = loser.content.clone();
    retired["active"] = json!(false);
    retired["link"] = json!([{"other": {"reference": to}, "type": "replaced-by"}]);
    let after = rewrite(conn, &wctx, &loser, retired, Change::Merge)?;
    changes.push(MergedResource {
        id: loser_id,
        before: loser.version_id,
        after,
    });
    let mut kept = survivor.content.clone();
    let mut links = kept
        .get("link")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    links.push(json!({"other": {"reference": from}, "type": "replaces"}));
    kept["link"] = Value::Array(links);
    let after = rewrite(conn, &wctx, &survivor, kept, Change::Merge)?;
    changes.push(MergedResource {
        id: survivor_id,
        before: survivor.version_id,
        after,
    });

    let record = MergeRecord {
        id: Uuid::new_v4(),
        facility_id: loser.facility_id,
        survivor_id,
        loser_id,
        merged_at: wctx.at,
        merged_by: ctx.principal.username.clone(),
        request_id: ctx.request_id.clone(),
        changes: serde_json::to_value(&changes).unwrap_or_default(),
        undone_at: None,
        undone_by: None,
    };
    merge::insert(conn, &record)?;
    close_review_items(conn, loser_id, survivor_id, &ctx.principal.username)?;
    Ok(Merged {
        merge_id: record.id,
        survivor_id,
        retired_id: loser_id,
        records_moved: changes.len() - 2,
    })
}

fn read_any(conn: &mut PgConnection, id: Uuid) -> Result<Stored, ApiError> {
    let found = resources::read_many(conn, &[id])?;
    found
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("record {id}")))
}

fn live_patient(conn: &mut PgConnection, id: Uuid) -> Result<Stored, ApiError> {
    match resources::read(conn, "Patient", id) {
        Ok(p) if !p.deleted => Ok(p),
        _ => Err(ApiError::not_found(format!("Patient/{id}"))),
    }
}

/// Writes `content` as a new version of `current`, re-indexed; returns the new version number.
fn rewrite(
    conn: &mut PgConnection,
    wctx: &resources::WriteContext,
    current: &Stored,
    content: Value,
    change: Change,
) -> Result<i32, ApiError> {
    let kind = ResourceKind::from_name(&current.resource_type)
        .ok_or_else(|| ApiError::internal("unknown stored type"))?;
    let parsed = parse_value(kind, content).map_err(ApiError::invalid)?;
    let links = kiorex_fhir::extract::links(&parsed.resource).map_err(ApiError::invalid)?;
    let index = kiorex_fhir::extract::index(&parsed.resource, &links);
    let draft = Draft {
        resource_type: kind.name(),
        id: current.id,
        facility_id: current.facility_id,
        content: parsed.json,
        index,
    };
    Ok(resources::update(conn, wctx, draft, Some(current.version_id), change)?.version_id)
}

fn replace_reference(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "reference" && s == from => *s = to.to_owned(),
                    _ => replace_reference(v, from, to),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_reference(v, from, to)),
        _ => {}
    }
}

fn close_review_items(conn: &mut PgConnection, a: Uuid, b: Uuid, by: &str) -> Result<(), ApiError> {
    let facilities: Vec<Uuid> = kiorex_store::facilities::all(conn)?
        .into_iter()
        .map(|f| f.id)
        .collect();
    for item in review::open(conn, &facilities, 1_000)? {
        if (item.patient_id == a && item.candidate_id == b)
            || (item.patient_id == b && item.candidate_id == a)
        {
            review::resolve(conn, item.id, "merged", by, Utc::now())?;
        }
    }
    Ok(())
}

/// Undoes a merge: each record the merge changed gets back its content from before the merge,
/// as a new version. Refused if any of them changed since (someone worked on the merged chart).
pub async fn unmerge(state: &AppState, ctx: &Ctx, merge_id: Uuid) -> Result<Merged, ApiError> {
    let c = ctx.clone();
    let undone = state
        .store
        .transaction_with(move |conn| -> Result<_, ApiError> {
            {
                let wctx = write_context(&c);
                let record = merge::lock(conn, merge_id)
                    .map_err(|_| ApiError::not_found(format!("merge {merge_id}")))?;
                if record.undone_at.is_some() {
                    return Err(ApiError::conflict(
                        "KX-PAT-005",
                        "this merge was already undone",
                    ));
                }
                if !c.principal.may(
                    Permission::new(Resource::Patient, Action::Merge),
                    record.facility_id,
                ) {
                    return Err(ApiError::forbidden(
                        "you may not undo merges at this facility",
                    ));
                }
                for change in record.changed_resources() {
                    let current = read_any(conn, change.id)?;
                    if current.version_id != change.after {
                        return Err(ApiError::conflict(
                            "KX-PAT-006",
                            format!(
                                "{}/{} changed after the merge; undo those changes first",
                                current.resource_type, current.id
                            ),
                        ));
                    }
                    let before =
                        resources::vread(conn, &current.resource_type, change.id, change.before)?;
                    rewrite(conn, &wctx, &current, before.content, Change::Unmerge)?;
                }
                merge::mark_undone(conn, merge_id, &c.principal.username, wctx.at)?;
                let moved = record.changed_resources().len().saturating_sub(2);
                Ok(Merged {
                    merge_id,
                    survivor_id: record.survivor_id,
                    retired_id: record.loser_id,
                    records_moved: moved,
                })
            }
        })
        .await?;
    let events = [undone.retired_id, undone.survivor_id]
        .into_iter()
        .map(|p| Event {
            action: "unmerge",
            outcome: "success",
            resource_type: "Patient",
            resource_id: p.to_string(),
            patient_id: Some(p),
            facility_id: None,
            detail: format!("merge {merge_id}"),
        })
        .collect();
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, events)
        .await?;
    Ok(undone)
}
