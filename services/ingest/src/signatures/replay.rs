//! Single use of Mailgun signatures. Mailgun signs only `timestamp` and `token`, not the
//! event: whoever sees one signed webhook (a proxy log, a leaked request) could post it
//! again, or post other events under the same signature, for as long as the timestamp is
//! fresh. So the (timestamp, token) pairs accepted inside the freshness window are
//! remembered, and a second use is refused with 403.
//!
//! A pair is taken when its signature verifies and given back when the request fails before
//! its records are all in Kafka ([`Reservation`] is released on drop unless kept), so the
//! provider's retry of a webhook the gateway did not take is not refused as a replay.
//!
//! Memory is bounded: an entry is forgotten once its timestamp has left the window (the
//! freshness check refuses it from then on anyway), and past `capacity` entries the oldest is
//! forgotten early, with a warning and `tributary_ingest_replay_cache_evictions_total`. Only
//! verified signatures are remembered, so only the provider's own traffic can fill it.
//! The cache is per gateway process: replicas behind a load balancer each keep their own,
//! so a replay sent to another replica is refused only by the freshness window.

use crate::error::{Error, Result};
use prometheus::IntCounter;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What identifies one signed delivery: 128 bits of SHA-256 over provider, timestamp, token.
type Key = [u8; 16];

pub struct Replays {
    capacity: usize,
    inner: Mutex<Inner>,
    evictions: IntCounter,
}

#[derive(Default)]
struct Inner {
    /// Key → the sequence number of its live entry in `order`.
    live: HashMap<Key, u64>,
    /// (forget after, Unix seconds; sequence number; key), in insertion order. Entries whose
    /// key was released (or taken again later) are stale and skipped.
    order: VecDeque<(i64, u64, Key)>,
    seq: u64,
    /// Entries forgotten early since the last warning, and when that was.
    evicted_unlogged: u64,
    last_warning: Option<Instant>,
}

/// How often, at most, the "cache full" warning is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Replays {
    pub fn new(capacity: usize, evictions: IntCounter) -> Replays {
        Replays {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
            evictions,
        }
    }

    /// Takes (`timestamp`, `token`) of `provider`, or refuses it as already used. `forget_at`
    /// (Unix seconds) is when the timestamp leaves the freshness window; `now` is our clock.
    pub fn take(
        &self,
        provider: &'static str,
        timestamp: &str,
        token: &str,
        forget_at: i64,
        now: i64,
    ) -> Result<Reservation<'_>> {
        let mut h = Sha256::new();
        for part in [provider, timestamp, token] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let key: Key = h.finalize()[..16].try_into().expect("16 of 32 bytes");
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.expire(now);
        if inner.live.contains_key(&key) {
            return Err(Error::Forbidden(format!(
                "{provider} signature (timestamp {timestamp}, token {}…) was already used: refused as a replay",
                tributary_engine::normalize::truncate(token, 8)
            )));
        }
        let mut evicted = 0;
        while inner.live.len() >= self.capacity {
            if inner.pop_front() {
                evicted += 1;
            }
        }
        // Released signatures leave stale entries in `order`: swept once they are as many as
        // the live ones could be, so `order` stays within twice the capacity.
        if inner.order.len() >= 2 * self.capacity {
            let Inner { live, order, .. } = &mut *inner;
            order.retain(|(_, seq, key)| live.get(key) == Some(seq));
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.live.insert(key, seq);
        inner.order.push_back((forget_at, seq, key));
        if evicted > 0 {
            self.evictions.inc_by(evicted);
            inner.evicted_unlogged += evicted;
            if inner.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    capacity = self.capacity,
                    forgotten = inner.evicted_unlogged,
                    "Replay cache full: the oldest signatures were forgotten before their timestamps left signature_max_age, so they could be replayed until then; raise REPLAY_CACHE_ENTRIES"
                );
                inner.evicted_unlogged = 0;
                inner.last_warning = Some(Instant::now());
            }
        }
        Ok(Reservation {
            replays: self,
            key,
            seq,
            kept: false,
        })
    }

    /// Signatures remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.live.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn release(&self, key: &Key, seq: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.live.get(key) == Some(&seq) {
            inner.live.remove(key);
        }
    }
}

impl Inner {
    /// Forgets the entries whose timestamps have left the window. Entries are in insertion
    /// order, not strictly in timestamp order: one stays until those before it have gone,
    /// never less long than its own window.
    fn expire(&mut self, now: i64) {
        while self.order.front().is_some_and(|(forget_at, _, _)| *forget_at < now) {
            self.pop_front();
        }
    }

    /// Drops the oldest entry; true when it was live (not already released).
    fn pop_front(&mut self) -> bool {
        let Some((_, seq, key)) = self.order.pop_front() else {
            return false;
        };
        if self.live.get(&key) == Some(&seq) {
            self.live.remove(&key);
            true
        } else {
            false
        }
    }
}

/// A signature taken for one request: [`Reservation::keep`] once the request's records are
/// all in Kafka; dropped without it (an error, a timeout), the signature may be used again.
#[must_use = "dropping a reservation releases the signature: keep() it once the request succeeded"]
pub struct Reservation<'a> {
    replays: &'a Replays,
    key: Key,
    seq: u64,
    kept: bool,
}

impl Reservation<'_> {
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.replays.release(&self.key, self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> Replays {
        Replays::new(capacity, IntCounter::new("evictions", "test").unwrap())
    }

    #[test]
    fn a_kept_signature_is_refused_until_its_window_ends() {
        let r = cache(10);
        r.take("mailgun", "100", "tok", 400, 100).unwrap().keep();
        let e = r.take("mailgun", "100", "tok", 400, 200).err().unwrap();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("already used: refused as a replay"), "{e}");
        // Another token, or the same token at another timestamp, is another delivery.
        r.take("mailgun", "100", "tok2", 400, 200).unwrap().keep();
        r.take("mailgun", "101", "tok", 401, 200).unwrap().keep();
        assert_eq!(r.len(), 3);
        // Past its window it is forgotten (the freshness check refuses it from then on).
        r.take("mailgun", "500", "later", 800, 401).unwrap().keep();
        assert_eq!(r.len(), 2, "the entries of timestamps 100 and 101 are gone");
    }

    #[test]
    fn a_failed_request_gives_its_signature_back() {
        let r = cache(10);
        {
            let _taken = r.take("mailgun", "100", "tok", 400, 100).unwrap();
            // While the first request runs, the same signature is refused.
            assert!(r.take("mailgun", "100", "tok", 400, 100).is_err());
        } // dropped without keep(): the request failed
        r.take("mailgun", "100", "tok", 400, 101).unwrap().keep();
        assert!(r.take("mailgun", "100", "tok", 400, 102).is_err());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn bounded_the_oldest_are_forgotten_first() {
        let r = cache(3);
        for t in ["a", "b", "c", "d"] {
            r.take("mailgun", "100", t, 1000, 100).unwrap().keep();
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.evictions.get(), 1);
        assert!(r.take("mailgun", "100", "a", 1000, 100).is_ok(), "a was forgotten");
        for t in ["c", "d"] {
            assert!(r.take("mailgun", "100", t, 1000, 100).is_err(), "{t} is remembered");
        }
        // Released signatures do not count against the capacity, and their stale entries
        // are swept: many failed requests leave the cache as it was.
        let r = cache(2);
        r.take("mailgun", "1", "x", 1000, 100).unwrap().keep();
        for i in 0..100 {
            drop(r.take("mailgun", "1", &format!("failed{i}"), 1000, 100).unwrap());
        }
        r.take("mailgun", "1", "z", 1000, 100).unwrap().keep();
        assert_eq!((r.len(), r.evictions.get()), (2, 0));
        assert!(r.inner.lock().unwrap().order.len() <= 4);
        assert!(r.take("mailgun", "1", "x", 1000, 100).is_err(), "x is still remembered");
    }
}
