//! `make chaos`: a fault matrix over the whole system with one end-to-end checker (issue 16).
//!
//! - [`checker`]: the checker over a history, pure, with tests that plant faults in it;
//! - [`collect`]: the live `read_committed` reader and the final reads of topics and lake;
//! - [`infra`]: the infrastructure's processes through its launchers (`INFRA_DIR`);
//! - [`scenario`]: one scenario run (services, load, faults, quiescence, check, cleanup);
//! - [`suppression`]: the suppression view (`serve`) against a reference model of DESIGN's rules;
//! - [`report`]: `bench/results/chaos.md` and `chaos.json`.

pub mod checker;
pub mod collect;
pub mod infra;
pub mod report;
pub mod scenario;
pub mod suppression;
