//! The hospital's sign-in rules: password policy, lockout back-off, the mapping from directory
//! groups to roles, API client scopes, and who needs a care relationship to open a chart.
//! Pure functions: the clock and the store are the caller's business.

use crate::permission::{Action, Grant, Permission, Resource, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a password is refused. The text is shown to the person choosing it.
pub fn password_problems(username: &str, password: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if password.chars().count() < 12 {
        problems.push("use at least 12 characters".to_owned());
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        problems.push("do not put your username in your password".to_owned());
    }
    if COMMON_PASSWORDS.iter().any(|p| lower.contains(p)) {
        problems.push("this password is among the most guessed ones; choose another".to_owned());
    }
    let distinct = {
        let mut chars: Vec<char> = password.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        chars.len()
    };
    if distinct < 5 {
        problems.push("use more different characters".to_owned());
    }
    problems
}

/// Fragments of the passwords most tried in credential-stuffing lists.
const COMMON_PASSWORDS: &[&str] = &[
    "password", "passw0rd", "123456", "qwerty", "letmein", "welcome",
];

/// Failed sign-ins allowed before an account is locked, and before a source address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub account_threshold: i32,
    pub address_threshold: i32,
    pub base_seconds: i64,
    pub max_seconds: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            account_threshold: 5,
            address_threshold: 20,
            base_seconds: 30,
            max_seconds: 900,
        }
    }
}

impl LockoutPolicy {
    /// How long to lock after `failures` consecutive failures (0 = not locked). The lock doubles
    /// with each failure past the threshold, up to the maximum: a person who mistypes is back in
    /// half a minute, a guessing script is slowed to a crawl.
    pub fn lock_seconds(&self, failures: i32, threshold: i32) -> i64 {
        if failures < threshold {
            return 0;
        }
        let doublings = (failures - threshold).min(20) as u32;
        self.base_seconds
            .saturating_mul(1_i64 << doublings)
            .min(self.max_seconds)
    }
}

/// One row of the directory mapping: members of `group` hold `role` at `facility_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRole {
    pub group: String,
    pub facility_id: Uuid,
    pub role: Role,
}

/// The grants a directory user gets from their groups. Group names compare case-insensitively
/// (Active Directory DNs are case-insensitive); a group may appear as a full DN or as its name.
pub fn grants_from_groups(groups: &[String], mapping: &[GroupRole]) -> Vec<Grant> {
    let held: Vec<String> = groups.iter().map(|g| g.trim().to_lowercase()).collect();
    let mut grants: Vec<Grant> = mapping
        .iter()
        .filter(|m| {
            let wanted = m.group.trim().to_lowercase();
            held.iter()
                .any(|g| *g == wanted || common_name(g).is_some_and(|cn| cn == wanted))
        })
        .map(|m| Grant {
            facility_id: m.facility_id,
            role: m.role,
        })
        .collect();
    grants.sort_by_key(|g| (g.facility_id, format!("{:?}", g.role)));
    grants.dedup();
    grants
}

/// `cn=Nurses,ou=Groups,dc=x` → `nurses`.
fn common_name(dn: &str) -> Option<String> {
    let first = dn.split(',').next()?;
    let (key, value) = first.split_once('=')?;
    key.trim()
        .eq_ignore_ascii_case("cn")
        .then(|| value.trim().to_lowercase())
}

/// A SMART-style scope granted to an API client: `system/Observation.write`, `system/*.read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// A FHIR resource type, or `*`.
    pub resource_type: String,
    pub read: bool,
    pub write: bool,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, String> {
        let rest = text
            .strip_prefix("system/")
            .ok_or_else(|| format!("scope {text:?} must start with system/"))?;
        let (resource_type, access) = rest
            .split_once('.')
            .ok_or_else(|| format!("scope {text:?} must look like system/Patient.read"))?;
        let valid_type = resource_type == "*"
            || (resource_type.chars().all(|c| c.is_ascii_alphanumeric())
                && resource_type.starts_with(|c: char| c.is_ascii_uppercase()));
        if !valid_type {
            return Err(format!("scope {text:?} names no resource type"));
        }
        let (read, write) = match access {
            "read" | "rs" => (true, false),
            "write" | "cud" => (false, true),
            "*" | "cruds" => (true, true),
            other => return Err(format!("scope access {other:?} is not read, write or *")),
        };
        Ok(Scope {
            resource_type: resource_type.to_owned(),
            read,
            write,
        })
    }

    pub fn covers(&self, resource_type: &str, action: Action) -> bool {
        let type_ok = self.resource_type == "*" || self.resource_type == resource_type;
        let action_ok = match action {
            Action::Read => self.read,
            Action::Write | Action::Merge => self.write,
        };
        type_ok && action_ok
    }
}

/// Parses a space-separated scope string, refusing the whole string if one scope is wrong.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    text.split_whitespace().map(Scope::parse).collect()
}

/// Roles whose members treat patients, and so see a patient's clinical record only within a
/// care relationship (or after breaking the glass). Front desk and billing see demographics
/// and encounters for their work; auditors see the log, not the chart.
pub fn needs_care_relationship(role: Role) -> bool {
    matches!(
        role,
        Role::Physician | Role::Nurse | Role::Pharmacist | Role::LabTechnician
    )
}

/// Whether reading or writing this kind of record about a patient needs a care relationship.
/// A patient's demographics (to find and identify them) and encounters (how care starts: the
/// desk or triage opens one) do not; everything clinical does.
pub fn is_clinical(resource: Resource) -> bool {
    matches!(
        resource,
        Resource::Observation
            | Resource::Condition
            | Resource::Allergy
            | Resource::Medication
            | Resource::Procedure
    )
}

/// Whether an access to `permission` at `facility_id` must be backed by a care relationship
/// for this principal's grants: only when every grant that allows it belongs to a treating role.
pub fn relationship_required(grants: &[Grant], permission: Permission, facility_id: Uuid) -> bool {
    if !is_clinical(permission.resource) {
        return false;
    }
    let allowing: Vec<&Grant> = grants
        .iter()
        .filter(|g| g.facility_id == facility_id && g.role.permissions().contains(&permission))
        .collect();
    !allowing.is_empty() && allowing.iter().all(|g| needs_care_relationship(g.role))
}

/// Encounter statuses during which the patient is under the encounter's care team.
pub const OPEN_ENCOUNTER_STATUSES: &[&str] =
    &["planned", "arrived", "triaged", "in-progress", "onleave"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_guessable_passwords_are_refused_with_reasons() {
        assert!(!password_problems("nurse.a", "tiny").is_empty());
        assert!(
            password_problems("nurse.a", "Password123456!")
                .iter()
                .any(|p| p.contains("guessed"))
        );
        assert!(
            password_problems("nurse.a", "my-nurse.a-secret")
                .iter()
                .any(|p| p.contains("username"))
        );
        assert!(
            password_problems("nurse.a", "aaaaaaaaaaaaaaaa")
                .iter()
                .any(|p| p.contains("different"))
        );
        assert!(password_problems("nurse.a", "correct horse battery staple").is_empty());
    }

    #[test]
    fn lockout_doubles_past_the_threshold_and_is_capped() {
        let p = LockoutPolicy::default();
        assert_eq!(p.lock_seconds(4, 5), 0);
        assert_eq!(p.lock_seconds(5, 5), 30);
        assert_eq!(p.lock_seconds(6, 5), 60);
        assert_eq!(p.lock_seconds(8, 5), 240);
        assert_eq!(p.lock_seconds(60, 5), 900);
    }

    #[test]
    fn groups_map_by_dn_or_name_case_insensitively() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mapping = vec![
            GroupRole {
                group: "Nurses".into(),
                facility_id: a,
                role: Role::Nurse,
            },
            GroupRole {
                group: "cn=Physicians,ou=Groups,dc=example,dc=org".into(),
                facility_id: b,
                role: Role::Physician,
            },
        ];
        let grants = grants_from_groups(
            &[
                "CN=nurses,OU=Groups,DC=example,DC=org".into(),
                "cn=physicians,ou=groups,dc=example,dc=org".into(),
            ],
            &mapping,
        );
        assert_eq!(grants.len(), 2);
        assert!(grants_from_groups(&["cn=Porters,ou=Groups".into()], &mapping).is_empty());
    }

    #[test]
    fn scopes_parse_and_cover_only_what_they_say() {
        let scopes = parse_scopes("system/Observation.write system/Patient.read").unwrap();
        assert!(scopes[0].covers("Observation", Action::Write));
        assert!(!scopes[0].covers("Observation", Action::Read));
        assert!(scopes[1].covers("Patient", Action::Read));
        assert!(!scopes.iter().any(|s| s.covers("Condition", Action::Read)));
        assert!(
            Scope::parse("system/*.read")
                .unwrap()
                .covers("Condition", Action::Read)
        );
        assert!(parse_scopes("patient/Observation.read").is_err());
        assert!(parse_scopes("system/Observation.delete").is_err());
        assert!(parse_scopes("system/observation.read").is_err());
    }

    #[test]
    fn treating_roles_need_a_relationship_for_clinical_records_only() {
        let a = Uuid::from_u128(1);
        let nurse = [Grant {
            facility_id: a,
            role: Role::Nurse,
        }];
        let vitals = Permission::new(Resource::Observation, Action::Read);
        let demographics = Permission::new(Resource::Patient, Action::Read);
        assert!(relationship_required(&nurse, vitals, a));
        assert!(!relationship_required(&nurse, demographics, a));
        let admin = [Grant {
            facility_id: a,
            role: Role::Administrator,
        }];
        assert!(!relationship_required(&admin, vitals, a));
    }
}
