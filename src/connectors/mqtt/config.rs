//! Configuration of the `mqtt` connector: one broker session (persistent, QoS 1, manual
//! acknowledgements), and one `[[table]]` per kind of message, chosen by topic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use indexmap::IndexMap;
use serde::Deserialize;

use crate::config_text::{Problem, is_sql_identifier};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConnectorConfig {
    /// Always `"mqtt"`.
    pub kind: String,
    /// A disabled connector is checked but never run, and declares no tables.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What these tables are, for people reading /status.
    #[serde(default)]
    pub description: Option<String>,
    /// The broker: `mqtt://host:1883`, or `mqtts://host:8883` for TLS. Not used with
    /// `[simulate]`.
    #[serde(default)]
    pub broker: String,
    /// The client id of the session. It must be stable: the broker keeps the session (the
    /// subscriptions and the readings published while cruscotto is away) under it.
    #[serde(default)]
    pub client_id: String,
    /// No broker: the built-in sensor simulator feeds the connector, whose messages then take
    /// the connector's own path (decoding, registry check, write-ahead log, rollups, rejected
    /// table). The tables are labelled as simulated data. For a demo with no broker.
    #[serde(default)]
    pub simulate: Option<SensorSimulation>,
    /// User name, e.g. `"${MQTT_USER}"`.
    #[serde(default)]
    pub username: Option<Secret>,
    /// Password, as a `"${MQTT_PASSWORD}"` reference.
    #[serde(default)]
    pub password: Option<Secret>,
    /// For `mqtts://`: PEM file of the certificate authority that signed the broker's
    /// certificate (default: the Mozilla roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive interval.
    #[serde(with = "humantime_serde", default = "default_keep_alive")]
    pub keep_alive: Duration,
    /// The sensor registry, `"schema.table"`, with a `sensor_id` column: readings of a sensor
    /// not in it are rejected. Without it every sensor id is accepted.
    #[serde(default)]
    pub registry: Option<String>,
    /// Largest message accepted from the broker.
    #[serde(default = "default_max_payload")]
    pub max_payload: ByteSize,
    /// Messages read from the broker but not yet durable; when it is full the connector stops
    /// reading (the broker holds the rest), it never drops.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Most messages made durable by one fsync (a group commit).
    #[serde(default = "default_max_group")]
    pub max_group: usize,
    /// How often the write-ahead log is compacted into Parquet segments.
    #[serde(with = "humantime_serde", default = "default_compact_every")]
    pub compact_every: Duration,
    /// Compact earlier when the write-ahead log holds this many rows.
    #[serde(default = "default_compact_rows")]
    pub compact_rows: usize,
    /// How often readings are expected: /status marks the tables stale after three intervals
    /// without any.
    #[serde(with = "humantime_serde", default = "default_expected_interval")]
    pub expected_interval: Duration,
    /// The tables, one `[[table]]` each; a message goes to the first whose `topics` match.
    #[serde(rename = "table", default)]
    pub tables: Vec<MqttTableConfig>,
}

/// `[simulate]` of an MQTT connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSimulation {
    /// The sensor registry as CSV (`sensor_id`, `kind`), relative to `cruscotto.toml`.
    pub registry: PathBuf,
    /// First level of every topic, e.g. `bologna`.
    pub prefix: String,
    /// Live messages per second; 0: the history only, no live messages (a fixed demo).
    #[serde(default = "default_simulation_rate")]
    pub rate: f64,
    /// At the first start (empty tables), readings of every sensor over this past period, one
    /// per sensor and metric per hour.
    #[serde(with = "humantime_serde", default = "default_simulation_history")]
    pub history: Duration,
    /// Share of live messages that are malformed on purpose (they go to the rejected table).
    #[serde(default = "default_simulation_malformed")]
    pub malformed_share: f64,
    #[serde(default = "default_simulation_seed")]
    pub seed: u64,
}

fn default_simulation_rate() -> f64 {
    5.0
}
fn default_simulation_history() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_simulation_malformed() -> f64 {
    0.002
}
fn default_simulation_seed() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTableConfig {
    /// Table name in SQL (`<connector>.<name>`).
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Topic filters subscribed to, with `+` (one level) and `#` (the rest), at QoS 1.
    pub topics: Vec<String>,
    /// How topic levels become columns, e.g. `"bologna/+/{sensor_id}/{metric}"`: `{name}` takes
    /// the level into column `name`, `+` skips a level, a trailing `#` skips the rest.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// `json` (fields read with `fields`) or `senml` (RFC 8428, JSON).
    pub format: PayloadFormat,
    /// For `json`: column → where to find it in the payload and its type (columns follow the
    /// topic's, in name order), e.g.
    /// `value = { pointer = "/v", type = "float" }`. A `ts` field (type `timestamp`: RFC 3339 or
    /// seconds since the epoch) is the reading's time; without it, the arrival time.
    #[serde(default)]
    pub fields: IndexMap<String, FieldMapping>,
    /// How long rows are kept, e.g. `"90d"`; older day partitions are deleted. Default: forever.
    #[serde(with = "humantime_serde", default)]
    pub retention: Option<Duration>,
    /// A table of hourly rollups (count, mean, min, max of `value` per sensor and metric).
    #[serde(default)]
    pub rollup: Option<String>,
    /// How long hourly rollups are kept, e.g. `"2y"`. Default: forever.
    #[serde(with = "humantime_serde", default)]
    pub rollup_retention: Option<Duration>,
    /// The table of rejected messages (topic, payload, reason, time). Default `<name>_scartate`.
    #[serde(default)]
    pub rejected_table: Option<String>,
    /// The plausible window of a reading's time: at most this long before its arrival (a time
    /// of 1969 from a sensor's reset clock is rejected as `implausible_time`). Default 10 years.
    #[serde(with = "humantime_serde", default = "default_max_age")]
    pub max_age: Duration,
    /// ... and at most this long after its arrival (a clock running ahead). Default 1 hour.
    #[serde(with = "humantime_serde", default = "default_max_ahead")]
    pub max_ahead: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    Json,
    Senml,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// JSON pointer (RFC 6901) into the payload, e.g. `/v` or `/misura/valore`.
    pub pointer: String,
    /// `text`, `int`, `float`, `bool` or `timestamp`.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// A missing (or null) optional field is a null cell; a missing required one rejects the
    /// message.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Int,
    Float,
    Bool,
    Timestamp,
}

/// A value that must not be shown: `Debug` prints `***`. Write it as `"${ENV_VAR}"`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn default_true() -> bool {
    true
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_payload() -> ByteSize {
    ByteSize::mib(1)
}
fn default_channel_capacity() -> usize {
    10_000
}
fn default_max_group() -> usize {
    5_000
}
fn default_compact_every() -> Duration {
    Duration::from_secs(60)
}
fn default_compact_rows() -> usize {
    250_000
}
fn default_max_age() -> Duration {
    Duration::from_secs(10 * 365 * 86_400)
}
fn default_max_ahead() -> Duration {
    Duration::from_secs(3_600)
}
fn default_expected_interval() -> Duration {
    Duration::from_secs(15 * 60)
}

impl MqttTableConfig {
    pub fn rejected_table_name(&self) -> String {
        self.rejected_table
            .clone()
            .unwrap_or_else(|| format!("{}_scartate", self.name))
    }
}

/// The broker address as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConnectorConfig {
    pub fn broker_address(&self) -> Result<BrokerAddress, String> {
        let (scheme, rest) = self
            .broker
            .split_once("://")
            .ok_or_else(|| format!("`{}` is not a URL like mqtt://host:1883", self.broker))?;
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported; use mqtt:// or mqtts://"
                ));
            }
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('@') {
            return Err(format!(
                "`{}`: give only host and port (credentials go in username/password)",
                self.broker
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("`{port}` is not a port number"))?,
            ),
            None => (authority, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("`{}` has no host", self.broker));
        }
        Ok(BrokerAddress {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls,
        })
    }

    /// Where the readings come from, as /status names it.
    pub fn source(&self) -> String {
        match &self.simulate {
            Some(_) => "simulator (built-in, dati simulati)".to_string(),
            None => self.broker.clone(),
        }
    }

    /// Every table the connector declares: for each `[[table]]`, its rows, its rejected
    /// messages and its rollup.
    pub fn table_names(&self) -> Vec<String> {
        if !self.enabled {
            return Vec::new();
        }
        let mut names = Vec::new();
        for table in &self.tables {
            names.push(table.name.clone());
            names.push(table.rejected_table_name());
            names.extend(table.rollup.clone());
        }
        names
    }

    pub fn validate(&self, file: &Path, base_dir: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem =
            |key: String, message: String| problems.push(Problem::new(file, Some(key), message));
        if let Some(simulate) = &self.simulate {
            let registry = crate::config_text::resolve(base_dir, &simulate.registry);
            if !registry.is_file() {
                problem(
                    "simulate.registry".into(),
                    format!("{} does not exist", registry.display()),
                );
            }
            if !(0.0..=100_000.0).contains(&simulate.rate) {
                problem(
                    "simulate.rate".into(),
                    "must be between 0 (the history only) and 100000 messages per second".into(),
                );
            }
            if !(0.0..=1.0).contains(&simulate.malformed_share) {
                problem(
                    "simulate.malformed_share".into(),
                    "must be between 0 and 1".into(),
                );
            }
            if !self.broker.is_empty() {
                problem(
                    "broker".into(),
                    "a simulated connector has no broker: remove `broker` or `[simulate]`".into(),
                );
            }
        } else if let Err(message) = self.broker_address() {
            problem("broker".into(), message);
        }
        if self.simulate.is_none() && self.client_id.trim().is_empty() {
            problem(
                "client_id".into(),
                "must not be empty: the broker keeps the persistent session under it".into(),
            );
        }
        if self.password.is_some() && self.username.is_none() {
            problem("password".into(), "a password needs a username".into());
        }
        if let Some(ca_file) = &self.ca_file {
            let path = crate::config_text::resolve(base_dir, ca_file);
            if !path.is_file() {
                problem(
                    "ca_file".into(),
                    format!("{} does not exist", path.display()),
                );
            }
        }
        if let Some(registry) = &self.registry {
            let valid = registry
                .split_once('.')
                .is_some_and(|(s, t)| is_sql_identifier(s) && is_sql_identifier(t));
            if !valid {
                problem(
                    "registry".into(),
                    format!("`{registry}` is not `schema.table`"),
                );
            }
        }
        if self.channel_capacity == 0 || self.max_group == 0 || self.compact_rows == 0 {
            problem(
                "channel_capacity".into(),
                "channel_capacity, max_group and compact_rows must be at least 1".into(),
            );
        }
        if self.enabled && self.tables.is_empty() {
            problem(
                "table".into(),
                "no [[table]]: nothing to subscribe to".into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in self
            .tables
            .iter()
            .flat_map(|t| {
                [
                    Some(t.name.clone()),
                    Some(t.rejected_table_name()),
                    t.rollup.clone(),
                ]
            })
            .flatten()
        {
            if !is_sql_identifier(&name) {
                problem(
                    "table".into(),
                    format!(
                        "`{name}` is a table name in SQL: use lowercase letters, digits and `_`"
                    ),
                );
            }
            if !seen.insert(name.clone()) {
                problem("table".into(), format!("table `{name}` is declared twice"));
            }
        }
        for (i, table) in self.tables.iter().enumerate() {
            let key = |field: &str| format!("table[{i}] ({}).{field}", table.name);
            if table.topics.is_empty() {
                problem(key("topics"), "at least one topic filter is needed".into());
            }
            for filter in &table.topics {
                if let Err(message) = super::topic::check_filter(filter) {
                    problem(key("topics"), format!("`{filter}`: {message}"));
                }
            }
            let captures = match table
                .topic_pattern
                .as_deref()
                .map(super::topic::TopicPattern::parse)
                .transpose()
            {
                Ok(pattern) => pattern.map(|p| p.captures()).unwrap_or_default(),
                Err(message) => {
                    problem(key("topic_pattern"), message);
                    Vec::new()
                }
            };
            match table.format {
                PayloadFormat::Json => {
                    if table.fields.is_empty() {
                        problem(
                            key("fields"),
                            "a json table needs `fields` (column = { pointer, type })".into(),
                        );
                    }
                    for (column, field) in &table.fields {
                        if !is_sql_identifier(column) {
                            problem(
                                key("fields"),
                                format!(
                                    "`{column}` is a column name in SQL: use lowercase letters, digits and `_`"
                                ),
                            );
                        }
                        if !(field.pointer.is_empty() || field.pointer.starts_with('/')) {
                            problem(
                                key("fields"),
                                format!(
                                    "`{column}`: `{}` is not a JSON pointer (it starts with `/`)",
                                    field.pointer
                                ),
                            );
                        }
                        if captures.contains(column) {
                            problem(
                                key("fields"),
                                format!("`{column}` comes from both the topic and the payload"),
                            );
                        }
                        if ["received_at"].contains(&column.as_str()) {
                            problem(key("fields"), format!("`{column}` is set by the connector"));
                        }
                    }
                    if table
                        .fields
                        .get("ts")
                        .is_some_and(|f| f.kind != FieldType::Timestamp)
                    {
                        problem(
                            key("fields"),
                            "`ts` is the reading's time: its type must be `timestamp`".into(),
                        );
                    }
                    if !captures.iter().any(|c| c == "sensor_id")
                        && !table.fields.contains_key("sensor_id")
                    {
                        problem(
                            key("fields"),
                            "no `sensor_id`: take it from the topic (`{sensor_id}`) or the payload"
                                .into(),
                        );
                    }
                    if table.rollup.is_some()
                        && !table
                            .fields
                            .get("value")
                            .is_some_and(|f| matches!(f.kind, FieldType::Float | FieldType::Int))
                    {
                        problem(
                            key("rollup"),
                            "hourly rollups summarise a numeric `value` field".into(),
                        );
                    }
                }
                PayloadFormat::Senml => {
                    if !table.fields.is_empty() {
                        problem(
                            key("fields"),
                            "SenML records have fixed columns; `fields` is for json".into(),
                        );
                    }
                }
            }
            for (name, value) in [
                ("retention", table.retention),
                ("rollup_retention", table.rollup_retention),
            ] {
                if value.is_some_and(|d| d < Duration::from_secs(86_400)) {
                    problem(
                        key(name),
                        "must be at least one day (rows are deleted by day)".into(),
                    );
                }
            }
            if table.rollup_retention.is_some() && table.rollup.is_none() {
                problem(
                    key("rollup_retention"),
                    "set `rollup` (the rollup table's name) too".into(),
                );
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::ConnectorConfig;

    const SENSORS: &str = r#"
kind = "mqtt"
broker = "mqtt://127.0.0.1:1883"
client_id = "cruscotto-test"
registry = "bologna.sensori"

[[table]]
name = "letture"
topics = ["bologna/+/+/+"]
topic_pattern = "bologna/+/{sensor_id}/{metric}"
format = "json"
retention = "90d"
rollup = "letture_orarie"
rollup_retention = "2y"
fields = { value = { pointer = "/v", type = "float" }, ts = { pointer = "/t", type = "timestamp", optional = true } }
"#;

    #[test]
    fn a_valid_file_parses_and_declares_its_tables() {
        let config = ConnectorConfig::parse(Path::new("connectors/sensori.toml"), SENSORS).unwrap();
        let ConnectorConfig::Mqtt(mqtt) = &config else {
            panic!("not mqtt")
        };
        assert!(
            mqtt.validate(Path::new("x.toml"), Path::new("."))
                .is_empty(),
            "{:?}",
            mqtt.validate(Path::new("x.toml"), Path::new("."))
        );
        assert_eq!(
            config.table_names(),
            vec!["letture", "letture_scartate", "letture_orarie"]
        );
        assert_eq!(
            mqtt.tables[0].retention,
            Some(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(
            mqtt.broker_address().unwrap(),
            BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
    }

    #[test]
    fn the_shipped_compose_connector_is_valid() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = base.join("connectors.compose/sensori.toml");
        let text =
            crate::config_text::interpolate_env(&path, &std::fs::read_to_string(&path).unwrap())
                .unwrap();
        let config = ConnectorConfig::parse(&path, &text).unwrap();
        let ConnectorConfig::Mqtt(mqtt) = &config else {
            panic!("not mqtt")
        };
        assert!(
            mqtt.validate(&path, base).is_empty(),
            "{:?}",
            mqtt.validate(&path, base)
        );
        assert_eq!(
            config.table_names(),
            vec![
                "letture",
                "letture_scartate",
                "letture_orarie",
                "ambiente",
                "ambiente_scartate"
            ]
        );
        for table in &mqtt.tables {
            crate::connectors::mqtt::Layout::new(table).unwrap();
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        let error = ConnectorConfig::parse(
            Path::new("s.toml"),
            &SENSORS.replace("client_id", "clientid"),
        )
        .unwrap_err();
        assert!(
            error.message.contains("unknown field `clientid`"),
            "{error}"
        );
        let text = SENSORS
            .replace("mqtt://127.0.0.1:1883", "http://x")
            .replace("bologna/+/+/+", "bologna/#/x")
            .replace("{sensor_id}", "{sensore}");
        let ConnectorConfig::Mqtt(mqtt) =
            ConnectorConfig::parse(Path::new("s.toml"), &text).unwrap()
        else {
            panic!()
        };
        let problems: Vec<String> = mqtt
            .validate(Path::new("s.toml"), Path::new("."))
            .iter()
            .map(ToString::to_string)
            .collect();
        let all = problems.join("\n");
        assert!(all.contains("scheme `http` is not supported"), "{all}");
        assert!(all.contains("`#` must be the last level"), "{all}");
        assert!(all.contains("no `sensor_id`"), "{all}");
    }
}
