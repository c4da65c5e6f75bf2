//! Mailchimp audience webhooks → `users`: `subscribe` and `profile` (the member's merge
//! fields) and `upemail` (an address change: `new_email` with `old_email` as
//! `previous_email`). `user_id` is Mailchimp's member id. FNAME, LNAME and PHONE, and the
//! ADDRESS merge field's city and country, get their own fields; the other merge fields are
//! kept as attributes named `merges.<TAG>` (`merges.ADDRESS.zip` for parts), with `list_id`
//! and `email_type`.

use crate::{Draft, Users};
use serde_json::Value;
use tributary_engine::esp;
use tributary_engine::{Chain, Input, RawRecord, RecordError};

/// Merge fields with fields of their own.
const MAPPED: &[&str] = &["EMAIL", "FNAME", "LNAME", "PHONE", "ADDRESS.city", "ADDRESS.country"];

pub fn parse(raw: &RawRecord<'_>) -> Result<Input<Draft>, RecordError> {
    let ev = esp::mailchimp::read(raw.payload)?;
    let mut attributes = Vec::new();
    let mut put = |k: String, v: Option<String>| {
        if let Some(v) = v {
            attributes.push((k, v));
        }
    };
    put("list_id".to_owned(), ev.str(&["data", "list_id"]));
    let mut d = match ev.kind.as_str() {
        "subscribe" | "profile" => {
            put("email_type".to_owned(), ev.str(&["data", "email_type"]));
            if let Some(merges) = ev.get(&["data", "merges"]) {
                let mut flat = Vec::new();
                flatten("", merges, &mut flat);
                for (tag, value) in flat {
                    if !MAPPED.contains(&tag.as_str()) {
                        put(format!("merges.{tag}"), Some(value));
                    }
                }
            }
            Draft {
                user_id: ev.str(&["data", "id"]),
                first_name: ev.str(&["data", "merges", "FNAME"]),
                last_name: ev.str(&["data", "merges", "LNAME"]),
                phone: ev.str(&["data", "merges", "PHONE"]),
                city: ev.str(&["data", "merges", "ADDRESS", "city"]),
                country: ev.str(&["data", "merges", "ADDRESS", "country"]),
                ..Draft::default()
            }
        }
        "upemail" => Draft {
            user_id: ev.str(&["data", "new_id"]),
            previous_email: ev.str(&["data", "old_email"]),
            ..Draft::default()
        },
        _ => return Err(ev.not_for(Users::NAME)),
    };
    d.attributes = Some(attributes);
    Ok(ev.fields().with(d))
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
