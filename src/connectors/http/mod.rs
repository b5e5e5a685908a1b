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

/// An HTTP table's schema from its declared `schema` (and `point`, `filter`), without a request:
/// `cruscotto check` plans the saved queries against it. Without a declared schema the columns
/// are known only from a pull, which a check does not make.
pub async fn describe_table(table: &HttpTableConfig) -> Result<super::Described, String> {
    let Some(schema) = decode::PageDecoder::new(table).schema() else {
        return Err(
            "it declares no `schema`, and its columns are known only once pulled (declare `schema` to have the queries reading it checked)"
                .into(),
        );
    };
    let source = format!("table `{}`", table.name);
    let mut batch = arrow::record_batch::RecordBatch::new_empty(schema);
    if let Some(point) = &table.point {
        batch = super::file::reshape::add_point(&source, batch, point)
            .map_err(|e| e.to_string())?
            .0;
    }
    if let Some(predicate) = &table.filter {
        batch = super::file::reshape::filter(&source, batch, predicate)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok((batch.schema(), Vec::new()))
}
