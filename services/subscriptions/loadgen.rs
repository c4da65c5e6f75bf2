//! The `subscriptions` chain's records in the canonical formats, for `tributary loadgen`
//! (services/ctl/src/loadgen/formats.rs compiles this file: `tributary_engine::chain_modules!`).
//! The provider formats' records are the providers' (`providers/<name>/loadgen.rs`).

use super::*;

/// This chain's weights of `json` and `csv` in a `mix` (the providers' are theirs).
pub(super) const MIX_WEIGHTS: (u32, u32) = (20, 10);

/// The chain's own fields of one canonical JSON record (the common ones are set).
pub(super) fn json_fields(cx: &mut Ctx<'_>, o: &mut Map<String, Value>) {
    let person = cx.person;
    let list = format!("list-{}", person % 7);
    o.insert("list_id".into(), json!(list));
    o.insert(
        "action".into(),
        json!(["SUBSCRIBE", "CONFIRM", "RESUBSCRIBE"][person as usize % 3]),
    );
    o.insert("consent_ip".into(), json!(format!("198.51.100.{}", person % 250)));
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
        let ip = cx.ip();
        cols.extend([
            ("list", cx.pick(&["newsletter", "offers", "events"]).to_owned()),
            ("action", cx.pick(&["subscribe", "confirm", "RESUBSCRIBE"]).to_owned()),
            ("consent_ip", ip),
            ("consent_at", format_rfc3339(cx.t - 30)),
            ("timestamp", time),
            ("event_id", id.to_owned()),
        ]);
    } else {
        email_col = "Email Address";
        let (ip1, ip2) = (cx.ip(), cx.ip());
        let confirmed = cx.chance(0.7);
        cols.extend([
            ("OPTIN_TIME", format_naive(cx.t - 600)),
            ("OPTIN_IP", ip1),
            (
                "CONFIRM_TIME",
                if confirmed { format_naive(cx.t) } else { String::new() },
            ),
            ("CONFIRM_IP", if confirmed { ip2 } else { String::new() }),
            ("LIST", cx.pick(&["Newsletter", "Product updates"]).to_owned()),
        ]);
    }
    (email_col, cols)
}
