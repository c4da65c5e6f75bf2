//! `make chaos`: a fault matrix over the whole system with one end-to-end checker (issue 16).
//!
//! - [`checker`]: the checker over a history, pure, with tests that plant faults in it;
//! - [`collect`]: the live `read_committed` reader and the final reads of topics and lake;
//! - [`gateway`]: the gateway (`ingest`) under webhook load and what it acknowledged, for
//!   `gateway-kill9`;
//! - [`infra`]: the infrastructure's processes through its launchers (`INFRA_DIR`);
//! - [`scenario`]: one scenario run (services, load, faults, quiescence, check, cleanup);
//! - [`suppression`]: the suppression view (`serve`) against the reference model of DESIGN's rules
//!   (`tributary_view::model`);
//! - [`report`]: `bench/results/chaos.md` and `chaos.json`.

pub mod checker;
pub mod collect;
pub mod gateway;
pub mod infra;
pub mod report;
pub mod scenario;
pub mod suppression;
