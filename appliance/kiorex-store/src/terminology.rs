//! Code systems and their concepts in PostgreSQL: the ICD-10-CM list that ships with Kiorex
//! (`terminology/icd10cm.tsv.gz`, see `terminology/SOURCE.md`), loaded by `kiorex migrate`, and
//! searched as a clinician types (a code prefix, or words of the description).
//!
//! Loading happens with the migrations rather than at server start-up: the server starts in
//! well under a second whatever the size of the list, and a new list in a new release is loaded
//! by the same step that already runs before every rollout. The load is idempotent: the
//! checksum of the loaded file is recorded, and the same file is not loaded twice.

use crate::StoreResult;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Text, Timestamptz};
use sha2::{Digest, Sha256};
use std::io::Read;

/// The id of ICD-10-CM in `code_system` and the FHIR system URI of its codes.
pub const ICD10CM: &str = "icd-10-cm";

/// The ICD-10-CM release bundled with this build (CDC/NCHS, public domain).
pub struct Bundled {
    pub id: &'static str,
    pub name: &'static str,
    pub version: &'static str,
    pub licence: &'static str,
    pub data: &'static [u8],
}

pub const BUNDLED_ICD10CM: Bundled = Bundled {
    id: ICD10CM,
    name: "ICD-10-CM (CDC/NCHS), via simple-icd-10-cm 1.5.0",
    version: "April 2026",
    licence: "Public domain (U.S. government work, CDC National Center for Health Statistics)",
    data: include_bytes!("../terminology/icd10cm.tsv.gz"),
};

/// A loaded code system: what it is and where it came from.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct CodeSystem {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub version: String,
    #[diesel(sql_type = Text)]
    pub licence: String,
    #[diesel(sql_type = Text)]
    pub sha256: String,
    #[diesel(sql_type = Integer)]
    pub concept_count: i32,
    #[diesel(sql_type = Timestamptz)]
    pub loaded_at: DateTime<Utc>,
}

/// One code with its description.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Concept {
    #[diesel(sql_type = Text)]
    pub code: String,
    #[diesel(sql_type = Text)]
    pub display: String,
    #[diesel(sql_type = Bool)]
    pub billable: bool,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// The same file (same checksum) was already loaded.
    Unchanged,
    /// The list was (re)loaded with this many codes.
    Loaded(usize),
}

/// Loads the bundled ICD-10-CM list unless that very file is loaded already.
pub fn load_bundled(conn: &mut PgConnection, now: DateTime<Utc>) -> StoreResult<Loaded> {
    load(conn, &BUNDLED_ICD10CM, now)
}

/// Loads `source` (a gzip of `code TAB billable(0|1) TAB description` lines), replacing the
/// concepts of an earlier version of the same system in one transaction.
pub fn load(conn: &mut PgConnection, source: &Bundled, now: DateTime<Utc>) -> StoreResult<Loaded> {
    let sha256 = hex_sha256(source.data);
    if system(conn, source.id)?.is_some_and(|s| s.sha256 == sha256) {
        return Ok(Loaded::Unchanged);
    }
    let concepts = parse(source.data)?;
    conn.transaction(|conn| {
        diesel::sql_query("DELETE FROM code_system WHERE id = $1")
            .bind::<Text, _>(source.id)
            .execute(conn)?;
        diesel::sql_query(
            "INSERT INTO code_system (id, name, version, licence, sha256, concept_count, loaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind::<Text, _>(source.id)
        .bind::<Text, _>(source.name)
        .bind::<Text, _>(source.version)
        .bind::<Text, _>(source.licence)
        .bind::<Text, _>(&sha256)
        .bind::<Integer, _>(concepts.len() as i32)
        .bind::<Timestamptz, _>(now)
        .execute(conn)?;
        // unnest() takes a batch as three arrays: one statement per 10,000 codes.
        for batch in concepts.chunks(10_000) {
            let codes: Vec<&str> = batch.iter().map(|c| c.code.as_str()).collect();
            let displays: Vec<&str> = batch.iter().map(|c| c.display.as_str()).collect();
            let billable: Vec<bool> = batch.iter().map(|c| c.billable).collect();
            diesel::sql_query(
                "INSERT INTO concept (system, code, display, billable) \
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::boolean[])",
            )
            .bind::<Text, _>(source.id)
            .bind::<diesel::sql_types::Array<Text>, _>(codes)
            .bind::<diesel::sql_types::Array<Text>, _>(displays)
            .bind::<diesel::sql_types::Array<Bool>, _>(billable)
            .execute(conn)?;
        }
        Ok::<_, crate::StoreError>(())
    })?;
    Ok(Loaded::Loaded(concepts.len()))
}

fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse(gz: &[u8]) -> StoreResult<Vec<Concept>> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| crate::StoreError::Migration(format!("the code list is unreadable: {e}")))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            match (fields.next(), fields.next(), fields.next()) {
                (Some(code), Some(billable), Some(display)) => Ok(Concept {
                    code: code.to_owned(),
                    billable: billable == "1",
                    display: display.to_owned(),
                }),
                _ => Err(crate::StoreError::Migration(format!(
                    "the code list has a malformed line: {line:?}"
                ))),
            }
        })
        .collect()
}

/// The loaded version of a code system, if any.
pub fn system(conn: &mut PgConnection, id: &str) -> StoreResult<Option<CodeSystem>> {
    Ok(diesel::sql_query(
        "SELECT id, name, version, licence, sha256, concept_count, loaded_at \
         FROM code_system WHERE id = $1",
    )
    .bind::<Text, _>(id)
    .get_result(conn)
    .optional()?)
}

/// One code exactly as written (dot or not, any case).
pub fn lookup(conn: &mut PgConnection, system: &str, code: &str) -> StoreResult<Option<Concept>> {
    Ok(diesel::sql_query(
        "SELECT code, display, billable FROM concept WHERE system = $1 AND code_key = $2",
    )
    .bind::<Text, _>(system)
    .bind::<Text, _>(code_key(code))
    .get_result(conn)
    .optional()?)
}

/// What was typed in a code picker: the start of a code, or words of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    CodePrefix(String),
    Words(Vec<String>),
}

/// A letter then a digit (`E1`, `e11.9`, `S72001A`) is a code; anything else is words.
pub fn parse_typed(typed: &str) -> Option<Typed> {
    let t = typed.trim();
    let mut chars = t.chars();
    let looks_like_code = matches!(
        (chars.next(), chars.next()),
        (Some(a), Some(b)) if a.is_ascii_alphabetic() && b.is_ascii_digit()
    ) && !t.contains(char::is_whitespace);
    if looks_like_code {
        return Some(Typed::CodePrefix(code_key(t)));
    }
    let words: Vec<String> = t
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    (!words.is_empty()).then_some(Typed::Words(words))
}

fn code_key(code: &str) -> String {
    code.trim().replace('.', "").to_uppercase()
}

/// Words beyond this many in the search box are ignored (six words pin down any diagnosis).
const MAX_WORDS: usize = 6;

/// Escapes LIKE's wildcards so that what was typed is matched literally.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Codes matching what was typed: billable codes first, then shorter (more general) codes,
/// then in code order. Words must all appear in the description (in any order).
pub fn search(
    conn: &mut PgConnection,
    system: &str,
    typed: &Typed,
    limit: i64,
) -> StoreResult<Vec<Concept>> {
    match typed {
        Typed::CodePrefix(prefix) => Ok(diesel::sql_query(
            "SELECT code, display, billable FROM concept \
             WHERE system = $1 AND code_key LIKE $2 \
             ORDER BY length(code_key), code LIMIT $3",
        )
        .bind::<Text, _>(system)
        .bind::<Text, _>(format!("{}%", like_escape(prefix)))
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load(conn)?),
        Typed::Words(words) => {
            // One LIKE per word (not `LIKE ALL (array)`): GIN cannot take an array condition,
            // but it combines one trigram index scan per word with a bitmap AND.
            let words: Vec<&String> = words.iter().take(MAX_WORDS).collect();
            let conditions: Vec<String> = (0..words.len())
                .map(|i| format!("lower(display) LIKE ${}", i + 3))
                .collect();
            let sql = format!(
                "SELECT code, display, billable FROM concept WHERE system = $1 AND {} \
                 ORDER BY billable DESC, length(display), code LIMIT $2",
                conditions.join(" AND ")
            );
            let mut query = diesel::sql_query(sql)
                .into_boxed::<diesel::pg::Pg>()
                .bind::<Text, _>(system.to_owned())
                .bind::<diesel::sql_types::BigInt, _>(limit);
            for w in words {
                query = query.bind::<Text, _>(format!("%{}%", like_escape(w)));
            }
            Ok(query.load(conn)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_then_a_digit_is_a_code_prefix() {
        assert_eq!(
            parse_typed(" e11.9 "),
            Some(Typed::CodePrefix("E119".into()))
        );
        assert_eq!(parse_typed("S72"), Some(Typed::CodePrefix("S72".into())));
    }

    #[test]
    fn anything_else_is_words_in_lower_case() {
        assert_eq!(
            parse_typed("Type 2 diabetes"),
            Some(Typed::Words(vec![
                "type".into(),
                "2".into(),
                "diabetes".into()
            ]))
        );
        assert_eq!(parse_typed("   "), None);
        assert_eq!(parse_typed("100%_"), Some(Typed::Words(vec!["100".into()])));
    }

    #[test]
    fn the_bundled_list_parses_and_has_billable_and_header_codes() {
        let concepts = parse(BUNDLED_ICD10CM.data).unwrap();
        assert!(concepts.len() > 90_000, "{}", concepts.len());
        let e119 = concepts.iter().find(|c| c.code == "E11.9").unwrap();
        assert!(e119.billable);
        assert_eq!(
            e119.display,
            "Type 2 diabetes mellitus without complications"
        );
        assert!(!concepts.iter().find(|c| c.code == "E11").unwrap().billable);
    }

    #[test]
    fn wildcards_are_matched_literally() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }
}
