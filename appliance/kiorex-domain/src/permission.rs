//! Who may do what, where. A permission is `resource:action` (`patient:read`,
//! `observation:write`); roles bundle permissions; a grant gives a role at one facility.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The kinds of record a permission protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    Patient,
    Encounter,
    Observation,
    Condition,
    Allergy,
    Medication,
    Procedure,
    Practitioner,
    Facility,
    Audit,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Read,
    Write,
    Merge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permission {
    pub resource: Resource,
    pub action: Action,
}

impl Permission {
    pub const fn new(resource: Resource, action: Action) -> Self {
        Permission { resource, action }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = kebab_case_name(&self.resource);
        let action = kebab_case_name(&self.action);
        write!(f, "{resource}:{action}")
    }
}

fn kebab_case_name<T: fmt::Debug>(value: &T) -> String {
    // Debug of a unit variant is its name; kebab-case it the way serde does.
    let name = format!("{value:?}");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// `perms![Patient:Read, Encounter:Write]` — a static list of permissions.
macro_rules! perms {
    ($($resource:ident : $action:ident),* $(,)?) => {
        &[$(Permission { resource: $resource, action: $action }),*]
    };
}

/// The jobs in a hospital, each with the permissions the job needs and no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Physician,
    Nurse,
    FrontDesk,
    Pharmacist,
    LabTechnician,
    Billing,
    Auditor,
    ItAdmin,
    /// The appliance's first administrator: every permission, for break-glass and setup.
    Administrator,
}

impl Role {
    pub fn permissions(self) -> &'static [Permission] {
        use Action::*;
        use Resource::*;
        match self {
            Role::Physician => perms![
                Patient:Read, Patient:Write, Encounter:Read, Encounter:Write,
                Observation:Read, Observation:Write, Condition:Read, Condition:Write,
                Allergy:Read, Allergy:Write, Medication:Read, Medication:Write,
                Procedure:Read, Procedure:Write, Practitioner:Read, Facility:Read,
            ],
            Role::Nurse => perms![
                Patient:Read, Encounter:Read, Encounter:Write, Observation:Read,
                Observation:Write, Condition:Read, Allergy:Read, Allergy:Write,
                Medication:Read, Procedure:Read, Practitioner:Read, Facility:Read,
            ],
            Role::FrontDesk => perms![
                Patient:Read, Patient:Write, Patient:Merge, Encounter:Read,
                Encounter:Write, Practitioner:Read, Facility:Read,
            ],
            Role::Pharmacist => perms![
                Patient:Read, Allergy:Read, Medication:Read, Medication:Write,
                Observation:Read, Condition:Read, Practitioner:Read, Facility:Read,
            ],
            Role::LabTechnician => perms![
                Patient:Read, Observation:Read, Observation:Write, Encounter:Read,
                Practitioner:Read, Facility:Read,
            ],
            Role::Billing => perms![
                Patient:Read, Encounter:Read, Procedure:Read, Condition:Read,
                Facility:Read,
            ],
            Role::Auditor => perms![Audit:Read, Facility:Read, User:Read],
            Role::ItAdmin => perms![
                Facility:Read, Facility:Write, User:Read, User:Write,
                Practitioner:Read, Practitioner:Write,
            ],
            Role::Administrator => ALL_PERMISSIONS,
        }
    }
}

const ALL_PERMISSIONS: &[Permission] = {
    use Action::*;
    use Resource::*;
    perms![
        Patient:Read, Patient:Write, Patient:Merge,
        Encounter:Read, Encounter:Write,
        Observation:Read, Observation:Write,
        Condition:Read, Condition:Write,
        Allergy:Read, Allergy:Write,
        Medication:Read, Medication:Write,
        Procedure:Read, Procedure:Write,
        Practitioner:Read, Practitioner:Write,
        Facility:Read, Facility:Write,
        Audit:Read, User:Read, User:Write,
    ]
};

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "physician" => Role::Physician,
            "nurse" => Role::Nurse,
            "front-desk" => Role::FrontDesk,
            "pharmacist" => Role::Pharmacist,
            "lab-technician" => Role::LabTechnician,
            "billing" => Role::Billing,
            "auditor" => Role::Auditor,
            "it-admin" => Role::ItAdmin,
            "administrator" => Role::Administrator,
            other => return Err(format!("unknown role {other:?}")),
        })
    }
}

/// A role held at one facility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub facility_id: Uuid,
    pub role: Role,
}

/// The authenticated person or system behind a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: Uuid,
    pub username: String,
    pub grants: Vec<Grant>,
    /// For an API client (client-credentials grant), the scopes it was given; `None` for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<crate::identity::Scope>>,
}

impl Principal {
    /// A person signed in with these grants.
    pub fn person(user_id: Uuid, username: impl Into<String>, grants: Vec<Grant>) -> Principal {
        Principal {
            user_id,
            username: username.into(),
            grants,
            scopes: None,
        }
    }

    /// Whether an API client's scopes allow `action` on `resource_type`; people are not limited
    /// by scopes, only by their grants.
    pub fn scope_allows(&self, resource_type: &str, action: Action) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|s| s.covers(resource_type, action)))
    }

    /// Whether the principal holds `permission` at `facility_id`.
    pub fn may(&self, permission: Permission, facility_id: Uuid) -> bool {
        self.grants
            .iter()
            .any(|g| g.facility_id == facility_id && g.role.permissions().contains(&permission))
    }

    /// The facilities where the principal holds `permission`: the scope of every search.
    pub fn facilities_with(&self, permission: Permission) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .grants
            .iter()
            .filter(|g| g.role.permissions().contains(&permission))
            .map(|g| g.facility_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nurse_at(facility: Uuid) -> Principal {
        Principal::person(
            Uuid::nil(),
            "nurse",
            vec![Grant {
                facility_id: facility,
                role: Role::Nurse,
            }],
        )
    }

    #[test]
    fn permission_holds_only_at_the_granted_facility() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let read = Permission::new(Resource::Patient, Action::Read);
        assert!(nurse_at(a).may(read, a));
        assert!(!nurse_at(a).may(read, b));
    }

    #[test]
    fn nurse_records_vitals_but_does_not_prescribe() {
        let a = Uuid::from_u128(1);
        assert!(nurse_at(a).may(Permission::new(Resource::Observation, Action::Write), a));
        assert!(!nurse_at(a).may(Permission::new(Resource::Medication, Action::Write), a));
    }

    #[test]
    fn permission_prints_as_resource_colon_action() {
        assert_eq!(
            Permission::new(Resource::Observation, Action::Write).to_string(),
            "observation:write"
        );
    }

    #[test]
    fn administrator_holds_every_permission() {
        for role in [
            Role::Physician,
            Role::Nurse,
            Role::FrontDesk,
            Role::Auditor,
            Role::ItAdmin,
        ] {
            for p in role.permissions() {
                assert!(
                    ALL_PERMISSIONS.contains(p),
                    "{p} missing from administrator"
                );
            }
        }
    }
}
