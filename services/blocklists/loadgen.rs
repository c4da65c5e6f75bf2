//! The `blocklists` chain's records in the canonical formats, for `tributary loadgen`
//! (services/ctl/src/loadgen/formats.rs compiles this file: `tributary_engine::chain_modules!`).
//! The provider formats' records are the providers' (`providers/<name>/loadgen.rs`).

use super::*;

/// This chain's weights of `json` and `csv` in a `mix` (the providers' are theirs).
pub(super) const MIX_WEIGHTS: (u32, u32) = (20, 10);

/// The chain's own fields of one canonical JSON record (the common ones are set).
pub(super) fn json_fields(cx: &mut Ctx<'_>, o: &mut Map<String, Value>) {
    let person = cx.person;
    o.insert(
        "reason".into(),
        json!(["HARD_BOUNCE", "SPAM_COMPLAINT", "MANUAL"][person as usize % 3]),
    );
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
            (
                "reason",
                cx.pick(&["hard_bounce", "spam", "MANUAL", "invalid", "bounce"])
                    .to_owned(),
            ),
            ("timestamp", time),
            ("event_id", id.to_owned()),
        ]);
    } else {
        email_col = "Email Address";
        cols.extend([
            ("CLEAN_TIME", format_naive(cx.t)),
            ("CLEAN_REASON", cx.pick(&["hard", "hard", "abuse"]).to_owned()),
            ("CLEAN_CAMPAIGN_ID", cx.hex(10)),
        ]);
    }
    (email_col, cols)
}
