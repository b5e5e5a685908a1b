//! The `http` connector: REST APIs and PDND Interoperabilità e-services, pulled page by page into
//! Arrow. `config.rs` is the connector file; `connector.rs` pulls a table; `client.rs` sends one
//! request robustly; `auth.rs`, `pdnd.rs` and `jwk.rs` hold credentials and vouchers; `pagination.rs` finds
//! the next page; `decode.rs` turns bodies into record batches.

mod auth;
mod client;
mod config;
mod connector;
mod decode;
mod jwk;
mod pagination;
mod pdnd;
mod validate;

pub use config::{
    AuditConfig, AuthConfig, CsvOptions, HttpConnectorConfig, HttpTableConfig, Incremental,
    Pagination, PdndConfig, ResponseFormat, RetryConfig,
};
pub use connector::HttpConnector;
