//! The `mqtt` connector: sensor readings streamed from a broker into log tables, with zero loss.
//! `config.rs` is the connector file; `topic.rs` matches topics and reads columns from them;
//! `senml.rs` resolves SenML packs; `mapping.rs` turns a message into rows or a rejection;
//! `run.rs` holds the session and the bounded channel; `write.rs` the writer that acknowledges a
//! message only once it is durable, and recognises redeliveries.
//!
//! Unlike the other kinds it is not polled: `Service` opens its tables at start-up
//! (`open_tables`) and runs it as one long task (`run`).

mod config;
mod mapping;
mod run;
mod senml;
mod topic;
mod write;

pub use config::{
    BrokerAddress, FieldMapping, FieldType, MqttConnectorConfig, MqttTableConfig, PayloadFormat,
    Secret,
};
pub use mapping::{Cell, Layout, RejectKind, Rejection};
pub use run::{open_tables, run};
pub use senml::{SenmlRecord, resolve as resolve_senml};
pub use topic::{TopicPattern, matches as topic_matches};

use futures::future::BoxFuture;

use crate::connectors::{Connector, LoadState, TableLoad};

/// The poll of a stream does nothing: readings arrive through `run`.
pub struct MqttConnector;

impl Connector for MqttConnector {
    fn load<'a>(&'a self, _state: &'a LoadState) -> BoxFuture<'a, Vec<TableLoad>> {
        Box::pin(async { Vec::new() })
    }
}
