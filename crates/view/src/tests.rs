//! The rules of DESIGN by example, and a property test of the folded state against a small
//! reference model that reads the rules literally over the whole event set.

use crate::event::{parse_sha, BlockAction, BlockKind, Event, Kind, Sha, USER_FIELDS};
use crate::model;
use crate::state::TenantView;
use proptest::prelude::*;

const DAY: i64 = 86_400_000_000;
const NOW: i64 = 1_790_000_000_000_000;

fn sha(email: &str) -> Sha {
    parse_sha(&tributary_engine::normalize::sha256_hex(email)).unwrap()
}

fn ev(email: Option<&str>, time: i64, kind: Kind) -> Event {
    Event {
        tenant: "acme".into(),
        sha: email.map(sha),
        email: email.map(str::to_owned),
        time,
        kind,
    }
}

fn unsub(email: &str, time: i64, list: Option<&str>) -> Event {
    ev(
        Some(email),
        time,
        Kind::Unsubscribe {
            list: list.map(str::to_owned),
            reason: Some("user".into()),
        },
    )
}

fn sub(email: &str, time: i64, list: &str, consent: bool) -> Event {
    ev(
        Some(email),
        time,
        Kind::Subscribe {
            list: list.into(),
            consent_ip: consent.then(|| "10.0.0.1".to_owned()),
            consent_at: None,
        },
    )
}

fn block(email: &str, time: i64, action: BlockAction, reason: &str, expires_at: Option<i64>) -> Event {
    ev(
        Some(email),
        time,
        Kind::Block {
            action,
            kind: BlockKind::Email,
            value: email.into(),
            reason: reason.into(),
            expires_at,
        },
    )
}

/// The pseudonymous record `tributary erase` leaves: reason ERASED, the hash, no address.
fn erasure(email: &str, time: i64) -> Event {
    Event {
        email: None,
        kind: Kind::Block {
            action: BlockAction::Add,
            kind: BlockKind::Email,
            value: tributary_engine::normalize::sha256_hex(email),
            reason: "ERASED".into(),
            expires_at: None,
        },
        ..ev(
            Some(email),
            time,
            Kind::Unsubscribe {
                list: None,
                reason: None,
            },
        )
    }
}

fn domain(d: &str, time: i64, action: BlockAction, expires_at: Option<i64>) -> Event {
    ev(
        None,
        time,
        Kind::Block {
            action,
            kind: BlockKind::Domain,
            value: d.into(),
            reason: "MANUAL".into(),
            expires_at,
        },
    )
}

fn view(events: &[Event]) -> TenantView {
    let mut v = TenantView::default();
    for e in events {
        v.apply(e.clone());
    }
    v
}

fn suppressed(v: &TenantView, email: &str, list: Option<&str>) -> bool {
    v.suppression(&sha(email), Some(email), list, NOW).suppressed
}

fn rules(v: &TenantView, email: &str, list: Option<&str>) -> Vec<&'static str> {
    v.suppression(&sha(email), Some(email), list, NOW)
        .reasons
        .iter()
        .map(|r| r.rule)
        .collect()
}

const A: &str = "ann@example.com";

#[test]
fn every_block_reason_blocks_and_only_a_strictly_later_remove_lifts() {
    for reason in ["ERASED", "HARD_BOUNCE", "SPAM_COMPLAINT", "MANUAL", "INVALID", "OTHER"] {
        let v = view(&[block(A, NOW - DAY, BlockAction::Add, reason, None)]);
        let s = v.suppression(&sha(A), None, Some("news"), NOW);
        assert!(s.suppressed, "{reason}");
        assert_eq!(s.reasons[0].reason.as_deref(), Some(reason));
    }
    let add = block(A, NOW - DAY, BlockAction::Add, "MANUAL", None);
    let same = block(A, NOW - DAY, BlockAction::Remove, "MANUAL", None);
    let later = block(A, NOW - DAY + 1, BlockAction::Remove, "MANUAL", None);
    let earlier = block(A, NOW - 2 * DAY, BlockAction::Remove, "MANUAL", None);
    assert!(
        suppressed(&view(&[add.clone(), same.clone()]), A, None),
        "same instant: the ADD stands"
    );
    assert!(suppressed(&view(&[same, add.clone()]), A, None));
    assert!(!suppressed(&view(&[add.clone(), later.clone()]), A, None));
    assert!(
        !suppressed(&view(&[later, add.clone()]), A, None),
        "a late ADD older than the REMOVE"
    );
    assert!(suppressed(&view(&[earlier, add]), A, None));
}

#[test]
fn expired_blocks_do_not_count() {
    let v = view(&[block(A, NOW - DAY, BlockAction::Add, "MANUAL", Some(NOW - 1))]);
    assert!(!suppressed(&v, A, None));
    let v = view(&[block(A, NOW - DAY, BlockAction::Add, "MANUAL", Some(NOW + DAY))]);
    assert!(suppressed(&v, A, None));
    assert!(
        !v.suppression(&sha(A), None, None, NOW + 2 * DAY).suppressed,
        "as of later"
    );
}

#[test]
fn domain_blocks_match_the_domain_exactly_wherever_the_address_is_known() {
    let v = view(&[
        domain("example.com", NOW - DAY, BlockAction::Add, None),
        sub(A, NOW, "news", true),
    ]);
    assert_eq!(rules(&v, A, Some("news")), vec!["domain_block"]);
    // By hash alone: the address is known from its subscription.
    assert!(v.suppression(&sha(A), None, Some("news"), NOW).suppressed);
    assert!(!suppressed(&v, "bob@mail.example.com", None), "no subdomain matching");
    assert!(suppressed(&v, "never-seen@example.com", None), "given in the query");
    assert!(
        !v.suppression(&sha("never-seen@example.com"), None, None, NOW)
            .suppressed
    );
    let lifted = view(&[
        domain("example.com", NOW - DAY, BlockAction::Add, None),
        domain("example.com", NOW, BlockAction::Remove, None),
    ]);
    assert!(!suppressed(&lifted, A, None));
    assert_eq!(v.audience("news", NOW).count(), 0);
}

#[test]
fn unsubscribes_and_consented_resubscriptions() {
    // Global unsubscribe, later consented subscription to news: news only.
    let v = view(&[
        sub(A, NOW - 3 * DAY, "news", false),
        sub(A, NOW - 3 * DAY, "promo", false),
        unsub(A, NOW - 2 * DAY, None),
        sub(A, NOW - DAY, "news", true),
    ]);
    assert!(!suppressed(&v, A, Some("news")));
    assert!(suppressed(&v, A, Some("promo")));
    assert!(
        suppressed(&v, A, Some("other")),
        "a global unsubscribe holds for every list"
    );
    assert!(
        !suppressed(&v, A, None),
        "a member of a list is not suppressed without a list"
    );
    assert_eq!(v.audience("news", NOW).count(), 1);
    assert_eq!(v.audience("promo", NOW).count(), 0);
    // Without consent evidence a later subscription does not lift it.
    let v = view(&[unsub(A, NOW - 2 * DAY, None), sub(A, NOW - DAY, "news", false)]);
    assert!(suppressed(&v, A, Some("news")));
    assert!(suppressed(&v, A, None));
    let r = &v.suppression(&sha(A), None, Some("news"), NOW).reasons[0];
    assert_eq!(
        (r.rule, r.list.as_deref(), r.reason.as_deref()),
        ("unsubscribe", None, Some("user"))
    );
    // At the same instant the unsubscribe wins.
    let v = view(&[unsub(A, NOW - DAY, Some("news")), sub(A, NOW - DAY, "news", true)]);
    assert!(suppressed(&v, A, Some("news")));
    assert!(!suppressed(&v, A, Some("promo")), "a list unsubscribe is for that list");
    assert!(!suppressed(&v, A, None));
    // Never subscribed, no rule: not suppressed, in no audience.
    let v = view(&[sub("bob@example.org", NOW, "news", false)]);
    assert!(!suppressed(&v, A, Some("news")));
    assert_eq!(v.audience("news", NOW).count(), 1);
}

#[test]
fn a_subscription_never_lifts_a_block() {
    let v = view(&[
        block(A, NOW - 2 * DAY, BlockAction::Add, "HARD_BOUNCE", None),
        sub(A, NOW - DAY, "news", true),
    ]);
    assert!(suppressed(&v, A, Some("news")));
    assert_eq!(v.audience("news", NOW).count(), 0);
}

#[test]
fn profile_and_audience_fields_take_the_latest_values() {
    let user = |time: i64, first: Option<&str>, id: &str| {
        let mut fields: [Option<String>; USER_FIELDS.len()] = Default::default();
        fields[0] = Some(id.into());
        fields[1] = first.map(str::to_owned);
        ev(
            Some(A),
            time,
            Kind::User {
                fields,
                attributes: vec![],
            },
        )
    };
    let v = view(&[
        user(NOW - DAY, Some("Ann"), "u1"),
        user(NOW - 2 * DAY, Some("Old"), "u1"),
        user(NOW, None, "u1"),
        sub(A, NOW - 5, "news", false),
        sub(A, NOW - 9, "news", false),
    ]);
    let m: Vec<_> = v.audience("news", NOW).collect();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].first_name, m[0].user_id, m[0].subscribed_at),
        (Some("Ann"), Some("u1"), NOW - 5)
    );
    let p = v.profile(&sha(A), NOW).unwrap();
    assert_eq!(p["user"]["first_name"], "Ann");
    assert_eq!(p["user"]["updated_at"], crate::fmt_time(NOW));
    assert_eq!(p["lists"]["news"]["member"], true);
    assert_eq!(v.by_user_id("u1"), Some(&sha(A)));
}

// ---- the reference model: the rules read literally over the whole set ----

/// The model of [`crate::model`] over a whole event set: the address's own events, the
/// tenant's domain blocks and lists.
fn model_suppressed(events: &[Event], email: &str, list: Option<&str>, now: i64) -> bool {
    let t = model::TenantEvents::of(events);
    model::suppressed(&t, t.events_of(&sha(email)), email, list, now)
}

const EMAILS: [&str; 3] = ["ann@example.com", "bob@example.com", "cy@other.org"];
const LISTS: [&str; 2] = ["news", "promo"];

fn arb_event() -> impl Strategy<Value = Event> {
    let t = (0i64..6).prop_map(|d| NOW - 3 * DAY + d * DAY / 2);
    let email = prop::sample::select(EMAILS.to_vec());
    let list = prop::option::of(prop::sample::select(LISTS.to_vec()));
    prop_oneof![
        (email.clone(), t.clone(), list.clone()).prop_map(|(e, t, l)| unsub(e, t, l)),
        (
            email.clone(),
            t.clone(),
            prop::sample::select(LISTS.to_vec()),
            any::<bool>()
        )
            .prop_map(|(e, t, l, c)| sub(e, t, l, c)),
        (
            email.clone(),
            t.clone(),
            any::<bool>(),
            prop::option::of((-1i64..2).prop_map(|d| NOW + d * DAY)),
            // A block with an address and the reason ERASED is a block like any other.
            prop::sample::select(vec!["MANUAL", "ERASED"])
        )
            .prop_map(|(e, t, add, exp, reason)| block(
                e,
                t,
                if add { BlockAction::Add } else { BlockAction::Remove },
                reason,
                exp
            )),
        (email.clone(), t.clone()).prop_map(|(e, t)| erasure(e, t)),
        (prop::sample::select(vec!["example.com", "other.org"]), t, any::<bool>()).prop_map(|(d, t, add)| domain(
            d,
            t,
            if add { BlockAction::Add } else { BlockAction::Remove },
            None
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// Any set of events, in any arrival order, some delivered twice: the answers are the
    /// reference model's.
    #[test]
    fn answers_follow_the_rules_whatever_the_arrival_order(
        events in prop::collection::vec(arb_event(), 0..14),
        order in any::<u64>(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut arrived = events.clone();
        for d in &dups {
            if !events.is_empty() {
                arrived.push(d.get(&events).clone());
            }
        }
        // A deterministic shuffle from `order`.
        let mut seed = order | 1;
        for i in (1..arrived.len()).rev() {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            arrived.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let v = view(&arrived);
        let in_order = view(&events);
        for email in EMAILS {
            for list in [None, Some("news"), Some("promo")] {
                let want = model_suppressed(&events, email, list, NOW);
                let got = v.suppression(&sha(email), Some(email), list, NOW);
                prop_assert_eq!(got.suppressed, want, "{} {:?}", email, list);
                prop_assert_eq!(&got, &in_order.suppression(&sha(email), Some(email), list, NOW), "reasons independent of order");
            }
            for list in LISTS {
                let member = v.audience(list, NOW).any(|m| *m.sha == sha(email));
                let subscribed = events.iter().any(|e| e.sha == Some(sha(email)) && matches!(&e.kind, Kind::Subscribe { list: l, .. } if l == list));
                prop_assert_eq!(member, subscribed && !model_suppressed(&events, email, Some(list), NOW), "{} in {}", email, list);
            }
        }
    }
}

/// An erasure (the `ERASED` block `tributary erase` leaves) makes the view forget the person's
/// personal data (address, user fields, mailings, consent IPs) while every answer stays
/// DESIGN's over the set of events: the unsubscribe still counts, in any arrival order, and a
/// late event dated before the erasure brings no personal data back.
#[test]
fn an_erasure_forgets_personal_data_but_not_what_decides_suppression() {
    const A: &str = "ann@example.com";
    use crate::event::USER_ID;
    let user = Event {
        tenant: "acme".into(),
        sha: Some(sha(A)),
        email: Some(A.into()),
        time: NOW - 3 * DAY,
        kind: Kind::User {
            fields: std::array::from_fn(|i| (i == USER_ID).then(|| "u-ann".to_owned())),
            attributes: vec![],
        },
    };
    let events = [
        user.clone(),
        sub(A, NOW - 3 * DAY, "news", true),
        unsub(A, NOW - 2 * DAY, None),
        erasure(A, NOW - DAY),
        // Late: dated before the erasure.
        sub(A, NOW - 2 * DAY, "promo", true),
        user,
        domain("example.com", NOW - 3 * DAY, BlockAction::Add, None),
    ];
    let v = view(&events);
    let p = v.person(&sha(A)).unwrap();
    assert_eq!((p.email(), p.erased_at()), (None, Some(NOW - DAY)));
    assert!(v.by_user_id("u-ann").is_none());
    // The same answers as the rules over the set: ERASED, the domain block (the erased
    // address's domain is kept) and the global unsubscribe.
    for list in [None, Some("news"), Some("promo")] {
        let s = v.suppression(&sha(A), None, list, NOW);
        let rules: Vec<&str> = s.reasons.iter().map(|r| r.rule).collect();
        assert_eq!(rules, ["address_block", "domain_block", "unsubscribe"], "{list:?}");
        assert_eq!(s.suppressed, model_suppressed(&events, A, list, NOW));
    }
    let profile = v.profile(&sha(A), NOW).unwrap().to_string();
    assert!(
        !profile.contains(A) && !profile.contains("u-ann") && !profile.contains("10.0.0"),
        "{profile}"
    );
    assert_eq!(v.audience("news", NOW).count(), 0);
    // Other arrival orders, the erasure first among them: the same state.
    // (The lists' order in memory is arrival order: compared as the answers show them.)
    let mut reversed = events.to_vec();
    reversed.reverse();
    let mut erasure_first = events.to_vec();
    erasure_first.swap(0, 3);
    for other in [view(&reversed), view(&erasure_first)] {
        assert_eq!(other.profile(&sha(A), NOW), v.profile(&sha(A), NOW));
        for list in [None, Some("news"), Some("promo")] {
            assert_eq!(
                other.suppression(&sha(A), None, list, NOW),
                v.suppression(&sha(A), None, list, NOW)
            );
        }
    }
    // After the erasure: a new relationship, kept whole.
    let mut later = v;
    later.apply(sub(A, NOW - DAY / 2, "news", true));
    assert_eq!(later.person(&sha(A)).unwrap().email(), Some(A));
}

/// The read side's chains are chains of the registry, and the view types each of them.
#[test]
fn the_read_side_chains_are_registry_chains_it_types() {
    /// A record with a tenant and a time, and nothing else.
    struct NoFields;
    impl crate::event::Fields for NoFields {
        fn str(&self, name: &str) -> Option<&str> {
            (name == "tenant_id").then_some("acme")
        }
        fn micros(&self, name: &str) -> Option<i64> {
            (name == "event_time").then_some(NOW)
        }
        fn map(&self, _: &str) -> Vec<(String, String)> {
            Vec::new()
        }
    }
    for chain in crate::event::CHAINS {
        assert!(
            tributary_engine::chains::get(chain).is_some(),
            "{chain} is not in the registry"
        );
        if let Err(e) = crate::event::from_fields(chain, &NoFields) {
            assert!(!e.to_string().contains("unknown chain"), "{chain}: {e}");
        }
    }
    let e = crate::event::from_fields("nope", &NoFields).unwrap_err();
    assert!(e.to_string().contains("unknown chain"), "{e}");
    let mut sorted = crate::event::CHAINS;
    sorted.sort_unstable();
    let mut all = tributary_engine::chains::NAMES;
    all.sort_unstable();
    assert_eq!(sorted, all, "today the read side reads every chain");
}
