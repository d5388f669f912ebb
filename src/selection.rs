//! Selection rules: which discovered resources the janitor may delete. Pure; the safety rules that no
//! configuration can override (guards) are applied here first.

use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::model::{Guard, Kind, Resource};

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
        }
    }
}

fn default_protect_tag() -> String {
    "keep".to_string()
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
}

fn known_kinds() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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
}

/// The verdict on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Selected,
    /// A safety rule: never touched.
    Guarded(Guard),
    /// Carries the protect tag.
    Protected,
    /// Does not match the rules; the text says which rule.
    NotMatched(&'static str),
    /// Matches but is younger than `min_age`.
    TooYoung,
    /// Matches but has not been seen in enough consecutive passes yet.
    Unconfirmed {
        seen: u32,
        required: u32,
    },
}

/// A verdict is shown, in JSON too, as its description.
impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.describe())
    }
}

impl Verdict {
    /// A short, bounded description for reports.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Selected => "selected".to_string(),
            Verdict::Guarded(guard) => format!("never touched: {}", guard.as_str()),
            Verdict::Protected => "protect tag".to_string(),
            Verdict::NotMatched(rule) => format!("not matched: {rule}"),
            Verdict::TooYoung => "younger than min_age".to_string(),
            Verdict::Unconfirmed { seen, required } => format!("seen in {seen} of {required} passes needed"),
        }
    }
}

/// What the janitor remembers about a resource from earlier passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub first_seen: DateTime<Utc>,
    /// Consecutive passes, this one included, that saw it.
    pub sightings: u32,
}

fn has_tag(resource: &Resource, wanted: &str) -> bool {
    // Proxmox lower-cases tags, so tags compare case-insensitively everywhere.
    resource.tags.iter().any(|tag| tag.eq_ignore_ascii_case(wanted))
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
        Ok(Selector {
            tags_all: config.tags_all.clone(),
            tags_any: config.tags_any.clone(),
            min_age: config.min_age,
            name_pattern,
            untaggable_name_pattern,
            protect_tag: config.protect_tag.clone(),
            kinds,
        })
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
        if resource.taggable {
            if self.tags_all.is_empty() && self.tags_any.is_empty() && self.name_pattern.is_none() {
                return Verdict::NotMatched("no rule for kinds with tags");
            }
            if !self.tags_all.iter().all(|tag| has_tag(resource, tag)) {
                return Verdict::NotMatched("tags_all");
            }
            if !self.tags_any.is_empty() && !self.tags_any.iter().any(|tag| has_tag(resource, tag)) {
                return Verdict::NotMatched("tags_any");
            }
            if self
                .name_pattern
                .as_ref()
                .is_some_and(|p| !p.is_match(&resource.name))
            {
                return Verdict::NotMatched("name_pattern");
            }
        } else {
            // A kind without tags is selected by its name alone, and never without that rule.
            match &self.untaggable_name_pattern {
                Some(pattern) if pattern.is_match(&resource.name) => {}
                _ => return Verdict::NotMatched("untaggable_name_pattern"),
            }
        }
        if let Some(min_age) = self.min_age {
            let born = resource.created.or(history.map(|h| h.first_seen)).unwrap_or(now);
            let age = (now - born).to_std().unwrap_or(Duration::ZERO);
            if age < min_age {
                return Verdict::TooYoung;
            }
        }
        let seen = history.map_or(1, |h| h.sightings);
        if seen < resource.sightings_required {
            return Verdict::Unconfirmed {
                seen,
                required: resource.sightings_required,
            };
        }
        Verdict::Selected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceKey;

    fn resource(tags: &[&str]) -> Resource {
        let mut r = Resource::new(ResourceKey::new("c", Kind::Port, "p1"), "ci-port");
        r.tags = tags.iter().map(|t| t.to_string()).collect();
        r
    }

    fn selector(config: SelectionConfig) -> Selector {
        Selector::new(&config).expect("valid rules")
    }

    #[test]
    fn rules_without_tags_or_name_are_refused() {
        assert_eq!(
            Selector::new(&SelectionConfig::default()).err(),
            Some(SelectionError::Unbounded)
        );
    }

    #[test]
    fn guards_and_the_protect_tag_win_over_matching_tags() {
        let s = selector(SelectionConfig {
            tags_all: vec!["ci".into()],
            ..Default::default()
        });
        let now = Utc::now();
        let mut guarded = resource(&["ci"]);
        guarded.guard = Some(Guard::DefaultSecurityGroup);
        assert_eq!(
            s.judge(&guarded, None, now),
            Verdict::Guarded(Guard::DefaultSecurityGroup)
        );
        assert_eq!(s.judge(&resource(&["ci", "keep"]), None, now), Verdict::Protected);
        assert_eq!(s.judge(&resource(&["CI"]), None, now), Verdict::Selected);
        assert_eq!(
            s.judge(&resource(&["other"]), None, now),
            Verdict::NotMatched("tags_all")
        );
    }

    #[test]
    fn age_comes_from_creation_time_else_first_sighting() {
        let s = selector(SelectionConfig {
            tags_any: vec!["a".into(), "b".into()],
            min_age: Some(Duration::from_secs(3600)),
            ..Default::default()
        });
        let now = Utc::now();
        let mut old = resource(&["b"]);
        old.created = Some(now - chrono::Duration::hours(2));
        assert_eq!(s.judge(&old, None, now), Verdict::Selected);
        let unknown_age = resource(&["a"]);
        assert_eq!(s.judge(&unknown_age, None, now), Verdict::TooYoung);
        let history = History {
            first_seen: now - chrono::Duration::hours(3),
            sightings: 4,
        };
        assert_eq!(s.judge(&unknown_age, Some(history), now), Verdict::Selected);
    }

    #[test]
    fn kinds_without_tags_are_selected_by_name_pattern_alone_and_never_without_one() {
        let now = Utc::now();
        let mut keypair = Resource::new(ResourceKey::new("c", Kind::Keypair, "ci-key"), "ci-key");
        keypair.taggable = false;
        let tags_only = selector(SelectionConfig {
            tags_all: vec!["ci".into()],
            ..Default::default()
        });
        assert_eq!(
            tags_only.judge(&keypair, None, now),
            Verdict::NotMatched("untaggable_name_pattern")
        );
        let with_name = selector(SelectionConfig {
            tags_all: vec!["ci".into()],
            untaggable_name_pattern: Some("^ci-".into()),
            ..Default::default()
        });
        assert_eq!(with_name.judge(&keypair, None, now), Verdict::Selected);
        // Tagged kinds still need their tags.
        assert_eq!(
            with_name.judge(&resource(&[]), None, now),
            Verdict::NotMatched("tags_all")
        );
        // A rule only for untaggable kinds selects no tagged resource at all.
        let names_only = selector(SelectionConfig {
            untaggable_name_pattern: Some("^ci-".into()),
            ..Default::default()
        });
        assert_eq!(
            names_only.judge(&resource(&["ci"]), None, now),
            Verdict::NotMatched("no rule for kinds with tags")
        );
    }

    #[test]
    fn a_resource_needing_two_sightings_waits_for_the_second() {
        let s = selector(SelectionConfig {
            untaggable_name_pattern: Some("^vm-".into()),
            ..Default::default()
        });
        let now = Utc::now();
        let mut disk = Resource::new(
            ResourceKey::new("c", Kind::Disk, "local:vm-9-disk-0"),
            "vm-9-disk-0",
        );
        disk.sightings_required = 2;
        disk.taggable = false;
        assert_eq!(
            s.judge(&disk, None, now),
            Verdict::Unconfirmed { seen: 1, required: 2 }
        );
        let history = History {
            first_seen: now,
            sightings: 2,
        };
        assert_eq!(s.judge(&disk, Some(history), now), Verdict::Selected);
    }
}
