//! Checks of what deploys and observes Tributary, against the code and the binaries. No
//! infrastructure needed; the tools (kustomize, promtool) are the pinned ones that
//! `bash dev/lint-deploy.sh tools` installs into `.infra/tools/bin`, installed on first use.
//!
//! - `dashboards_lint_clean`: grafana/dashboards/*.json with the rules of Grafana's
//!   dashboard-linter that apply (which cannot be installed here: the Go module proxy refuses
//!   it), every query parsed by `promtool`, every metric, label and label value checked
//!   against what the code really registers: `ChainMetrics`, the sink's metrics (from the
//!   built binary: `sink --list-metrics`) and the jobs' pushed metrics
//!   (`tributary_ctl::job_metrics::catalog`, with their grouping labels `job` and `table`),
//!   serve's and the gateway's (read from their `metrics.rs`); the alert rules' metrics too.
//! - `dashboards_lint_catches_seeded_faults`: each rule above finds a fault planted in a
//!   clean dashboard.
//! - `manifests_match_binaries`: `kustomize build` of k8s/overlays/{dev,prod}: probes,
//!   Services and ServiceMonitors on the port the binary listens on, security context,
//!   resources, budgets, network policies, StatefulSet + INSTANCE_ID + ScaledObject for the
//!   chains, --config in a mounted ConfigMap, secrets from Secrets, the Airflow ConfigMap;
//!   every flag and environment variable a container gets is in its binary's `--help`; the
//!   Pushgateway (a third-party image) probed, locked down, scraped with honorLabels and
//!   named by the Airflow ConfigMap's TRIBUTARY_PUSHGATEWAY.
//! - `binaries_run_as_manifests_say`: each built binary started with its manifest's args,
//!   config file, environment and user (Kafka and the registry pointed at a closed port)
//!   serves /health/live, /health/ready and /metrics, and stops within the 30 s grace period.
//!
//! A binary that is not built (ingest, until it exists) is a printed SKIP line, not silence.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
mod dashboards;
mod live;
mod manifests;
mod metrics;
mod promql;

use common::*;
use manifests::*;
use metrics::*;
use promql::*;
