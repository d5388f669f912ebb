//! Expiry tags: a lifetime a resource carries itself. `ttl-6h` expires six hours after the resource
//! was created; `expires-20261205t1800z` expires at that time (UTC). One form for every provider:
//! lowercase letters, digits and `-` only, so it is a valid Proxmox VE tag as well as a Nova and
//! Neutron tag (Cinder volumes carry it as a metadata key or value). The prefixes are configurable.
//!
//! # Grammar (tags compare case-insensitively, as every tag does)
//! - `<ttl prefix><amount><unit>...`: one or more amounts, each with a unit `m` (minutes), `h`, `d`
//!   or `w` (weeks): `ttl-90m`, `ttl-6h`, `ttl-1d12h`.
//! - `<expires prefix>YYYYMMDDtHHMMz` or `...tHHMMSSz`: a UTC date and time: `expires-20261205t1800z`.
//!
//! A tag that starts with a prefix but does not follow the grammar is malformed: it is reported, and
//! never read as something it might have meant. Pure: no I/O, tested with plain values.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The two prefixes, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryPrefixes {
    ttl: String,
    expires: String,
}

/// What an expiry tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Counted from the resource's creation.
    Ttl(Duration),
    /// A fixed time.
    Until(DateTime<Utc>),
}

/// One expiry tag a resource carries, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryTag {
    /// The tag as the resource carries it.
    pub tag: String,
    pub lifetime: Lifetime,
}

impl ExpiryTag {
    /// When the resource expires, for a resource created (or first seen) at `born`.
    pub fn deadline(&self, born: DateTime<Utc>) -> DateTime<Utc> {
        match self.lifetime {
            Lifetime::Ttl(ttl) => chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|ttl| born.checked_add_signed(ttl))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Lifetime::Until(at) => at,
        }
    }
}

/// A tag that starts with an expiry prefix but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expiry tag `{tag}` not understood: {problem}")]
pub struct MalformedExpiry {
    pub tag: String,
    pub problem: String,
}

/// Why a prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("select.{key}: `{prefix}` must be 1 or more of lowercase letters, digits, `_`, `-`, `+` or `.`, starting with a letter, digit or `_` (a valid Proxmox VE tag)")]
    Invalid { key: &'static str, prefix: String },
    #[error("select.ttl_tag_prefix, select.expires_tag_prefix: `{0}` and `{1}` overlap: one starts with the other")]
    Overlap(String, String),
}

/// Whether `prefix` can start a Proxmox VE tag (which also makes it a valid Nova and Neutron tag).
fn valid_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '+' | '.'))
}

impl ExpiryPrefixes {
    /// Validates the prefixes (`ttl-` and `expires-` by default).
    pub fn new(ttl: &str, expires: &str) -> Result<Self, PrefixError> {
        for (key, prefix) in [("ttl_tag_prefix", ttl), ("expires_tag_prefix", expires)] {
            if !valid_prefix(prefix) {
                return Err(PrefixError::Invalid {
                    key,
                    prefix: prefix.to_string(),
                });
            }
        }
        if ttl.starts_with(expires) || expires.starts_with(ttl) {
            return Err(PrefixError::Overlap(ttl.to_string(), expires.to_string()));
        }
        Ok(ExpiryPrefixes {
            ttl: ttl.to_string(),
            expires: expires.to_string(),
        })
    }

    /// The prefix of lifetimes counted from creation.
    pub fn ttl(&self) -> &str {
        &self.ttl
    }

    /// The prefix of fixed expiry times.
    pub fn expires(&self) -> &str {
        &self.expires
    }

    /// Every expiry tag among `tags`, read; the first malformed one is an error.
    pub fn read(&self, tags: &[String]) -> Result<Vec<ExpiryTag>, MalformedExpiry> {
        let mut found = Vec::new();
        // Most tags are not expiry tags: their prefix is compared in place, and only the rest of
        // an expiry tag is lowercased (the prefixes are lowercase ASCII already).
        let after = |tag: &str, prefix: &str| {
            tag.get(..prefix.len())
                .filter(|head| head.eq_ignore_ascii_case(prefix))
                .map(|_| tag[prefix.len()..].to_ascii_lowercase())
        };
        for tag in tags {
            let malformed = |problem: String| MalformedExpiry {
                tag: tag.clone(),
                problem,
            };
            let lifetime = if let Some(rest) = after(tag, &self.ttl) {
                Lifetime::Ttl(parse_ttl(&rest).map_err(malformed)?)
            } else if let Some(rest) = after(tag, &self.expires) {
                Lifetime::Until(parse_time(&rest).map_err(malformed)?)
            } else {
                continue;
            };
            found.push(ExpiryTag {
                tag: tag.clone(),
                lifetime,
            });
        }
        Ok(found)
    }
}

impl Default for ExpiryPrefixes {
    fn default() -> Self {
        ExpiryPrefixes {
            ttl: "ttl-".to_string(),
            expires: "expires-".to_string(),
        }
    }
}

/// `6h`, `90m`, `1d12h`, `2w`.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    const FORM: &str = "expected amounts with units m, h, d or w, e.g. `6h` or `1d12h`";
    if text.is_empty() {
        return Err(format!("no lifetime after the prefix; {FORM}"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            other => return Err(format!("`{other}` is not a unit; {FORM}")),
        };
        if digits.is_empty() {
            return Err(format!("unit `{c}` without an amount; {FORM}"));
        }
        let amount: u64 = digits.parse().map_err(|_| format!("`{digits}` is too large"))?;
        total = amount
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .filter(|seconds| *seconds <= 100 * 365 * 86_400)
            .ok_or_else(|| "longer than 100 years".to_string())?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("`{digits}` has no unit; {FORM}"));
    }
    Ok(Duration::from_secs(total))
}

/// `20261205t1800z` or `20261205t180000z`.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let form = "expected a UTC date and time `YYYYMMDDtHHMMz`, e.g. `20261205t1800z`";
    let Some(body) = text.strip_suffix('z') else {
        return Err(form.to_string());
    };
    let format = match body.len() {
        13 => "%Y%m%dt%H%M",
        15 => "%Y%m%dt%H%M%S",
        _ => return Err(form.to_string()),
    };
    if !body.chars().all(|c| c.is_ascii_digit() || c == 't') {
        return Err(form.to_string());
    }
    NaiveDateTime::parse_from_str(body, format)
        .map(|naive| naive.and_utc())
        .map_err(|_| format!("`{text}` is not a valid date and time; {form}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(tags: &[&str]) -> Result<Vec<(String, Lifetime)>, String> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        ExpiryPrefixes::default()
            .read(&tags)
            .map(|found| found.into_iter().map(|e| (e.tag, e.lifetime)).collect())
            .map_err(|e| e.to_string())
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn ttls_add_up_their_amounts_and_times_are_utc() {
        let hours = |h: u64| Lifetime::Ttl(Duration::from_secs(h * 3600));
        assert_eq!(
            read(&["ci-job", "ttl-6h", "TTL-1d12h", "ttl-90m", "ttl-2w"]),
            Ok(vec![
                ("ttl-6h".into(), hours(6)),
                ("TTL-1d12h".into(), hours(36)),
                ("ttl-90m".into(), Lifetime::Ttl(Duration::from_secs(90 * 60))),
                ("ttl-2w".into(), hours(14 * 24)),
            ])
        );
        assert_eq!(
            read(&["expires-20261205t1800z", "expires-20261205T180030Z"]),
            Ok(vec![
                (
                    "expires-20261205t1800z".into(),
                    Lifetime::Until(at("2026-12-05T18:00:00Z"))
                ),
                (
                    "expires-20261205T180030Z".into(),
                    Lifetime::Until(at("2026-12-05T18:00:30Z"))
                ),
            ])
        );
        let tag = ExpiryTag {
            tag: "ttl-6h".into(),
            lifetime: hours(6),
        };
        assert_eq!(
            tag.deadline(at("2026-12-05T18:00:00Z")),
            at("2026-12-06T00:00:00Z")
        );
    }

    #[test]
    fn malformed_tags_say_what_is_wrong_and_are_never_guessed() {
        let cases = [
            ("ttl-", "no lifetime after the prefix; expected amounts with units m, h, d or w, e.g. `6h` or `1d12h`"),
            ("ttl-6", "`6` has no unit; expected amounts with units m, h, d or w, e.g. `6h` or `1d12h`"),
            ("ttl-6x", "`x` is not a unit; expected amounts with units m, h, d or w, e.g. `6h` or `1d12h`"),
            ("ttl-h", "unit `h` without an amount; expected amounts with units m, h, d or w, e.g. `6h` or `1d12h`"),
            ("ttl-99999999999999999999h", "`99999999999999999999` is too large"),
            ("ttl-999999w", "longer than 100 years"),
            ("expires-tomorrow", "expected a UTC date and time `YYYYMMDDtHHMMz`, e.g. `20261205t1800z`"),
            ("expires-20261205t1800", "expected a UTC date and time `YYYYMMDDtHHMMz`, e.g. `20261205t1800z`"),
            ("expires-20261305t1800z", "`20261305t1800z` is not a valid date and time; expected a UTC date and time `YYYYMMDDtHHMMz`, e.g. `20261205t1800z`"),
            ("expires-2026-12-05t18:00z", "expected a UTC date and time `YYYYMMDDtHHMMz`, e.g. `20261205t1800z`"),
        ];
        for (tag, problem) in cases {
            assert_eq!(
                read(&["ttl-6h", tag]),
                Err(format!("expiry tag `{tag}` not understood: {problem}")),
                "{tag}"
            );
        }
    }

    #[test]
    fn prefixes_must_be_valid_proxmox_tags_and_distinct() {
        assert!(ExpiryPrefixes::new("lifetime-", "until.").is_ok());
        assert_eq!(
            ExpiryPrefixes::new("TTL-", "expires-"),
            Err(PrefixError::Invalid {
                key: "ttl_tag_prefix",
                prefix: "TTL-".into()
            })
        );
        assert_eq!(
            ExpiryPrefixes::new("ttl-", ""),
            Err(PrefixError::Invalid {
                key: "expires_tag_prefix",
                prefix: String::new()
            })
        );
        assert_eq!(
            ExpiryPrefixes::new("ex-", "ex-at-"),
            Err(PrefixError::Overlap("ex-".into(), "ex-at-".into()))
        );
    }
}
