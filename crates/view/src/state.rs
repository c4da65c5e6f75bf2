//! The folded state of the read side and the rules of DESIGN "Suppression semantics".
//!
//! Invariant: the state of a tenant is a function of the *set* of clean events applied, never
//! of their order. Every field is a join-semilattice: a maximum by (event time, then the
//! reported values, so ties break the same way whatever arrives first), a count, or a set
//! pruned only of entries that can never decide an answer again. Applying an event twice
//! changes no suppression or membership answer (counts of mailing events count clean events;
//! the chains' dedup and the lake's offsets keep each clean event once).
//!
//! What one address holds ([`Person`]): its address, the block entries that can still decide
//! (ADDs not older than the latest REMOVE), the latest global unsubscribe, per list the latest
//! unsubscribe, subscription and consented subscription, the users fields at their latest
//! values and the mailing counters: 421 to 475 bytes an address with one or two lists
//! (`make bench`); see ARCHITECTURE.md for the figures at scale.

use crate::event::{sha_hex, BlockAction, BlockKind, Event, Kind, MailType, Sha, USER_FIELDS, USER_ID};
use hashbrown::{HashMap, HashSet};
use serde_json::{json, Value};
use std::sync::Arc;

/// RFC 3339 UTC (`Z`), with as many fraction digits as the time has.
pub fn fmt_time(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

fn time_value(t: Option<i64>) -> Value {
    t.map_or(Value::Null, |t| Value::String(fmt_time(t)))
}

/// One block entry that can still decide.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Add {
    time: i64,
    expires_at: Option<i64>,
    reason: Arc<str>,
}

impl Add {
    fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
    fn order(&self) -> (i64, &str, Option<i64>) {
        (self.time, &self.reason, self.expires_at)
    }
}

/// The blocks of one address or one domain: the latest REMOVE and the ADDs not older than it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocks {
    max_remove: Option<i64>,
    adds: Vec<Add>,
    /// For an address: the event time of its latest erasure (a blocklists `ADD` with reason
    /// `ERASED`). Kept here, not in [`Person`], so only blocked people pay for it.
    erased_at: Option<i64>,
    /// For an erased address: `@` and its domain, all the domain rule needs of it.
    erased_domain: Option<Box<str>>,
}

impl Blocks {
    fn add(&mut self, a: Add) {
        if self.max_remove.is_some_and(|r| r > a.time) || self.adds.contains(&a) {
            return;
        }
        // An ADD that never expires and orders after `a` is live whenever `a` is and wins
        // the choice of the deciding event: `a` can never decide.
        if self
            .adds
            .iter()
            .any(|b| b.expires_at.is_none() && b.order() >= a.order())
        {
            return;
        }
        if a.expires_at.is_none() {
            let o = (a.time, a.reason.clone());
            self.adds.retain(|b| (b.time, b.reason.clone()) > o);
        }
        self.adds.push(a);
    }

    fn remove(&mut self, time: i64) {
        let r = self.max_remove.map_or(time, |m| m.max(time));
        self.max_remove = Some(r);
        // Same instant: the ADD stands.
        self.adds.retain(|a| a.time >= r);
    }

    /// The deciding live ADD at `now`: the latest.
    fn live(&self, now: i64) -> Option<&Add> {
        self.adds
            .iter()
            .filter(|a| a.live(now))
            .max_by(|a, b| a.order().cmp(&b.order()))
    }

    fn apply(&mut self, action: BlockAction, time: i64, reason: Arc<str>, expires_at: Option<i64>) {
        match action {
            BlockAction::Add => self.add(Add {
                time,
                expires_at,
                reason,
            }),
            BlockAction::Remove => self.remove(time),
        }
    }
}

/// An unsubscribe, as much as an answer reports of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Unsub {
    time: i64,
    reason: Option<Arc<str>>,
}

fn keep_max<T: Ord>(slot: &mut Option<T>, v: T) {
    if slot.as_ref().is_none_or(|cur| v > *cur) {
        *slot = Some(v);
    }
}

/// A subscription with consent evidence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Consent {
    time: i64,
    consent_at: Option<i64>,
    consent_ip: Option<Box<str>>,
}

/// One address and one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ListState {
    /// The latest unsubscribe from this list alone.
    unsub: Option<Unsub>,
    /// The latest subscription, with or without consent evidence.
    sub: Option<i64>,
    /// The latest subscription with consent evidence.
    consented: Option<Consent>,
}

/// The users fields of one address at their latest values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct UserState {
    updated_at: i64,
    fields: [Option<(i64, Box<str>)>; USER_FIELDS.len()],
    attributes: Option<(i64, Vec<(String, String)>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MailStats {
    sent: u32,
    delivered: u32,
    opened: u32,
    clicked: u32,
    bounced: u32,
    complained: u32,
    last_sent_at: Option<i64>,
    last_opened_at: Option<i64>,
    last_clicked_at: Option<i64>,
}

/// Everything the read side holds about one address of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    email: Option<Box<str>>,
    blocks: Option<Box<Blocks>>,
    global: Option<Unsub>,
    /// Usually one or two lists: allocated exactly, the names shared per tenant.
    lists: Vec<(Arc<str>, ListState)>,
    user: Option<Box<UserState>>,
    mail: Option<Box<MailStats>>,
}

/// The reason of the pseudonymous suppression an erasure leaves behind.
pub const ERASED: &str = "ERASED";

impl Person {
    /// An erasure (a blocklists `ADD` with reason `ERASED` and no address) at `at`: the person's personal
    /// data is forgotten, as `tributary erase` removes it from the lake: the address (only
    /// its domain is kept, for the domain rule), the users fields, the mailing counters and
    /// consent IPs. What decides suppression stays (blocks, unsubscribes, subscription and
    /// consent times), so every answer is still DESIGN's over the set of events; events dated
    /// no later bring no personal data back (see `apply`).
    fn forget(&mut self, at: i64) {
        let domain = self
            .email
            .as_deref()
            .and_then(domain_of)
            .map(|d| format!("@{d}").into_boxed_str());
        self.email = None;
        self.user = None;
        self.mail = None;
        for (_, l) in &mut self.lists {
            if let Some(c) = &mut l.consented {
                c.consent_ip = None;
            }
        }
        let b = self.blocks.get_or_insert_with(Default::default);
        b.erased_at = b.erased_at.max(Some(at));
        if b.erased_domain.is_none() {
            b.erased_domain = domain;
        }
    }

    /// The address the domain rule looks at: the address, or an erased address's domain.
    fn domain_source(&self) -> Option<&str> {
        self.email().or_else(|| self.blocks.as_ref()?.erased_domain.as_deref())
    }

    /// The event time of the person's latest erasure.
    pub fn erased_at(&self) -> Option<i64> {
        self.blocks.as_ref()?.erased_at
    }

    fn list_mut(&mut self, list: Arc<str>) -> &mut ListState {
        let i = match self.lists.iter().position(|(l, _)| *l == list) {
            Some(i) => i,
            None => {
                self.lists.reserve_exact(1);
                self.lists.push((list, ListState::default()));
                self.lists.len() - 1
            }
        };
        &mut self.lists[i].1
    }

    fn list(&self, list: &str) -> Option<&ListState> {
        self.lists.iter().find(|(l, _)| &**l == list).map(|(_, s)| s)
    }

    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The latest unsubscribe that covers `list`: from it or from every list.
    fn out<'a>(&'a self, list: &'a str) -> Option<(&'a Unsub, Option<&'a str>)> {
        let own = self.list(list).and_then(|s| s.unsub.as_ref()).map(|u| (u, Some(list)));
        let global = self.global.as_ref().map(|u| (u, None));
        match (own, global) {
            (Some(a), Some(b)) => Some(if (a.0, a.1) >= (b.0, b.1) { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Rule 3: opted out of `list`, with the deciding unsubscribe.
    fn opted_out<'a>(&'a self, list: &'a str) -> Option<(&'a Unsub, Option<&'a str>)> {
        let (u, l) = self.out(list)?;
        let lifted = self
            .list(list)
            .and_then(|s| s.consented.as_ref())
            .is_some_and(|c| c.time > u.time);
        (!lifted).then_some((u, l))
    }

    /// Rule 4 without the blocks: subscribed to `list` and not opted out of it.
    fn subscribed(&self, list: &str) -> bool {
        self.list(list).is_some_and(|s| s.sub.is_some()) && self.opted_out(list).is_none()
    }

    pub fn user_field(&self, i: usize) -> Option<&str> {
        self.user.as_ref()?.fields[i].as_ref().map(|(_, v)| &**v)
    }

    /// The event time of the latest subscription to `list`.
    pub fn subscribed_at(&self, list: &str) -> Option<i64> {
        self.list(list)?.sub
    }
}

fn domain_of(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, d)| d)
}

/// One reason an address is suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub rule: &'static str,
    pub reason: Option<String>,
    pub list: Option<String>,
    pub event_time: i64,
}

impl Reason {
    pub fn to_json(&self) -> Value {
        json!({
            "rule": self.rule,
            "reason": self.reason,
            "list": self.list,
            "event_time": fmt_time(self.event_time),
        })
    }
}

/// The answer to *may I email this address (on this list) now?*
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Suppression {
    pub suppressed: bool,
    pub reasons: Vec<Reason>,
}

impl Suppression {
    pub fn reasons_json(&self) -> Value {
        Value::Array(self.reasons.iter().map(Reason::to_json).collect())
    }
}

/// One member of an audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    pub sha: &'a Sha,
    pub email: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub subscribed_at: i64,
}

/// The state of one tenant.
#[derive(Debug, Default)]
pub struct TenantView {
    people: HashMap<Sha, Person>,
    by_user: HashMap<Box<str>, Sha>,
    domains: HashMap<Box<str>, Blocks>,
    /// List ids and reasons, one copy each per tenant.
    names: HashSet<Arc<str>>,
}

fn intern(names: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(a) = names.get(s) {
        return a.clone();
    }
    let a: Arc<str> = s.into();
    names.insert(a.clone());
    a
}

impl TenantView {
    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    pub fn person(&self, sha: &Sha) -> Option<&Person> {
        self.people.get(sha)
    }

    pub fn by_user_id(&self, user_id: &str) -> Option<&Sha> {
        self.by_user.get(user_id)
    }

    pub fn people(&self) -> impl Iterator<Item = (&Sha, &Person)> {
        self.people.iter()
    }

    /// Folds one event of this tenant in.
    pub fn apply(&mut self, e: Event) {
        if let Kind::Block {
            kind: BlockKind::Domain,
            action,
            value,
            reason,
            expires_at,
        } = &e.kind
        {
            let reason = intern(&mut self.names, reason);
            let entry = self.domains.entry_ref(value.as_str()).or_default();
            entry.apply(*action, e.time, reason, *expires_at);
            return;
        }
        let sha = match (&e.sha, &e.kind) {
            (Some(s), _) => *s,
            (None, Kind::Block { value, .. }) => {
                match crate::event::parse_sha(&tributary_engine::normalize::sha256_hex(value)) {
                    Some(s) => s,
                    None => return,
                }
            }
            // An address-less record of a chain keyed by address: nothing to fold.
            (None, _) => return,
        };
        let names = &mut self.names;
        let p = self.people.entry(sha).or_default();
        // Erased: what dates from before the erasure brings no personal data back (it is
        // gone from the lake too); what decides suppression is still folded. A later event
        // is a new relationship and is kept whole.
        let erased_since = p.erased_at().is_some_and(|at| e.time <= at);
        if erased_since && matches!(e.kind, Kind::User { .. } | Kind::Mailing { .. }) {
            return;
        }
        if p.email.is_none() && !erased_since {
            p.email = e.email.as_deref().map(Into::into);
        }
        if erased_since {
            // Erased before this event arrived: of its address only the domain is kept.
            if let (Some(b), Some(d)) = (p.blocks.as_mut(), e.email.as_deref().and_then(domain_of)) {
                if b.erased_domain.is_none() {
                    b.erased_domain = Some(format!("@{d}").into_boxed_str());
                }
            }
        }
        if let Kind::Block {
            action: BlockAction::Add,
            reason,
            ..
        } = &e.kind
        {
            // An erasure is the pseudonymous record `tributary erase` leaves: reason ERASED
            // and no address. A block that carries an address with that reason is a block
            // like any other (DESIGN: every reason blocks) and forgets nothing.
            if reason == ERASED && e.email.is_none() {
                p.forget(e.time);
                self.by_user.retain(|_, s| *s != sha);
            }
        }
        match e.kind {
            Kind::Block {
                action,
                reason,
                expires_at,
                ..
            } => {
                p.blocks
                    .get_or_insert_with(Default::default)
                    .apply(action, e.time, intern(names, &reason), expires_at)
            }
            Kind::Unsubscribe { list, reason } => {
                let u = Unsub {
                    time: e.time,
                    reason: reason.map(|r| intern(names, &r)),
                };
                match list {
                    None => keep_max(&mut p.global, u),
                    Some(l) => keep_max(&mut p.list_mut(intern(names, &l)).unsub, u),
                }
            }
            Kind::Subscribe {
                list,
                consent_ip,
                consent_at,
            } => {
                let s = p.list_mut(intern(names, &list));
                keep_max(&mut s.sub, e.time);
                if consent_ip.is_some() || consent_at.is_some() {
                    keep_max(
                        &mut s.consented,
                        Consent {
                            time: e.time,
                            consent_at,
                            // Evidence all the same; the IP itself is not kept once erased.
                            consent_ip: consent_ip.filter(|_| !erased_since).map(Into::into),
                        },
                    );
                }
            }
            Kind::User { fields, attributes } => {
                let u = p.user.get_or_insert_with(Default::default);
                u.updated_at = u.updated_at.max(e.time);
                for (slot, v) in u.fields.iter_mut().zip(fields) {
                    if let Some(v) = v {
                        keep_max(slot, (e.time, v.into_boxed_str()));
                    }
                }
                if !attributes.is_empty() {
                    keep_max(&mut u.attributes, (e.time, attributes));
                }
                if let Some((_, id)) = &u.fields[USER_ID] {
                    if self.by_user.get(&**id) != Some(&sha) {
                        self.by_user.insert(id.clone(), sha);
                    }
                }
            }
            Kind::Mailing { event_type } => {
                let m = p.mail.get_or_insert_with(Default::default);
                let t = Some(e.time);
                match event_type {
                    MailType::Sent => {
                        m.sent += 1;
                        m.last_sent_at = m.last_sent_at.max(t);
                    }
                    MailType::Delivered => m.delivered += 1,
                    MailType::Opened => {
                        m.opened += 1;
                        m.last_opened_at = m.last_opened_at.max(t);
                    }
                    MailType::Clicked => {
                        m.clicked += 1;
                        m.last_clicked_at = m.last_clicked_at.max(t);
                    }
                    MailType::Bounced => m.bounced += 1,
                    MailType::Complained => m.complained += 1,
                    MailType::Other => {}
                }
            }
        }
    }

    fn address_block(&self, p: Option<&Person>, now: i64) -> Option<Reason> {
        let a = p?.blocks.as_ref()?.live(now)?;
        Some(Reason {
            rule: "address_block",
            reason: Some(a.reason.to_string()),
            list: None,
            event_time: a.time,
        })
    }

    fn domain_block(&self, email: Option<&str>, now: i64) -> Option<Reason> {
        let domain = domain_of(email?)?;
        let a = self.domains.get(domain)?.live(now)?;
        Some(Reason {
            rule: "domain_block",
            reason: Some(a.reason.to_string()),
            list: None,
            event_time: a.time,
        })
    }

    fn blocked(&self, p: &Person, now: i64) -> bool {
        p.blocks.as_ref().is_some_and(|b| b.live(now).is_some())
            || p.domain_source()
                .is_some_and(|e| self.domain_block(Some(e), now).is_some())
    }

    /// Rule 4: a member of `list` at `now`.
    pub fn member(&self, p: &Person, list: &str, now: i64) -> bool {
        p.subscribed(list) && !self.blocked(p, now)
    }

    /// Rule 5, for `list` or for no list. `email` is the address when the caller gave it
    /// (for the domain rule of an address without events).
    pub fn suppression(&self, sha: &Sha, email: Option<&str>, list: Option<&str>, now: i64) -> Suppression {
        let p = self.people.get(sha);
        let email = email.or_else(|| p.and_then(Person::domain_source));
        let mut reasons = Vec::new();
        reasons.extend(self.address_block(p, now));
        reasons.extend(self.domain_block(email, now));
        if let Some(p) = p {
            let unsub = match list {
                Some(l) => p.opted_out(l).map(|(u, l)| (u, l.map(str::to_owned))),
                None => p
                    .global
                    .as_ref()
                    // Rule 4's member is also not blocked: a blocked address is a member of
                    // no list, so its global unsubscribe holds as a reason of its own.
                    .filter(|_| !p.lists.iter().any(|(l, _)| self.member(p, l, now)))
                    .map(|u| (u, None)),
            };
            if let Some((u, l)) = unsub {
                reasons.push(Reason {
                    rule: "unsubscribe",
                    reason: u.reason.as_deref().map(str::to_owned),
                    list: l,
                    event_time: u.time,
                });
            }
        }
        Suppression {
            suppressed: !reasons.is_empty(),
            reasons,
        }
    }

    /// The members of `list` at `as_of`, in no particular order.
    pub fn audience<'a>(&'a self, list: &'a str, as_of: i64) -> impl Iterator<Item = Member<'a>> + 'a {
        self.people.iter().filter_map(move |(sha, p)| {
            let subscribed_at = p.subscribed_at(list)?;
            if !self.member(p, list, as_of) {
                return None;
            }
            Some(Member {
                sha,
                email: p.email(),
                user_id: p.user_field(USER_ID),
                first_name: p.user_field(1),
                last_name: p.user_field(2),
                subscribed_at,
            })
        })
    }

    /// The profile answer of DESIGN (without `shared`, which the caller adds).
    pub fn profile(&self, sha: &Sha, now: i64) -> Option<Value> {
        let p = self.people.get(sha)?;
        // Always an object: the fields are null where no users event carried them.
        let user = {
            let u = p.user.as_deref();
            let mut o = serde_json::Map::new();
            for (i, name) in USER_FIELDS.iter().enumerate() {
                let v = u.and_then(|u| u.fields[i].as_ref());
                o.insert(
                    (*name).into(),
                    v.map_or(Value::Null, |(_, v)| Value::String(v.to_string())),
                );
            }
            o.insert(
                "attributes".into(),
                u.and_then(|u| u.attributes.as_ref()).map_or(json!({}), |(_, a)| {
                    Value::Object(a.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
                }),
            );
            o.insert("updated_at".into(), time_value(u.map(|u| u.updated_at)));
            Value::Object(o)
        };
        let mut lists = serde_json::Map::new();
        let blocked = self.blocked(p, now);
        for (l, s) in &p.lists {
            lists.insert(
                l.to_string(),
                json!({
                    "member": s.sub.is_some() && p.subscribed(l) && !blocked,
                    "subscribed_at": time_value(s.sub),
                    "unsubscribed_at": time_value(p.out(l).map(|(u, _)| u.time)),
                    "consent_at": time_value(s.consented.as_ref().and_then(|c| c.consent_at)),
                    "consent_ip": s.consented.as_ref().and_then(|c| c.consent_ip.as_deref()),
                }),
            );
        }
        let m = p.mail.as_deref().cloned().unwrap_or_default();
        let s = self.suppression(sha, None, None, now);
        Some(json!({
            "email_sha256": sha_hex(sha),
            "email": p.email(),
            "user": user,
            "lists": lists,
            "suppression": {"suppressed": s.suppressed, "reasons": s.reasons_json()},
            "mailings": {
                "sent": m.sent, "delivered": m.delivered, "opened": m.opened, "clicked": m.clicked,
                "bounced": m.bounced, "complained": m.complained,
                "last_sent_at": time_value(m.last_sent_at),
                "last_opened_at": time_value(m.last_opened_at),
                "last_clicked_at": time_value(m.last_clicked_at),
            },
        }))
    }

    /// Whether the address is blocked or globally unsubscribed (rule 5 with no list): such a
    /// person is never shared with another tenant.
    pub fn withheld(&self, sha: &Sha, now: i64) -> bool {
        self.suppression(sha, None, None, now).suppressed
    }
}

/// The state of every tenant an instance serves.
#[derive(Debug, Default)]
pub struct View {
    tenants: HashMap<String, TenantView>,
    /// Events folded in, by chain (index of [`crate::event::CHAINS`]).
    pub applied: u64,
}

impl View {
    pub fn apply(&mut self, e: Event) {
        self.applied += 1;
        match self.tenants.get_mut(&e.tenant) {
            Some(t) => t.apply(e),
            None => {
                let mut t = TenantView::default();
                let id = e.tenant.clone();
                t.apply(e);
                self.tenants.insert(id, t);
            }
        }
    }

    pub fn tenant(&self, id: &str) -> Option<&TenantView> {
        self.tenants.get(id)
    }

    /// Addresses held, over all tenants.
    pub fn keys(&self) -> usize {
        self.tenants.values().map(TenantView::len).sum()
    }
}
