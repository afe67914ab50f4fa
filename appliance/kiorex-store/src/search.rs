//! Executes a [`SearchQuery`] as one SQL statement: each criterion is a semi-join against its
//! index table, the principal's facilities bound the whole search, and paging is by offset over a
//! stable order (the sort keys, then the id).

use crate::StoreResult;
use crate::resources::Stored;
use crate::schema::search_reference;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{Array, Bool, Int4, Int8, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use kiorex_domain::query::{Criterion, DatePrefix, SearchQuery, SortKey, TokenValue};
use uuid::Uuid;

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = SqlUuid)]
    facility_id: Uuid,
    #[diesel(sql_type = Int4)]
    version_id: i32,
    #[diesel(sql_type = Timestamptz)]
    last_updated: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Jsonb)]
    content: serde_json::Value,
}

/// A value bound to a `$n` placeholder.
enum Bind {
    Text(String),
    Uuids(Vec<Uuid>),
    Time(DateTime<Utc>),
    Int(i64),
}

/// SQL text with its binds, numbered as they are added.
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

/// One page of matches, in order; `has_more` says whether a next page exists.
pub struct Page {
    pub matches: Vec<Stored>,
    pub has_more: bool,
}

pub fn search(conn: &mut PgConnection, q: &SearchQuery) -> StoreResult<Page> {
    if q.facilities.is_empty() {
        return Ok(Page {
            matches: Vec::new(),
            has_more: false,
        });
    }
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
    };
    let type_bind = sql.bind(Bind::Text(q.resource_type.to_owned()));
    let facilities = sql.bind(Bind::Uuids(q.facilities.clone()));
    // A name typed at the front desk matches a few thousand patients at most, but the planner,
    // seeing ORDER BY r.id and a LIMIT, likes to walk every resource in id order hoping to meet
    // them early. The first string criterion is therefore computed first, from its index alone.
    let driving = q
        .criteria
        .iter()
        .position(|c| matches!(c, Criterion::String { .. }));
    if let Some(i) = driving
        && q.sort.is_empty()
    {
        return search_by_matched_name(conn, q, i);
    }
    let mut from = "resource r".to_owned();
    if let Some(i) = driving {
        let inner = criterion_select(&mut sql, &type_bind, &q.criteria[i]).unwrap_or_default();
        sql.text
            .push_str(&format!("WITH driving AS MATERIALIZED ({inner}) "));
        from =
            "(SELECT DISTINCT resource_id FROM driving) d JOIN resource r ON r.id = d.resource_id"
                .to_owned();
    }
    sql.text.push_str(&format!(
        "SELECT r.id, r.resource_type, r.facility_id, r.version_id, r.last_updated, r.deleted, r.content \
         FROM {from} WHERE r.resource_type = {type_bind} AND NOT r.deleted AND r.facility_id = ANY({facilities})"
    ));
    for (i, criterion) in q.criteria.iter().enumerate() {
        if Some(i) == driving {
            continue;
        }
        let condition = criterion_sql(&mut sql, &type_bind, criterion);
        sql.text.push_str(" AND ");
        sql.text.push_str(&condition);
    }
    sql.text.push_str(&order_by(&q.sort));
    let limit = sql.bind(Bind::Int(i64::from(q.count) + 1));
    let offset = sql.bind(Bind::Int(i64::from(q.offset)));
    sql.text
        .push_str(&format!(" LIMIT {limit} OFFSET {offset}"));

    let rows: Vec<Row> = into_query(sql).load(conn)?;
    let has_more = rows.len() > q.count as usize;
    let matches = rows
        .into_iter()
        .take(q.count as usize)
        .map(Stored::from)
        .collect();
    Ok(Page { matches, has_more })
}

/// The front-desk search: the matches of the first string criterion in the order of the matched
/// value (Smit, Smith, Smithe …), from the index alone; then the records themselves, a window at
/// a time, until the page is full. Only the records around the page are ever read.
fn search_by_matched_name(
    conn: &mut PgConnection,
    q: &SearchQuery,
    driving: usize,
) -> StoreResult<Page> {
    #[derive(QueryableByName)]
    struct Match {
        #[diesel(sql_type = SqlUuid)]
        resource_id: Uuid,
    }
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
    };
    let type_bind = sql.bind(Bind::Text(q.resource_type.to_owned()));
    let inner = criterion_select(&mut sql, &type_bind, &q.criteria[driving]).unwrap_or_default();
    sql.text = inner.replacen(
        "SELECT resource_id FROM",
        "SELECT resource_id, min(value) AS matched FROM",
        1,
    ) + " GROUP BY resource_id ORDER BY matched, resource_id";
    let ordered: Vec<Uuid> = into_query(sql)
        .load::<Match>(conn)?
        .into_iter()
        .map(|m| m.resource_id)
        .collect();

    let wanted = (q.offset + q.count + 1) as usize;
    let window = (wanted * 2).max(100);
    let others: Vec<Criterion> = q
        .criteria
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != driving)
        .map(|(_, c)| c.clone())
        .collect();
    let mut found: Vec<Stored> = Vec::new();
    for ids in ordered.chunks(window) {
        let narrowed = SearchQuery {
            criteria: std::iter::once(Criterion::Ids(ids.to_vec()))
                .chain(others.iter().cloned())
                .collect(),
            sort: vec![SortKey::Id { descending: false }],
            count: ids.len() as u32,
            offset: 0,
            ..q.clone()
        };
        let mut rows = search(conn, &narrowed)?.matches;
        rows.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
        found.extend(rows);
        if found.len() >= wanted {
            break;
        }
    }
    let has_more = found.len() > (q.offset + q.count) as usize;
    let matches = found
        .into_iter()
        .skip(q.offset as usize)
        .take(q.count as usize)
        .collect();
    Ok(Page { matches, has_more })
}

fn criterion_sql(sql: &mut Sql, type_bind: &str, criterion: &Criterion) -> String {
    if let Some(inner) = criterion_select(sql, type_bind, criterion) {
        return format!("r.id IN ({inner})");
    }
    match criterion {
        Criterion::Ids(ids) => format!("r.id = ANY({})", sql.bind(Bind::Uuids(ids.clone()))),
        Criterion::LastUpdated(range) => {
            let (low, high) = (
                sql.bind(Bind::Time(range.low)),
                sql.bind(Bind::Time(range.high)),
            );
            date_condition(
                range.prefix,
                "r.last_updated",
                "r.last_updated",
                &low,
                &high,
            )
        }
        _ => unreachable!("index-table criteria are handled by criterion_select"),
    }
}

/// The ids matching a criterion that lives in an index table:
/// `SELECT resource_id FROM <table> WHERE resource_type = .. AND param = .. AND (a OR b)`.
/// `None` for criteria on the resource row itself.
fn criterion_select(sql: &mut Sql, type_bind: &str, criterion: &Criterion) -> Option<String> {
    let (table, param, alternatives) = match criterion {
        Criterion::Ids(_) | Criterion::LastUpdated(_) => return None,
        Criterion::String {
            param,
            values,
            exact,
        } => {
            let alternatives = values
                .iter()
                .map(|v| {
                    if *exact {
                        format!("value = {}", sql.bind(Bind::Text(v.clone())))
                    } else {
                        format!(
                            "value LIKE {}",
                            sql.bind(Bind::Text(format!("{}%", escape_like(v))))
                        )
                    }
                })
                .collect();
            ("search_string", param, alternatives)
        }
        Criterion::Token { param, values } => (
            "search_token",
            param,
            values.iter().map(|t| token_condition(sql, t)).collect(),
        ),
        Criterion::Date { param, range } => {
            let (low, high) = (
                sql.bind(Bind::Time(range.low)),
                sql.bind(Bind::Time(range.high)),
            );
            (
                "search_date",
                param,
                vec![date_condition(range.prefix, "low", "high", &low, &high)],
            )
        }
        Criterion::Reference { param, targets } => {
            let condition = format!(
                "target_id = ANY({})",
                sql.bind(Bind::Uuids(targets.clone()))
            );
            ("search_reference", param, vec![condition])
        }
    };
    // Parameter names come from Kiorex's own table of search parameters, never from the request,
    // and are bound anyway.
    let param_bind = sql.bind(Bind::Text((*param).to_owned()));
    Some(format!(
        "SELECT resource_id FROM {table} WHERE resource_type = {type_bind} AND param = {param_bind} AND ({})",
        alternatives.join(" OR ")
    ))
}

fn token_condition(sql: &mut Sql, token: &TokenValue) -> String {
    let code = sql.bind(Bind::Text(token.code.clone()));
    match &token.system {
        Some(system) => format!(
            "(code = {code} AND system = {})",
            sql.bind(Bind::Text(system.clone()))
        ),
        None => format!("code = {code}"),
    }
}

/// FHIR date semantics: the stored period [low, high] against the searched period [sl, sh].
fn date_condition(prefix: DatePrefix, low: &str, high: &str, sl: &str, sh: &str) -> String {
    match prefix {
        DatePrefix::Eq => format!("({low} >= {sl} AND {high} <= {sh})"),
        DatePrefix::Lt => format!("{low} < {sl}"),
        DatePrefix::Le => format!("{low} <= {sh}"),
        DatePrefix::Gt => format!("{high} > {sh}"),
        DatePrefix::Ge => format!("{high} >= {sl}"),
    }
}

fn order_by(sort: &[SortKey]) -> String {
    let mut keys: Vec<String> = sort
        .iter()
        .map(|key| match key {
            SortKey::LastUpdated { descending } => format!("r.last_updated {}", direction(*descending)),
            SortKey::Id { descending } => format!("r.id {}", direction(*descending)),
            SortKey::String { param, descending } => format!(
                "(SELECT min(value) FROM search_string s WHERE s.resource_id = r.id AND s.param = '{param}') {} NULLS LAST",
                direction(*descending)
            ),
            SortKey::Date { param, descending } => format!(
                "(SELECT min(low) FROM search_date d WHERE d.resource_id = r.id AND d.param = '{param}') {} NULLS LAST",
                direction(*descending)
            ),
        })
        .collect();
    keys.push("r.id".into());
    format!(" ORDER BY {}", keys.join(", "))
}

fn direction(descending: bool) -> &'static str {
    if descending { "DESC" } else { "ASC" }
}

fn escape_like(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn into_query(sql: Sql) -> BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    let mut query = diesel::sql_query(sql.text).into_boxed::<Pg>();
    for bind in sql.binds {
        query = match bind {
            Bind::Text(v) => query.bind::<Text, _>(v),
            Bind::Uuids(v) => query.bind::<Array<SqlUuid>, _>(v),
            Bind::Time(v) => query.bind::<Timestamptz, _>(v),
            Bind::Int(v) => query.bind::<Int8, _>(v),
        };
    }
    query
}

impl From<Row> for Stored {
    fn from(r: Row) -> Self {
        Stored {
            id: r.id,
            resource_type: r.resource_type,
            facility_id: r.facility_id,
            version_id: r.version_id,
            last_updated: r.last_updated,
            deleted: r.deleted,
            content: r.content,
        }
    }
}

/// The resources that `sources` reference through `param` (FHIR `_include`).
pub fn included_targets(
    conn: &mut PgConnection,
    sources: &[Uuid],
    param: &'static str,
) -> StoreResult<Vec<Uuid>> {
    let mut ids: Vec<Uuid> = search_reference::table
        .filter(search_reference::resource_id.eq_any(sources))
        .filter(search_reference::param.eq(param))
        .select(search_reference::target_id)
        .load(conn)?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}
