//! Short-lived file URLs: `/delta-sharing/files/<grant>.<chain>.<file>.<expires ms>.<sig>`,
//! `sig` = hex HMAC-SHA256(the KEK's URL key, `grant|chain|file|expires`). Every part is
//! `[A-Za-z0-9_-]`, so the token is one path segment that needs no escaping.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a file URL lives unless `SHARING_URL_TTL` (humantime) says otherwise.
pub const URL_LIFETIME_MS: i64 = 15 * 60 * 1000;

/// How long a file URL lives: `SHARING_URL_TTL` (e.g. `15m`), else 15 minutes.
pub fn lifetime_ms() -> i64 {
    static TTL: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *TTL.get_or_init(|| {
        std::env::var("SHARING_URL_TTL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .and_then(|v| match humantime::parse_duration(v.trim()) {
                Ok(d) => Some(d.as_millis().clamp(1, 24 * 3600 * 1000) as i64),
                Err(e) => {
                    tracing::warn!(value = %v, error = %e, "SHARING_URL_TTL is not a duration; using 15 min");
                    None
                }
            })
            .unwrap_or(URL_LIFETIME_MS)
    })
}

/// What a file URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub grant: String,
    pub chain: String,
    /// The shared file's id (its name without `.parquet`).
    pub file: String,
    pub expires_ms: i64,
}

fn mac(key: &[u8; 32], grant: &str, chain: &str, file: &str, expires_ms: i64) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    m.update(format!("{grant}|{chain}|{file}|{expires_ms}").as_bytes());
    m
}

/// The signed token of a file URL.
pub fn sign(key: &[u8; 32], f: &FileRef) -> String {
    let sig = hex::encode(
        mac(key, &f.grant, &f.chain, &f.file, f.expires_ms)
            .finalize()
            .into_bytes(),
    );
    format!("{}.{}.{}.{}.{sig}", f.grant, f.chain, f.file, f.expires_ms)
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    BadSignature,
    Expired,
}

/// Checks a token's form, signature (in constant time) and expiry at `now_ms`.
pub fn verify(key: &[u8; 32], token: &str, now_ms: i64) -> Result<FileRef, Refused> {
    let parts: Vec<&str> = token.split('.').collect();
    let [grant, chain, file, exp, sig] = parts[..] else {
        return Err(Refused::Malformed);
    };
    if ![grant, chain, file].iter().all(|p| super::valid_name(p)) {
        return Err(Refused::Malformed);
    }
    let expires_ms: i64 = exp.parse().map_err(|_| Refused::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| Refused::Malformed)?;
    mac(key, grant, chain, file, expires_ms)
        .verify_slice(&sig)
        .map_err(|_| Refused::BadSignature)?;
    if expires_ms <= now_ms {
        return Err(Refused::Expired);
    }
    Ok(FileRef {
        grant: grant.into(),
        chain: chain.into(),
        file: file.into(),
        expires_ms,
    })
}
