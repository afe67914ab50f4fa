//! The records service: every read and write of clinical data, checked against the caller's
//! grants at the record's facility, versioned by the store, and audited. FHIR and REST handlers
//! both come through here.

use crate::audit::Event;
use crate::error::ApiError;
use crate::state::AppState;
use chrono::Utc;
use diesel::PgConnection;
use http::StatusCode;
use kiorex_domain::duplicates::POSSIBLE;
use kiorex_domain::identity::{OPEN_ENCOUNTER_STATUSES, relationship_required};
use kiorex_domain::mrn::Mrn;
use kiorex_domain::observation::{interpret, vital_sign};
use kiorex_domain::permission::{Action, Permission, Principal};
use kiorex_fhir::extract::{self, LOINC, Link};
use kiorex_fhir::params::FhirSearch;
use kiorex_fhir::parse::{Parsed, parse_value};
use kiorex_fhir::{Issue, IssueCode, ResourceKind};
use kiorex_store::resources::{self, Change, Draft, Stored, WriteContext};
use kiorex_store::{StoreError, care, facilities, review, search};
use serde_json::{Value, json};
use std::collections::HashSet;
use uuid::Uuid;

/// Who is asking, under which request.
#[derive(Clone)]
pub struct Ctx {
    pub principal: Principal,
    pub request_id: String,
    /// Whether treating roles need a care relationship (the site's `identity` setting).
    pub care_required: bool,
}

impl Ctx {
    pub fn new(state: &AppState, principal: Principal, request_id: &str) -> Ctx {
        Ctx {
            principal,
            request_id: request_id.to_owned(),
            care_required: state.identity.settings.require_care_relationship,
        }
    }

    /// Whether this access must be backed by a care relationship. API clients are bound by
    /// their scopes instead; people in treating roles need one for clinical records.
    fn needs_care(&self, kind: ResourceKind, action: Action, facility: Uuid) -> bool {
        self.care_required
            && self.principal.scopes.is_none()
            && relationship_required(
                &self.principal.grants,
                Permission::new(kind.guarded_by(), action),
                facility,
            )
    }

    fn write_context(&self) -> WriteContext {
        WriteContext {
            author: self.principal.username.clone(),
            request_id: self.request_id.clone(),
            at: Utc::now(),
        }
    }

    fn may(&self, kind: ResourceKind, action: Action, facility: Uuid) -> bool {
        self.principal
            .may(Permission::new(kind.guarded_by(), action), facility)
            && self.principal.scope_allows(kind.name(), action)
    }
}

pub const MRN_SYSTEM_PREFIX: &str = "urn:kiorex:mrn:";

/// Records already looked up (or written) in this transaction, by id. A Bundle of twenty
/// observations of one patient reads that patient once, and sees the patient the same Bundle
/// created a moment before.
#[derive(Default)]
pub struct Known(std::collections::HashMap<Uuid, Stored>);

impl Known {
    /// Loads the records among `ids` not known yet.
    fn load(&mut self, conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), ApiError> {
        let missing: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| !self.0.contains_key(id))
            .collect();
        if !missing.is_empty() {
            for stored in resources::read_many(conn, &missing)? {
                self.0.insert(stored.id, stored);
            }
        }
        Ok(())
    }

    fn get(&self, id: Uuid) -> Option<&Stored> {
        self.0.get(&id)
    }

    /// Remembers what this transaction just wrote.
    pub fn wrote(&mut self, stored: &Stored) {
        self.0.insert(stored.id, stored.clone());
    }
}

/// The outcome of a create: the stored resource, and whether it is new (conditional create may
/// find an existing one).
pub struct Created {
    pub stored: Stored,
    pub created: bool,
}

/// What an access was about, for the audit trail.
fn event(action: &'static str, outcome: &'static str, stored: &Stored) -> Event<'static> {
    Event {
        action,
        outcome,
        resource_type: kind_name(&stored.resource_type),
        resource_id: stored.id.to_string(),
        patient_id: patient_of_stored(stored),
        facility_id: Some(stored.facility_id),
        detail: String::new(),
    }
}

fn kind_name(name: &str) -> &'static str {
    ResourceKind::from_name(name).map_or("Unknown", ResourceKind::name)
}

/// The patient a stored record is about (itself for a Patient).
pub fn patient_of_stored(stored: &Stored) -> Option<Uuid> {
    patient_of(&stored.resource_type, stored.id, &stored.content)
}

/// The patient a record's content is about (itself for a Patient).
pub fn patient_of(resource_type: &str, id: Uuid, content: &Value) -> Option<Uuid> {
    if resource_type == "Patient" {
        return Some(id);
    }
    ["subject", "patient"].iter().find_map(|field| {
        content
            .get(field)?
            .get("reference")?
            .as_str()?
            .strip_prefix("Patient/")
            .and_then(|id| Uuid::parse_str(id).ok())
    })
}

/// Of `patients`, those the caller is caring for now.
fn in_care(
    conn: &mut PgConnection,
    ctx: &Ctx,
    patients: &[Uuid],
) -> Result<HashSet<Uuid>, ApiError> {
    Ok(care::patients_in_care(
        conn,
        ctx.principal.user_id,
        patients,
        OPEN_ENCOUNTER_STATUSES,
        Utc::now(),
    )?)
}

/// Refuses an access that needs a care relationship the caller does not have.
fn ensure_care(
    conn: &mut PgConnection,
    ctx: &Ctx,
    kind: ResourceKind,
    action: Action,
    facility: Uuid,
    patient: Option<Uuid>,
) -> Result<(), ApiError> {
    let Some(patient) = patient else {
        return Ok(());
    };
    if !ctx.needs_care(kind, action, facility) || in_care(conn, ctx, &[patient])?.contains(&patient)
    {
        return Ok(());
    }
    Err(break_glass_required(patient))
}

/// For clinical records kept outside the FHIR resources (documents): refuses a treating role
/// without a care relationship with `patient`, exactly as for an observation.
pub async fn ensure_clinical_access(
    state: &AppState,
    ctx: &Ctx,
    patient: &Stored,
    action: Action,
) -> Result<(), ApiError> {
    let (c, facility, id) = (ctx.clone(), patient.facility_id, patient.id);
    state
        .store
        .transaction_with(move |conn| {
            ensure_care(
                conn,
                &c,
                ResourceKind::Observation,
                action,
                facility,
                Some(id),
            )
        })
        .await
}

/// Of `(patient, facility)` pairs, the patients whose clinical records the caller may see now
/// (all of them for roles that need no care relationship).
pub async fn patients_open_to(
    state: &AppState,
    ctx: &Ctx,
    patients: Vec<(Uuid, Uuid)>,
) -> Result<HashSet<Uuid>, ApiError> {
    let c = ctx.clone();
    state
        .store
        .transaction_with(move |conn| {
            let (guarded, open): (Vec<_>, Vec<_>) = patients
                .into_iter()
                .partition(|(_, f)| c.needs_care(ResourceKind::Observation, Action::Read, *f));
            let ids: Vec<Uuid> = guarded.iter().map(|(p, _)| *p).collect();
            let mut allowed = in_care(conn, &c, &ids)?;
            allowed.extend(open.into_iter().map(|(p, _)| p));
            Ok::<_, ApiError>(allowed)
        })
        .await
}

/// 403 with the code the portal turns into "break the glass?".
pub fn break_glass_required(patient: Uuid) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "KX-ACC-002",
        "this patient is not under your care; in an emergency you may break the glass: give a \
         reason and the record opens for a limited time, and the privacy officer reviews it",
    )
    .with_issues(vec![Issue::new(
        IssueCode::Forbidden,
        "no care relationship with this patient",
    )])
    .with_extra(json!({
        "patient_id": patient,
        "break_glass": format!("/api/v1/patients/{patient}/break-glass"),
    }))
}

/// Drops the records of patients outside the caller's care from a search or a chart, where a
/// care relationship is needed to see them.
fn keep_in_care(
    conn: &mut PgConnection,
    ctx: &Ctx,
    records: Vec<Stored>,
) -> Result<Vec<Stored>, ApiError> {
    let guarded = |s: &Stored| {
        ResourceKind::from_name(&s.resource_type)
            .filter(|k| ctx.needs_care(*k, Action::Read, s.facility_id))
            .and_then(|_| patient_of_stored(s))
    };
    let patients: Vec<Uuid> = records.iter().filter_map(guarded).collect();
    if patients.is_empty() {
        return Ok(records);
    }
    let allowed = in_care(conn, ctx, &patients)?;
    Ok(records
        .into_iter()
        .filter(|s| guarded(s).is_none_or(|p| allowed.contains(&p)))
        .collect())
}

/// Reads the current version; deleted records answer 410, other facilities' records 403.
pub async fn read(
    state: &AppState,
    ctx: &Ctx,
    kind: ResourceKind,
    id: Uuid,
) -> Result<Stored, ApiError> {
    let stored = state
        .store
        .run(move |conn| resources::read(conn, kind.name(), id))
        .await?;
    checked_read(state, ctx, kind, stored, "read").await
}

pub async fn vread(
    state: &AppState,
    ctx: &Ctx,
    kind: ResourceKind,
    id: Uuid,
    version: i32,
) -> Result<Stored, ApiError> {
    let stored = state
        .store
        .run(move |conn| resources::vread(conn, kind.name(), id, version))
        .await?;
    checked_read(state, ctx, kind, stored, "vread").await
}

async fn checked_read(
    state: &AppState,
    ctx: &Ctx,
    kind: ResourceKind,
    stored: Stored,
    action: &'static str,
) -> Result<Stored, ApiError> {
    if !ctx.may(kind, Action::Read, stored.facility_id) {
        state
            .audit
            .by(
                &ctx.principal,
                &ctx.request_id,
                vec![event(action, "denied", &stored)],
            )
            .await?;
        return Err(ApiError::forbidden(format!(
            "you have no {}:read permission at this record's facility",
            perm_name(kind)
        )));
    }
    if ctx.needs_care(kind, Action::Read, stored.facility_id)
        && let Some(patient) = patient_of_stored(&stored)
    {
        let c = ctx.clone();
        let facility = stored.facility_id;
        let cared = state
            .store
            .transaction_with(move |conn| {
                ensure_care(conn, &c, kind, Action::Read, facility, Some(patient))
            })
            .await;
        if let Err(refusal) = cared {
            let mut denied = event(action, "denied", &stored);
            denied.detail = "no care relationship".into();
            state
                .audit
                .by(&ctx.principal, &ctx.request_id, vec![denied])
                .await?;
            return Err(refusal);
        }
    }
    state
        .audit
        .by(
            &ctx.principal,
            &ctx.request_id,
            vec![event(action, "success", &stored)],
        )
        .await?;
    if stored.deleted {
        return Err(ApiError::gone(format!("{}/{}", kind.name(), stored.id)));
    }
    Ok(stored)
}

fn perm_name(kind: ResourceKind) -> String {
    Permission::new(kind.guarded_by(), Action::Read)
        .to_string()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Creates a resource; with `if_none_exist`, returns the one existing match instead.
pub async fn create(
    state: &AppState,
    ctx: &Ctx,
    parsed: Parsed,
    if_none_exist: Option<FhirSearch>,
) -> Result<Created, ApiError> {
    let c = ctx.clone();
    let created = state
        .store
        .transaction_with(move |conn| {
            create_in(
                conn,
                &c,
                parsed,
                if_none_exist,
                &c.write_context(),
                Uuid::new_v4(),
                &mut Known::default(),
            )
        })
        .await?;
    let action = if created.created {
        "create"
    } else {
        "conditional-create-match"
    };
    state
        .audit
        .by(
            &ctx.principal,
            &ctx.request_id,
            vec![event(action, "success", &created.stored)],
        )
        .await?;
    Ok(created)
}

/// Creates inside the caller's transaction (single requests and Bundle entries alike).
pub fn create_in(
    conn: &mut PgConnection,
    ctx: &Ctx,
    parsed: Parsed,
    if_none_exist: Option<FhirSearch>,
    wctx: &WriteContext,
    id: Uuid,
    known: &mut Known,
) -> Result<Created, ApiError> {
    let kind = parsed.resource.kind();
    if let Some(condition) = if_none_exist
        && let Some(existing) = conditional_match(conn, ctx, kind, condition)?
    {
        // The match is returned whole: it must be a record the caller may read.
        ensure_care(
            conn,
            ctx,
            kind,
            Action::Read,
            existing.facility_id,
            patient_of_stored(&existing),
        )?;
        return Ok(Created {
            stored: existing,
            created: false,
        });
    }
    let draft = prepare_create(conn, ctx, parsed, id, wctx, known)?;
    let stored = write_creates(conn, wctx, vec![draft])?
        .pop()
        .ok_or_else(|| ApiError::internal("create wrote nothing"))?;
    known.wrote(&stored);
    Ok(Created {
        stored,
        created: true,
    })
}

/// Checks and prepares a create without writing it; Bundles write their creates together with
/// [`write_creates`]. Later entries of the same Bundle already see it through `known`.
pub fn prepare_create(
    conn: &mut PgConnection,
    ctx: &Ctx,
    parsed: Parsed,
    id: Uuid,
    wctx: &WriteContext,
    known: &mut Known,
) -> Result<Draft, ApiError> {
    let draft = prepare(conn, ctx, parsed, id, true, known)?;
    known.wrote(&Stored {
        id: draft.id,
        resource_type: draft.resource_type.to_owned(),
        facility_id: draft.facility_id,
        version_id: 1,
        last_updated: wctx.at,
        deleted: false,
        content: Value::Null,
    });
    Ok(draft)
}

/// Writes prepared creates in one go, then puts new patients that look like existing ones on
/// the duplicate review list.
pub fn write_creates(
    conn: &mut PgConnection,
    wctx: &WriteContext,
    drafts: Vec<Draft>,
) -> Result<Vec<Stored>, ApiError> {
    let stored = resources::create_many(conn, wctx, drafts)?;
    for patient in stored
        .iter()
        .filter(|s| s.resource_type == ResourceKind::Patient.name())
    {
        queue_possible_duplicates(conn, patient, wctx)?;
    }
    Ok(stored)
}

fn conditional_match(
    conn: &mut PgConnection,
    ctx: &Ctx,
    kind: ResourceKind,
    mut condition: FhirSearch,
) -> Result<Option<Stored>, ApiError> {
    condition.query.facilities = ctx
        .principal
        .facilities_with(Permission::new(kind.guarded_by(), Action::Read));
    condition.query.count = 2;
    let page = search::search(conn, &condition.query)?;
    match page.matches.len() {
        0 => Ok(None),
        1 => Ok(page.matches.into_iter().next()),
        _ => Err(ApiError::precondition_failed(
            "If-None-Exist matches more than one resource; make the condition more specific",
        )),
    }
}

/// Updates a resource; `if_match` is the version the writer last saw.
pub async fn update(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
    parsed: Parsed,
    if_match: Option<i32>,
) -> Result<Stored, ApiError> {
    let c = ctx.clone();
    let stored = state
        .store
        .transaction_with(move |conn| {
            update_in(
                conn,
                &c,
                id,
                parsed,
                if_match,
                &c.write_context(),
                &mut Known::default(),
            )
        })
        .await?;
    state
        .audit
        .by(
            &ctx.principal,
            &ctx.request_id,
            vec![event("update", "success", &stored)],
        )
        .await?;
    Ok(stored)
}

pub fn update_in(
    conn: &mut PgConnection,
    ctx: &Ctx,
    id: Uuid,
    parsed: Parsed,
    if_match: Option<i32>,
    wctx: &WriteContext,
    known: &mut Known,
) -> Result<Stored, ApiError> {
    if let Some(body_id) = parsed.json.get("id").and_then(Value::as_str)
        && body_id != id.to_string()
    {
        return Err(ApiError::invalid(vec![
            Issue::new(
                IssueCode::Invalid,
                "the resource id must match the id in the URL",
            )
            .at("id"),
        ]));
    }
    let kind = parsed.resource.kind();
    let current = resources::read(conn, kind.name(), id).map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found(format!("{}/{id}", kind.name())),
        other => other.into(),
    })?;
    if !ctx.may(kind, Action::Write, current.facility_id) {
        return Err(ApiError::forbidden(
            "you may not change records at this facility",
        ));
    }
    ensure_care(
        conn,
        ctx,
        kind,
        Action::Write,
        current.facility_id,
        patient_of_stored(&current),
    )?;
    let draft = prepare(conn, ctx, parsed, id, false, known)?;
    let stored = resources::update(conn, wctx, draft, if_match, Change::Update)?;
    known.wrote(&stored);
    Ok(stored)
}

/// Soft-deletes a resource (a new version marked deleted). Deleting twice is not an error.
pub async fn delete(
    state: &AppState,
    ctx: &Ctx,
    kind: ResourceKind,
    id: Uuid,
    if_match: Option<i32>,
) -> Result<(), ApiError> {
    let c = ctx.clone();
    let deleted = state
        .store
        .transaction_with(move |conn| delete_in(conn, &c, kind, id, if_match, &c.write_context()))
        .await?;
    if let Some(stored) = deleted {
        state
            .audit
            .by(
                &ctx.principal,
                &ctx.request_id,
                vec![event("delete", "success", &stored)],
            )
            .await?;
    }
    Ok(())
}

pub fn delete_in(
    conn: &mut PgConnection,
    ctx: &Ctx,
    kind: ResourceKind,
    id: Uuid,
    if_match: Option<i32>,
    wctx: &WriteContext,
) -> Result<Option<Stored>, ApiError> {
    if kind == ResourceKind::Organization {
        return Err(ApiError::not_supported(
            "facilities are managed with `kiorex facility`, not through FHIR",
        ));
    }
    let current = resources::read(conn, kind.name(), id).map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found(format!("{}/{id}", kind.name())),
        other => other.into(),
    })?;
    if !ctx.may(kind, Action::Write, current.facility_id) {
        return Err(ApiError::forbidden(
            "you may not delete records at this facility",
        ));
    }
    ensure_care(
        conn,
        ctx,
        kind,
        Action::Write,
        current.facility_id,
        patient_of_stored(&current),
    )?;
    Ok(resources::delete(conn, wctx, kind.name(), id, if_match)?)
}

/// Turns a parsed resource into a draft: decides its facility, checks the caller may write
/// there, checks every reference, assigns an MRN to a new patient and interprets vital signs.
fn prepare(
    conn: &mut PgConnection,
    ctx: &Ctx,
    parsed: Parsed,
    id: Uuid,
    is_new: bool,
    known: &mut Known,
) -> Result<Draft, ApiError> {
    let kind = parsed.resource.kind();
    if kind == ResourceKind::Organization {
        return Err(ApiError::not_supported(
            "facilities are managed with `kiorex facility`, not through FHIR",
        ));
    }
    let links = extract::links(&parsed.resource).map_err(ApiError::invalid)?;
    known.load(conn, &links.iter().map(|l| l.id).collect::<Vec<_>>())?;
    let facility_id = facility_for(conn, ctx, kind, &parsed, &links, known)?;
    if !ctx.may(kind, Action::Write, facility_id) {
        return Err(ApiError::forbidden(format!(
            "you may not write {} records at this facility",
            kind.name()
        )));
    }
    check_links(ctx, kind, &links, facility_id, known)?;
    let patient = patient_of(kind.name(), id, &parsed.json);
    ensure_care(conn, ctx, kind, Action::Write, facility_id, patient)?;
    if kind != ResourceKind::Patient {
        // What is added to other records (a vital sign's interpretation) is not searched by.
        let mut index = extract::index(&parsed.resource, &links);
        let mut content = parsed.json;
        if kind == ResourceKind::Observation
            && let Some(added) = interpret_observation(&mut content)
            && let Some(entry) = index.chart_result.as_mut()
        {
            // The chart flags what is stored, the server's interpretation included.
            entry.flag = added.to_owned();
        }
        return Ok(Draft {
            resource_type: kind.name(),
            id,
            facility_id,
            content,
            index,
        });
    }
    let mut json = parsed.json;
    set_managing_organization(&mut json, facility_id);
    if is_new {
        assign_mrn(conn, &mut json, facility_id)?;
    }
    // The MRN and the managing facility are searched by: parse the enriched patient again so that
    // the index and the stored JSON always agree.
    let parsed = parse_value(kind, json).map_err(ApiError::invalid)?;
    let links = extract::links(&parsed.resource).map_err(ApiError::invalid)?;
    let index = extract::index(&parsed.resource, &links);
    Ok(Draft {
        resource_type: kind.name(),
        id,
        facility_id,
        content: parsed.json,
        index,
    })
}

/// A patient's record lives at its patient's facility; a patient at its managing organization
/// or, when not given, at the one facility where the caller registers patients.
fn facility_for(
    conn: &mut PgConnection,
    ctx: &Ctx,
    kind: ResourceKind,
    parsed: &Parsed,
    links: &[Link],
    known: &Known,
) -> Result<Uuid, ApiError> {
    if kind.in_patient_compartment() {
        let Some(patient_id) = extract::patient_of(&parsed.resource, links) else {
            return Err(ApiError::invalid(vec![Issue::new(
                IssueCode::Required,
                "the record must name its patient",
            )]));
        };
        let element = links
            .iter()
            .find(|l| l.id == patient_id)
            .map(|l| l.element.clone())
            .unwrap_or_default();
        let patient = known
            .get(patient_id)
            .filter(|p| !p.deleted && p.resource_type == "Patient");
        return match patient {
            Some(p) if ctx.may(ResourceKind::Patient, Action::Read, p.facility_id) => {
                Ok(p.facility_id)
            }
            _ => Err(missing_reference(
                &element,
                &format!("Patient/{patient_id}"),
            )),
        };
    }
    if kind == ResourceKind::Patient
        && let Some(org) = links.iter().find(|l| l.param == Some("organization"))
    {
        return match facilities::find(conn, org.id)? {
            Some(f) => Ok(f.id),
            None => Err(missing_reference(
                &org.element,
                &format!("Organization/{}", org.id),
            )),
        };
    }
    let writable = ctx
        .principal
        .facilities_with(Permission::new(kind.guarded_by(), Action::Write));
    match writable.as_slice() {
        [only] => Ok(*only),
        [] => Err(ApiError::forbidden(format!("you may not write {} records at any facility", kind.name()))),
        _ => Err(ApiError::invalid(vec![
            Issue::new(IssueCode::Required, "you work at several facilities: say which one manages this patient (managingOrganization)")
                .at("Patient.managingOrganization"),
        ])),
    }
}

fn missing_reference(element: &str, target: &str) -> ApiError {
    ApiError::invalid(vec![
        Issue::new(
            IssueCode::Value,
            format!("{target} does not exist, was deleted, or is not visible to you"),
        )
        .at(element.to_owned()),
    ])
}

/// Every reference must point at a live record; records of a patient may only point at records
/// of the same facility.
fn check_links(
    ctx: &Ctx,
    kind: ResourceKind,
    links: &[Link],
    facility_id: Uuid,
    known: &Known,
) -> Result<(), ApiError> {
    let mut issues = Vec::new();
    for link in links {
        let target = known
            .get(link.id)
            .filter(|s| s.resource_type == link.target.name() && !s.deleted);
        let visible = target.is_some_and(|t| {
            ctx.may(link.target, Action::Read, t.facility_id)
                || link.target == ResourceKind::Organization
        });
        let same_facility = target.is_some_and(|t| {
            t.facility_id == facility_id
                || !kind.in_patient_compartment()
                || link.target == ResourceKind::Practitioner
        });
        if !visible {
            issues.push(
                Issue::new(
                    IssueCode::Value,
                    format!(
                        "{}/{} does not exist, was deleted, or is not visible to you",
                        link.target.name(),
                        link.id
                    ),
                )
                .at(link.element.clone()),
            );
        } else if !same_facility {
            issues.push(
                Issue::new(
                    IssueCode::Value,
                    format!(
                        "{}/{} belongs to another facility",
                        link.target.name(),
                        link.id
                    ),
                )
                .at(link.element.clone()),
            );
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(issues))
    }
}

fn set_managing_organization(json: &mut Value, facility_id: Uuid) {
    json["managingOrganization"] = json!({"reference": format!("Organization/{facility_id}")});
}

/// Gives a new patient the facility's next MRN, unless it already carries one of this facility.
fn assign_mrn(
    conn: &mut PgConnection,
    json: &mut Value,
    facility_id: Uuid,
) -> Result<(), ApiError> {
    let facility = facilities::find(conn, facility_id)?
        .ok_or_else(|| ApiError::internal("facility vanished"))?;
    let system = format!("{MRN_SYSTEM_PREFIX}{}", facility.code);
    let identifiers = json
        .get("identifier")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if identifiers
        .iter()
        .any(|i| i.get("system").and_then(Value::as_str) == Some(&system))
    {
        return Ok(());
    }
    let mrn = Mrn::new(
        &facility.code,
        facilities::next_mrn_sequence(conn, facility_id)?,
    );
    let mut identifiers = identifiers;
    identifiers.insert(
        0,
        json!({"use": "official", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Medical record number"},
               "system": system, "value": mrn.to_string()}),
    );
    json["identifier"] = Value::Array(identifiers);
    Ok(())
}

/// Adds the interpretation (N/L/H/LL/HH) and the default reference range to a vital sign that
/// arrives without them; returns the interpretation code it added.
fn interpret_observation(json: &mut Value) -> Option<&'static str> {
    if json.get("interpretation").is_some() {
        return None;
    }
    let value = json
        .pointer("/valueQuantity/value")
        .and_then(Value::as_f64)?;
    let unit = json
        .pointer("/valueQuantity/code")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // The laboratory's own range wins; Kiorex's defaults cover vital signs only.
    let (range, shipped_default) = match laboratory_range(json, &unit) {
        Some(range) => (range, false),
        None => (vital_sign_of(json)?.range.clone(), true),
    };
    let interpretation = interpret(value, &range);
    json["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": interpretation.code(), "display": interpretation.display()}]}]);
    if shipped_default
        && json.get("referenceRange").is_none()
        && (range.low.is_some() || range.high.is_some())
    {
        let quantity = |v: Option<f64>| {
            v.map(|v| json!({"value": v, "unit": range.unit, "system": extract::UCUM, "code": range.unit}))
        };
        let mut shown = json!({"text": "Kiorex default adult range (not set by the laboratory)"});
        if let Some(low) = quantity(range.low) {
            shown["low"] = low;
        }
        if let Some(high) = quantity(range.high) {
            shown["high"] = high;
        }
        json["referenceRange"] = json!([shown]);
    }
    Some(interpretation.code())
}

/// The vital sign an observation records, by its LOINC code.
fn vital_sign_of(json: &Value) -> Option<&'static kiorex_domain::observation::VitalSign> {
    json.pointer("/code/coding")?
        .as_array()?
        .iter()
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(LOINC))
        .find_map(|c| c.get("code").and_then(Value::as_str).and_then(vital_sign))
}

/// The first reference range the result carries, when its limits are in the result's unit.
fn laboratory_range(
    json: &Value,
    unit: &str,
) -> Option<kiorex_domain::observation::ReferenceRange> {
    let range = json.pointer("/referenceRange/0")?;
    let limit = |end: &str| -> Option<Option<f64>> {
        match range.get(end) {
            None => Some(None),
            Some(q) => {
                let same_unit = q
                    .get("code")
                    .and_then(Value::as_str)
                    .is_none_or(|c| c == unit);
                same_unit.then(|| q.get("value").and_then(Value::as_f64))
            }
        }
    };
    let (low, high) = (limit("low")?, limit("high")?);
    (low.is_some() || high.is_some()).then_some(kiorex_domain::observation::ReferenceRange {
        low,
        high,
        critical_low: None,
        critical_high: None,
        unit: "",
        is_default: false,
    })
}

/// A new patient that looks like an existing one goes on the review list; partners are not
/// refused (they use conditional create to avoid duplicates), registrars decide.
fn queue_possible_duplicates(
    conn: &mut PgConnection,
    stored: &Stored,
    wctx: &WriteContext,
) -> Result<(), ApiError> {
    let traits = crate::registration::traits_of(&stored.content);
    let candidates = crate::registration::likely_duplicates(
        conn,
        &[stored.facility_id],
        &traits,
        Some(stored.id),
    )?;
    for (candidate, s) in candidates.into_iter().filter(|(_, s)| s.score >= POSSIBLE) {
        review::add(
            conn,
            stored.facility_id,
            stored.id,
            candidate.id,
            s.score,
            &s.reasons,
            wctx.at,
        )?;
    }
    Ok(())
}

/// One page of a search, the `_include`d resources, and the audit of every hit.
pub struct Found {
    pub page: search::Page,
    pub included: Vec<Stored>,
}

pub async fn search(
    state: &AppState,
    ctx: &Ctx,
    kind: ResourceKind,
    mut fhir: FhirSearch,
) -> Result<Found, ApiError> {
    fhir.query.facilities = ctx
        .principal
        .facilities_with(Permission::new(kind.guarded_by(), Action::Read));
    if fhir.query.facilities.is_empty() {
        return Err(ApiError::forbidden(format!(
            "you may not read {} records at any facility",
            kind.name()
        )));
    }
    let principal = ctx.principal.clone();
    let c = ctx.clone();
    let found =
        state
            .store
            .transaction_with(move |conn| {
                let mut page = search::search(conn, &fhir.query)?;
                page.matches = keep_in_care(conn, &c, page.matches)?;
                let ids: Vec<Uuid> = page.matches.iter().map(|s| s.id).collect();
                let mut included = Vec::new();
                for def in &fhir.includes {
                    let targets = search::included_targets(conn, &ids, def.name)?;
                    included.extend(resources::read_many(conn, &targets)?.into_iter().filter(
                        |t| {
                            !t.deleted
                                && ResourceKind::from_name(&t.resource_type).is_some_and(|k| {
                                    principal.may(
                                        Permission::new(k.guarded_by(), Action::Read),
                                        t.facility_id,
                                    )
                                })
                        },
                    ));
                }
                let included = keep_in_care(conn, &c, included)?;
                Ok::<_, ApiError>(Found { page, included })
            })
            .await?;
    let events: Vec<Event<'_>> = found
        .page
        .matches
        .iter()
        .chain(&found.included)
        .map(|s| event("search", "success", s))
        .collect();
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, events)
        .await?;
    Ok(found)
}

/// A patient and every live record that refers to them (FHIR `Patient/$everything`).
pub async fn everything(
    state: &AppState,
    ctx: &Ctx,
    patient_id: Uuid,
) -> Result<Vec<Stored>, ApiError> {
    let patient = read(state, ctx, ResourceKind::Patient, patient_id).await?;
    let principal = ctx.principal.clone();
    let c = ctx.clone();
    let facility = patient.facility_id;
    let records = state
        .store
        .transaction_with(move |conn| {
            // The whole chart is clinical: without a care relationship, refuse it outright
            // rather than answer with demographics alone.
            ensure_care(
                conn,
                &c,
                ResourceKind::Observation,
                Action::Read,
                facility,
                Some(patient_id),
            )?;
            let ids = resources::referencing(conn, patient_id)?;
            Ok::<_, ApiError>(resources::read_many(conn, &ids)?)
        })
        .await?;
    let mut records: Vec<Stored> = records
        .into_iter()
        .filter(|s| {
            !s.deleted
                && ResourceKind::from_name(&s.resource_type).is_some_and(|k| {
                    k.in_patient_compartment()
                        && principal
                            .may(Permission::new(k.guarded_by(), Action::Read), s.facility_id)
                })
        })
        .collect();
    records.sort_by(|a, b| {
        a.resource_type
            .cmp(&b.resource_type)
            .then(b.last_updated.cmp(&a.last_updated))
    });
    let events: Vec<Event<'_>> = records
        .iter()
        .map(|s| event("everything", "success", s))
        .collect();
    state
        .audit
        .by(&ctx.principal, &ctx.request_id, events)
        .await?;
    let mut all = vec![patient];
    all.extend(records);
    Ok(all)
}
