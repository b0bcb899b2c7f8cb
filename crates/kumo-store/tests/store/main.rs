//! The store test suite: every store module's behaviour on SQLite and on PostgreSQL, one module
//! per resource or area. The harness (each case run on both databases) is [`common`].

mod common;

mod billing;
mod cluster;
mod hosts;
mod identity;
mod images;
mod instances;
mod metering;
mod migrations;
mod networking;
mod placement;
mod tenancy;
mod volumes;
