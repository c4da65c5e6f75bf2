//! The reference model of DESIGN's suppression rules: the rules read literally over the whole
//! *set* of a tenant's events, with no state, no order and no shortcut. It is what the folded
//! state ([`crate::state`]) is tested against (this crate's property test) and what `make
//! chaos` compares `serve`'s answers with (`tests/chaos/suppression.rs`): one copy of the rules
//! as a reader of DESIGN would apply them by hand.

use crate::event::{BlockAction, BlockKind, Event, Kind, Sha};
use std::collections::{BTreeSet, HashMap};

/// The events of one tenant, grouped the way the rules read them.
#[derive(Default)]
pub struct TenantEvents {
    /// Per address: its events, and its address where any event carries it.
    pub people: HashMap<Sha, (Option<String>, Vec<Event>)>,
    /// Domain blocks by domain.
    pub domains: HashMap<String, Vec<Event>>,
    /// Every list named by a subscription or unsubscribe.
    pub lists: BTreeSet<String>,
}

impl TenantEvents {
    /// The events of a set, grouped.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> TenantEvents {
        let mut t = TenantEvents::default();
        for e in events {
            t.add(e.clone());
        }
        t
    }

    pub fn add(&mut self, e: Event) {
        if let Kind::Block {
            kind: BlockKind::Domain,
            value,
            ..
        } = &e.kind
        {
            self.domains.entry(value.clone()).or_default().push(e);
            return;
        }
        match &e.kind {
            Kind::Subscribe { list, .. } => {
                self.lists.insert(list.clone());
            }
            Kind::Unsubscribe { list: Some(l), .. } => {
                self.lists.insert(l.clone());
            }
            _ => {}
        }
        if let Some(sha) = e.sha {
            let p = self.people.entry(sha).or_default();
            if p.0.is_none() {
                p.0 = e.email.clone();
            }
            p.1.push(e);
        }
    }

    /// The events of one address (none: no event names it).
    pub fn events_of(&self, sha: &Sha) -> &[Event] {
        self.people.get(sha).map(|p| p.1.as_slice()).unwrap_or_default()
    }
}

/// A live `ADD` with no strictly later `REMOVE` among `blocks` (one address's or domain's).
pub fn blocked<'a>(blocks: impl Iterator<Item = &'a Event> + Clone, now: i64) -> bool {
    let entries = blocks.filter_map(|e| match &e.kind {
        Kind::Block { action, expires_at, .. } => Some((e.time, *action, *expires_at)),
        _ => None,
    });
    entries.clone().any(|(t, action, exp)| {
        action == BlockAction::Add
            && exp.is_none_or(|x| x > now)
            && !entries.clone().any(|(r, a, _)| a == BlockAction::Remove && r > t)
    })
}

/// Rules 1-5 of DESIGN for one address of one tenant (`now` in microseconds): `events` are the
/// address's own events (see [`TenantEvents::events_of`]), `t` gives the tenant's domain
/// blocks and lists.
pub fn suppressed(t: &TenantEvents, events: &[Event], email: &str, list: Option<&str>, now: i64) -> bool {
    let address_block = blocked(
        events.iter().filter(|e| {
            matches!(
                e.kind,
                Kind::Block {
                    kind: BlockKind::Email,
                    ..
                }
            )
        }),
        now,
    );
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let domain_block = t.domains.get(domain).is_some_and(|d| blocked(d.iter(), now));
    let opted_out = |l: &str| {
        let out = events
            .iter()
            .filter_map(|e| match &e.kind {
                Kind::Unsubscribe { list: ul, .. } if ul.as_deref().is_none_or(|x| x == l) => Some(e.time),
                _ => None,
            })
            .max();
        out.is_some_and(|out| {
            !events.iter().any(|e| {
                e.time > out
                    && matches!(&e.kind, Kind::Subscribe { list: sl, consent_ip, consent_at }
                        if sl == l && (consent_ip.is_some() || consent_at.is_some()))
            })
        })
    };
    let member = |l: &str| {
        events
            .iter()
            .any(|e| matches!(&e.kind, Kind::Subscribe { list: sl, .. } if sl == l))
            && !opted_out(l)
            && !address_block
            && !domain_block
    };
    match list {
        Some(l) => address_block || domain_block || opted_out(l),
        None => {
            let global = events
                .iter()
                .any(|e| matches!(e.kind, Kind::Unsubscribe { list: None, .. }));
            address_block || domain_block || (global && !t.lists.iter().any(|l| member(l)))
        }
    }
}
