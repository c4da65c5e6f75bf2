//! Windowed dedup state of one input partition.
//!
//! Invariants:
//! - A key is a duplicate while its stored event time lies within `window` of the partition's
//!   watermark (the highest event time accepted so far). An event older than the window is
//!   *late*: let through, not remembered.
//! - Every change made since the last [`DedupState::commit`] is journaled, and
//!   [`DedupState::rollback`] undoes exactly those, so state follows the Kafka transaction:
//!   committed with it, or rolled back when it aborts.
//! - Every insert and every expiry is also returned as a changelog entry, written to the
//!   compacted changelog topic in the same transaction; replaying the committed changelog
//!   through [`DedupState::apply_changelog`] rebuilds the same state.
//!
//! Memory: a key is a 64-bit hash stored as two `u32`s next to a `u32` of seconds since 2000,
//! 12 bytes a slot plus one control byte in a SwissTable, so 15 to 30 bytes a key depending on
//! the table's load.

use hashbrown::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Seconds since 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
const EPOCH_2000_MICROS: i64 = 946_684_800_000_000;

/// Keys are already uniform hashes: use them as they are.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// A 64-bit key as two `u32`s, so that a slot (key and seconds) is 12 bytes aligned to 4
/// rather than 16 aligned to 8.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(u32, u32);

impl Key {
    fn new(k: u64) -> Key {
        Key((k >> 32) as u32, k as u32)
    }
    fn get(self) -> u64 {
        (u64::from(self.0) << 32) | u64::from(self.1)
    }
}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.get());
    }
}

type Slots = HashMap<Key, u32, BuildHasherDefault<IdentityHasher>>;

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    New,
    Duplicate,
    Late,
}

/// A change to write to the changelog: `Some(seconds)` sets the key, `None` is a tombstone.
pub type ChangelogEntry = (u64, Option<u32>);

pub struct DedupState {
    slots: Slots,
    window_secs: u32,
    watermark: u32,
    last_sweep: u32,
    journal: Vec<(u64, Option<u32>)>,
    watermark_at_commit: u32,
    last_sweep_at_commit: u32,
    /// The wall clock (seconds since 2000) the watermark may not pass: a valid record dated
    /// ahead (senders' clocks; up to a day is accepted) is remembered with its own time but
    /// does not move the partition's time, so it cannot make every later record "late".
    clock_cap: u32,
}

pub fn micros_to_secs2000(micros: i64) -> u32 {
    ((micros - EPOCH_2000_MICROS).max(0) / 1_000_000).min(i64::from(u32::MAX)) as u32
}

impl DedupState {
    pub fn new(window_secs: u32) -> Self {
        DedupState {
            slots: Slots::default(),
            window_secs,
            watermark: 0,
            last_sweep: 0,
            journal: Vec::new(),
            watermark_at_commit: 0,
            last_sweep_at_commit: 0,
            clock_cap: u32::MAX,
        }
    }

    /// Bounds the watermark by the wall clock `now_secs` (seconds since 2000) from now on.
    pub fn cap_clock(&mut self, now_secs: u32) {
        self.clock_cap = now_secs;
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn watermark(&self) -> u32 {
        self.watermark
    }

    /// Bytes held by the table itself.
    pub fn allocated_bytes(&self) -> usize {
        self.slots.allocation_size()
    }

    fn expired(&self, t: u32) -> bool {
        u64::from(t) + u64::from(self.window_secs) < u64::from(self.watermark)
    }

    /// Decides on one event, remembering it when new. `changes` receives the changelog entries.
    pub fn observe(&mut self, key: u64, event_secs: u32, changes: &mut Vec<ChangelogEntry>) -> Verdict {
        if self.expired(event_secs) {
            return Verdict::Late;
        }
        if let Some(&t) = self.slots.get(&Key::new(key)) {
            if !self.expired(t) {
                return Verdict::Duplicate;
            }
        }
        let prev = self.slots.insert(Key::new(key), event_secs);
        self.journal.push((key, prev));
        changes.push((key, Some(event_secs)));
        let moved = event_secs.min(self.clock_cap);
        if moved > self.watermark {
            self.watermark = moved;
            self.maybe_sweep(changes);
        }
        Verdict::New
    }

    /// Drops expired keys once the watermark has moved an eighth of the window (at least a
    /// minute) since the last sweep, so the cost is amortized over many events.
    fn maybe_sweep(&mut self, changes: &mut Vec<ChangelogEntry>) {
        let step = (self.window_secs / 8).max(60);
        if self.watermark < self.last_sweep.saturating_add(step) {
            return;
        }
        self.last_sweep = self.watermark;
        let cutoff = u64::from(self.watermark);
        let window = u64::from(self.window_secs);
        let journal = &mut self.journal;
        self.slots.retain(|k, t| {
            let keep = u64::from(*t) + window >= cutoff;
            if !keep {
                journal.push((k.get(), Some(*t)));
                changes.push((k.get(), None));
            }
            keep
        });
    }

    /// The open changes become permanent (their transaction committed).
    pub fn commit(&mut self) {
        self.journal.clear();
        self.watermark_at_commit = self.watermark;
        self.last_sweep_at_commit = self.last_sweep;
    }

    /// Undoes every change since the last commit (their transaction aborted).
    pub fn rollback(&mut self) {
        while let Some((key, prev)) = self.journal.pop() {
            match prev {
                Some(t) => {
                    self.slots.insert(Key::new(key), t);
                }
                None => {
                    self.slots.remove(&Key::new(key));
                }
            }
        }
        self.watermark = self.watermark_at_commit;
        self.last_sweep = self.last_sweep_at_commit;
    }

    /// Replays one committed changelog record during restore.
    pub fn apply_changelog(&mut self, key: u64, value: Option<u32>) {
        match value {
            Some(t) => {
                self.slots.insert(Key::new(key), t);
                self.watermark = self.watermark.max(t.min(self.clock_cap));
            }
            None => {
                self.slots.remove(&Key::new(key));
            }
        }
    }

    /// Makes room for `records` changelog records before a restore, so that the table is
    /// not grown (and every key moved) about twenty times on the way to millions of keys.
    /// A changelog not yet compacted holds more records than keys: the room left over is
    /// given back in [`DedupState::finish_restore`].
    pub fn reserve_for_restore(&mut self, records: usize) {
        self.slots.reserve(records);
    }

    /// Ends a restore: what the changelog still holds beyond the window is dropped at once.
    pub fn finish_restore(&mut self) {
        let (w, win) = (u64::from(self.watermark), u64::from(self.window_secs));
        self.slots.retain(|_, t| u64::from(*t) + win >= w);
        if self.slots.capacity() > 2 * self.slots.len() + 1024 {
            self.slots.shrink_to_fit();
        }
        self.last_sweep = self.watermark;
        self.commit();
    }
}

/// Changelog record key: the 8-byte big-endian dedup key.
pub fn changelog_key(key: u64) -> [u8; 8] {
    key.to_be_bytes()
}

/// Changelog record value: 4-byte big-endian seconds since 2000.
pub fn changelog_value(secs: u32) -> [u8; 4] {
    secs.to_be_bytes()
}

pub fn decode_changelog(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(u64, Option<u32>)> {
    let key = u64::from_be_bytes(key?.try_into().ok()?);
    match value {
        None => Some((key, None)),
        Some(v) => Some((key, Some(u32::from_be_bytes(v.try_into().ok()?)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_dated_ahead_does_not_move_the_partitions_time() {
        let day = 86_400;
        let now = 800_000_000;
        let mut s = DedupState::new(day);
        s.cap_clock(now);
        let mut ch = Vec::new();
        assert_eq!(
            s.observe(1, now + day - 600, &mut ch),
            Verdict::New,
            "23 h 50 min ahead: valid"
        );
        assert_eq!(s.watermark(), now);
        assert_eq!(
            s.observe(2, now - 3600, &mut ch),
            Verdict::New,
            "an hour old is not late"
        );
        assert_eq!(s.observe(1, now + day - 600, &mut ch), Verdict::Duplicate);
        // Restored from the changelog: the same.
        let mut r = DedupState::new(day);
        r.cap_clock(now);
        for (k, v) in ch {
            r.apply_changelog(k, v);
        }
        r.finish_restore();
        assert_eq!(r.watermark(), now);
        assert_eq!(r.observe(3, now - 3600, &mut Vec::new()), Verdict::New);
    }
    use proptest::prelude::*;
    use std::collections::HashMap as StdMap;

    /// The model: a plain map with the same rules, no journal.
    #[derive(Clone, Default)]
    struct Model {
        map: StdMap<u64, u32>,
        watermark: u32,
    }

    impl Model {
        fn observe(&mut self, window: u32, key: u64, t: u32) -> Verdict {
            let expired = |x: u32, w: u32| u64::from(x) + u64::from(window) < u64::from(w);
            if expired(t, self.watermark) {
                return Verdict::Late;
            }
            if let Some(&old) = self.map.get(&key) {
                if !expired(old, self.watermark) {
                    return Verdict::Duplicate;
                }
            }
            self.map.insert(key, t);
            self.watermark = self.watermark.max(t);
            Verdict::New
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Event(u64, u32),
        Commit,
        Rollback,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u64..40, 0u32..2_000).prop_map(|(k, t)| Op::Event(k, t)),
            1 => Just(Op::Commit),
            1 => Just(Op::Rollback),
        ]
    }

    proptest! {
        #[test]
        fn follows_the_model_through_commits_and_rollbacks(ops in proptest::collection::vec(op(), 1..300), window in 1u32..600) {
            let mut state = DedupState::new(window);
            let mut committed = Model::default();
            let mut open = Model::default();
            let mut log: Vec<ChangelogEntry> = Vec::new();
            let mut committed_log: Vec<ChangelogEntry> = Vec::new();
            for op in ops {
                match op {
                    Op::Event(k, t) => {
                        let got = state.observe(k, t, &mut log);
                        prop_assert_eq!(got, open.observe(window, k, t));
                    }
                    Op::Commit => { state.commit(); committed = open.clone(); committed_log.append(&mut log); }
                    Op::Rollback => { state.rollback(); open = committed.clone(); log.clear(); }
                }
            }
            state.commit();
            committed_log.append(&mut log);
            // Replaying the changelog gives the same verdicts as the live state.
            let mut restored = DedupState::new(window);
            for (k, v) in &committed_log { restored.apply_changelog(*k, *v); }
            restored.finish_restore();
            for k in 0u64..40 {
                let t = state.watermark();
                prop_assert_eq!(restored.clone_verdict(k, t), state.clone_verdict(k, t));
            }
        }
    }

    impl DedupState {
        fn clone_verdict(&self, key: u64, t: u32) -> Verdict {
            if self.expired(t) {
                return Verdict::Late;
            }
            match self.slots.get(&Key::new(key)) {
                Some(&old) if !self.expired(old) => Verdict::Duplicate,
                _ => Verdict::New,
            }
        }
    }

    #[test]
    fn expiry_drops_old_keys_and_emits_tombstones() {
        let mut s = DedupState::new(3600);
        let mut log = Vec::new();
        assert_eq!(s.observe(1, 1_000, &mut log), Verdict::New);
        assert_eq!(s.observe(1, 1_100, &mut log), Verdict::Duplicate);
        assert_eq!(s.observe(2, 10_000, &mut log), Verdict::New);
        assert_eq!(s.len(), 1, "key 1 expired in the sweep");
        assert!(log.contains(&(1, None)));
        assert_eq!(s.observe(3, 1_000, &mut log), Verdict::Late);
    }

    #[test]
    fn memory_per_key_stays_under_32_bytes() {
        let mut s = DedupState::new(u32::MAX / 2);
        let mut log = Vec::new();
        for k in 0..1_000_000u64 {
            s.observe(xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()), 1, &mut log);
            log.clear();
        }
        let per_key = s.allocated_bytes() as f64 / s.len() as f64;
        assert!(per_key <= 32.0, "{per_key} bytes a key");
    }
}
