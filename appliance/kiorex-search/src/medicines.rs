//! The formulary on PostgreSQL: FHIR `Medication` resources, found through the store's string
//! index (`name`, `ingredient`, `form` words, written with each Medication). Every typed word must
//! match a word by prefix (`amox`) or by trigram similarity (`amoxicilin`, one letter missing),
//! the similar words found in the vocabulary (`search_word`).

use crate::meili::mapping::medicine_doc;
use crate::postgres::PostgresSearch;
use crate::{MedicineHit, SearchError};
use diesel::prelude::*;
use diesel::sql_types::{Array, Double, Int8, Jsonb, Text, Uuid as SqlUuid};
use kiorex_domain::names::fold;
use uuid::Uuid;

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    facility_id: Uuid,
    #[diesel(sql_type = Jsonb)]
    content: serde_json::Value,
    #[diesel(sql_type = Double)]
    score: f64,
}

/// Each word's best match per medication (exact 1, prefix 0.8, else similarity); a medication
/// must match every word. `$1` the words, `$2` their LIKE prefixes, `$3` facilities, `$4` limit.
const SQL: &str = "\
    WITH words AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(word, prefix, n)), \
    per_word AS ( \
      SELECT w.n, s.resource_id, max(CASE WHEN s.value = w.word THEN 1.0 \
             WHEN s.value LIKE w.prefix THEN 0.8 ELSE similarity(s.value, w.word) END) AS best \
      FROM words w JOIN search_string s ON s.resource_type = 'Medication' \
        AND s.param IN ('name', 'ingredient', 'form') \
        AND (s.value LIKE w.prefix OR s.value = ANY(ARRAY(SELECT v.value FROM search_word v \
             WHERE v.resource_type = 'Medication' AND v.value % w.word))) \
      GROUP BY w.n, s.resource_id), \
    matched AS ( \
      SELECT resource_id, sum(best) AS score FROM per_word GROUP BY resource_id \
      HAVING count(*) = cardinality($1::text[])) \
    SELECT r.id, r.facility_id, r.content, m.score::float8 AS score \
    FROM matched m JOIN resource r ON r.id = m.resource_id \
    WHERE r.resource_type = 'Medication' AND NOT r.deleted AND r.facility_id = ANY($3) \
    ORDER BY score DESC, r.id LIMIT $4";

/// The folded words of what was typed, and each one's LIKE prefix pattern.
fn words(text: &str) -> (Vec<String>, Vec<String>) {
    let words: Vec<String> = fold(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let prefixes = words
        .iter()
        .map(|w| format!("{}%", crate::postgres::like_escape(w)))
        .collect();
    (words, prefixes)
}

impl PostgresSearch {
    pub(crate) async fn find_medicines(
        &self,
        text: &str,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<MedicineHit>, SearchError> {
        let (words, prefixes) = words(text);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let facilities = facilities.to_vec();
        let rows = self
            .store
            .run(move |conn| {
                Ok(diesel::sql_query(SQL)
                    .bind::<Array<Text>, _>(words)
                    .bind::<Array<Text>, _>(prefixes)
                    .bind::<Array<SqlUuid>, _>(facilities)
                    .bind::<Int8, _>(limit as i64)
                    .load::<Row>(conn)?)
            })
            .await
            .map_err(|e| SearchError::Unavailable(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let doc = medicine_doc(r.id, r.facility_id, &r.content);
                MedicineHit {
                    medication_id: r.id,
                    facility_id: r.facility_id,
                    name: doc.name,
                    ingredients: doc.ingredients,
                    form: doc.form,
                    score: r.score,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn typed_words_are_folded_and_their_wildcards_literal() {
        let (words, prefixes) = super::words(" Amoxi_cillin  500MG ");
        assert_eq!(words, vec!["amoxi", "cillin", "500mg"]);
        assert_eq!(prefixes, vec!["amoxi%", "cillin%", "500mg%"]);
        let (_, escaped) = super::words("a%");
        assert_eq!(escaped, vec!["a%"], "fold drops punctuation, % included");
    }
}
