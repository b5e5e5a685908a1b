//! The command line: `serve` (the default), `query`, `check`, `plan`, `simulate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use cruscotto::api::{self, AppState, format};
use cruscotto::config::Config;
use cruscotto::service::Service;

/// mimalloc, as datafusion-cli uses: DataFusion and the HTTP path allocate many short-lived
/// buffers, and glibc's allocator spent a tenth of a small query's time in its own bookkeeping
/// (`malloc_consolidate`, `unlink_chunk`; perf on `SELECT 1` requests).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cruscotto",
    version,
    about = "A city's data in one SQL layer, with a map dashboard"
)]
struct Cli {
    /// The configuration file; connectors/, queries/ and dashboards/ are found beside it.
    #[arg(
        long,
        short,
        env = "CRUSCOTTO_CONFIG",
        default_value = "cruscotto.toml",
        global = true
    )]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard and the API (the default).
    Serve {
        /// Listen on this address instead of the configured one (e.g. 127.0.0.1:0).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve the PostgreSQL protocol on this address instead of `[protocols.pgwire] listen`
        /// (only when that section is present). With `--listen` on port 0 and no address here,
        /// the protocol takes a free port too (several servers side by side, as in tests).
        #[arg(long)]
        pgwire_listen: Option<std::net::SocketAddr>,
        /// Serve Flight SQL on this address instead of `[protocols.flight_sql] listen` (only when
        /// that section is present).
        #[arg(long)]
        flight_sql_listen: Option<std::net::SocketAddr>,
    },
    /// Load every source once, run one read-only SQL statement and print the result.
    Query {
        sql: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
    },
    /// Validate the configuration without starting anything; exits 1 on any problem.
    Check,
    /// Load every source once, solve a placement scenario (plans/<scenario>.toml), keep the plan
    /// under <data_dir>/plans/ and print it.
    Plan {
        /// The scenario [default: the first in plans/].
        scenario: Option<String>,
        /// New sites to choose [default: the scenario's].
        #[arg(long)]
        k: Option<usize>,
        /// Coverage radius in metres [default: the scenario's].
        #[arg(long)]
        radius: Option<f64>,
        /// The demand indicator, one of the scenario's weights [default: its first].
        #[arg(long)]
        demand: Option<String>,
        /// Persons per week each site can serve (the capacitated variant).
        #[arg(long)]
        capacity: Option<f64>,
        /// The coverage curve goes from 1 to this many sites [default: k].
        #[arg(long)]
        curve_max: Option<usize>,
        /// Milliseconds the exact programme gets per number of sites before greedy answers.
        #[arg(long)]
        time_limit_ms: Option<u64>,
        #[arg(long, value_enum, default_value_t = PlanOutput::Json)]
        format: PlanOutput,
    },
    /// Write a first configuration (cruscotto.toml, a connector, saved queries, a dashboard) for
    /// a folder of data files, inside that folder, and say what could not be decided.
    Init {
        /// The folder holding the data files (CSV, JSON, GeoJSON, NDJSON, Parquet).
        folder: PathBuf,
        /// The city's name as the pages show it [default: the folder's name].
        #[arg(long)]
        city: Option<String>,
    },
    /// Manage API keys (stored hashed in <data_dir>/keys.json; a running server sees changes at once).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Fill a database, or feed an MQTT broker, with realistic synthetic data for the demo city.
    Simulate {
        #[command(subcommand)]
        target: SimulateTarget,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it: this is the only time it is shown.
    Create {
        /// Who the key is for, e.g. "AUSL Bologna".
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: cruscotto::auth::Role,
        /// For partner keys: the datasets the key may read, comma-separated.
        #[arg(long, value_delimiter = ',')]
        datasets: Vec<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; it fails at the next request.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum SimulateTarget {
    /// Create schemas `anagrafe` (residents) and `servizi` (service events) and fill them.
    Postgres {
        /// The database to fill (it must exist), e.g. postgres://postgres@127.0.0.1:5432/test.
        #[arg(long, env = "SIMULATOR_URL")]
        url: String,
        /// The same seed gives the same database.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of service events over the year.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Year of the service events.
        #[arg(long, default_value_t = 2023)]
        year: i32,
        /// The fragility file giving each area's 2021 population and share over 80
        /// [default: data/bologna/indici-di-fragilita-dal-2021.csv beside the configuration].
        #[arg(long)]
        fragility: Option<PathBuf>,
        /// Drop and refill `anagrafe` and `servizi` when they already exist.
        #[arg(long)]
        replace: bool,
    },
    /// Write the service logs (the columns of `servizi.eventi`) to a Parquet file, optionally with
    /// a known effect of interventions injected: +N percentage points of requests made online,
    /// from each intervention's start month, in the areas whose centroid is within the radius.
    ServiceLogs {
        /// The Parquet file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// The same seed gives the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of service events over the year.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Year of the service events.
        #[arg(long, default_value_t = 2023)]
        year: i32,
        /// The fragility file giving each area's 2021 population and share over 80
        /// [default: data/bologna/indici-di-fragilita-dal-2021.csv beside the configuration].
        #[arg(long)]
        fragility: Option<PathBuf>,
        /// Percentage points added to the share of requests made online near the interventions
        /// (none by default).
        #[arg(long)]
        effect_points: Option<f64>,
        /// The interventions whose sites get the effect
        /// [default: data/bologna/interventi.csv beside the configuration].
        #[arg(long)]
        effect_interventions: Option<PathBuf>,
        /// The statistical areas, for their centroids
        /// [default: data/bologna/bologna_aree_statistiche.geojson beside the configuration].
        #[arg(long)]
        effect_areas: Option<PathBuf>,
        /// Metres from a site to an area's centroid within which the area gets the effect.
        #[arg(long, default_value_t = 800.0)]
        effect_radius: f64,
    },
    /// Publish sensor readings (QoS 1) for the registry's sensors: Wi-Fi load, probes, people
    /// counters, environmental SenML, and a share of malformed messages.
    Sensors {
        /// The broker, e.g. mqtt://127.0.0.1:1883.
        #[arg(long, env = "MQTT_URL")]
        broker: String,
        /// Messages per second (0: as fast as the broker takes them).
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Stop after this many messages [default: run until interrupted].
        #[arg(long)]
        count: Option<u64>,
        /// Share of malformed messages (not JSON, missing field, wrong type, unknown sensor, bad SenML).
        #[arg(long, default_value_t = 0.01)]
        malformed_share: f64,
        /// The same seed gives the same values.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The sensor registry [default: data/bologna/sensori.csv beside the configuration].
        #[arg(long)]
        registry: Option<PathBuf>,
        /// First level of every topic.
        #[arg(long, default_value = "bologna")]
        prefix: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanOutput {
    Json,
    Csv,
    Geojson,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Csv,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `check` and `init` print their own findings: only warnings are logged beside them.
    let quiet = matches!(
        cli.command,
        Some(Command::Check | Command::Init { .. } | Command::Plan { .. })
    );
    let default_filter = if quiet {
        "warn"
    } else {
        "info,datafusion=warn"
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve {
        listen: None,
        pgwire_listen: None,
        flight_sql_listen: None,
    }) {
        Command::Check => Ok(check(&cli.config).await),
        Command::Init { folder, city } => init(&folder, city.as_deref()).await,
        Command::Keys { action } => {
            let config = Config::load(&cli.config)
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
            keys(&config, action)
        }
        Command::Simulate { target } => simulate(&cli.config, target).await,
        Command::Serve {
            listen,
            pgwire_listen,
            flight_sql_listen,
        } => {
            let config = Config::load(&cli.config)
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
            for warning in &config.warnings {
                tracing::warn!(%warning, "configuration");
            }
            let protocols = &config.service.protocols;
            // `--listen <ip>:0` asks for free ports: every listener takes one, not only HTTP's.
            let free = |configured: Option<std::net::SocketAddr>| {
                listen
                    .filter(|l| l.port() == 0)
                    .and(configured)
                    .map(|c| std::net::SocketAddr::new(c.ip(), 0))
            };
            let protocols = cruscotto::protocols::Addresses {
                pgwire: pgwire_listen.or(free(protocols.pgwire.as_ref().map(|p| p.listen))),
                flight_sql: flight_sql_listen
                    .or(free(protocols.flight_sql.as_ref().map(|p| p.listen))),
            };
            serve(config, listen, protocols).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            scenario,
            k,
            radius,
            demand,
            capacity,
            curve_max,
            time_limit_ms,
            format,
        } => {
            let config = Config::load(&cli.config)
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
            let request = cruscotto::plan::scenario::PlanRequest {
                scenario,
                demand,
                radius_m: radius,
                k,
                curve_max,
                capacity,
                time_limit_ms,
            };
            plan(config, request, format).await
        }
        Command::Query { sql, format } => {
            let config = Config::load(&cli.config)
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
            query(config, &sql, format).await
        }
    }
}

fn keys(config: &Config, action: KeysAction) -> anyhow::Result<ExitCode> {
    let store = cruscotto::auth::KeyStore::new(&config.data_dir());
    match action {
        KeysAction::Create {
            name,
            role,
            datasets,
        } => {
            for dataset in &datasets {
                if !config.datasets.iter().any(|d| &d.name == dataset) {
                    anyhow::bail!(
                        "`{dataset}` is not a published dataset (no file datasets/{dataset}.toml)"
                    );
                }
            }
            if role == cruscotto::auth::Role::Partner && datasets.is_empty() {
                anyhow::bail!("a partner key needs --datasets: the datasets it may read");
            }
            let (record, key) = store.create(&name, role, datasets.into_iter().collect())?;
            eprintln!(
                "created key {} ({}) for {}; store it now, it is not shown again:",
                record.id,
                role.as_str(),
                record.name
            );
            println!("{key}");
        }
        KeysAction::List => {
            for key in store.list()? {
                let datasets: Vec<&str> = key.datasets.iter().map(String::as_str).collect();
                let state = key
                    .revoked_at
                    .map_or("active".to_string(), |t| format!("revoked {t}"));
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.role.as_str(),
                    key.name,
                    datasets.join(","),
                    key.created_at,
                    state
                );
            }
        }
        KeysAction::Revoke { id } => {
            if !store.revoke(&id)? {
                anyhow::bail!("no key with id `{id}`");
            }
            eprintln!("key {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn init(folder: &std::path::Path, city: Option<&str>) -> anyhow::Result<ExitCode> {
    let report = cruscotto::init::init(folder, city)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("Tables (connectors/dati.toml):");
    for table in &report.tables {
        println!("  {table}");
    }
    println!("Written:");
    for path in &report.written {
        println!("  {}", path.display());
    }
    if !report.skipped.is_empty() {
        println!("Skipped (not data files): {}", report.skipped.join(", "));
    }
    if !report.undecided.is_empty() {
        println!("Decided on a guess or left to you:");
        for line in &report.undecided {
            println!("  - {line}");
        }
    }
    let config = folder.join("cruscotto.toml");
    println!(
        "Next: cruscotto --config {0} check, then cruscotto --config {0}",
        config.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            // Checks against the sources themselves (a database: syntax, column types).
            let mut against_sources = Vec::new();
            for connector in &config.connectors {
                against_sources.extend(
                    connector
                        .config
                        .check_source(&connector.file, &config.base_dir)
                        .await,
                );
            }
            // Every saved query planned and every dashboard's and dataset's column looked up,
            // against the tables' schemas as their sources describe them.
            against_sources.extend(cruscotto::check::plan_everything(&config).await);
            let (warnings, errors): (Vec<_>, Vec<_>) =
                against_sources.into_iter().partition(|p| p.warning);
            for warning in config.warnings.iter().chain(&warnings) {
                eprintln!("warning: {warning}");
            }
            if !errors.is_empty() {
                for problem in &errors {
                    eprintln!("error: {problem}");
                }
                eprintln!("{} error(s) found", errors.len());
                return ExitCode::FAILURE;
            }
            let tables: usize = config
                .connectors
                .iter()
                .map(|c| c.config.table_names().len())
                .sum();
            println!(
                "{}: ok ({} connectors, {} tables, {} saved queries, {} dashboards)",
                path.display(),
                config.connectors.len(),
                tables,
                config.queries.len(),
                config.dashboards.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for problem in &e.problems {
                let severity = if problem.warning { "warning" } else { "error" };
                eprintln!("{severity}: {problem}");
            }
            eprintln!("{} error(s) found", e.problems.len());
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    listen: Option<std::net::SocketAddr>,
    protocols: cruscotto::protocols::Addresses,
) -> anyhow::Result<()> {
    let address = listen.unwrap_or(config.service.listen);
    let service = Service::new(config).await;
    service.spawn_background();
    cruscotto::results::spawn_refresh(service.clone());
    let state = AppState::new(service.clone());
    // The analysts' protocols first: their lines come before the HTTP one tests wait for.
    let bound = cruscotto::protocols::start(&state, protocols).await?;
    if let Some(address) = bound.pgwire {
        tracing::info!(%address, "PostgreSQL protocol listening");
        println!("cruscotto pgwire listening on postgresql://{address}");
    }
    if let Some(address) = bound.flight_sql {
        tracing::info!(%address, "Flight SQL listening");
        println!("cruscotto flight-sql listening on grpc://{address}");
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "listening");
    // A line tests and scripts can wait for.
    println!("cruscotto listening on http://{local}");
    let limits = service.config.service.http.clone();
    let app = api::app(state);
    api::serve::serve(listener, app, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

async fn query(config: Config, sql: &str, output: Output) -> anyhow::Result<ExitCode> {
    let service = Service::new(config).await;
    service.load_all_once().await;
    for status in service.store.statuses() {
        if let Some(error) = &status.last_error {
            eprintln!("warning: {}.{}: {error}", status.schema, status.table);
        }
    }
    match service.engine.execute(sql).await {
        Ok(result) => {
            match output {
                Output::Table => {
                    let (_, batches) = format::as_text_columns(&result, false);
                    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
                    eprintln!("{} row(s)", result.rows());
                }
                Output::Csv => print!(
                    "{}",
                    String::from_utf8(format::encode(&result, format::Format::Csv)?)?
                ),
                Output::Json => println!(
                    "{}",
                    String::from_utf8(format::encode(&result, format::Format::Json)?)?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn plan(
    config: Config,
    request: cruscotto::plan::scenario::PlanRequest,
    output: PlanOutput,
) -> anyhow::Result<ExitCode> {
    use cruscotto::plan::output::{PlanFormat, encode};
    let service = Service::new(config).await;
    service.load_all_once().await;
    for status in service.store.statuses() {
        if let Some(error) = &status.last_error {
            eprintln!("warning: {}.{}: {error}", status.schema, status.table);
        }
    }
    let plan = match cruscotto::plan::saved::run(&service, &request).await {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let format = match output {
        PlanOutput::Json => PlanFormat::Json,
        PlanOutput::Csv => PlanFormat::Csv,
        PlanOutput::Geojson => PlanFormat::GeoJson,
    };
    let body = encode(&plan, format).map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", String::from_utf8(body)?);
    let solver = &plan.result.solver;
    eprintln!(
        "plan {} kept: {} new sites cover {:.0} persons ({:.1}% of the demand; the open sites alone {:.1}%), {} ({}), {:.0} ms",
        plan.id,
        plan.result.chosen.len(),
        plan.result.covered.persons,
        plan.result.covered.share_of_total * 100.0,
        plan.result.open_covered.share_of_total * 100.0,
        if solver.optimal {
            "proven optimal".to_string()
        } else {
            format!("gap {:.2}%", solver.gap * 100.0)
        },
        format!("{:?}", solver.method).to_lowercase(),
        solver.solve_ms
    );
    Ok(ExitCode::SUCCESS)
}

async fn simulate(config: &std::path::Path, target: SimulateTarget) -> anyhow::Result<ExitCode> {
    let base_dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let (url, seed, events, year, fragility, replace) = match target {
        SimulateTarget::Postgres {
            url,
            seed,
            events,
            year,
            fragility,
            replace,
        } => (url, seed, events, year, fragility, replace),
        SimulateTarget::ServiceLogs {
            out,
            seed,
            events,
            year,
            fragility,
            effect_points,
            effect_interventions,
            effect_areas,
            effect_radius,
        } => {
            let options = cruscotto::simulate::ServiceLogOptions {
                areas: fragility.unwrap_or_else(|| {
                    base_dir.join("data/bologna/indici-di-fragilita-dal-2021.csv")
                }),
                seed,
                events,
                year,
            };
            let effect = effect_points.map(|points| cruscotto::simulate::SimulatedEffect {
                interventions: effect_interventions
                    .unwrap_or_else(|| base_dir.join("data/bologna/interventi.csv")),
                areas: effect_areas.unwrap_or_else(|| {
                    base_dir.join("data/bologna/bologna_aree_statistiche.geojson")
                }),
                points,
                radius: effect_radius,
            });
            let rows = cruscotto::simulate::write_service_logs_with_effect(
                &out,
                &options,
                effect.as_ref(),
            )
            .await?;
            let injected = effect.map_or("no effect injected".to_string(), |e| {
                format!(
                    "+{} percentage points online within {} m of the sites in {}",
                    e.points,
                    e.radius,
                    e.interventions.display()
                )
            });
            println!(
                "wrote {rows} simulated service events of {year} to {} (seed {seed}; {injected})",
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        SimulateTarget::Sensors {
            broker,
            rate,
            count,
            malformed_share,
            seed,
            registry,
            prefix,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&malformed_share),
                "--malformed-share must be between 0 and 1"
            );
            let registry = registry.unwrap_or_else(|| base_dir.join("data/bologna/sensori.csv"));
            let options = cruscotto::simulate::SensorOptions {
                broker,
                rate,
                count,
                malformed_share,
                seed,
                registry,
                prefix,
            };
            let summary = cruscotto::simulate::sensors(&options).await?;
            println!(
                "published {} messages for {} sensors to {} ({} malformed on purpose) in {:.1}s, {:.0}/s, all acknowledged by the broker",
                summary.published,
                summary.sensors,
                options.broker,
                summary.malformed,
                summary.elapsed.as_secs_f64(),
                summary.published as f64 / summary.elapsed.as_secs_f64().max(1e-9)
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let fragility =
        fragility.unwrap_or_else(|| base_dir.join("data/bologna/indici-di-fragilita-dal-2021.csv"));
    let options = cruscotto::simulate::Options {
        url,
        seed,
        events,
        year,
        fragility,
        replace,
    };
    let started = std::time::Instant::now();
    let summary = cruscotto::simulate::postgres(&options).await?;
    println!(
        "simulated Bologna into {}: {} areas, {} residents in {} households, {} service events in {year} \
         (seed {seed}; generated in {:.1}s, loaded in {:.1}s, {:.1}s in all)",
        cruscotto::connectors::postgres::redacted_url(&options.url),
        summary.areas,
        summary.residents,
        summary.households,
        summary.events,
        summary.generate.as_secs_f64(),
        summary.load.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
