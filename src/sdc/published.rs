//! What callers below analyst see of the saved queries. A saved query that declares counts of
//! persons, or reads (directly or through other saved queries) one that does, is evaluated again
//! over the *published* versions of the saved queries it reads, then suppressed by its own
//! declaration. A value computed from a suppressed count is therefore computed from NULL: whatever
//! the SQL does with it (a share, a rate, an index component, a sum) it cannot carry the count.
//! The published versions are tables of the schema `published` (`city.published.<query>`), so an
//! analyst can read exactly what the public sees.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::compute::concat_batches;
use datafusion::datasource::MemTable;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, Query, Visit, Visitor, visit_relations_mut,
};

use super::suppress::{SdcError, inherit_flags, scrub_nulls, suppress};
use crate::query::saved::SavedQuery;
use crate::query::{QUERIES_SCHEMA, QueryError, QueryResult};
use crate::service::Service;
use crate::store::CATALOG;

/// The schema holding the published version of every saved query that has one.
pub const PUBLISHED_SCHEMA: &str = "published";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("disclosure control of `{query}`: {error}")]
    Sdc { query: String, error: SdcError },
    #[error("cannot read `{query}` over the published tables: {detail}")]
    Rewrite { query: String, detail: String },
    #[error("cannot register the published version of `{query}`: {detail}")]
    Table { query: String, detail: String },
}

/// Which saved queries read which, and which of them have a published version that differs
/// from the raw one (those declaring counts of persons and everything that reads them).
#[derive(Debug, Default)]
pub struct Lineage {
    reads: BTreeMap<String, BTreeSet<String>>,
    protected: BTreeSet<String>,
}

impl Lineage {
    pub fn new(saved: &[SavedQuery]) -> Self {
        let names: BTreeSet<&str> = saved.iter().map(|q| q.name.as_str()).collect();
        let reads: BTreeMap<String, BTreeSet<String>> = saved
            .iter()
            .map(|q| {
                // A fallback may answer in the query's place: it counts as read.
                let read = crate::dashboards::table_references(&q.sql)
                    .iter()
                    .filter_map(|reference| saved_query_named(reference))
                    .chain(q.get("fallback").map(str::to_string))
                    .filter(|name| names.contains(name.as_str()) && *name != q.name)
                    .collect();
                (q.name.clone(), read)
            })
            .collect();
        let mut protected: BTreeSet<String> = saved
            .iter()
            .filter(|q| q.person_counts().is_some())
            .map(|q| q.name.clone())
            .collect();
        loop {
            let more: Vec<String> = reads
                .iter()
                .filter(|(name, read)| {
                    !protected.contains(*name) && read.iter().any(|r| protected.contains(r))
                })
                .map(|(name, _)| name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            protected.extend(more);
        }
        Self { reads, protected }
    }

    /// Whether the public sees this saved query through disclosure control.
    pub fn is_protected(&self, query: &str) -> bool {
        self.protected.contains(query)
    }

    /// The protected saved queries `query` needs, itself last, each after those it reads.
    fn order(&self, query: &str) -> Vec<String> {
        fn visit(
            lineage: &Lineage,
            name: &str,
            seen: &mut BTreeSet<String>,
            out: &mut Vec<String>,
        ) {
            if !lineage.protected.contains(name) || !seen.insert(name.to_string()) {
                return;
            }
            for read in lineage.reads.get(name).into_iter().flatten() {
                visit(lineage, read, seen, out);
            }
            out.push(name.to_string());
        }
        let mut out = Vec::new();
        visit(self, query, &mut BTreeSet::new(), &mut out);
        out
    }
}

/// `residenti_per_area`, `queries.residenti_per_area`, `city.queries.residenti_per_area`.
fn saved_query_named(reference: &str) -> Option<String> {
    let parts: Vec<&str> = reference.split('.').collect();
    match parts.as_slice() {
        [table] => Some(table.to_string()),
        [schema, table] if *schema == QUERIES_SCHEMA => Some(table.to_string()),
        [catalog, schema, table] if *catalog == CATALOG && *schema == QUERIES_SCHEMA => {
            Some(table.to_string())
        }
        _ => None,
    }
}

/// The published versions computed for one service, for one state of the data.
#[derive(Default)]
struct Published {
    version: Option<(u64, u64, u64)>,
    lineage: Option<Arc<Lineage>>,
    results: HashMap<String, Arc<QueryResult>>,
}

/// One slot per service (a test process may run several); computing holds it, so a dashboard
/// opening computes each published version once.
fn slots() -> &'static Mutex<HashMap<usize, Arc<tokio::sync::Mutex<Published>>>> {
    static SLOTS: OnceLock<Mutex<HashMap<usize, Arc<tokio::sync::Mutex<Published>>>>> =
        OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

/// The published version of a saved query, or `None` when it is the raw result (the query
/// neither declares counts of persons nor reads one that does).
pub async fn published(
    service: &Arc<Service>,
    query: &str,
    min_count: u64,
) -> Result<Option<Arc<QueryResult>>, PublishError> {
    let slot = slots()
        .lock()
        .expect("published slots")
        .entry(Arc::as_ptr(service) as usize)
        .or_default()
        .clone();
    let mut state = slot.lock().await;
    let lineage = state
        .lineage
        .get_or_insert_with(|| Arc::new(Lineage::new(service.engine.saved())))
        .clone();
    if !lineage.is_protected(query) {
        return Ok(None);
    }
    let version = (
        service.engine.generation(),
        *service.store.subscribe().borrow(),
        min_count,
    );
    if state.version != Some(version) {
        state.results.clear();
        state.version = Some(version);
    }
    if let Some(hit) = state.results.get(query) {
        return Ok(Some(hit.clone()));
    }
    let schema = service.store.schema_provider(PUBLISHED_SCHEMA);
    let views = service.engine.views();
    for name in lineage.order(query) {
        if state.results.contains_key(&name) {
            continue;
        }
        // The query that answers under this name: its fallback while it does not plan.
        let answering = views
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.fallback.as_deref())
            .unwrap_or(&name);
        let Some(saved) = service.engine.saved().iter().find(|q| q.name == answering) else {
            continue;
        };
        let result = publish(service, &lineage, saved, min_count).await?;
        let table = MemTable::try_new(result.schema.clone(), vec![result.batches.clone()])
            .map_err(|e| PublishError::Table {
                query: name.clone(),
                detail: e.strip_backtrace(),
            })?;
        let _ = schema.register_table(name.clone(), Arc::new(table));
        state.results.insert(name, Arc::new(result));
    }
    Ok(state.results.get(query).cloned())
}

/// One saved query over the published versions of what it reads, suppressed by its declaration.
async fn publish(
    service: &Arc<Service>,
    lineage: &Lineage,
    saved: &SavedQuery,
    min_count: u64,
) -> Result<QueryResult, PublishError> {
    let raw_sql = format!(
        "SELECT * FROM {CATALOG}.{QUERIES_SCHEMA}.\"{}\"",
        saved.name
    );
    let rewritten =
        over_published(&saved.sql, &lineage.protected).map_err(|detail| PublishError::Rewrite {
            query: saved.name.clone(),
            detail,
        })?;
    let result = service
        .engine
        .execute(rewritten.as_deref().unwrap_or(&raw_sql))
        .await?;
    let failed = |error: SdcError| PublishError::Sdc {
        query: saved.name.clone(),
        error,
    };
    let batch = match saved.person_counts() {
        Some(rules) if !result.batches.is_empty() => {
            let batch = suppress(&result.batches, &rules, min_count).map_err(failed)?;
            let key = saved.persons_key();
            if rewritten.is_some() && !key.is_empty() {
                let raw = service.engine.execute(&raw_sql).await?;
                inherit_flags(&batch, &raw.batches, &key, &rules.counts).map_err(failed)?
            } else {
                batch
            }
        }
        _ if result.batches.is_empty() => return Ok(result),
        _ => concat_batches(&result.schema, &result.batches)
            .map_err(|e| failed(SdcError::Arrow(e)))?,
    };
    let batch = scrub_nulls(&batch).map_err(failed)?;
    Ok(QueryResult {
        schema: batch.schema(),
        batches: vec![batch],
    })
}

/// The SQL with every reference to a protected saved query pointed at its published version
/// (`city.published.<name>`); `None` when it reads none. A CTE of the same name is left alone.
fn over_published(sql: &str, protected: &BTreeSet<String>) -> Result<Option<String>, String> {
    let mut statements = DFParser::parse_sql(sql).map_err(|e| e.to_string())?;
    let Some(DFStatement::Statement(mut statement)) = statements.pop_front() else {
        return Err("not a single SQL statement".into());
    };
    struct CteNames(BTreeSet<String>);
    impl Visitor for CteNames {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
                self.0.insert(normalized(&cte.alias.name));
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = CteNames(BTreeSet::new());
    let _ = statement.visit(&mut ctes);
    let mut changed = false;
    let _ = visit_relations_mut(&mut *statement, |name: &mut ObjectName| {
        let parts: Option<Vec<String>> = name
            .0
            .iter()
            .map(|part| part.as_ident().map(normalized))
            .collect();
        let target = match parts.as_deref() {
            Some([table]) if !ctes.0.contains(table) => Some(table.clone()),
            Some([schema, table]) if schema == QUERIES_SCHEMA => Some(table.clone()),
            Some([catalog, schema, table]) if catalog == CATALOG && schema == QUERIES_SCHEMA => {
                Some(table.clone())
            }
            _ => None,
        };
        if let Some(table) = target.filter(|t| protected.contains(t)) {
            *name = ObjectName::from(vec![
                Ident::new(CATALOG),
                Ident::new(PUBLISHED_SCHEMA),
                Ident::with_quote('"', table),
            ]);
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(changed.then(|| statement.to_string()))
}

/// An identifier as the planner resolves it: unquoted ones are lowercase.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_to_protected_queries_point_at_their_published_version() {
        let protected: BTreeSet<String> = ["residenti_per_area".to_string()].into();
        let sql = "WITH x AS (SELECT * FROM queries.residenti_per_area) \
                   SELECT * FROM x JOIN residenti_per_area AS r ON true \
                   JOIN bologna.fragilita AS f ON true \
                   WHERE r.residenti > (SELECT min(residenti) FROM city.queries.residenti_per_area)";
        let rewritten = over_published(sql, &protected).unwrap().unwrap();
        assert_eq!(
            rewritten
                .matches("city.published.\"residenti_per_area\"")
                .count(),
            3
        );
        assert!(rewritten.contains("bologna.fragilita"), "{rewritten}");
        assert!(
            !rewritten.contains("queries.residenti_per_area"),
            "{rewritten}"
        );
        // A CTE named like a saved query is the CTE.
        let shadow = "WITH residenti_per_area AS (SELECT 1 AS a) SELECT * FROM residenti_per_area";
        assert_eq!(over_published(shadow, &protected).unwrap(), None);
    }
}
