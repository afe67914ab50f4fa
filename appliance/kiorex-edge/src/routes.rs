//! The allow-list: which requests the edge forwards, and what scope each needs. Pure functions,
//! no I/O.

use crate::settings::{Route, RouteAuth};
use http::Method;

/// A request that the allow-list admits, and the scope it needs (None: no token checked here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted<'a> {
    pub route: &'a Route,
    pub scope: Option<String>,
}

/// The first route that admits `method` on `path`, or None (the edge answers 404).
///
/// Paths that could mean something else further in (`..`, `.`, empty segments, percent-encoded
/// slashes, dots or backslashes) are never admitted: what the edge checks is what core routes.
pub fn admit<'a>(routes: &'a [Route], method: &Method, path: &str) -> Option<Admitted<'a>> {
    if !is_plain(path) {
        return None;
    }
    let route = routes.iter().find(|r| {
        (r.methods.contains(method)
            || (*method == Method::HEAD && r.methods.contains(&Method::GET)))
            && under(path, &r.prefix)
    })?;
    let scope = match &route.auth {
        RouteAuth::Public => None,
        RouteAuth::Scope(s) => Some(s.clone()),
        RouteAuth::Fhir => Some(fhir_scope(method, path)?),
    };
    Some(Admitted { route, scope })
}

/// `path` is `prefix` or below it at a segment boundary (`/fhir` admits `/fhir/Patient`, not
/// `/fhirx`).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn is_plain(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%2e", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return false;
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || (i == last && i > 0)))
}

/// The SMART v1 system scope a FHIR request needs: the resource type from the path and `read`
/// for GET/HEAD and searches, `write` otherwise. Whole-system requests (`/fhir` itself, a
/// transaction Bundle, `/fhir/_history`) need the wildcard type. None: not a FHIR path.
pub fn fhir_scope(method: &Method, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/fhir")?;
    let mut segments = rest
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty());
    let first = segments.next();
    let resource = match first {
        Some(t) if is_resource_type(t) => t,
        Some(t) if t.starts_with('_') || t.starts_with('$') => "*",
        None => "*",
        Some(_) => return None,
    };
    let search = path.ends_with("/_search");
    let action = if *method == Method::GET || *method == Method::HEAD || search {
        "read"
    } else {
        "write"
    };
    Some(format!("system/{resource}.{action}"))
}

fn is_resource_type(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::default_routes;

    fn scope(method: Method, path: &str) -> Option<Option<String>> {
        let routes = default_routes();
        admit(&routes, &method, path).map(|a| a.scope)
    }

    #[test]
    fn fhir_reads_and_writes_need_the_matching_scope() {
        assert_eq!(
            scope(Method::GET, "/fhir/Patient/123"),
            Some(Some("system/Patient.read".into()))
        );
        assert_eq!(
            scope(Method::POST, "/fhir/Observation"),
            Some(Some("system/Observation.write".into()))
        );
        assert_eq!(
            scope(Method::POST, "/fhir/Patient/_search"),
            Some(Some("system/Patient.read".into()))
        );
        assert_eq!(
            scope(Method::POST, "/fhir"),
            Some(Some("system/*.write".into()))
        );
        assert_eq!(scope(Method::GET, "/fhir/metadata"), Some(None));
    }

    #[test]
    fn everything_else_is_not_admitted() {
        for (method, path) in [
            (Method::GET, "/api/v1/patients"),
            (Method::POST, "/api/v1/auth/token"),
            (Method::GET, "/fhirx/Patient"),
            (Method::GET, "/fhir/../api/v1/patients"),
            (Method::GET, "/fhir/%2e%2e/api/v1/patients"),
            (Method::GET, "/fhir/Patient%2F1"),
            (Method::GET, "/fhir//Patient"),
            (Method::GET, "/fhir/patient"),
            (Method::GET, "/openapi.json"),
            (Method::GET, "/health/ready"),
            (Method::OPTIONS, "/fhir/Patient"),
            (Method::TRACE, "/fhir/Patient"),
            (Method::POST, "/fhir/metadata/x"),
        ] {
            assert_eq!(scope(method.clone(), path), None, "{method} {path}");
        }
    }
}
