//! Selection rules: which discovered resources the janitor may delete. Pure; the safety rules that no
//! configuration can override (guards) are applied here first.
//!
//! The order of the rules: a guard, the protect tag and `kinds` refuse first. Then a resource's own
//! expiry tag decides alone (selected once it has passed, never before, whatever `min_age` says; a
//! malformed one is never guessed at). Then the tag and name rules, `min_age` and the sightings. An
//! untagged resource the rules do not pick but that looks leaked (see [`LeakSign`]) becomes a
//! suspected leak once it looked so in [`LEAK_SIGHTINGS`] passes in a row and is older than
//! `leak_min_age`: reported, and selected only for the kinds in `delete_suspected_leaks`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::expiry::{ExpiryPrefixes, ExpiryTag, MalformedExpiry, PrefixError};
use crate::model::{Guard, Kind, LeakSign, Resource};

/// A resource must look leaked in this many consecutive passes before it is a suspected leak.
pub const LEAK_SIGHTINGS: u32 = 2;

/// The `[clouds.select]` table: what a cloud's leftovers look like.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionConfig {
    /// A resource is selected only if it carries every one of these tags.
    #[serde(default)]
    pub tags_all: Vec<String>,
    /// A resource is selected only if it carries at least one of these tags (when not empty).
    #[serde(default)]
    pub tags_any: Vec<String>,
    /// A resource is selected only once it is at least this old ("2h", "30m"); its age comes from the
    /// cloud's creation time, or else from when the janitor first saw it.
    #[serde(default, with = "humantime_serde")]
    pub min_age: Option<Duration>,
    /// A regular expression the resource's name must match (anchored only if you anchor it).
    #[serde(default)]
    pub name_pattern: Option<String>,
    /// Kinds whose API has no tags (Nova keypairs and server groups, Proxmox orphan disks) are
    /// selected when their name matches this regular expression, and never without it.
    #[serde(default)]
    pub untaggable_name_pattern: Option<String>,
    /// A resource carrying this tag is never touched. Defaults to `keep`.
    #[serde(default = "default_protect_tag")]
    pub protect_tag: String,
    /// Only these kinds are cleaned (snake_case kind names: `server`, `port`, `vm`, ...); all when
    /// absent.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// A tag `<prefix><lifetime>` (`ttl-6h`, `ttl-1d12h`) selects a resource once that long has
    /// passed since its creation, and never before, whatever the other rules say. Defaults to `ttl-`.
    #[serde(default = "default_ttl_prefix")]
    pub ttl_tag_prefix: String,
    /// A tag `<prefix>YYYYMMDDtHHMMz` (`expires-20261205t1800z`) selects a resource once that UTC
    /// time has passed, and never before, whatever the other rules say. Defaults to `expires-`.
    #[serde(default = "default_expires_prefix")]
    pub expires_tag_prefix: String,
    /// Whether untagged resources that look leaked (floating IPs with no port, ports DOWN with no
    /// device, volumes available with no attachment, Proxmox disks no guest references) are
    /// reported as suspected leaks. On by default; report-only unless `delete_suspected_leaks`.
    #[serde(default = "default_true")]
    pub suspected_leaks: bool,
    /// A resource counts as a suspected leak only once it is this old (and looked leaked in two
    /// passes in a row). Defaults to 24h.
    #[serde(default = "default_leak_min_age", with = "humantime_serde")]
    pub leak_min_age: Duration,
    /// The kinds whose suspected leaks are deleted (`floating_ip`, `port`, `volume`, `disk`), still
    /// under the delete cap, the guards and the dependency order. None by default.
    #[serde(default)]
    pub delete_suspected_leaks: Vec<String>,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            tags_all: Vec::new(),
            tags_any: Vec::new(),
            min_age: None,
            name_pattern: None,
            untaggable_name_pattern: None,
            protect_tag: default_protect_tag(),
            kinds: None,
            ttl_tag_prefix: default_ttl_prefix(),
            expires_tag_prefix: default_expires_prefix(),
            suspected_leaks: true,
            leak_min_age: default_leak_min_age(),
            delete_suspected_leaks: Vec::new(),
        }
    }
}

fn default_protect_tag() -> String {
    "keep".to_string()
}

fn default_ttl_prefix() -> String {
    ExpiryPrefixes::default().ttl().to_string()
}

fn default_expires_prefix() -> String {
    ExpiryPrefixes::default().expires().to_string()
}

fn default_true() -> bool {
    true
}

fn default_leak_min_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Why a selection config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("select: set at least one of tags_all, tags_any, name_pattern or untaggable_name_pattern; without them every resource in scope would be selected")]
    Unbounded,
    #[error("select.{key}: invalid regular expression: {message}")]
    Pattern { key: &'static str, message: String },
    #[error("select.kinds: unknown kind `{0}` (known: {known})", known = known_kinds())]
    UnknownKind(String),
    #[error("select.protect_tag: must not be empty")]
    EmptyProtectTag,
    #[error(transparent)]
    ExpiryPrefix(#[from] PrefixError),
    #[error("select.delete_suspected_leaks: `{0}` is not a kind that can look leaked (one of: {known})", known = leak_kinds())]
    LeakKind(String),
    #[error("select.delete_suspected_leaks: set, but suspected_leaks = false detects none")]
    LeaksOff,
}

fn known_kinds() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn leak_kinds() -> String {
    LeakSign::ALL
        .iter()
        .map(|sign| sign.kind().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do with untagged resources that look leaked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakRules {
    /// Whether they are looked for at all.
    pub detect: bool,
    pub min_age: Duration,
    /// The kinds whose suspected leaks are selected.
    pub delete: Vec<Kind>,
}

/// Validated selection rules.
#[derive(Debug, Clone)]
pub struct Selector {
    tags_all: Vec<String>,
    tags_any: Vec<String>,
    min_age: Option<Duration>,
    name_pattern: Option<Regex>,
    untaggable_name_pattern: Option<Regex>,
    protect_tag: String,
    kinds: Option<Vec<Kind>>,
    expiry: ExpiryPrefixes,
    leaks: LeakRules,
}

/// The verdict on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Selected by the tag and name rules.
    Selected,
    /// Selected by its own expiry tag, which has passed.
    Expired { tag: String },
    /// Selected as a suspected leak of a kind the config deletes.
    Leaked(LeakSign),
    /// A safety rule: never touched.
    Guarded(Guard),
    /// Carries the protect tag.
    Protected,
    /// Does not match the rules; the text says which rule.
    NotMatched(&'static str),
    /// Matches but is younger than `min_age`.
    TooYoung,
    /// Matches but has not been seen in enough consecutive passes yet.
    Unconfirmed { seen: u32, required: u32 },
    /// Carries an expiry tag that has not passed: not selected before `at`.
    NotExpired { tag: String, at: DateTime<Utc> },
    /// Carries an expiry tag that cannot be read: not selected until it is fixed.
    MalformedExpiry(MalformedExpiry),
    /// Untagged, and looked leaked long enough: reported, not deleted.
    SuspectedLeak(LeakSign),
}

/// A verdict is shown, in JSON too, as its description.
impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.describe())
    }
}

impl Verdict {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Selected => "selected".to_string(),
            Verdict::Expired { tag } => format!("selected: expiry tag {tag} passed"),
            Verdict::Leaked(sign) => format!("selected: suspected leak, {}", sign.describe()),
            Verdict::Guarded(guard) => format!("never touched: {}", guard.as_str()),
            Verdict::Protected => "protect tag".to_string(),
            Verdict::NotMatched(rule) => format!("not matched: {rule}"),
            Verdict::TooYoung => "younger than min_age".to_string(),
            Verdict::Unconfirmed { seen, required } => format!("seen in {seen} of {required} passes needed"),
            Verdict::NotExpired { tag, .. } => format!("expiry tag {tag} not reached"),
            Verdict::MalformedExpiry(malformed) => malformed.to_string(),
            Verdict::SuspectedLeak(sign) => format!("suspected leak: {} (report-only)", sign.describe()),
        }
    }

    /// Whether the janitor may delete the resource.
    pub fn is_selected(&self) -> bool {
        matches!(
            self,
            Verdict::Selected | Verdict::Expired { .. } | Verdict::Leaked(_)
        )
    }

    /// The leak sign, for a suspected leak (reported or selected).
    pub fn suspected_leak(&self) -> Option<LeakSign> {
        match self {
            Verdict::SuspectedLeak(sign) | Verdict::Leaked(sign) => Some(*sign),
            _ => None,
        }
    }
}

/// What the janitor remembers about a resource from earlier passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub first_seen: DateTime<Utc>,
    /// Consecutive passes, this one included, that saw it.
    pub sightings: u32,
    /// Consecutive passes, this one included, in which it looked leaked.
    pub leak_sightings: u32,
}

fn has_tag(resource: &Resource, wanted: &str) -> bool {
    // Proxmox lower-cases tags, so tags compare case-insensitively everywhere.
    resource.tags.iter().any(|tag| tag.eq_ignore_ascii_case(wanted))
}

/// When a resource came to be: its creation time, else the first sighting, else now.
fn born(resource: &Resource, history: Option<History>, now: DateTime<Utc>) -> DateTime<Utc> {
    resource.created.or(history.map(|h| h.first_seen)).unwrap_or(now)
}

fn age(resource: &Resource, history: Option<History>, now: DateTime<Utc>) -> Duration {
    (now - born(resource, history, now))
        .to_std()
        .unwrap_or(Duration::ZERO)
}

/// How the rules see one resource, rule by rule, for `explain`: the setting, the value seen and
/// whether it passed. Rules after the one that decided are still shown, with what they would say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCheck {
    pub rule: &'static str,
    pub setting: String,
    pub seen: String,
    pub result: CheckResult,
}

/// One rule's result for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// The rule lets the resource through.
    Passed,
    /// The rule stops the resource.
    Failed,
    /// Not configured, or not for this kind of resource.
    NotApplicable,
}

impl CheckResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Passed => "passed",
            CheckResult::Failed => "FAILED",
            CheckResult::NotApplicable => "-",
        }
    }
}

/// A duration to the minute, in days, hours and minutes: `3h 5m`, `2d 10m`, `1h`, `40s`.
pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 60 {
        return format!("{seconds}s");
    }
    let parts = [
        (seconds / 86_400, "d"),
        (seconds % 86_400 / 3600, "h"),
        (seconds % 3600 / 60, "m"),
    ];
    parts
        .iter()
        .filter(|(amount, _)| *amount > 0)
        .map(|(amount, unit)| format!("{amount}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `1 pass`, `3 passes`.
pub fn passes(n: u32) -> String {
    if n == 1 {
        "1 pass".to_string()
    } else {
        format!("{n} passes")
    }
}

/// A moment as reports and `explain` print it.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

impl Selector {
    pub fn new(config: &SelectionConfig) -> Result<Self, SelectionError> {
        if config.tags_all.is_empty()
            && config.tags_any.is_empty()
            && config.name_pattern.is_none()
            && config.untaggable_name_pattern.is_none()
        {
            return Err(SelectionError::Unbounded);
        }
        if config.protect_tag.trim().is_empty() {
            return Err(SelectionError::EmptyProtectTag);
        }
        let compile = |key: &'static str, pattern: &Option<String>| match pattern {
            Some(pattern) => Regex::new(pattern)
                .map(Some)
                .map_err(|error| SelectionError::Pattern {
                    key,
                    message: error.to_string(),
                }),
            None => Ok(None),
        };
        let name_pattern = compile("name_pattern", &config.name_pattern)?;
        let untaggable_name_pattern = compile("untaggable_name_pattern", &config.untaggable_name_pattern)?;
        let kinds = match &config.kinds {
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| Kind::parse(name).ok_or_else(|| SelectionError::UnknownKind(name.clone())))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let expiry = ExpiryPrefixes::new(&config.ttl_tag_prefix, &config.expires_tag_prefix)?;
        let delete = config
            .delete_suspected_leaks
            .iter()
            .map(|name| {
                Kind::parse(name)
                    .filter(|kind| LeakSign::ALL.iter().any(|sign| sign.kind() == *kind))
                    .ok_or_else(|| SelectionError::LeakKind(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !delete.is_empty() && !config.suspected_leaks {
            return Err(SelectionError::LeaksOff);
        }
        Ok(Selector {
            tags_all: config.tags_all.clone(),
            tags_any: config.tags_any.clone(),
            min_age: config.min_age,
            name_pattern,
            untaggable_name_pattern,
            protect_tag: config.protect_tag.clone(),
            kinds,
            expiry,
            leaks: LeakRules {
                detect: config.suspected_leaks,
                min_age: config.leak_min_age,
                delete,
            },
        })
    }

    /// The expiry tag that decides for `resource` (the one that expires last), when it has any.
    fn expiry_of(
        &self,
        resource: &Resource,
        born: DateTime<Utc>,
    ) -> Result<Option<(ExpiryTag, DateTime<Utc>)>, MalformedExpiry> {
        if !resource.taggable {
            return Ok(None);
        }
        Ok(self
            .expiry
            .read(&resource.tags)?
            .into_iter()
            .map(|tag| {
                let deadline = tag.deadline(born);
                (tag, deadline)
            })
            .max_by_key(|(_, deadline)| *deadline))
    }

    /// The tag and name rule the resource fails, if any.
    fn unmatched_rule(&self, resource: &Resource) -> Option<&'static str> {
        if resource.taggable {
            if self.tags_all.is_empty() && self.tags_any.is_empty() && self.name_pattern.is_none() {
                return Some("no rule for kinds with tags");
            }
            if !self.tags_all.iter().all(|tag| has_tag(resource, tag)) {
                return Some("tags_all");
            }
            if !self.tags_any.is_empty() && !self.tags_any.iter().any(|tag| has_tag(resource, tag)) {
                return Some("tags_any");
            }
            if self
                .name_pattern
                .as_ref()
                .is_some_and(|p| !p.is_match(&resource.name))
            {
                return Some("name_pattern");
            }
            None
        } else {
            // A kind without tags is selected by its name alone, and never without that rule.
            match &self.untaggable_name_pattern {
                Some(pattern) if pattern.is_match(&resource.name) => None,
                _ => Some("untaggable_name_pattern"),
            }
        }
    }

    /// The leak sign of a resource that counts as a suspected leak now.
    fn suspected_leak(
        &self,
        resource: &Resource,
        history: Option<History>,
        now: DateTime<Utc>,
    ) -> Option<LeakSign> {
        let sign = resource
            .leak
            .filter(|_| self.leaks.detect && resource.tags.is_empty())?;
        let looked_leaked = history.map_or(1, |h| h.leak_sightings);
        (looked_leaked >= LEAK_SIGHTINGS && age(resource, history, now) >= self.leaks.min_age).then_some(sign)
    }

    /// Judges one resource. `history` is what earlier passes saw (None for a resource never seen).
    pub fn judge(&self, resource: &Resource, history: Option<History>, now: DateTime<Utc>) -> Verdict {
        if let Some(guard) = resource.guard {
            return Verdict::Guarded(guard);
        }
        if has_tag(resource, &self.protect_tag) {
            return Verdict::Protected;
        }
        if let Some(kinds) = &self.kinds {
            if !kinds.contains(&resource.key.kind) {
                return Verdict::NotMatched("kinds");
            }
        }
        let seen = history.map_or(1, |h| h.sightings);
        let unconfirmed = (seen < resource.sightings_required).then_some(Verdict::Unconfirmed {
            seen,
            required: resource.sightings_required,
        });
        // A resource's own lifetime decides alone: selected once it passed, never before.
        match self.expiry_of(resource, born(resource, history, now)) {
            Err(malformed) => return Verdict::MalformedExpiry(malformed),
            Ok(Some((tag, deadline))) if now < deadline => {
                return Verdict::NotExpired {
                    tag: tag.tag,
                    at: deadline,
                }
            }
            Ok(Some((tag, _))) => return unconfirmed.unwrap_or(Verdict::Expired { tag: tag.tag }),
            Ok(None) => {}
        }
        if let Some(rule) = self.unmatched_rule(resource) {
            return match self.suspected_leak(resource, history, now) {
                Some(sign) if self.leaks.delete.contains(&resource.key.kind) => Verdict::Leaked(sign),
                Some(sign) => Verdict::SuspectedLeak(sign),
                None => Verdict::NotMatched(rule),
            };
        }
        if let Some(min_age) = self.min_age {
            if age(resource, history, now) < min_age {
                return Verdict::TooYoung;
            }
        }
        unconfirmed.unwrap_or(Verdict::Selected)
    }

    /// Every rule as it sees `resource`, for `explain`; [`Selector::judge`] gives the verdict.
    pub fn checks(
        &self,
        resource: &Resource,
        history: Option<History>,
        now: DateTime<Utc>,
    ) -> Vec<RuleCheck> {
        use CheckResult::{Failed, NotApplicable, Passed};
        let check = |rule, setting: String, seen: String, result| RuleCheck {
            rule,
            setting,
            seen,
            result,
        };
        let pass_if = |ok: bool| if ok { Passed } else { Failed };
        let tags = if resource.taggable {
            format!("tags: {}", list(&resource.tags))
        } else {
            "(its kind has no tags)".to_string()
        };
        let quoted = |items: &[String]| {
            if items.is_empty() {
                "not set".to_string()
            } else {
                items.join(", ")
            }
        };
        let mut out = vec![
            check(
                "guard",
                "always".into(),
                resource
                    .guard
                    .map_or("none applies".into(), |g| g.as_str().to_string()),
                pass_if(resource.guard.is_none()),
            ),
            check(
                "project",
                "the credentials' scope".into(),
                resource
                    .project
                    .clone()
                    .unwrap_or_else(|| "not in the listing".into()),
                pass_if(resource.guard != Some(Guard::OtherProject)),
            ),
            check(
                "protect_tag",
                self.protect_tag.clone(),
                tags.clone(),
                pass_if(!has_tag(resource, &self.protect_tag)),
            ),
            match &self.kinds {
                Some(kinds) => check(
                    "kinds",
                    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                    resource.key.kind.to_string(),
                    pass_if(kinds.contains(&resource.key.kind)),
                ),
                None => check(
                    "kinds",
                    "not set".into(),
                    resource.key.kind.to_string(),
                    NotApplicable,
                ),
            },
        ];
        let born_at = born(resource, history, now);
        let setting = format!("{}, {}", self.expiry.ttl(), self.expiry.expires());
        out.push(match self.expiry_of(resource, born_at) {
            Err(malformed) => check("expiry tag", setting, malformed.to_string(), Failed),
            Ok(Some((tag, deadline))) if now < deadline => check(
                "expiry tag",
                setting,
                format!("{}: expires {}", tag.tag, time(deadline)),
                Failed,
            ),
            Ok(Some((tag, deadline))) => check(
                "expiry tag",
                setting,
                format!("{}: expired {}", tag.tag, time(deadline)),
                Passed,
            ),
            Ok(None) => check("expiry tag", setting, "none carried".into(), NotApplicable),
        });
        if resource.taggable {
            out.push(if self.tags_all.is_empty() {
                check("tags_all", "not set".into(), tags.clone(), NotApplicable)
            } else {
                check(
                    "tags_all",
                    quoted(&self.tags_all),
                    tags.clone(),
                    pass_if(self.tags_all.iter().all(|t| has_tag(resource, t))),
                )
            });
            out.push(if self.tags_any.is_empty() {
                check("tags_any", "not set".into(), tags.clone(), NotApplicable)
            } else {
                check(
                    "tags_any",
                    quoted(&self.tags_any),
                    tags.clone(),
                    pass_if(self.tags_any.iter().any(|t| has_tag(resource, t))),
                )
            });
            let name = format!("name: {}", resource.name);
            out.push(match &self.name_pattern {
                Some(pattern) => check(
                    "name_pattern",
                    pattern.as_str().to_string(),
                    name,
                    pass_if(pattern.is_match(&resource.name)),
                ),
                None => check("name_pattern", "not set".into(), name, NotApplicable),
            });
        } else {
            let name = format!("name: {}", resource.name);
            out.push(match &self.untaggable_name_pattern {
                Some(pattern) => check(
                    "untaggable_name_pattern",
                    pattern.as_str().to_string(),
                    name,
                    pass_if(pattern.is_match(&resource.name)),
                ),
                None => check("untaggable_name_pattern", "not set".into(), name, Failed),
            });
        }
        let since = match (resource.created, history) {
            (Some(created), _) => format!("created {}", time(created)),
            (None, Some(h)) => format!("first seen {}", time(h.first_seen)),
            (None, None) => "first seen now".to_string(),
        };
        let age_seen = format!("age {} ({since})", human(age(resource, history, now)));
        out.push(match self.min_age {
            Some(min_age) => check(
                "min_age",
                human(min_age),
                age_seen.clone(),
                pass_if(age(resource, history, now) >= min_age),
            ),
            None => check("min_age", "not set".into(), age_seen.clone(), NotApplicable),
        });
        let seen = history.map_or(1, |h| h.sightings);
        out.push(check(
            "sightings",
            format!("{} in a row", passes(resource.sightings_required)),
            format!("seen in {} in a row", passes(seen)),
            pass_if(seen >= resource.sightings_required),
        ));
        let leak_setting = if self.leaks.detect {
            let delete = if self.leaks.delete.contains(&resource.key.kind) {
                "deleted"
            } else {
                "report-only"
            };
            format!(
                "{}, {}, {delete}",
                passes(LEAK_SIGHTINGS),
                human(self.leaks.min_age)
            )
        } else {
            "off".to_string()
        };
        out.push(match resource.leak {
            None => check(
                "suspected leak",
                leak_setting,
                "does not look leaked".into(),
                NotApplicable,
            ),
            Some(sign) if !resource.tags.is_empty() => check(
                "suspected leak",
                leak_setting,
                format!("{}, but tagged", sign.describe()),
                NotApplicable,
            ),
            Some(sign) => {
                let looked = history.map_or(1, |h| h.leak_sightings);
                let seen = format!("{} in {} in a row, {age_seen}", sign.describe(), passes(looked));
                let suspected = self.suspected_leak(resource, history, now).is_some();
                let result = if !self.leaks.detect {
                    NotApplicable
                } else if suspected {
                    Passed
                } else {
                    Failed
                };
                check("suspected leak", leak_setting, seen, result)
            }
        });
        out
    }
}

#[cfg(test)]
mod tests;
