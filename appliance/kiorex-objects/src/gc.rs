//! The orphan sweep. An upload stores the object first and writes its row after; a crash in
//! between leaves an object that no row names. Those are found here and removed by
//! `kiorex objects gc`. Objects younger than a grace period are left alone: their row may be
//! about to be written by an upload still in flight.

use crate::store::Listed;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// Keys of listed objects that no row knows and that are older than `cutoff`. An object whose
/// date cannot be read is kept: deleting a document by mistake is worse than keeping an orphan.
pub fn orphans(listed: &[Listed], known: &HashSet<String>, cutoff: DateTime<Utc>) -> Vec<String> {
    listed
        .iter()
        .filter(|o| !known.contains(&o.key))
        .filter(|o| {
            DateTime::parse_from_rfc3339(&o.last_modified).is_ok_and(|at| at.to_utc() < cutoff)
        })
        .map(|o| o.key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str, at: &str) -> Listed {
        Listed {
            key: key.into(),
            last_modified: at.into(),
            size: 1,
        }
    }

    #[test]
    fn only_old_unknown_objects_are_orphans() {
        let objects = [
            listed("a", "2026-11-01T10:00:00.000Z"),
            listed("b", "2026-11-01T10:00:00.000Z"),
            listed("young", "2026-11-22T10:59:00.000Z"),
            listed("undated", "yesterday"),
        ];
        let known: HashSet<String> = ["a".to_owned()].into();
        let cutoff = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(orphans(&objects, &known, cutoff), vec!["b".to_owned()]);
    }
}
