//! cruscotto: a city's population registry, service logs, sensors and interoperability APIs in one
//! SQL layer, served to administrators, analysts and partner agencies. See DESIGN.md.

pub mod api;
pub mod audit;
pub mod auth;
pub mod check;
pub mod config;
pub mod config_text;
pub mod connectors;
pub mod dashboards;
pub mod datasets;
pub mod geometry;
pub mod impact;
pub mod init;
pub mod objects;
pub mod plan;
pub mod protocols;
pub mod query;
pub mod results;
pub mod sdc;
pub mod service;
pub mod simulate;
pub mod store;
