//! The selection rules over plain resources: guards and the protect tag first, tags, age, names,
//! sightings, expiry tags and suspected leaks, and the configs that are refused.

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
        leak_sightings: 0,
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
        leak_sightings: 2,
    };
    assert_eq!(s.judge(&disk, Some(history), now), Verdict::Selected);
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

#[test]
fn an_expiry_tag_selects_once_passed_and_never_before_whatever_min_age_says() {
    let s = selector(SelectionConfig {
        tags_all: vec!["ci".into()],
        min_age: Some(Duration::from_secs(3600)),
        ..Default::default()
    });
    let created = at("2026-12-05T12:00:00Z");
    let mut r = resource(&["ci", "ttl-6h"]);
    r.created = Some(created);
    // Older than min_age, but its own lifetime has not passed.
    assert_eq!(
        s.judge(&r, None, at("2026-12-05T17:59:59Z")),
        Verdict::NotExpired {
            tag: "ttl-6h".into(),
            at: at("2026-12-05T18:00:00Z")
        }
    );
    assert_eq!(
        s.judge(&r, None, at("2026-12-05T18:00:00Z")),
        Verdict::Expired { tag: "ttl-6h".into() }
    );
    // Younger than min_age and without the CI tag: its own lifetime selects it.
    let mut short = resource(&["TTL-30M"]);
    short.created = Some(created);
    assert_eq!(
        s.judge(&short, None, at("2026-12-05T12:30:00Z")),
        Verdict::Expired {
            tag: "TTL-30M".into()
        }
    );
    // A fixed time, and of two tags the one that expires last.
    let both = resource(&["expires-20261205t1800z", "ttl-1h"]);
    let history = History {
        first_seen: created,
        sightings: 3,
        leak_sightings: 0,
    };
    assert_eq!(
        s.judge(&both, Some(history), at("2026-12-05T17:00:00Z")),
        Verdict::NotExpired {
            tag: "expires-20261205t1800z".into(),
            at: at("2026-12-05T18:00:00Z")
        }
    );
    assert!(s
        .judge(&both, Some(history), at("2026-12-05T18:00:00Z"))
        .is_selected());
    // The protect tag still wins.
    assert_eq!(
        s.judge(&resource(&["ttl-1m", "keep"]), None, at("2030-01-01T00:00:00Z")),
        Verdict::Protected
    );
}

#[test]
fn a_malformed_expiry_tag_is_reported_and_never_guessed() {
    let s = selector(SelectionConfig {
        tags_all: vec!["ci".into()],
        ..Default::default()
    });
    let verdict = s.judge(&resource(&["ci", "ttl-6", "ttl-1h"]), None, Utc::now());
    assert_eq!(
        verdict.describe(),
        "expiry tag `ttl-6` not understood: `6` has no unit; expected amounts with units m, h, d or w, e.g. `6h` or `1d12h`"
    );
    assert!(!verdict.is_selected());
    // Configured prefixes replace the defaults.
    let custom = selector(SelectionConfig {
        tags_all: vec!["ci".into()],
        ttl_tag_prefix: "lifetime-".into(),
        ..Default::default()
    });
    assert_eq!(
        custom.judge(&resource(&["ci", "ttl-6"]), None, Utc::now()),
        Verdict::Selected
    );
}

/// An untagged floating IP with no port, created `hours` ago.
fn idle_floating_ip(hours: i64, now: DateTime<Utc>) -> Resource {
    let mut fip = Resource::new(ResourceKey::new("c", Kind::FloatingIp, "fip-1"), "172.24.4.9");
    fip.leak = Some(LeakSign::FloatingIpWithoutPort);
    fip.created = Some(now - chrono::Duration::hours(hours));
    fip
}

fn looked_leaked(passes: u32, now: DateTime<Utc>) -> Option<History> {
    Some(History {
        first_seen: now - chrono::Duration::hours(30),
        sightings: passes,
        leak_sightings: passes,
    })
}

#[test]
fn an_untagged_resource_that_looked_leaked_twice_and_is_old_enough_is_a_suspected_leak() {
    let now = Utc::now();
    let s = selector(SelectionConfig {
        tags_all: vec!["ci".into()],
        ..Default::default()
    });
    let old = idle_floating_ip(25, now);
    assert_eq!(
        s.judge(&old, looked_leaked(1, now), now),
        Verdict::NotMatched("tags_all")
    );
    let suspected = s.judge(&old, looked_leaked(2, now), now);
    assert_eq!(suspected, Verdict::SuspectedLeak(LeakSign::FloatingIpWithoutPort));
    assert!(!suspected.is_selected(), "report-only by default");
    assert_eq!(
        s.judge(&idle_floating_ip(23, now), looked_leaked(5, now), now),
        Verdict::NotMatched("tags_all"),
        "younger than leak_min_age (24h)"
    );
    let mut tagged = idle_floating_ip(25, now);
    tagged.tags = vec!["owner-bob".into()];
    assert_eq!(
        s.judge(&tagged, looked_leaked(2, now), now),
        Verdict::NotMatched("tags_all")
    );
    let mut guarded = idle_floating_ip(25, now);
    guarded.guard = Some(Guard::OtherProject);
    assert_eq!(
        s.judge(&guarded, looked_leaked(2, now), now),
        Verdict::Guarded(Guard::OtherProject)
    );
    let off = selector(SelectionConfig {
        tags_all: vec!["ci".into()],
        suspected_leaks: false,
        ..Default::default()
    });
    assert_eq!(
        off.judge(&old, looked_leaked(2, now), now),
        Verdict::NotMatched("tags_all")
    );
}

#[test]
fn suspected_leaks_are_selected_only_for_the_kinds_opted_in() {
    let now = Utc::now();
    let s = selector(SelectionConfig {
        tags_all: vec!["ci".into()],
        leak_min_age: Duration::from_secs(3600),
        delete_suspected_leaks: vec!["floating_ip".into()],
        ..Default::default()
    });
    let verdict = s.judge(&idle_floating_ip(2, now), looked_leaked(2, now), now);
    assert_eq!(verdict, Verdict::Leaked(LeakSign::FloatingIpWithoutPort));
    assert!(verdict.is_selected());
    let mut port = Resource::new(ResourceKey::new("c", Kind::Port, "p9"), "");
    port.leak = Some(LeakSign::PortWithoutDevice);
    port.created = Some(now - chrono::Duration::hours(2));
    assert_eq!(
        s.judge(&port, looked_leaked(2, now), now),
        Verdict::SuspectedLeak(LeakSign::PortWithoutDevice)
    );
}

#[test]
fn bad_expiry_prefixes_and_leak_kinds_are_refused() {
    let refused = |config: SelectionConfig| {
        Selector::new(&SelectionConfig {
            tags_all: vec!["ci".into()],
            ..config
        })
        .err()
        .map(|e| e.to_string())
    };
    assert_eq!(
        refused(SelectionConfig {
            ttl_tag_prefix: "TTL_".into(),
            ..Default::default()
        }),
        Some("select.ttl_tag_prefix: `TTL_` must be 1 or more of lowercase letters, digits, `_`, `-`, `+` or `.`, starting with a letter, digit or `_` (a valid Proxmox VE tag)".into())
    );
    assert_eq!(
        refused(SelectionConfig {
            delete_suspected_leaks: vec!["server".into()],
            ..Default::default()
        }),
        Some("select.delete_suspected_leaks: `server` is not a kind that can look leaked (one of: floating_ip, port, volume, disk)".into())
    );
    assert_eq!(
        refused(SelectionConfig {
            delete_suspected_leaks: vec!["volume".into()],
            suspected_leaks: false,
            ..Default::default()
        }),
        Some("select.delete_suspected_leaks: set, but suspected_leaks = false detects none".into())
    );
}
