//! One DataFusion context over catalog `city`: a schema per connector, `system` for the store's
//! own state, `queries` for the saved queries as views. Every query passes the read-only guard
//! and runs under a time limit, its own memory pool and a row limit.

mod bounded;
mod concat;
mod engine_error;
pub mod geo;
pub mod guard;
mod like_escape;
mod runtime;
pub mod saved;
mod yields;

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::config::QueryLimits;
use crate::store::{CATALOG, Store};
pub use runtime::AbortOnDrop;
use runtime::{QueryRuntime, RunningQueries};
use saved::SavedQuery;

pub const QUERIES_SCHEMA: &str = "queries";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Refused(#[from] guard::GuardError),
    #[error("{0}")]
    Forbidden(String),
    #[error("the SQL is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("the query ran longer than the time limit of {0} (`timeout` in [query])")]
    Timeout(String),
    #[error(
        "the query needed more memory than the limit of {limit} (`memory_limit` in [query]): {detail}"
    )]
    Memory { limit: String, detail: String },
    #[error("the result has more than {0} rows, the row limit; aggregate, filter or add LIMIT")]
    Rows(usize),
    /// DataFusion failed on the query itself (its "internal" errors): the text names the query's
    /// function calls and their argument types instead of DataFusion's own wording.
    #[error("{0}")]
    Engine(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    fn from_datafusion(
        error: DataFusionError,
        limits: &QueryLimits,
        plan: Option<&datafusion::logical_expr::LogicalPlan>,
    ) -> Self {
        match error.find_root() {
            DataFusionError::ResourcesExhausted(detail) => QueryError::Memory {
                limit: limits.memory_limit.to_string(),
                detail: detail.clone(),
            },
            DataFusionError::Internal(message) => {
                warn!(error = %error, "the query engine failed on a query");
                QueryError::Engine(engine_error::explain(message, plan))
            }
            DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => {
                QueryError::Internal(error.to_string())
            }
            _ => QueryError::Invalid(shorten_signature_error(error.strip_backtrace())),
        }
    }
}

/// A planning error as a user reads it: DataFusion's wording shortened, and a call with argument
/// types no signature takes named as the SQL writes it.
pub fn planning_message(error: DataFusionError, sql: &str) -> String {
    let message = shorten_signature_error(error.strip_backtrace());
    match engine_error::name_the_call(&message, sql) {
        Some(call) => format!("{message} In this query, {call}."),
        None => message,
    }
}

/// DataFusion's "no function matches" error lists every signature of the function: for the
/// spatial functions that is tens of kilobytes of Arrow types. Keep the sentence that says what
/// was called with which types.
fn shorten_signature_error(message: String) -> String {
    const MARK: &str = "No function matches the given name and argument types";
    let Some(start) = message.find(MARK) else {
        return message;
    };
    let rest = &message[start..];
    let end = rest
        .find("You might need to add explicit type casts.")
        .map_or(rest.len().min(300), |i| {
            i + "You might need to add explicit type casts.".len()
        });
    format!("Error during planning: {}", &rest[..end])
}

/// What a protocol adds to a statement's run: values for its placeholders, and who is told the
/// result's schema as soon as it is planned (Flight SQL answers `GetFlightInfo` then, while the
/// statement runs: the client's next call overlaps the execution instead of following it).
#[derive(Debug, Default)]
pub struct Execution {
    pub params: Option<ParamValues>,
    pub planned: Option<tokio::sync::oneshot::Sender<SchemaRef>>,
}

/// A complete result.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What a statement would return, planned and not run: its columns and the types of its
/// placeholders in order (`$1`, `$2`, ...; `None` where the planner cannot tell).
#[derive(Debug, Clone)]
pub struct Described {
    pub schema: SchemaRef,
    pub parameters: Vec<Option<arrow::datatypes::DataType>>,
}

/// A saved query's view and whether it plans over the current tables.
#[derive(Debug, Clone, Serialize)]
pub struct ViewStatus {
    pub name: String,
    pub title: String,
    pub ok: bool,
    /// Why the query does not plan (with a fallback in use, why the fallback answers).
    pub error: Option<String>,
    /// The saved query answering in this one's place (its `fallback`), while this one does not plan.
    pub fallback: Option<String>,
}

pub struct QueryEngine {
    base: SessionContext,
    limits: QueryLimits,
    permits: Semaphore,
    saved: Vec<SavedQuery>,
    views: std::sync::RwLock<Vec<ViewStatus>>,
    /// Bumped each time the views are re-planned, i.e. whenever the data behind them may differ.
    generation: std::sync::atomic::AtomicU64,
    /// One rebuild at a time: an older rebuild finishing last would put back stale or missing views.
    rebuild: tokio::sync::Mutex<()>,
    runtime: QueryRuntime,
    running: RunningQueries,
}

/// The partitions a query's scans and aggregations are split into: `[query] partitions`, else
/// twice the query threads (a core busy with another process then holds back a quarter of a
/// query on two cores, not half of it).
pub fn partitions(limits: &QueryLimits) -> usize {
    limits.partitions.unwrap_or(2 * runtime::threads())
}

/// How long every query slot may stay taken, with queries waiting, before /readyz says the
/// query pool is saturated.
pub const SATURATED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl QueryEngine {
    pub fn new(store: &Store, saved: Vec<SavedQuery>, limits: QueryLimits) -> Arc<Self> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, QUERIES_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            // Tables queried in place prune row groups and pages by their statistics; filters
            // are not pushed into the Parquet decoder (DataFusion's default): on the sensor
            // bench's versions sorted by metric, pushing them made the filtered group-by 1.5-1.7x
            // slower and the full group-by no faster (benches/README.md, storage).
            .with_target_partitions(partitions(&limits));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(yields::YieldAfterMultipliers))
            .build();
        let base = SessionContext::new_with_state(state);
        store.schema_provider(QUERIES_SCHEMA);
        base.register_catalog(CATALOG, store.catalog());
        geo::register(&base);
        like_escape::register(&base);
        // Last, so that every function registered above is bounded.
        bounded::register(&base, limits.memory_limit.as_u64() as usize);
        let permits = Semaphore::new(limits.max_concurrent);
        let limits_depth = limits.max_expression_depth;
        Arc::new(Self {
            base,
            limits,
            permits,
            saved,
            views: Default::default(),
            generation: Default::default(),
            rebuild: Default::default(),
            runtime: QueryRuntime::new(limits_depth),
            running: RunningQueries::default(),
        })
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    pub fn saved(&self) -> &[SavedQuery] {
        &self.saved
    }

    pub fn views(&self) -> Vec<ViewStatus> {
        self.views.read().expect("views lock").clone()
    }

    /// Re-plan every saved query over the tables as they are now and register it as a view,
    /// replacing the previous plan in place (a query never finds a view missing). A view may use
    /// another view, so views are planned in dependency order.
    pub async fn rebuild_views(&self) {
        self.rebuild(true).await;
    }

    /// `rebuild_views` before the first load, when every table not restored from disk is still
    /// missing: the views that do not plan yet are logged at debug level, not as warnings.
    pub async fn rebuild_views_before_load(&self) {
        self.rebuild(false).await;
    }

    async fn rebuild(&self, warn_failures: bool) {
        let _one_at_a_time = self.rebuild.lock().await;
        let schema = self
            .base
            .catalog(CATALOG)
            .and_then(|c| c.schema(QUERIES_SCHEMA))
            .expect("queries schema is registered");
        let (order, mut errors) = self.dependency_order();
        let mut fallbacks = std::collections::BTreeMap::new();
        for query in order {
            if errors.contains_key(&query.name) {
                continue;
            }
            // A saved query it reads that does not plan is the reason, not "table not found".
            let failed_dependency = self
                .saved_dependencies(query)
                .into_iter()
                .filter(|d| Some(d.as_str()) != query.get("fallback"))
                .find_map(|d| {
                    errors
                        .get(&d)
                        .map(|e| format!("needs `{d}`, which does not plan: {e}"))
                });
            let planned = match failed_dependency {
                Some(reason) => Err(reason),
                None => self.plan_view(query).await,
            };
            match planned {
                Ok(view) => {
                    let _ = schema.register_table(query.name.clone(), view);
                }
                Err(e) => {
                    // The fallback, planned before this query (it is one of its dependencies),
                    // answers under this query's name.
                    let fallback = query.get("fallback").filter(|f| !errors.contains_key(*f));
                    let planned = match fallback {
                        Some(f) => schema.table(f).await.ok().flatten(),
                        None => None,
                    };
                    match (fallback, planned) {
                        (Some(f), Some(view)) => {
                            let _ = schema.register_table(query.name.clone(), view);
                            fallbacks.insert(query.name.clone(), (f.to_string(), e));
                        }
                        _ => {
                            let _ = schema.deregister_table(&query.name);
                            errors.insert(query.name.clone(), e);
                        }
                    }
                }
            }
        }
        for (name, (fallback, error)) in &fallbacks {
            tracing::info!(view = %name, fallback = %fallback, error = %error, "saved query answered by its fallback");
        }
        for (name, error) in &errors {
            if warn_failures {
                warn!(view = %name, error = %error, "saved query does not plan");
            } else {
                tracing::debug!(view = %name, error = %error, "saved query does not plan before the first load");
            }
        }
        let statuses = self
            .saved
            .iter()
            .map(|q| ViewStatus {
                name: q.name.clone(),
                title: q.title.clone(),
                ok: !errors.contains_key(&q.name),
                error: errors
                    .get(&q.name)
                    .or(fallbacks.get(&q.name).map(|(_, e)| e))
                    .cloned(),
                fallback: fallbacks.get(&q.name).map(|(f, _)| f.clone()),
            })
            .collect();
        *self.views.write().expect("views lock") = statuses;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Changes whenever tables or views may hold different data: a cache key for results.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Saved queries ordered so that each comes after the saved queries it reads; those in a
    /// cycle are returned as errors.
    /// The saved queries a saved query reads, and its fallback.
    fn saved_dependencies(&self, query: &SavedQuery) -> Vec<String> {
        let state = self.base.state();
        let read = state
            .sql_to_statement(&query.sql, &datafusion::config::Dialect::Generic)
            .and_then(|statement| state.resolve_table_references(&statement))
            .unwrap_or_default();
        read.iter()
            .filter(|r| {
                r.schema().is_none_or(|s| s == QUERIES_SCHEMA)
                    && r.catalog().is_none_or(|c| c == CATALOG)
            })
            .map(|r| r.table().to_string())
            .chain(query.get("fallback").map(str::to_string))
            .filter(|name| self.saved.iter().any(|q| &q.name == name))
            .collect()
    }

    fn dependency_order(&self) -> (Vec<&SavedQuery>, std::collections::BTreeMap<String, String>) {
        let dependencies: std::collections::BTreeMap<&str, Vec<String>> = self
            .saved
            .iter()
            .map(|q| (q.name.as_str(), self.saved_dependencies(q)))
            .collect();
        let mut order: Vec<&SavedQuery> = Vec::new();
        let mut errors = std::collections::BTreeMap::new();
        // Repeatedly take the views whose dependencies are all placed; what remains is a cycle.
        let mut remaining: Vec<&SavedQuery> = self.saved.iter().collect();
        while !remaining.is_empty() {
            let (ready, blocked): (Vec<&SavedQuery>, Vec<&SavedQuery>) =
                remaining.into_iter().partition(|q| {
                    dependencies[q.name.as_str()]
                        .iter()
                        .all(|d| d == &q.name || order.iter().any(|o| &o.name == d))
                        && !dependencies[q.name.as_str()].contains(&q.name)
                });
            if ready.is_empty() {
                for query in blocked {
                    errors.insert(
                        query.name.clone(),
                        "the saved query depends on itself through other saved queries".to_string(),
                    );
                }
                break;
            }
            order.extend(ready);
            remaining = blocked;
        }
        (order, errors)
    }

    async fn plan_view(
        &self,
        query: &SavedQuery,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>, String> {
        guard::check_depth(&query.sql, self.limits.max_expression_depth)
            .map_err(|e| e.to_string())?;
        // On the query threads, whose stacks are sized for the depth allowed.
        let state = self.base.state();
        let sql = query.sql.clone();
        let plan = AbortOnDrop(
            self.runtime
                .spawn(async move { state.create_logical_plan(&sql).await }),
        )
        .await
        .map_err(|e| format!("planning failed: {e}"))?
        .map_err(|e| planning_message(e, &query.sql))?;
        Ok(Arc::new(datafusion::catalog::view::ViewTable::new(
            plan,
            Some(query.sql.clone()),
        )))
    }

    /// The runtime of one query: its own memory pool, so one heavy query cannot starve the
    /// others, and no disk manager, so a query over its memory limit fails with a clear error
    /// instead of spilling without bound to the server's disk.
    fn runtime_for_query(&self) -> Result<Arc<RuntimeEnv>, QueryError> {
        RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_limit.as_u64() as usize, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))
    }

    /// Run a statement for a caller of `role`: the audit log (`system.audit`) is for admins only.
    pub async fn execute_as(
        self: &Arc<Self>,
        sql: &str,
        role: crate::auth::Role,
    ) -> Result<QueryResult, QueryError> {
        self.execute_checked(sql, role >= crate::auth::Role::Admin, Execution::default())
            .await
    }

    /// `execute_as` with what the protocols add: values for the statement's placeholders
    /// (`$1`, `$2`, ...), bound after the guard, before execution; and who to tell the result's
    /// schema once it is planned.
    pub async fn execute_with(
        self: &Arc<Self>,
        sql: &str,
        role: crate::auth::Role,
        execution: Execution,
    ) -> Result<QueryResult, QueryError> {
        self.execute_checked(sql, role >= crate::auth::Role::Admin, execution)
            .await
    }

    /// Run one read-only statement under the configured limits, with every table readable.
    pub async fn execute(self: &Arc<Self>, sql: &str) -> Result<QueryResult, QueryError> {
        self.execute_checked(sql, true, Execution::default()).await
    }

    /// The columns a statement would return and the types of its placeholders, without running
    /// it: the same guard, role check and limits on the SQL as `execute_as`, planning only. For
    /// the protocols' prepared statements (PostgreSQL's Parse/Describe, Flight SQL's
    /// CreatePreparedStatement).
    pub async fn describe_as(
        self: &Arc<Self>,
        sql: &str,
        role: crate::auth::Role,
    ) -> Result<Described, QueryError> {
        self.check_size_and_depth(sql)?;
        let admin = role >= crate::auth::Role::Admin;
        let engine = self.clone();
        let sql = sql.to_string();
        let task = AbortOnDrop(self.runtime.spawn(async move {
            let statement = guard::parse(&sql)?;
            let state = engine.base.state();
            if !admin {
                Self::refuse_admin_tables(&state, &statement)?;
            }
            let limits = &engine.limits;
            let failed = |e: DataFusionError| QueryError::from_datafusion(e, limits, None);
            let plan = state.statement_to_plan(statement).await.map_err(failed)?;
            Self::verify_read_only(&plan).map_err(failed)?;
            let mut parameters: Vec<(String, Option<arrow::datatypes::DataType>)> = plan
                .get_parameter_types()
                .map_err(failed)?
                .into_iter()
                .collect();
            parameters.sort_by_key(|(id, _)| {
                id.trim_start_matches('$')
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            Ok(Described {
                schema: plain_schema(&Arc::new(plan.schema().as_arrow().clone())),
                parameters: parameters.into_iter().map(|(_, t)| t).collect(),
            })
        }));
        match tokio::time::timeout(self.limits.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(QueryError::Internal(format!("query task failed: {join}"))),
            Err(_) => Err(QueryError::Timeout(
                humantime::format_duration(self.limits.timeout).to_string(),
            )),
        }
    }

    /// Install something in the session every query is planned with (the PostgreSQL catalogue
    /// `pg_catalog` and its functions, for the pgwire protocol), at start-up. Queries still go
    /// through `execute_as`.
    pub fn extend_session<T>(&self, install: impl FnOnce(&SessionContext) -> T) -> T {
        install(&self.base)
    }

    /// The planner's own check that a plan only reads.
    fn verify_read_only(
        plan: &datafusion::logical_expr::LogicalPlan,
    ) -> Result<(), DataFusionError> {
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(plan)
    }

    fn check_size_and_depth(&self, sql: &str) -> Result<(), QueryError> {
        if sql.len() > self.limits.max_sql_bytes {
            return Err(QueryError::TooLarge {
                size: sql.len(),
                limit: self.limits.max_sql_bytes,
            });
        }
        guard::check_depth(sql, self.limits.max_expression_depth)?;
        Ok(())
    }

    fn refuse_admin_tables(
        state: &SessionState,
        statement: &DFStatement,
    ) -> Result<(), QueryError> {
        // What cannot be resolved is refused by the planner with its own message.
        let Ok(references) = state.resolve_table_references(statement) else {
            return Ok(());
        };
        for reference in references {
            let resolved = reference.resolve(CATALOG, QUERIES_SCHEMA);
            if &*resolved.catalog == CATALOG
                && &*resolved.schema == "system"
                && &*resolved.table == "audit"
            {
                return Err(QueryError::Forbidden(
                    "`system.audit` can be read with an admin key only".into(),
                ));
            }
        }
        Ok(())
    }

    /// The SQL is parsed once: the guard checks the very statement the planner gets. The work
    /// runs on the query runtime, so a heavy query never holds up the threads answering HTTP
    /// requests.
    async fn execute_checked(
        self: &Arc<Self>,
        sql: &str,
        admin: bool,
        execution: Execution,
    ) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        let result = self.execute_timed(sql, admin, execution).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(
                QueryError::Timeout(_)
                | QueryError::Memory { .. }
                | QueryError::Rows(_)
                | QueryError::TooLarge { .. },
            ) => "limit",
            Err(QueryError::Internal(_)) => "error",
            Err(_) => "invalid",
        };
        metrics::counter!("cruscotto_queries_total", "outcome" => outcome).increment(1);
        metrics::histogram!("cruscotto_query_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        debug!(
            outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "query"
        );
        result
    }

    async fn execute_timed(
        self: &Arc<Self>,
        sql: &str,
        admin: bool,
        execution: Execution,
    ) -> Result<QueryResult, QueryError> {
        // The guard's depth bound reads only tokens; parsing, planning and execution, which
        // recurse over the statement's trees, all run on the query threads, whose stacks are
        // sized for the depth the guard lets through.
        self.check_size_and_depth(sql)?;
        let engine = self.clone();
        let sql = sql.to_string();
        // Dropped when the time limit passes or when the caller goes away (a client that
        // disconnects drops the request's future): either way the query's task is aborted, and
        // with it every stream and task DataFusion started for it.
        let task = AbortOnDrop(self.runtime.spawn(async move {
            let statement = guard::parse(&sql)?;
            // One copy of the session state per query (it carries the query's start time for now()).
            let state = engine.base.state();
            if !admin {
                Self::refuse_admin_tables(&state, &statement)?;
            }
            engine.run(state, statement, execution).await
        }));
        match tokio::time::timeout(self.limits.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(QueryError::Internal(format!("query task failed: {join}"))),
            Err(_) => Err(QueryError::Timeout(
                humantime::format_duration(self.limits.timeout).to_string(),
            )),
        }
    }

    /// Whether queries can still run: the query threads answer, no query outlived its time
    /// limit (one that did is stuck where cancellation cannot reach it), and the slots are not
    /// all held for longer than [`SATURATED_AFTER`] while other queries wait. For /readyz.
    pub async fn pool_health(&self) -> Result<(), String> {
        let grace = self.limits.timeout + std::time::Duration::from_secs(5);
        if let Some(age) = self.running.oldest().filter(|age| *age > grace) {
            return Err(format!(
                "a query has been running for {} although the time limit is {}",
                humantime::format_duration(std::time::Duration::from_secs(age.as_secs())),
                humantime::format_duration(self.limits.timeout)
            ));
        }
        let waiting = self.running.waiting();
        if waiting > 0
            && self.running.count() >= self.limits.max_concurrent
            && self
                .running
                .youngest()
                .is_some_and(|age| age > SATURATED_AFTER)
        {
            return Err(format!(
                "all {} query slots (`max_concurrent`) have been busy for more than {} and {waiting} \
                 queries wait for one: the query pool is saturated",
                self.limits.max_concurrent,
                humantime::format_duration(SATURATED_AFTER)
            ));
        }
        let ping = self.runtime.spawn(async {});
        match tokio::time::timeout(std::time::Duration::from_secs(1), ping).await {
            Ok(_) => Ok(()),
            Err(_) => Err("the query threads did not answer within 1 s: they are saturated".into()),
        }
    }

    /// Queries executing now (holding one of the `max_concurrent` permits).
    pub fn running_queries(&self) -> usize {
        self.running.count()
    }

    /// Plan with the shared session state, execute with the query's own runtime (memory pool).
    async fn run(
        &self,
        state: SessionState,
        statement: DFStatement,
        execution: Execution,
    ) -> Result<QueryResult, QueryError> {
        let limits = &self.limits;
        let sql = statement.to_string();
        let failed = |e: DataFusionError| match QueryError::from_datafusion(e, limits, None) {
            QueryError::Invalid(message) => match engine_error::name_the_call(&message, &sql) {
                Some(call) => QueryError::Invalid(format!("{message} In this query, {call}.")),
                None => QueryError::Invalid(message),
            },
            other => other,
        };
        let waiting = self.running.wait();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        drop(waiting);
        let _running = self.running.start();
        let plan = state.statement_to_plan(statement).await.map_err(failed)?;
        let plan = match execution.params {
            Some(params) => plan.replace_params_with_values(&params).map_err(failed)?,
            None => plan,
        };
        // The guard let only read-only statements through; the planner's own check agrees.
        Self::verify_read_only(&plan).map_err(failed)?;
        // From here an engine error can name the plan's function calls and their types.
        let failed = |e: DataFusionError| QueryError::from_datafusion(e, limits, Some(&plan));
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let physical = state.create_physical_plan(&plan).await.map_err(failed)?;
        if let Some(planned) = execution.planned {
            let _ = planned.send(plain_schema(&physical.schema()));
        }
        let task = Arc::new(TaskContext::from(&state).with_runtime(self.runtime_for_query()?));
        let mut stream = execute_stream(physical, task).map_err(failed)?;
        let mut batches = Vec::new();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(failed)?;
            rows += batch.num_rows();
            if rows > limits.max_rows {
                return Err(QueryError::Rows(limits.max_rows));
            }
            batches.push(batch);
        }
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        plain_text(schema, batches).map_err(|e| QueryError::Internal(e.to_string()))
    }
}

/// A schema with its text as `Utf8`: tables read in place give `Utf8View` (see
/// `store::version::text_as_views`), and every consumer of a result (the formats, the protocols,
/// suppression, the dashboards) sees one text type whatever the storage.
pub fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    use arrow::datatypes::DataType;
    crate::store::retyped(schema, &DataType::Utf8View, DataType::Utf8)
}

/// A result in its `plain_schema`.
fn plain_text(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<QueryResult, arrow::error::ArrowError> {
    let plain = plain_schema(&schema);
    if Arc::ptr_eq(&plain, &schema) {
        return Ok(QueryResult { schema, batches });
    }
    let batches = batches
        .iter()
        .map(|batch| crate::store::cast_columns(batch, &plain))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(QueryResult {
        schema: plain,
        batches,
    })
}

#[cfg(test)]
mod pool_health_tests {
    use super::*;

    /// `[query] partitions` is what queries are split into, and unset it is twice the query
    /// threads, so that one busy core holds back a small share of a query.
    #[tokio::test]
    async fn queries_are_split_into_the_configured_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 2);
        let split = |partitions| {
            let limits = QueryLimits {
                partitions,
                ..QueryLimits::default()
            };
            let engine = QueryEngine::new(&store, Vec::new(), limits);
            engine.base.state().config().target_partitions()
        };
        assert_eq!(split(Some(3)), 3);
        assert_eq!(split(None), 2 * runtime::threads());
    }

    /// Query threads that stop answering (as with a statement that never yields) make the pool
    /// unhealthy, which /readyz reports as a 503; once they are free it is healthy again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn query_threads_that_do_not_answer_are_reported_saturated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), 2);
        let engine = QueryEngine::new(&store, Vec::new(), QueryLimits::default());
        assert_eq!(engine.pool_health().await, Ok(()));

        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let release = Arc::new(std::sync::Barrier::new(threads + 1));
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..threads {
            let (release, started) = (release.clone(), started.clone());
            // Blocks its thread, like CPU-bound work that never reaches an await.
            engine.runtime.spawn(async move {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                release.wait();
            });
        }
        while started.load(std::sync::atomic::Ordering::SeqCst) < threads {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let health = engine.pool_health().await;
        assert!(
            health.as_ref().is_err_and(|e| e.contains("saturated")),
            "{health:?}"
        );
        tokio::task::spawn_blocking(move || release.wait())
            .await
            .unwrap();
        assert_eq!(engine.pool_health().await, Ok(()));
    }
}

#[cfg(test)]
mod signature_error_tests {
    use super::shorten_signature_error;

    #[test]
    fn a_no_matching_function_error_keeps_the_call_and_drops_the_signatures() {
        let long = format!(
            "Error during planning: Failed to coerce arguments to satisfy a call to 'st_x' function: coercion from Binary to the signature Uniform(1, [{}]) failed. No function matches the given name and argument types 'st_x(Binary)'. You might need to add explicit type casts.\n\tCandidate functions:\n\tst_x({})",
            "Struct(x, y), ".repeat(500),
            "Struct(x, y)/".repeat(500)
        );
        assert_eq!(
            shorten_signature_error(long),
            "Error during planning: No function matches the given name and argument types 'st_x(Binary)'. You might need to add explicit type casts."
        );
        assert_eq!(
            shorten_signature_error("column x not found".into()),
            "column x not found"
        );
    }
}
