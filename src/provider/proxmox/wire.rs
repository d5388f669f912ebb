//! The Proxmox VE JSON the janitor reads, as serde types holding only the fields a decision needs;
//! unknown fields are skipped while decoding. Proxmox writes booleans as 0/1 (numbers or strings)
//! and some ids as numbers or strings: the lenient readers here accept each form once, and tags,
//! `meta` lines and disk entries are parsed while decoding, so nothing downstream parses again.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

use crate::model::Kind;

/// `{"data": ...}`, the envelope of every answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope<T> {
    pub data: T,
}

/// A scalar as Proxmox writes it: text (a string, or a number as written), a boolean, or nothing
/// usable (`null`, a list, an object).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scalar {
    Text(String),
    Bool(bool),
    Nothing,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(text.to_string()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(text))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(value))
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Scalar, E> {
                Ok(Scalar::Text(number.to_string()))
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Scalar, E> {
                Ok(Scalar::Text(number.to_string()))
            }
            fn visit_f64<E: de::Error>(self, number: f64) -> Result<Scalar, E> {
                Ok(Scalar::Text(number.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Nothing)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Nothing)
            }
            fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar, D::Error> {
                Scalar::deserialize(deserializer)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nothing)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nothing)
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl Scalar {
    /// Non-empty text, else `None`.
    fn text(self) -> Option<String> {
        match self {
            Scalar::Text(text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }

    /// A 0/1 flag: `1`, `"1"` or `true`.
    fn flag(self) -> bool {
        match self {
            Scalar::Bool(value) => value,
            Scalar::Text(text) => text == "1",
            Scalar::Nothing => false,
        }
    }
}

/// Optional text: a non-empty string or a number.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(deserializer)?.text())
}

/// Text that may be absent, as an empty string.
fn text_or_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(text(deserializer)?.unwrap_or_default())
}

/// Required text: a non-empty string or a number.
fn required_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    text(deserializer)?.ok_or_else(|| de::Error::invalid_value(Unexpected::Str(""), &"a non-empty string"))
}

/// A 0/1 flag.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Scalar::deserialize(deserializer)?.flag())
}

/// A vmid: a number, or a string of one (`/nodes/{node}/lxc` lists them so).
fn vmid<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let text = required_text(deserializer)?;
    text.parse()
        .map_err(|_| de::Error::invalid_value(Unexpected::Str(&text), &"a vmid"))
}

/// A tag list (see [`parse_tags`]).
fn tags<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(text(deserializer)?
        .map(|tags| parse_tags(&tags))
        .unwrap_or_default())
}

/// A status that may be absent: `unknown` then, as for a guest on an unreachable node.
fn status_or_unknown<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(text(deserializer)?.unwrap_or_else(unknown))
}

fn unknown() -> String {
    "unknown".to_string()
}

/// Tags are `;`-separated (older releases also used `,` and spaces), compared lower-cased.
fn parse_tags(tags: &str) -> Vec<String> {
    let mut list: Vec<String> = tags
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    list.dedup();
    list
}

/// `ctime` from a `meta` config line (`creation-qemu=9.0.2,ctime=1700000000`).
fn ctime_from_meta(meta: &str) -> Option<DateTime<Utc>> {
    meta.split(',')
        .find_map(|kv| kv.trim().strip_prefix("ctime="))
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
}

/// An entry of `/cluster/resources?type=vm`: a guest, or something else to skip.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type")]
pub enum ClusterGuest {
    #[serde(rename = "qemu")]
    Qemu(GuestEntry),
    #[serde(rename = "lxc")]
    Lxc(GuestEntry),
    #[serde(other)]
    Other,
}

impl ClusterGuest {
    /// The guest, its kind taken from the entry's `type`; `None` for other entries.
    pub fn into_guest(self) -> Option<GuestEntry> {
        match self {
            ClusterGuest::Qemu(guest) => Some(GuestEntry {
                kind: Kind::Vm,
                ..guest
            }),
            ClusterGuest::Lxc(guest) => Some(GuestEntry {
                kind: Kind::Container,
                ..guest
            }),
            ClusterGuest::Other => None,
        }
    }
}

/// One guest of `/cluster/resources?type=vm`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GuestEntry {
    #[serde(deserialize_with = "vmid")]
    pub vmid: u32,
    /// [`Kind::Vm`] or [`Kind::Container`], from the entry's `type` (see [`ClusterGuest::into_guest`]).
    #[serde(skip_deserializing, default = "qemu")]
    pub kind: Kind,
    #[serde(deserialize_with = "required_text")]
    pub node: String,
    #[serde(default, deserialize_with = "text_or_empty")]
    pub name: String,
    #[serde(default = "unknown", deserialize_with = "status_or_unknown")]
    pub status: String,
    #[serde(default, deserialize_with = "flag")]
    pub template: bool,
    #[serde(default, deserialize_with = "text")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "text")]
    pub pool: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub hastate: Option<String>,
}

/// The kind an entry has until [`ClusterGuest::into_guest`] sets it from its `type`.
fn qemu() -> Kind {
    Kind::Vm
}

/// One storage of `/cluster/resources?type=storage`, as seen from one node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StorageEntry {
    #[serde(deserialize_with = "required_text")]
    pub storage: String,
    #[serde(deserialize_with = "required_text")]
    pub node: String,
    /// Comma-separated content types (`images,rootdir,iso`).
    #[serde(default, deserialize_with = "text_or_empty")]
    pub content: String,
    #[serde(default, deserialize_with = "text_or_empty")]
    pub status: String,
    #[serde(default, deserialize_with = "flag")]
    pub shared: bool,
}

/// One volume of `/nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContentItem {
    #[serde(deserialize_with = "required_text")]
    pub volid: String,
    #[serde(default)]
    pub ctime: Option<i64>,
}

/// `/nodes/{node}/{qemu|lxc}/{vmid}/config`: what the janitor checks of a guest's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestConfig {
    /// A VM's name.
    pub name: Option<String>,
    /// A container's name.
    pub hostname: Option<String>,
    /// The `ctime` of the `meta` line (VMs only).
    pub created: Option<DateTime<Utc>>,
    /// The config's tags, when it has a `tags` line.
    pub tags: Option<Vec<String>>,
    pub lock: Option<String>,
    pub template: bool,
    pub protection: bool,
    /// The volume ids its disks, mount points and unused disks use: not CD-ROMs, not bind mounts
    /// (absolute paths), not `none`.
    pub volids: Vec<String>,
}

impl GuestConfig {
    /// The name a guest of `kind` has in this config (`hostname` for containers).
    pub fn name_of(&self, kind: Kind) -> &str {
        let name = if kind == Kind::Container {
            &self.hostname
        } else {
            &self.name
        };
        name.as_deref().unwrap_or_default()
    }
}

/// Whether a config key holds a disk: `scsi0`, `virtio1`, `sata2`, `ide3`, `mp0`, `unused0`,
/// `rootfs`, `efidisk0`, `tpmstate0`.
fn is_disk_key(key: &str) -> bool {
    if matches!(key, "rootfs" | "efidisk0" | "tpmstate0") {
        return true;
    }
    let digits = key.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let prefix = &key[..key.len() - digits.len()];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && matches!(prefix, "scsi" | "virtio" | "sata" | "ide" | "mp" | "unused")
}

/// The volume id of a disk entry (`local-lvm:vm-101-disk-0,size=4G`), if it names a volume.
fn disk_volid(value: &str) -> Option<String> {
    let volid = value.split(',').next()?;
    let is_volume = volid.contains(':') && !volid.starts_with('/') && !value.contains("media=cdrom");
    is_volume.then(|| volid.to_string())
}

impl<'de> Deserialize<'de> for GuestConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConfigVisitor;

        impl<'de> Visitor<'de> for ConfigVisitor {
            type Value = GuestConfig;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a guest config object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GuestConfig, A::Error> {
                let mut config = GuestConfig::default();
                // Disks in key order, whatever order the answer has them in.
                let mut disks = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => config.name = map.next_value::<Scalar>()?.text(),
                        "hostname" => config.hostname = map.next_value::<Scalar>()?.text(),
                        "meta" => {
                            config.created = map
                                .next_value::<Scalar>()?
                                .text()
                                .and_then(|meta| ctime_from_meta(&meta));
                        }
                        "tags" => {
                            if let Scalar::Text(tags) = map.next_value::<Scalar>()? {
                                config.tags = Some(parse_tags(&tags));
                            }
                        }
                        "lock" => config.lock = map.next_value::<Scalar>()?.text(),
                        "template" => config.template = map.next_value::<Scalar>()?.flag(),
                        "protection" => config.protection = map.next_value::<Scalar>()?.flag(),
                        disk if is_disk_key(disk) => {
                            if let Some(volid) =
                                map.next_value::<Scalar>()?.text().and_then(|v| disk_volid(&v))
                            {
                                disks.insert(key, volid);
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                config.volids = disks.into_values().collect();
                Ok(config)
            }
        }

        deserializer.deserialize_map(ConfigVisitor)
    }
}

/// `/nodes/{node}/{qemu|lxc}/{vmid}/status/current`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GuestStatus {
    #[serde(default, deserialize_with = "text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub lock: Option<String>,
}

/// `/nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TaskStatus {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub exitstatus: Option<String>,
}

/// `POST /access/ticket`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TicketData {
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(rename = "CSRFPreventionToken", default)]
    pub csrf: Option<String>,
    /// Present when the user needs a second factor.
    #[serde(rename = "NeedTFA", default)]
    pub need_tfa: Option<IgnoredAny>,
}

/// An error answer's body: `{"data": null, "message": "...", "errors": {"param": "..."}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::decode::{decode, Listed};
    use serde_json::json;

    #[test]
    fn config_lines_are_read_once_while_decoding() {
        let config: GuestConfig = serde_json::from_value(json!({
            "name": "ci-a", "meta": "creation-qemu=9.0.2,ctime=1700000000", "tags": "CI;Job-1",
            "lock": "backup", "template": "0", "protection": 1, "digest": "abc", "net0": "virtio=AA,bridge=vmbr0",
            "scsi0": "local-lvm:vm-101-disk-0,size=4G", "ide2": "local:iso/debian.iso,media=cdrom",
            "mp0": "/srv/data,mp=/data", "unused0": "ceph:vm-101-disk-1", "sata1": "none,media=cdrom",
            "efidisk0": "local-lvm:vm-101-disk-2,efitype=4m", "scsihw": "virtio-scsi-pci"
        }))
        .expect("a config");
        assert_eq!(
            config,
            GuestConfig {
                name: Some("ci-a".into()),
                hostname: None,
                created: DateTime::from_timestamp(1_700_000_000, 0),
                tags: Some(vec!["ci".into(), "job-1".into()]),
                lock: Some("backup".into()),
                template: false,
                protection: true,
                volids: vec![
                    "local-lvm:vm-101-disk-2".into(),
                    "local-lvm:vm-101-disk-0".into(),
                    "ceph:vm-101-disk-1".into()
                ],
            }
        );
        assert_eq!(config.name_of(Kind::Vm), "ci-a");
        assert_eq!(config.name_of(Kind::Container), "");
    }

    #[test]
    fn a_volume_without_its_volid_is_named_by_its_index() {
        let url = reqwest::Url::parse("https://pve:8006/api2/json/nodes/pve1/storage/local/content")
            .expect("a URL");
        let body = br#"{"data": [{"volid": "local:vm-1-disk-0", "ctime": 1}, {"ctime": 2}]}"#;
        let error = decode::<Envelope<Listed<ContentItem>>>(body, &url, "proxmox: storage content")
            .expect_err("no volid");
        assert_eq!(
            error.to_string(),
            "https://pve:8006/api2/json/nodes/pve1/storage/local/content: unexpected response: \
             proxmox: storage content: item 1: missing field `volid`"
        );
    }

    #[test]
    fn flags_and_ids_in_every_form_proxmox_writes_them() {
        let entries: Vec<ClusterGuest> = serde_json::from_value(json!([
            {"type": "lxc", "vmid": "201", "node": "pve1", "template": true, "status": ""},
            {"type": "qemu", "vmid": 101, "node": "pve1", "template": "1", "pool": "", "hastate": "started"},
            {"type": "node", "node": "pve1"}
        ]))
        .expect("entries");
        let guests: Vec<GuestEntry> = entries.into_iter().filter_map(ClusterGuest::into_guest).collect();
        assert_eq!(
            guests
                .iter()
                .map(|g| (
                    g.vmid,
                    g.kind,
                    g.template,
                    g.status.as_str(),
                    g.pool.as_deref(),
                    g.hastate.as_deref()
                ))
                .collect::<Vec<_>>(),
            vec![
                (201, Kind::Container, true, "unknown", None, None),
                (101, Kind::Vm, true, "unknown", None, Some("started")),
            ]
        );
        let error = serde_json::from_value::<ClusterGuest>(json!({"type": "qemu", "vmid": 102}))
            .expect_err("a guest without a node");
        assert_eq!(error.to_string(), "missing field `node`");
    }
}
