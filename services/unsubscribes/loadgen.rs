//! The `unsubscribes` chain's records in the canonical formats, for `tributary loadgen`
//! (services/ctl/src/loadgen/formats.rs compiles this file: `tributary_engine::chain_modules!`).
//! The provider formats' records are the providers' (`providers/<name>/loadgen.rs`).

use super::*;

/// This chain's weights of `json` and `csv` in a `mix` (the providers' are theirs).
pub(super) const MIX_WEIGHTS: (u32, u32) = (20, 10);

/// The chain's own fields of one canonical JSON record (the common ones are set).
pub(super) fn json_fields(cx: &mut Ctx<'_>, o: &mut Map<String, Value>) {
    let person = cx.person;
    let list = format!("list-{}", person % 7);
    if !person.is_multiple_of(3) {
        o.insert("list_id".into(), json!(list));
    }
    o.insert("method".into(), json!("link"));
}

/// The chain's CSV columns of one record: the email column's name and the others in order.
/// `with_id`: the layout with an `event_id` column (else the chain hashes the record, as of
/// a Mailchimp export).
pub(super) fn csv_columns(
    cx: &mut Ctx<'_>,
    with_id: bool,
    time: String,
    id: &str,
) -> (&'static str, Vec<(&'static str, String)>) {
    let mut cols: Vec<(&str, String)> = Vec::new();
    let email_col;
    if with_id {
        email_col = "email";
        cols.extend([
            ("list_id", cx.pick(&["newsletter", "offers", "all", ""]).to_owned()),
            ("reason", cx.pick(&["too many emails", "not relevant", ""]).to_owned()),
            ("campaign_id", cx.pick(CAMPAIGNS).to_owned()),
            ("timestamp", time),
            ("event_id", id.to_owned()),
        ]);
    } else {
        email_col = "Email Address";
        cols.extend([
            ("UNSUB_TIME", format_naive(cx.t)),
            ("UNSUB_CAMPAIGN_ID", cx.hex(10)),
            (
                "UNSUB_REASON",
                cx.pick(&[
                    "N/A (Unsubscribed by admin)",
                    "I no longer want to receive these emails",
                    "",
                ])
                .to_owned(),
            ),
            ("LIST", cx.pick(&["Newsletter", "Product updates"]).to_owned()),
        ]);
    }
    (email_col, cols)
}
