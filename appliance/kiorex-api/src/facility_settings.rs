//! Facility settings, edited by IT in the portal: name, address, phone and time zone. They are
//! kept on the facility's FHIR `Organization` (the time zone as an extension), so every change
//! is a new version with its author, and each save is audited. The facility code is shown but
//! fixed: it is the prefix of every MRN issued there.

use crate::audit::Event;
use crate::error::ApiError;
use crate::state::AppState;
use chrono::Utc;
use diesel::Connection;
use kiorex_domain::permission::{Action, Permission, Principal, Resource};
use kiorex_fhir::ResourceKind;
use kiorex_fhir::{extract, parse::parse_value};
use kiorex_store::StoreError;
use kiorex_store::facilities;
use kiorex_store::resources::{self, Change, Draft, WriteContext};
use serde_json::{Value, json};
use uuid::Uuid;

/// The extension that holds a facility's IANA time zone on its Organization.
pub const TIMEZONE_EXTENSION: &str = "urn:kiorex:facility-timezone";

/// What the settings page shows and edits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FacilitySettings {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub address_line: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub phone: String,
    pub timezone: String,
    pub version: i32,
}

fn field(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn from_organization(code: &str, id: Uuid, version: i32, org: &Value) -> FacilitySettings {
    let address = &org["address"][0];
    let phone = org["telecom"]
        .as_array()
        .and_then(|t| t.iter().find(|c| c["system"] == "phone"))
        .map(|c| field(&c["value"]))
        .unwrap_or_default();
    let timezone = org["extension"]
        .as_array()
        .and_then(|x| x.iter().find(|e| e["url"] == TIMEZONE_EXTENSION))
        .map(|e| field(&e["valueString"]))
        .unwrap_or_default();
    FacilitySettings {
        id,
        code: code.to_owned(),
        name: field(&org["name"]),
        address_line: field(&address["line"][0]),
        city: field(&address["city"]),
        postal_code: field(&address["postalCode"]),
        country: field(&address["country"]),
        phone,
        timezone,
        version,
    }
}

/// An IANA zone name as written in the tz database (`Africa/Nairobi`, `America/Argentina/Salta`,
/// `UTC`). Checked for form only: a hospital types its own zone, and a wrong but well-formed
/// name shows on the page where IT sees it.
pub fn valid_timezone(tz: &str) -> bool {
    tz == "UTC"
        || (tz.contains('/')
            && tz.len() <= 64
            && tz.split('/').all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
            }))
}

/// What is wrong with the edit, in words, or nothing.
pub fn problems(edit: &FacilitySettings) -> Vec<String> {
    let mut problems = Vec::new();
    if edit.name.trim().is_empty() || edit.name.chars().count() > 200 {
        problems.push("the name must be 1 to 200 characters".to_owned());
    }
    if !edit.timezone.is_empty() && !valid_timezone(edit.timezone.trim()) {
        problems.push(format!(
            "{:?} is not a time zone name such as Africa/Nairobi or UTC",
            edit.timezone
        ));
    }
    if edit
        .phone
        .chars()
        .any(|c| !(c.is_ascii_digit() || " +-()".contains(c)))
    {
        problems.push("the phone number may hold digits, spaces and + - ( ) only".to_owned());
    }
    problems
}

fn apply(org: &mut Value, edit: &FacilitySettings) {
    let trimmed = |s: &str| s.trim().to_owned();
    org["name"] = json!(trimmed(&edit.name));
    let mut address = serde_json::Map::new();
    if !edit.address_line.trim().is_empty() {
        address.insert("line".into(), json!([trimmed(&edit.address_line)]));
    }
    for (key, value) in [
        ("city", &edit.city),
        ("postalCode", &edit.postal_code),
        ("country", &edit.country),
    ] {
        if !value.trim().is_empty() {
            address.insert(key.into(), json!(trimmed(value)));
        }
    }
    let Some(o) = org.as_object_mut() else {
        return;
    };
    if address.is_empty() {
        o.remove("address");
    } else {
        o.insert("address".into(), json!([address]));
    }
    if edit.phone.trim().is_empty() {
        o.remove("telecom");
    } else {
        o.insert(
            "telecom".into(),
            json!([{"system": "phone", "value": trimmed(&edit.phone)}]),
        );
    }
    if edit.timezone.trim().is_empty() {
        o.remove("extension");
    } else {
        o.insert(
            "extension".into(),
            json!([{"url": TIMEZONE_EXTENSION, "valueString": trimmed(&edit.timezone)}]),
        );
    }
}

fn may_edit(principal: &Principal, facility: Uuid) -> bool {
    principal.may(Permission::new(Resource::Facility, Action::Write), facility)
}

/// The facilities this person may edit, with their settings.
pub async fn editable(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<FacilitySettings>, ApiError> {
    let ids = principal.facilities_with(Permission::new(Resource::Facility, Action::Write));
    if ids.is_empty() {
        return Err(ApiError::forbidden(
            "facility settings are for IT administrators",
        ));
    }
    let rows = state
        .store
        .run(move |conn| {
            let mut out = Vec::new();
            for id in ids {
                let (Some(f), Ok(org)) = (
                    facilities::find(conn, id)?,
                    resources::read(conn, "Organization", id),
                ) else {
                    continue;
                };
                out.push(from_organization(&f.code, id, org.version_id, &org.content));
            }
            Ok(out)
        })
        .await?;
    Ok(rows)
}

/// Saves the settings as a new version of the facility's Organization (refused if someone
/// saved in between), renames the facility, and audits the change.
pub async fn save(
    state: &AppState,
    principal: &Principal,
    request_id: &str,
    edit: FacilitySettings,
) -> Result<FacilitySettings, ApiError> {
    if !may_edit(principal, edit.id) {
        return Err(ApiError::forbidden(
            "you may not change this facility's settings",
        ));
    }
    let problems = problems(&edit);
    if !problems.is_empty() {
        return Err(ApiError::bad_request("KX-REQ-001", problems.join("; ")));
    }
    let author = principal.username.clone();
    let rid = request_id.to_owned();
    let id = edit.id;
    let saved = state
        .store
        .run(move |conn| {
            conn.transaction(|conn| {
                let facility = facilities::find(conn, id)?.ok_or(StoreError::NotFound)?;
                let current = resources::read(conn, "Organization", id)?;
                let mut content = current.content.clone();
                apply(&mut content, &edit);
                let parsed = parse_value(ResourceKind::Organization, content)
                    .map_err(|e| StoreError::Conflict(format!("{e:?}")))?;
                let links = extract::links(&parsed.resource).unwrap_or_default();
                let index = extract::index(&parsed.resource, &links);
                let wctx = WriteContext {
                    author,
                    request_id: rid,
                    at: Utc::now(),
                };
                let stored = resources::update(
                    conn,
                    &wctx,
                    Draft {
                        resource_type: "Organization",
                        id,
                        facility_id: id,
                        content: parsed.json,
                        index,
                    },
                    Some(edit.version),
                    Change::Update,
                )?;
                facilities::rename(conn, id, edit.name.trim())?;
                Ok(from_organization(
                    &facility.code,
                    id,
                    stored.version_id,
                    &stored.content,
                ))
            })
        })
        .await?;
    state
        .audit
        .by(
            principal,
            request_id,
            vec![Event {
                action: "facility-update",
                outcome: "success",
                resource_type: "Organization",
                resource_id: id.to_string(),
                patient_id: None,
                facility_id: Some(id),
                detail: format!("settings saved, version {}", saved.version),
            }],
        )
        .await?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_checked_for_form() {
        for ok in [
            "Africa/Nairobi",
            "America/Argentina/Salta",
            "UTC",
            "Etc/GMT+3",
        ] {
            assert!(valid_timezone(ok), "{ok}");
        }
        for bad in ["nairobi", "Africa/", "Africa/Nai robi", "<script>", ""] {
            assert!(!valid_timezone(bad), "{bad}");
        }
    }

    #[test]
    fn settings_round_trip_through_the_organization() {
        let mut org = json!({"resourceType": "Organization", "name": "Old",
            "identifier": [{"system": "urn:kiorex:facility", "value": "GEN"}]});
        let edit = FacilitySettings {
            name: "General Hospital".into(),
            address_line: "1 Hospital Road".into(),
            city: "Nairobi".into(),
            phone: "+254 20 123".into(),
            timezone: "Africa/Nairobi".into(),
            ..FacilitySettings::default()
        };
        apply(&mut org, &edit);
        let back = from_organization("GEN", Uuid::nil(), 2, &org);
        assert_eq!(back.name, "General Hospital");
        assert_eq!(back.city, "Nairobi");
        assert_eq!(back.timezone, "Africa/Nairobi");
        assert_eq!(back.phone, "+254 20 123");
        assert_eq!(org["identifier"][0]["value"], "GEN", "the code stays");
        assert!(problems(&back).is_empty());
        let bad = FacilitySettings {
            name: " ".into(),
            timezone: "Nairobi".into(),
            phone: "call me".into(),
            ..FacilitySettings::default()
        };
        assert_eq!(problems(&bad).len(), 3);
    }
}
