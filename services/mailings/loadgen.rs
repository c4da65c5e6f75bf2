//! The `mailings` chain's records in the canonical formats, for `tributary loadgen`
//! (services/ctl/src/loadgen/formats.rs compiles this file: `tributary_engine::chain_modules!`).
//! The provider formats' records are the providers' (`providers/<name>/loadgen.rs`).

use super::*;

/// This chain's weights of `json` and `csv` in a `mix` (the providers' are theirs).
pub(super) const MIX_WEIGHTS: (u32, u32) = (20, 10);

/// The chain's own fields of one canonical JSON record (the common ones are set).
pub(super) fn json_fields(cx: &mut Ctx<'_>, o: &mut Map<String, Value>) {
    let person = cx.person;
    o.insert("message_id".into(), json!(format!("msg-{person}-{}", cx.i / 3)));
    o.insert("campaign_id".into(), json!(format!("c-{}", person % 11)));
    o.insert(
        "event_type".into(),
        json!(["SENT", "DELIVERED", "OPENED", "CLICKED", "BOUNCED"][(cx.i % 5) as usize]),
    );
}

/// The chain's CSV columns of one record: the email column's name and the others in order. `with_id`: the layout with an `event_id`
/// column (else the chain hashes the record).
pub(super) fn csv_columns(
    cx: &mut Ctx<'_>,
    with_id: bool,
    time: String,
    id: &str,
) -> (&'static str, Vec<(&'static str, String)>) {
    let mut cols: Vec<(&str, String)> = Vec::new();
    let event = cx.pick(&[
        "delivered",
        "delivered",
        "open",
        "click",
        "bounce",
        "processed",
        "deferred",
    ]);
    cols.push(("timestamp", time));
    if with_id {
        cols.push(("event_id", id.to_owned()));
    }
    cols.extend([
        ("msg_id", format!("<{}@mta.example.com>", cx.hex(16))),
        ("event", event.to_owned()),
        ("campaign", cx.pick(CAMPAIGNS).to_owned()),
    ]);
    ("recipient", cols)
}
