//! The audit trail's hash chain. Each entry's hash covers its own content and the hash of the
//! entry before it, so changing or deleting any entry breaks every hash after it.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash that precedes the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an audit entry that the chain protects, in the order they are hashed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFacts<'a> {
    pub seq: i64,
    /// RFC 3339 with microseconds, UTC.
    pub recorded_at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub patient_id: &'a str,
    pub facility_id: &'a str,
    pub request_id: &'a str,
    pub detail: &'a str,
}

/// The hash of an entry given the hash of the entry before it.
pub fn chain_hash(previous: &str, facts: &AuditFacts<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    for field in [
        &facts.seq.to_string()[..],
        facts.recorded_at,
        facts.actor,
        facts.action,
        facts.outcome,
        facts.resource_type,
        facts.resource_id,
        facts.patient_id,
        facts.facility_id,
        facts.request_id,
        facts.detail,
    ] {
        // Length-prefix every field so that moving a character between fields changes the hash.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Where a chain stops being consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The entry's content no longer matches its hash (it was changed).
    Altered { seq: i64 },
    /// The entry does not follow the one before it (an entry was deleted or inserted).
    Broken { seq: i64, expected_previous: String },
    /// Sequence numbers skip: entries between were deleted.
    Gap { after: i64, next: i64 },
}

/// Checks one stored entry against the previous one. `stored_previous` and `stored_hash` are what
/// the row says; `previous` is what verification computed for the entry before.
pub fn verify_link(
    previous_seq: Option<i64>,
    previous: &str,
    stored_previous: &str,
    stored_hash: &str,
    facts: &AuditFacts<'_>,
) -> Result<(), ChainBreak> {
    if let Some(prev_seq) = previous_seq
        && facts.seq != prev_seq + 1
    {
        return Err(ChainBreak::Gap {
            after: prev_seq,
            next: facts.seq,
        });
    }
    if stored_previous != previous {
        return Err(ChainBreak::Broken {
            seq: facts.seq,
            expected_previous: previous.to_owned(),
        });
    }
    if chain_hash(previous, facts) != stored_hash {
        return Err(ChainBreak::Altered { seq: facts.seq });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(seq: i64, actor: &'static str) -> AuditFacts<'static> {
        AuditFacts {
            seq,
            recorded_at: "2026-11-22T10:00:00.000000Z",
            actor,
            action: "read",
            outcome: "success",
            resource_type: "Patient",
            resource_id: "p1",
            patient_id: "p1",
            facility_id: "f1",
            request_id: "r1",
            detail: "",
        }
    }

    #[test]
    fn a_chain_verifies_and_a_change_is_caught() {
        let h1 = chain_hash(GENESIS, &facts(1, "alice"));
        let h2 = chain_hash(&h1, &facts(2, "bob"));
        assert_eq!(
            verify_link(None, GENESIS, GENESIS, &h1, &facts(1, "alice")),
            Ok(())
        );
        assert_eq!(
            verify_link(Some(1), &h1, &h1, &h2, &facts(2, "bob")),
            Ok(())
        );
        assert_eq!(
            verify_link(Some(1), &h1, &h1, &h2, &facts(2, "mallory")),
            Err(ChainBreak::Altered { seq: 2 })
        );
    }

    #[test]
    fn a_deleted_entry_is_caught() {
        let h1 = chain_hash(GENESIS, &facts(1, "alice"));
        let h2 = chain_hash(&h1, &facts(2, "bob"));
        let h3 = chain_hash(&h2, &facts(3, "carol"));
        // Entry 2 removed: 3 no longer follows 1.
        assert_eq!(
            verify_link(Some(1), &h1, &h2, &h3, &facts(3, "carol")),
            Err(ChainBreak::Gap { after: 1, next: 3 })
        );
    }

    #[test]
    fn moving_text_between_fields_changes_the_hash() {
        let mut a = facts(1, "ab");
        a.action = "c";
        let mut b = facts(1, "a");
        b.action = "bc";
        assert_ne!(chain_hash(GENESIS, &a), chain_hash(GENESIS, &b));
    }
}
