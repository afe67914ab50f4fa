//! SMART scopes: does a granted scope string allow a required scope? Pure, no I/O.
//!
//! Supported grammar: SMART v1 `system/<Type|*>.<read|write|*>`. A v2 scope such as
//! `system/Patient.rs` is read as read when it holds `r` and `s`, and as write when it holds
//! `c`, `u` and `d`. `user/` and `patient/` scopes never satisfy a `system/` requirement:
//! partners authenticate as systems.

/// Whether any of the space-separated `granted` scopes allows `required`
/// (`system/<Type|*>.<read|write>`).
pub fn allows(granted: &str, required: &str) -> bool {
    let Some((req_type, req_action)) = parse(required) else {
        return false;
    };
    granted.split_ascii_whitespace().any(|g| {
        parse(g).is_some_and(|(t, a)| (t == "*" || t == req_type) && action_allows(a, req_action))
    })
}

fn parse(scope: &str) -> Option<(&str, &str)> {
    scope.strip_prefix("system/")?.split_once('.')
}

fn action_allows(granted: &str, required: &str) -> bool {
    if granted == "*" || granted == required {
        return true;
    }
    let has = |letters: &str| {
        !granted.is_empty()
            && granted.chars().all(|c| "cruds".contains(c))
            && letters.chars().all(|c| granted.contains(c))
    };
    match required {
        "read" => has("rs"),
        "write" => has("cud"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::allows;

    #[test]
    fn exact_and_wildcard_scopes_allow() {
        let granted = "system/Patient.read system/Observation.write";
        assert!(allows(granted, "system/Patient.read"));
        assert!(allows(granted, "system/Observation.write"));
        assert!(allows("system/*.read", "system/Encounter.read"));
        assert!(allows("system/Patient.*", "system/Patient.write"));
        assert!(allows("system/Patient.rs", "system/Patient.read"));
        assert!(allows("system/Patient.cruds", "system/Patient.write"));
    }

    #[test]
    fn anything_else_does_not() {
        let granted = "system/Patient.read system/Observation.write";
        assert!(!allows(granted, "system/Patient.write"));
        assert!(!allows(granted, "system/Observation.read"));
        assert!(!allows(granted, "system/Encounter.read"));
        assert!(!allows(
            "user/Patient.read patient/*.read",
            "system/Patient.read"
        ));
        assert!(!allows("system/Patient.r", "system/Patient.read"));
        assert!(!allows("system/Patient.readx", "system/Patient.read"));
        assert!(!allows("", "system/Patient.read"));
        assert!(!allows("system/*.read", "system/*.write"));
        assert!(!allows("system/Patient.read", "system/*.read"));
    }
}
