//! A guard against a service that is alive but makes no progress.
//!
//! `make chaos` (broker-restart at 1 M events) found a chain service whose transaction could
//! never finish. librdkafka 2.10 to 2.15 (we build 2.12.1) decommissions a broker that a
//! metadata response leaves out (a KRaft broker does, while it is fenced, in its controlled
//! shutdown or just after its start). Its `rd_kafka_broker_decommission` lets go of the group
//! coordinator's reference to that broker, but not of the transaction manager's
//! (`rk_eos.txn_curr_coord`). So the broker's handle never finishes terminating
//! (`TERMINATE … Handle is terminating in state INIT: 2 refcnts`). While that handle is
//! counted, the client neither connects anew nor re-bootstraps. With a single broker it then
//! has no broker at all (`PIDBROKER No brokers available for Transactions`), for good. The
//! process stayed up for 8 minutes, its liveness probe green, and logged nothing above DEBUG.
//!
//! The main loop cannot see this: it is blocked inside librdkafka, flushing or committing.
//! So a thread of its own watches the open transaction. A transaction open for longer than the
//! limit cannot commit any more: the broker aborts it after `transaction.timeout.ms`. So the
//! process stops loudly, as a `kill -9` would, and a restart gets a fresh client. Nothing is
//! lost: the open transaction never commits, and its records are read again by the partitions'
//! next owner. That is the same path the kill -9 tests prove.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// When the watched piece of work began, readable without the lock its owner holds while it
/// is blocked.
#[derive(Debug)]
pub struct Progress {
    origin: Instant,
    /// Milliseconds from `origin` to the start of the open work, plus one; 0 when none is open.
    open_since: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            open_since: AtomicU64::new(0),
        }
    }
}

impl Progress {
    /// Marks work open from `now`; a no-op while some is open already.
    pub fn open(&self, now: Instant) {
        let at = now.saturating_duration_since(self.origin).as_millis() as u64 + 1;
        let _ = self
            .open_since
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Marks the open work finished (committed or aborted).
    pub fn close(&self) {
        self.open_since.store(0, Ordering::Relaxed);
    }

    /// How long the open work has been open at `now`, if any is.
    pub fn open_for(&self, now: Instant) -> Option<Duration> {
        match self.open_since.load(Ordering::Relaxed) {
            0 => None,
            at => {
                let since = self.origin + Duration::from_millis(at - 1);
                Some(now.saturating_duration_since(since))
            }
        }
    }
}

/// Each partition a consumer fetches, with how far it is behind, from one statistics report:
/// `(topic, partition, records)`, the last stable offset less the offset of the next record
/// for the application. Read from the report rather than asked of the consumer
/// (`position` and `fetch_watermarks`, every 10 s until this): `position` waits without a
/// timeout on the consumer group's queue, which `make chaos` saw blocked for good after a
/// broker restart, and `fetch_watermarks` is a round trip to the broker per partition, up to
/// its timeout each while the broker is away, all on the loop that polls.
pub fn partition_lags(stats: &rdkafka::Statistics) -> impl Iterator<Item = (&str, i32, i64)> + '_ {
    stats.topics.iter().flat_map(|(topic, t)| {
        t.partitions
            .values()
            .filter(|p| p.partition >= 0 && p.desired && p.app_offset >= 0 && p.ls_offset >= 0)
            .map(move |p| (topic.as_str(), p.partition, (p.ls_offset - p.app_offset).max(0)))
    })
}

/// The `statistics.interval.ms` of a client whose [`Connected`] is watched.
pub const STATS_INTERVAL: &str = "5000";
/// The least time without a broker up that counts as a stall, whatever the limit asked: three
/// statistics reports, so that the gap between two reports never counts as one.
const MIN_DOWN_LIMIT: Duration = Duration::from_secs(15);

/// Whether a Kafka client has a broker to talk to, from its statistics
/// (`statistics.interval.ms`): the last report in which one of its brokers (not a logical
/// coordinator handle nor the internal one) was up. Made by [`Connected::group`], whether a
/// consumer is a settled member of its group instead: the last report in which its group
/// handle was up and its join steady (assigned, whether or not it got partitions).
#[derive(Debug)]
pub struct Connected {
    origin: Instant,
    /// Milliseconds from `origin` to the last report with a broker up; the client's creation
    /// counts as one.
    last_up: AtomicU64,
    /// Whether a report counts: a broker up, or (a group watch) the member settled.
    counts: fn(&rdkafka::Statistics) -> bool,
}

impl Default for Connected {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_up: AtomicU64::new(0),
            counts: |stats| {
                stats
                    .brokers
                    .values()
                    .any(|b| matches!(b.source.as_str(), "learned" | "configured") && b.state == "UP")
            },
        }
    }
}

impl Connected {
    /// Watches a consumer's membership of its group: `make chaos` (broker-restart) saw a sink,
    /// restarted by its watchdog after a broker restart, join its group and stay unassigned for
    /// good, its broker up and its loop turning.
    pub fn group() -> Self {
        Self {
            counts: |stats| {
                stats
                    .cgrp
                    .as_ref()
                    .is_some_and(|g| g.state == "up" && g.join_state == "steady")
            },
            ..Self::default()
        }
    }

    /// Takes one statistics report of the client.
    pub fn observe(&self, stats: &rdkafka::Statistics) {
        if (self.counts)(stats) {
            self.mark_up(Instant::now());
        }
    }

    /// Counts now as a report with a broker up (or the member settled), for a loop that knows
    /// why its client cannot report: librdkafka serves statistics on a poll, and a loop that
    /// waits on something else (the sink retrying a lake commit) does not poll. Without it the
    /// wait reads as a lost broker.
    pub fn excuse(&self) {
        self.mark_up(Instant::now());
    }

    fn mark_up(&self, now: Instant) {
        let at = now.saturating_duration_since(self.origin).as_millis() as u64;
        self.last_up.fetch_max(at, Ordering::Relaxed);
    }

    /// How long the client has had no broker up at `now`, as of its last report.
    pub fn down_for(&self, now: Instant) -> Duration {
        let last = self.origin + Duration::from_millis(self.last_up.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    /// How long the client has had no broker up, when that is longer than `limit` (at least
    /// three statistics reports).
    pub fn down_past(&self, now: Instant, limit: Duration) -> Option<Duration> {
        Some(self.down_for(now)).filter(|down| *down > limit.max(MIN_DOWN_LIMIT))
    }
}

/// Calls `probe` every `tick` until `stop` is cancelled. The first time it names a stall,
/// calls `stalled` with it, once, and stops watching.
pub fn watch(
    tick: Duration,
    stop: CancellationToken,
    mut probe: impl FnMut(Instant) -> Option<String> + Send + 'static,
    stalled: impl FnOnce(String) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        while !stop.is_cancelled() {
            if let Some(why) = probe(Instant::now()) {
                stalled(why);
                return;
            }
            std::thread::sleep(tick);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;

    #[test]
    fn an_excused_wait_is_not_a_lost_broker() {
        let c = Connected::default();
        let past = MIN_DOWN_LIMIT + Duration::from_secs(5);
        // No report since the client's creation: down past the limit.
        assert!(c.down_past(Instant::now() + past, MIN_DOWN_LIMIT).is_some());
        // The loop excuses the silence (it waited on the lake): counted from the excuse on.
        c.excuse();
        assert!(c
            .down_past(Instant::now() + MIN_DOWN_LIMIT / 2, MIN_DOWN_LIMIT)
            .is_none());
        assert!(c.down_past(Instant::now() + past, MIN_DOWN_LIMIT).is_some());
    }

    #[test]
    fn progress_reports_the_open_work_from_its_first_mark() {
        let p = Progress::default();
        let t0 = Instant::now();
        assert_eq!(p.open_for(t0), None);
        p.open(t0);
        // A second mark while open keeps the first start.
        p.open(t0 + Duration::from_secs(5));
        let open = p.open_for(t0 + Duration::from_secs(7)).unwrap();
        assert!(
            open >= Duration::from_millis(6_990) && open <= Duration::from_millis(7_010),
            "{open:?}"
        );
        p.close();
        assert_eq!(p.open_for(t0 + Duration::from_secs(8)), None);
        p.open(t0 + Duration::from_secs(9));
        let open = p.open_for(t0 + Duration::from_secs(10)).unwrap();
        assert!(open <= Duration::from_millis(1_010), "{open:?}");
    }

    #[test]
    fn the_watch_fires_once_on_work_open_past_the_limit_and_not_on_work_that_closes() {
        let p = Arc::new(Progress::default());
        let (tx, rx) = mpsc::channel();
        let stop = CancellationToken::new();
        let watched = p.clone();
        // Far above the 20 ms the work stays open, so that a slow machine does not make it late.
        let limit = Duration::from_secs(2);
        let probe = move |now| watched.open_for(now).filter(|open| *open > limit);
        let h = watch(
            Duration::from_millis(10),
            stop.clone(),
            move |now| probe(now).map(|d| format!("{}", d.as_millis())),
            move |d| tx.send(d.parse::<u64>().unwrap()).unwrap(),
        )
        .unwrap();
        // Work that opens and closes within the limit, again and again: no alarm.
        for _ in 0..20 {
            p.open(Instant::now());
            std::thread::sleep(Duration::from_millis(20));
            p.close();
        }
        assert!(rx.try_recv().is_err());
        // Work that stays open: the alarm, with how long it was open.
        p.open(Instant::now());
        let open = rx.recv_timeout(Duration::from_secs(20)).expect("the watch fires");
        // Past 2 s, in whole milliseconds (2 000.4 ms reads 2 000).
        assert!(open >= 2_000, "{open}");
        h.join().unwrap();
        assert!(rx.try_recv().is_err(), "it fires once");
    }

    #[test]
    fn connected_counts_from_creation_and_from_each_report_with_a_broker_up() {
        let c = Connected::default();
        let t0 = c.origin;
        assert!(c.down_for(t0 + Duration::from_secs(3)) >= Duration::from_secs(3));
        c.mark_up(t0 + Duration::from_secs(10));
        assert_eq!(c.down_for(t0 + Duration::from_secs(12)), Duration::from_secs(2));
        // An older report does not move it back.
        c.mark_up(t0 + Duration::from_secs(5));
        assert_eq!(c.down_for(t0 + Duration::from_secs(12)), Duration::from_secs(2));
        // A limit under three reports counts as three.
        assert_eq!(c.down_past(t0 + Duration::from_secs(20), Duration::from_secs(5)), None);
        assert_eq!(
            c.down_past(t0 + Duration::from_secs(26), Duration::from_secs(5)),
            Some(Duration::from_secs(16))
        );
    }

    #[test]
    fn a_report_counts_only_real_brokers_that_are_up() {
        let stats = |brokers: &[(&str, &str)]| {
            let mut s = rdkafka::Statistics::default();
            for (i, (source, state)) in brokers.iter().enumerate() {
                let b = rdkafka::statistics::Broker {
                    source: (*source).into(),
                    state: (*state).into(),
                    ..Default::default()
                };
                s.brokers.insert(format!("b{i}"), b);
            }
            s
        };
        for (brokers, up) in [
            (vec![("learned", "UP")], true),
            (vec![("configured", "UP")], true),
            (vec![("learned", "INIT"), ("logical", "UP"), ("internal", "UP")], false),
            (vec![], false),
        ] {
            let c = Connected::default();
            let before = c.last_up.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
            c.observe(&stats(&brokers));
            assert_eq!(c.last_up.load(Ordering::Relaxed) > before, up, "{brokers:?}");
        }
    }

    #[test]
    fn the_watch_ends_when_stopped() {
        let stop = CancellationToken::new();
        let h = watch(
            Duration::from_millis(10),
            stop.clone(),
            |_| None,
            |_| panic!("no alarm"),
        )
        .unwrap();
        stop.cancel();
        h.join().unwrap();
    }

    #[test]
    fn lags_are_the_last_stable_offset_less_the_next_offset_for_the_application() {
        use rdkafka::statistics::{Partition, Topic};
        let part = |partition, desired, app_offset, ls_offset| Partition {
            partition,
            desired,
            app_offset,
            ls_offset,
            // The high watermark is past the last stable offset while a transaction is open.
            hi_offset: ls_offset + 50,
            ..Default::default()
        };
        let mut s = rdkafka::Statistics::default();
        let mut t = Topic::default();
        for p in [
            part(0, true, 100, 130),
            // Caught up: a commit marker may put the last stable offset behind the position.
            part(1, true, 41, 40),
            // Nothing consumed yet (no position), not fetched, the internal UA partition.
            part(2, true, -1001, 10),
            part(3, false, 5, 10),
            part(-1, true, 0, 0),
        ] {
            t.partitions.insert(p.partition, p);
        }
        s.topics.insert("ns.raw.users".into(), t);
        let mut lags: Vec<_> = partition_lags(&s).collect();
        lags.sort();
        assert_eq!(lags, vec![("ns.raw.users", 0, 30), ("ns.raw.users", 1, 0)]);
    }

    #[test]
    fn a_group_watch_counts_reports_of_a_settled_member_only() {
        let stats = |state: &str, join_state: &str| rdkafka::Statistics {
            cgrp: Some(rdkafka::statistics::ConsumerGroup {
                state: state.into(),
                join_state: join_state.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for (s, settled) in [
            (stats("up", "steady"), true),
            (stats("up", "wait-join"), false),
            (stats("wait-coord", "steady"), false),
            (rdkafka::Statistics::default(), false),
        ] {
            let c = Connected::group();
            let before = c.last_up.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
            c.observe(&s);
            assert_eq!(c.last_up.load(Ordering::Relaxed) > before, settled, "{:?}", s.cgrp);
        }
        // A broker watch does not read the group.
        let c = Connected::default();
        std::thread::sleep(Duration::from_millis(2));
        c.observe(&stats("up", "steady"));
        assert_eq!(c.last_up.load(Ordering::Relaxed), 0);
    }
}
