//! Grants between companies (DESIGN "Sharing between companies"): records of the compacted
//! topic `grants`, keyed by grant id. A grant names grantor, grantee, chains, columns,
//! purpose and expiry, and carries its own random 256-bit key, encrypted (AES-256-GCM) under
//! the key-encryption key the services get from a Secret: the key never rests in plaintext.
//! Revocation writes a tombstone; the topic compacts promptly (small `segment.ms` and
//! `delete.retention.ms`), after which the encrypted key is gone from the log too, and with
//! it every `subject_key` of the grant becomes unlinkable.
//!
//! `subject_key` = hex HMAC-SHA256(grant key, normalized email): two grants never share keys,
//! so two grantees cannot join their shares to each other.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The topic of the grants (compacted).
pub const TOPIC: &str = "grants";
/// Topic settings that make a revoked grant's key leave the log within minutes.
pub const TOPIC_CONFIG: [(&str, &str); 5] = [
    ("cleanup.policy", "compact"),
    ("segment.ms", "60000"),
    ("delete.retention.ms", "60000"),
    ("min.cleanable.dirty.ratio", "0.01"),
    ("max.compaction.lag.ms", "120000"),
];
/// Columns never shared: the identifiers `subject_key` stands in for.
pub const IDENTIFIERS: [&str; 6] = [
    "email",
    "email_sha256",
    "user_id",
    "previous_email",
    "tenant_id",
    "event_id",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// The grantee's profile lookups show the grantor's columns for addresses both hold.
    Enrichment,
    /// The grantee reads shared tables over the Delta Sharing protocol.
    Analytics,
}

/// One grant as the topic holds it (the key encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub grant_id: String,
    pub grantor: String,
    pub grantee: String,
    pub chains: Vec<String>,
    pub columns: Vec<String>,
    pub purpose: Purpose,
    /// RFC 3339.
    pub expires_at: String,
    pub created_at: String,
    /// base64(nonce ‖ AES-256-GCM(kek, key)), the grant id as associated data.
    pub key_enc: String,
    /// SHA-256 (hex) of the Delta Sharing bearer token of an analytics grant.
    #[serde(default)]
    pub token_sha256: Option<String>,
}

fn micros(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp_micros())
}

impl Grant {
    /// Not expired at `now` (revoked grants are not in the map at all).
    pub fn live(&self, now: i64) -> bool {
        micros(&self.expires_at).is_some_and(|e| e > now)
    }

    pub fn expires_micros(&self) -> i64 {
        micros(&self.expires_at).unwrap_or(0)
    }

    /// The grant's own key.
    pub fn key(&self, kek: &Kek) -> Result<[u8; 32], String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.key_enc)
            .map_err(|e| format!("grant {}: key: {e}", self.grant_id))?;
        if raw.len() < 12 {
            return Err(format!("grant {}: key too short", self.grant_id));
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = Aes256Gcm::new_from_slice(&kek.0)
            .expect("32-byte key")
            .decrypt(
                Nonce::from_slice(nonce),
                aes_gcm::aead::Payload {
                    msg: ct,
                    aad: self.grant_id.as_bytes(),
                },
            )
            .map_err(|_| format!("grant {}: the key does not decrypt under this KEK", self.grant_id))?;
        pt.try_into()
            .map_err(|_| format!("grant {}: key length", self.grant_id))
    }

    /// The grant as `grant create` / `grant list` print it (no key material).
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "grant_id": self.grant_id, "grantor": self.grantor, "grantee": self.grantee,
            "chains": self.chains, "columns": self.columns, "purpose": self.purpose,
            "expires_at": self.expires_at, "created_at": self.created_at,
        })
    }

    /// Whether `token` is this grant's bearer token.
    pub fn token_matches(&self, token: &str) -> bool {
        let Some(want) = self.token_sha256.as_deref().and_then(|h| hex::decode(h).ok()) else {
            return false;
        };
        let got = Sha256::digest(token.as_bytes());
        want.len() == got.len() && want.iter().zip(got.iter()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }
}

/// hex HMAC-SHA256(grant key, normalized email).
pub fn subject_key(key: &[u8; 32], email: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    m.update(email.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The key-encryption key.
#[derive(Clone)]
pub struct Kek(pub [u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// `GRANTS_KEK` (64 hex digits) or `GRANTS_KEK_FILE` (a file holding them, as a mounted
    /// Secret); with neither, the local development key, which `local` must allow.
    pub fn from_env(local: bool) -> Result<Kek, String> {
        Kek::load(None, local)
    }

    /// The KEK from `file` (a mounted Secret) when given, else as [`Kek::from_env`].
    pub fn load(file: Option<&std::path::Path>, local: bool) -> Result<Kek, String> {
        if let Some(p) = file {
            let hexed = std::fs::read_to_string(p).map_err(|e| format!("GRANTS_KEK_FILE {}: {e}", p.display()))?;
            let mut k = [0u8; 32];
            hex::decode_to_slice(hexed.trim(), &mut k)
                .map_err(|e| format!("GRANTS_KEK_FILE {}: 64 hex digits: {e}", p.display()))?;
            return Ok(Kek(k));
        }
        let hexed = match (std::env::var("GRANTS_KEK"), std::env::var("GRANTS_KEK_FILE")) {
            (Ok(v), _) if !v.trim().is_empty() => v,
            (_, Ok(p)) if !p.trim().is_empty() => {
                std::fs::read_to_string(p.trim()).map_err(|e| format!("GRANTS_KEK_FILE {p}: {e}"))?
            }
            _ if local => return Ok(Kek::local()),
            _ => return Err("no key-encryption key: set GRANTS_KEK_FILE (a mounted Secret) or GRANTS_KEK".into()),
        };
        let mut k = [0u8; 32];
        hex::decode_to_slice(hexed.trim(), &mut k).map_err(|e| format!("GRANTS_KEK: 64 hex digits: {e}"))?;
        Ok(Kek(k))
    }

    /// The local development key: only for `make up` and tests.
    pub fn local() -> Kek {
        Kek(Sha256::digest(b"tributary-local-grants-kek").into())
    }

    pub fn is_local(&self) -> bool {
        self.0 == Kek::local().0
    }

    fn seal(&self, grant_id: &str, key: &[u8; 32]) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = Aes256Gcm::new_from_slice(&self.0)
            .expect("32-byte key")
            .encrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: key,
                    aad: grant_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption does not fail");
        let mut out = nonce.to_vec();
        out.extend(ct);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// A key for signing short-lived URLs, derived from the KEK.
    pub fn url_key(&self) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        m.update(b"tributary-share-file-urls");
        m.finalize().into_bytes().into()
    }
}

/// What `grant create` asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub grantor: String,
    pub grantee: String,
    pub chains: Vec<String>,
    pub columns: Vec<String>,
    pub purpose: Purpose,
    /// `YYYY-MM-DD` (the end of that day, UTC) or RFC 3339.
    pub expires: String,
}

/// The columns of a chain's unified schema.
pub fn chain_columns(chain: &str) -> Vec<String> {
    tributary_lake::chain_schema(chain)
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| {
            v["fields"]
                .as_array()
                .map(|f| f.iter().filter_map(|f| f["name"].as_str().map(str::to_owned)).collect())
        })
        .unwrap_or_default()
}

/// A new grant, its plaintext key and (analytics) its bearer token; every problem of the
/// request reported at once.
pub fn create(
    req: &Request,
    tenants: &[String],
    kek: &Kek,
    now: i64,
) -> Result<(Grant, [u8; 32], Option<String>), String> {
    let mut problems = Vec::new();
    for (what, t) in [("--from", &req.grantor), ("--to", &req.grantee)] {
        if !tenants.iter().any(|x| x == t) {
            problems.push(format!(
                "{what} '{t}' is not a known tenant (known: {})",
                tenants.join(", ")
            ));
        }
    }
    if req.grantor == req.grantee {
        problems.push(format!("a tenant cannot grant to itself ('{}')", req.grantor));
    }
    if req.chains.is_empty() {
        problems.push("--chains names no chain".into());
    }
    for c in &req.chains {
        if !crate::event::CHAINS.contains(&c.as_str()) {
            problems.push(format!(
                "unknown chain '{c}' (one of {})",
                crate::event::CHAINS.join(", ")
            ));
        }
    }
    if req.columns.is_empty() {
        problems.push("--columns names no column".into());
    }
    for col in &req.columns {
        if IDENTIFIERS.contains(&col.as_str()) {
            problems.push(format!(
                "column '{col}' identifies a person and is never shared (subject_key stands in for it)"
            ));
        } else if !req.chains.iter().any(|c| chain_columns(c).contains(col)) {
            problems.push(format!(
                "column '{col}' is in none of the granted chains ({})",
                req.chains.join(", ")
            ));
        }
    }
    let expires = if req.expires.len() == 10 {
        chrono::NaiveDate::parse_from_str(&req.expires, "%Y-%m-%d")
            .map(|d| {
                d.and_hms_opt(23, 59, 59)
                    .expect("valid time")
                    .and_utc()
                    .timestamp_micros()
            })
            .map_err(|e| format!("--expires '{}': {e}", req.expires))
    } else {
        micros(&req.expires).ok_or_else(|| format!("--expires '{}': YYYY-MM-DD or RFC 3339", req.expires))
    };
    match &expires {
        Ok(e) if *e <= now => problems.push(format!("--expires {} is in the past", req.expires)),
        Err(e) => problems.push(e.clone()),
        Ok(_) => {}
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let grant_id = format!("g-{}", uuid::Uuid::new_v4().simple());
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let token = (req.purpose == Purpose::Analytics).then(|| {
        let mut t = [0u8; 32];
        rand::rng().fill_bytes(&mut t);
        hex::encode(t)
    });
    let mut chains = req.chains.clone();
    chains.dedup();
    let mut columns = req.columns.clone();
    columns.dedup();
    let g = Grant {
        key_enc: kek.seal(&grant_id, &key),
        grant_id,
        grantor: req.grantor.clone(),
        grantee: req.grantee.clone(),
        chains,
        columns,
        purpose: req.purpose,
        expires_at: crate::fmt_time(expires.expect("checked")),
        created_at: crate::fmt_time(now),
        token_sha256: token.as_deref().map(|t| hex::encode(Sha256::digest(t.as_bytes()))),
    };
    Ok((g, key, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            grantor: "acme".into(),
            grantee: "globex".into(),
            chains: vec!["users".into(), "mailings".into()],
            columns: vec!["country".into(), "city".into(), "locale".into()],
            purpose: Purpose::Analytics,
            expires: "2027-06-30".into(),
        }
    }

    #[test]
    fn a_grant_keeps_its_key_sealed_and_refuses_what_it_cannot_share() {
        let tenants: Vec<String> = ["acme", "globex", "initech"].map(String::from).to_vec();
        let kek = Kek([7; 32]);
        let now = 1_790_000_000_000_000;
        let (g, key, token) = create(&req(), &tenants, &kek, now).unwrap();
        assert_eq!(g.expires_at, "2027-06-30T23:59:59Z");
        assert_eq!(g.key(&kek).unwrap(), key);
        assert!(g.key(&Kek([8; 32])).is_err(), "another KEK cannot open it");
        assert!(!g.key_enc.contains(&hex::encode(key)));
        assert!(g.token_matches(token.as_deref().unwrap()));
        assert!(!g.token_matches("nope"));
        let (g2, key2, _) = create(&req(), &tenants, &kek, now).unwrap();
        assert_ne!(subject_key(&key, "a@b.com"), subject_key(&key2, "a@b.com"));
        assert_ne!(g.grant_id, g2.grant_id);
        for (change, want) in [
            (
                Box::new(|r: &mut Request| r.grantee = "acme".into()) as Box<dyn Fn(&mut Request)>,
                "itself",
            ),
            (
                Box::new(|r: &mut Request| r.grantee = "umbrella".into()),
                "not a known tenant",
            ),
            (
                Box::new(|r: &mut Request| r.chains = vec!["nope".into()]),
                "unknown chain",
            ),
            (
                Box::new(|r: &mut Request| r.columns = vec!["email".into()]),
                "never shared",
            ),
            (
                Box::new(|r: &mut Request| {
                    r.chains = vec!["users".into()];
                    r.columns = vec!["url".into()]
                }),
                "none of the granted chains",
            ),
            (
                Box::new(|r: &mut Request| r.expires = "2020-01-01".into()),
                "in the past",
            ),
        ] {
            let mut r = req();
            change(&mut r);
            let e = create(&r, &tenants, &kek, now).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
