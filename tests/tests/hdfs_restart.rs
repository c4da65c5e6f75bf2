//! The namenode stopped and started again while the sink writes to HDFS: the sink backs
//! off, retries, and the table ends with exactly the expected rows. Its own test binary, so
//! no other test runs while HDFS is down. The namenode stays down past the sink's
//! `STALL_LIMIT` (20 s here): a commit waiting on the lake is not a lost Kafka broker, and the
//! sink must not stop for it (`make chaos`, namenode-stopped, saw it stop with status 3 after
//! 120 s, "no broker up", with Kafka up: it does not poll while it retries the commit, so no
//! statistics came).

use anyhow::Result;
use std::process::Command;
use std::time::Duration;
use tributary_ctl::loadgen::{self, Spec};
use tributary_engine::topics;
use tributary_tests::*;

fn hdfs_script(cmd: &str) -> Result<()> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../dev/hdfs/run.sh");
    let st = Command::new("bash").args([script, cmd]).status()?;
    anyhow::ensure!(st.success(), "dev/hdfs/run.sh {cmd} failed");
    Ok(())
}

#[test]
fn namenode_restart_during_writes() -> Result<()> {
    let chain = "blocklists";
    let ns = namespace(chain, 2)?;
    let lake = format!("{}/tributary-test/{ns}", hdfs());
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    let mut sink = Sink::start(&ns, &lake, chain, &[("STALL_LIMIT", "20s")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 30_000);
    spec.seed = 8;
    let (k, raw, sp) = (kafka(), topic(&ns, topics::raw(chain)), spec);
    let producer = std::thread::spawn(move || loadgen::send_paced(&k, &raw, sp, Some(3_000), |_| {}));
    std::thread::sleep(Duration::from_secs(3));
    hdfs_script("stop")?;
    std::thread::sleep(Duration::from_secs(35));
    sink.check_alive()?;
    hdfs_script("start")?;
    let summary = producer.join().expect("producer")?;
    let rows = wait_table(&lake, chain, summary.expected.len(), Duration::from_secs(180))?;
    assert_exact_table(&rows, &summary.expected);
    sink.check_alive()?;
    sink.stop()?;
    svc.stop()
}
