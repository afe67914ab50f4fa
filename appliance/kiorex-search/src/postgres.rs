//! The embedded engine: PostgreSQL over the store's own index tables, which every write updates
//! in its transaction, so a patient is findable the moment it is registered and there is no
//! second copy to rebuild. Name fragments match a word of the patient's names by prefix
//! (`search_string_prefix`, text_pattern_ops) or by trigram similarity (`search_string_trgm`,
//! pg_trgm's `%`), which absorbs about one typo in a name of five letters or more.

use crate::{FrontDeskQuery, Hit, PatientSearch, SearchError};
use chrono::{Days, NaiveDate};
use diesel::prelude::*;
use diesel::sql_types::{Array, Double, Int8, Text, Timestamptz, Uuid as SqlUuid};
use kiorex_store::Store;
use uuid::Uuid;

pub struct PostgresSearch {
    pub(crate) store: Store,
}

impl PostgresSearch {
    pub fn new(store: Store) -> PostgresSearch {
        PostgresSearch { store }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    patient_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    facility_id: Uuid,
    #[diesel(sql_type = Double)]
    score: f64,
}

enum Bind {
    Text(String),
    Texts(Vec<String>),
    Uuids(Vec<Uuid>),
    Time(chrono::DateTime<chrono::Utc>),
    Int(i64),
}

struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }
}

/// How name fragments are matched. Prefixes first: they use the B-tree index alone and are what
/// the front desk types most; the trigram pass (typos) runs only when the prefixes found less
/// than a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Prefix,
    Typos,
}

/// Which patients a name fragment is matched among.
#[derive(Debug, Clone, Copy)]
enum Among<'a> {
    Everyone,
    /// A `SELECT resource_id` of the few patients an exact criterion (a birth date, an
    /// identifier) allows.
    Exactly(&'a str),
    /// The patients of the driving fragment (the `driving` table of the statement).
    Driving,
}

/// One name fragment's best match per patient: exact word 1, prefix 0.8, else (typo pass) the
/// trigram similarity of a similar word (at least pg_trgm's threshold, 0.3 by default).
fn name_term(sql: &mut Sql, term: &str, pass: Pass, among: Among<'_>) -> String {
    let exact = sql.bind(Bind::Text(term.to_owned()));
    let prefix = sql.bind(Bind::Text(format!("{}%", like_escape(term))));
    let (otherwise, matches) = match pass {
        Pass::Prefix => ("0.8".to_owned(), format!("s.value LIKE {prefix}")),
        Pass::Typos => (
            format!(
                "CASE WHEN s.value LIKE {prefix} THEN 0.8 ELSE similarity(s.value, {exact}) END"
            ),
            // The similar words come from the vocabulary (`search_word`: each distinct word
            // once, with a trigram index), their patients through the B-tree index. As an array
            // (computed once), not `IN (subquery)`, which the planner turns into a scan.
            format!(
                "(s.value LIKE {prefix} OR s.value = ANY(ARRAY(SELECT w.value FROM search_word w \
                   WHERE w.resource_type = 'Patient' AND w.param = 'name' AND w.value % {exact})))"
            ),
        ),
    };
    let (join, among) = match among {
        Among::Everyone => ("", String::new()),
        Among::Exactly(ids) => ("", format!(" AND s.resource_id = ANY(ARRAY({ids}))")),
        // A join, not `= ANY(ARRAY(...))`: the driving fragment may match thousands of
        // patients, and an array is searched element by element for every row.
        Among::Driving => (" JOIN driving USING (resource_id)", String::new()),
    };
    format!(
        "SELECT s.resource_id, max(CASE WHEN s.value = {exact} THEN 1.0 ELSE {otherwise} END)::float8 AS best \
         FROM search_string s{join} \
         WHERE s.resource_type = 'Patient' AND s.param = 'name' AND {matches}{among} \
         GROUP BY s.resource_id"
    )
}

pub(crate) fn like_escape(term: &str) -> String {
    term.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The patients matching one exact criterion, from its index alone (a `SELECT resource_id`).
/// Birth dates: the date index is ordered by `low`, so the range on `low` is bounded below too
/// (a year-only birth date starts at most a year before the day), or every earlier birth date
/// would be read.
fn date_ids(sql: &mut Sql, day: NaiveDate) -> String {
    let (start, end) = day_bounds(day);
    let earliest = start - chrono::Duration::days(367);
    let (start, end, earliest) = (
        sql.bind(Bind::Time(start)),
        sql.bind(Bind::Time(end)),
        sql.bind(Bind::Time(earliest)),
    );
    format!(
        "SELECT d.resource_id FROM search_date d WHERE d.resource_type = 'Patient' \
           AND d.param = 'birthdate' AND d.low >= {earliest} AND d.low < {end} AND d.high >= {start}"
    )
}

fn identifier_ids(sql: &mut Sql, identifiers: &[String]) -> String {
    let ids = sql.bind(Bind::Texts(identifiers.to_vec()));
    format!(
        "SELECT t.resource_id FROM search_token t WHERE t.resource_type = 'Patient' \
           AND t.param = 'identifier' AND upper(t.code) = ANY({ids})"
    )
}

fn phone_ids(sql: &mut Sql, phone: &str) -> String {
    let phone = sql.bind(Bind::Text(phone.to_owned()));
    format!(
        "SELECT t.resource_id FROM search_token t WHERE t.resource_type = 'Patient' \
           AND t.param = 'phone' AND t.code = {phone}"
    )
}

/// One statement: the patients are read starting from the most selective index (the names'
/// matches, else an identifier, a phone, a birth date), and the other criteria filter them.
fn build(query: &FrontDeskQuery, facilities: &[Uuid], limit: usize, pass: Pass) -> Sql {
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
    };
    let facilities = sql.bind(Bind::Uuids(facilities.to_vec()));
    let mut exact: Vec<String> = Vec::new();
    if !query.identifiers.is_empty() {
        exact.push(identifier_ids(&mut sql, &query.identifiers));
    }
    if let Some(phone) = &query.phone {
        exact.push(phone_ids(&mut sql, phone));
    }
    if let Some(day) = query.birth_date {
        exact.push(date_ids(&mut sql, day));
    }
    let mut with = String::new();
    let (from, score) = if !query.names.is_empty() {
        // The longest fragment drives: the others are matched among its patients only. Every
        // fragment must match anyway, and a fragment of one or two letters ("okafor n") would
        // otherwise read every name word starting with them.
        let mut names: Vec<&String> = query.names.iter().collect();
        names.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
        let among = exact
            .first()
            .map_or(Among::Everyone, |ids| Among::Exactly(ids));
        let driving = name_term(&mut sql, names[0], pass, among);
        with = format!("WITH driving AS MATERIALIZED ({driving}) ");
        let mut terms = vec!["SELECT resource_id, best FROM driving".to_owned()];
        for t in &names[1..] {
            terms.push(name_term(&mut sql, t, pass, Among::Driving));
        }
        let needed = sql.bind(Bind::Int(terms.len() as i64));
        let from = format!(
            "(SELECT resource_id, sum(best) AS score FROM ({}) per_term \
              GROUP BY resource_id HAVING count(*) = {needed}) n \
             JOIN resource r ON r.id = n.resource_id",
            terms.join(" UNION ALL ")
        );
        (from, "n.score")
    } else {
        let driving = exact.remove(0);
        (
            format!(
                "(SELECT DISTINCT resource_id FROM ({driving}) c0) c JOIN resource r ON r.id = c.resource_id"
            ),
            "0.0",
        )
    };
    let mut filters = vec![
        "r.resource_type = 'Patient'".to_owned(),
        "NOT r.deleted".to_owned(),
        format!("r.facility_id = ANY({facilities})"),
    ];
    filters.extend(exact.iter().map(|ids| format!("r.id IN ({ids})")));
    let limit = sql.bind(Bind::Int(limit as i64));
    sql.text = format!(
        "{with}SELECT r.id AS patient_id, r.facility_id, ({score})::float8 AS score FROM {from} \
         WHERE {} ORDER BY score DESC, r.id LIMIT {limit}",
        filters.join(" AND ")
    );
    sql
}

/// The birth date as the half-open instant range the date index holds it in.
fn day_bounds(day: NaiveDate) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    let next = day
        .checked_add_days(Days::new(1))
        .unwrap_or(day)
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    (start, next)
}

impl PatientSearch for PostgresSearch {
    async fn find_patients(
        &self,
        query: &FrontDeskQuery,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<Hit>, SearchError> {
        if query.is_empty() || facilities.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (query, facilities) = (query.clone(), facilities.to_vec());
        let rows = self
            .store
            .run(move |conn| {
                let mut rows = load(conn, build(&query, &facilities, limit, Pass::Prefix))?;
                if !query.names.is_empty() && rows.len() < typo_pass_below(limit) {
                    rows = load(conn, build(&query, &facilities, limit, Pass::Typos))?;
                }
                Ok(rows)
            })
            .await
            .map_err(|e| SearchError::Unavailable(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|r| Hit {
                patient_id: r.patient_id,
                facility_id: r.facility_id,
                score: r.score,
            })
            .collect())
    }
}

/// The typo pass runs when the prefixes found fewer patients than this. A typo match scores its
/// trigram similarity, below a prefix match's 0.8 for all but near-identical words, so once the
/// prefixes fill the top three (what the front desk looks at) the typo pass would only add names
/// further down; it is skipped to keep each keystroke fast.
fn typo_pass_below(limit: usize) -> usize {
    limit.min(3)
}

fn load(conn: &mut PgConnection, sql: Sql) -> kiorex_store::StoreResult<Vec<Row>> {
    let mut q = diesel::sql_query(sql.text).into_boxed();
    for bind in sql.binds {
        q = match bind {
            Bind::Text(v) => q.bind::<Text, _>(v),
            Bind::Texts(v) => q.bind::<Array<Text>, _>(v),
            Bind::Uuids(v) => q.bind::<Array<SqlUuid>, _>(v),
            Bind::Time(v) => q.bind::<Timestamptz, _>(v),
            Bind::Int(v) => q.bind::<Int8, _>(v),
        };
    }
    Ok(q.load::<Row>(conn)?)
}

#[derive(QueryableByName)]
struct DocumentRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    patient_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    facility_id: Uuid,
    #[diesel(sql_type = Text)]
    title: String,
    #[diesel(sql_type = Text)]
    category: String,
    #[diesel(sql_type = Double)]
    score: f64,
}

/// Every word must appear in the current version's text or in the title ('simple'
/// configuration: no stemming, so names and drug names match as typed).
const DOCUMENTS_SQL: &str = "\
    SELECT d.id, d.patient_id, d.facility_id, d.title, d.category, \
           ts_rank(to_tsvector('simple', coalesce(v.extracted_text, '')), plainto_tsquery('simple', $1))::float8 AS score \
    FROM document d \
    JOIN document_version v ON v.document_id = d.id AND v.version = d.current_version \
    WHERE d.deleted_at IS NULL AND d.facility_id = ANY($2) \
      AND ($3::uuid IS NULL OR d.patient_id = $3) \
      AND (to_tsvector('simple', coalesce(v.extracted_text, '')) @@ plainto_tsquery('simple', $1) \
           OR to_tsvector('simple', d.title) @@ plainto_tsquery('simple', $1)) \
    ORDER BY score DESC, d.created_at DESC, d.id LIMIT $4";

impl crate::DocumentSearch for PostgresSearch {
    async fn find_documents(
        &self,
        text: &str,
        patient: Option<Uuid>,
        facilities: &[Uuid],
        limit: usize,
    ) -> Result<Vec<crate::DocumentHit>, SearchError> {
        if text.trim().is_empty() || facilities.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (text, facilities) = (text.to_owned(), facilities.to_vec());
        let rows = self
            .store
            .run(move |conn| {
                Ok(diesel::sql_query(DOCUMENTS_SQL)
                    .bind::<Text, _>(text)
                    .bind::<Array<SqlUuid>, _>(facilities)
                    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(patient)
                    .bind::<Int8, _>(limit as i64)
                    .load::<DocumentRow>(conn)?)
            })
            .await
            .map_err(|e| SearchError::Unavailable(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|r| crate::DocumentHit {
                document_id: r.id,
                patient_id: r.patient_id,
                facility_id: r.facility_id,
                title: r.title,
                category: r.category,
                score: r.score,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_criterion_narrows_and_the_facilities_always_bound() {
        let query = crate::parse("oka ngozi 12/03/1980 GEN-1");
        let sql = build(&query, &[Uuid::nil()], 10, Pass::Typos);
        assert!(sql.text.contains("r.facility_id = ANY($1)"));
        assert!(
            sql.text.contains("HAVING count(*) = $10"),
            "both name terms must match: {}",
            sql.text
        );
        assert!(sql.text.contains("param = 'birthdate'"));
        assert!(sql.text.contains("param = 'identifier'"));
        assert!(sql.text.contains("w.value % "), "typos in this pass");
        assert!(
            sql.text
                .contains("AND s.resource_id = ANY(ARRAY(SELECT t.resource_id"),
            "names are matched among the identifier's patients"
        );
        assert!(
            sql.text.starts_with("WITH driving AS MATERIALIZED ("),
            "one name drives: {}",
            sql.text
        );
        let first_name = sql.binds.iter().find(|b| matches!(b, Bind::Text(_)));
        assert!(
            matches!(first_name, Some(Bind::Text(t)) if t == "ngozi"),
            "the longer name drives"
        );
        assert!(
            sql.text
                .contains("FROM search_string s JOIN driving USING (resource_id)"),
            "the shorter name is matched among the longer one's patients"
        );
        assert_eq!(sql.binds.len(), 11);
        let prefix = build(&query, &[Uuid::nil()], 10, Pass::Prefix);
        assert!(!prefix.text.contains('%'), "no trigram in the prefix pass");
    }

    #[test]
    fn without_a_name_the_search_starts_from_the_exact_criterion() {
        let sql = build(
            &crate::parse("12/03/1980"),
            &[Uuid::nil()],
            10,
            Pass::Prefix,
        );
        assert!(
            sql.text.contains(
                "FROM (SELECT DISTINCT resource_id FROM (SELECT d.resource_id FROM search_date d"
            ),
            "{}",
            sql.text
        );
        assert!(
            sql.text.contains("d.low >= $4"),
            "the date range is bounded below"
        );
        let sql = build(
            &crate::parse("GEN-1 12/03/1980"),
            &[Uuid::nil()],
            10,
            Pass::Prefix,
        );
        assert!(sql.text.contains(
            "FROM (SELECT DISTINCT resource_id FROM (SELECT t.resource_id FROM search_token t"
        ));
        assert!(sql.text.contains("r.id IN (SELECT d.resource_id"));
    }

    #[test]
    fn like_wildcards_typed_by_a_user_are_literal() {
        assert_eq!(like_escape("o_k%"), "o\\_k\\%");
    }
}
