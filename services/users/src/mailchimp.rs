//! Mailchimp audience webhooks → `users`: `subscribe` and `profile` (the member's merge
//! fields) and `upemail` (an address change: `new_email` with `old_email` as
//! `previous_email`). `user_id` is Mailchimp's member id. FNAME, LNAME and PHONE, and the
//! ADDRESS merge field's city and country, get their own fields; the other merge fields are
//! kept as attributes named `merges.<TAG>` (`merges.ADDRESS.zip` for parts), with `list_id`
//! and `email_type`.

use crate::Users;
use serde_json::{Map, Value};
use tributary_engine::esp;
use tributary_engine::{Chain, Parsed, RawRecord, RecordError};

/// Merge fields with fields of their own.
const MAPPED: &[&str] = &["EMAIL", "FNAME", "LNAME", "PHONE", "ADDRESS.city", "ADDRESS.country"];

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    let ev = esp::mailchimp(raw.payload)?;
    let mut attributes = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            attributes.insert(k.to_owned(), Value::String(v));
        }
    };
    put("list_id", ev.str(&["data", "list_id"]));
    let mut f = ev.fields();
    match ev.kind.as_str() {
        "subscribe" | "profile" => {
            put("email_type", ev.str(&["data", "email_type"]));
            if let Some(merges) = ev.get(&["data", "merges"]) {
                let mut flat = Vec::new();
                flatten("", merges, &mut flat);
                for (tag, value) in flat {
                    if !MAPPED.contains(&tag.as_str()) {
                        put(&format!("merges.{tag}"), Some(value));
                    }
                }
            }
            f.set("user_id", ev.str(&["data", "id"]))
                .set("first_name", ev.str(&["data", "merges", "FNAME"]))
                .set("last_name", ev.str(&["data", "merges", "LNAME"]))
                .set("phone", ev.str(&["data", "merges", "PHONE"]))
                .set("city", ev.str(&["data", "merges", "ADDRESS", "city"]))
                .set("country", ev.str(&["data", "merges", "ADDRESS", "country"]));
        }
        "upemail" => {
            f.set("user_id", ev.str(&["data", "new_id"]))
                .set("previous_email", ev.str(&["data", "old_email"]));
        }
        _ => return Err(ev.not_for(Users::NAME)),
    }
    f.set_value("attributes", Some(Value::Object(attributes)));
    Ok(f.parsed())
}

/// Nested merge fields as `A.b` paths to their non-empty scalar values.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) if !s.trim().is_empty() && !prefix.is_empty() => {
            out.push((prefix.to_owned(), s.trim().to_owned()))
        }
        Value::Number(n) if !prefix.is_empty() => out.push((prefix.to_owned(), n.to_string())),
        Value::Bool(b) if !prefix.is_empty() => out.push((prefix.to_owned(), b.to_string())),
        _ => {}
    }
}
