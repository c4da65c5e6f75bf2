//! The `users` chain's records in the canonical formats, for `tributary loadgen`
//! (services/ctl/src/loadgen/formats.rs compiles this file: `tributary_engine::chain_modules!`).
//! The provider formats' records are the providers' (`providers/<name>/loadgen.rs`).

use super::*;

/// This chain's weights of `json` and `csv` in a `mix` (the providers' are theirs).
pub(super) const MIX_WEIGHTS: (u32, u32) = (45, 25);

/// The chain's own fields of one canonical JSON record (the common ones are set).
pub(super) fn json_fields(cx: &mut Ctx<'_>, o: &mut Map<String, Value>) {
    let person = cx.person;
    o.insert("user_id".into(), json!(person.to_string()));
    o.insert("first_name".into(), json!(cx.first()));
    o.insert(
        "country".into(),
        json!(["de", "us", "gb", "fr", "jp"][person as usize % 5]),
    );
    o.insert(
        "attributes".into(),
        json!({"plan": (["free", "pro", "team"][person as usize % 3])}),
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
    let person = cx.person;
    let mut cols: Vec<(&str, String)> = Vec::new();
    let email_col;
    if with_id {
        email_col = "email";
        let phone = if cx.chance(0.5) {
            format!("+49 30 {}", 1_000_000 + person)
        } else {
            format!("(555) 01{:02}-{:04}", person % 100, person % 10_000)
        };
        let (city, country, tz) = cx.pick(&[
            ("Berlin", "de", "Europe/Berlin"),
            ("Washington, D.C.", "US", "America/New_York"),
            ("Lyon", "fr", "Europe/Paris"),
            ("Ōsaka", "JP", "Asia/Tokyo"),
        ]);
        cols.extend([
            ("user_id", format!("u{person}")),
            ("first_name", cx.first().to_owned()),
            ("last_name", cx.last().to_owned()),
            ("phone", phone),
            ("country", country.to_owned()),
            ("city", city.to_owned()),
            ("timezone", tz.to_owned()),
            ("locale", cx.pick(&["de_DE", "en-US", "fr_FR", "ja-JP", ""]).to_owned()),
            ("updated_at", time),
            ("event_id", id.to_owned()),
        ]);
    } else {
        email_col = "Email Address";
        cols.extend([
            ("First Name", cx.first().to_owned()),
            ("Last Name", cx.last().to_owned()),
            ("Phone Number", String::new()),
            ("CC", cx.pick(&["DE", "US", "GB", ""]).to_owned()),
            ("MEMBER_RATING", cx.rng.random_range(1..6).to_string()),
            ("LEID", (100_000_000 + person).to_string()),
            ("LAST_CHANGED", format_naive(cx.t)),
            (
                "TIMEZONE",
                cx.pick(&["Europe/Berlin", "America/Chicago", ""]).to_owned(),
            ),
        ]);
    }
    (email_col, cols)
}
