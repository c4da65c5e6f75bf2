//! The `tributary` command line's library: topic creation and the load generator, shared
//! with the tests and the benchmarks.

pub mod chains;
pub mod dlq;
pub mod grants;
pub mod job_metrics;
pub mod lake_ops;
pub mod loadgen;
pub mod reconcile;
pub mod share;
pub mod tables;
