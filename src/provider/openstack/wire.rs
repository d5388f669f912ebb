//! The Nova, Neutron, Cinder and Octavia JSON the janitor reads, as serde types holding only the fields a
//! decision needs; unknown fields are skipped while decoding. OpenStack's odd shapes are absorbed
//! here: timestamps with or without a zone, `project_id` or `tenant_id`, empty strings and `null`
//! meaning absent, keypairs wrapped as `{"keypair": {...}}`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Unexpected, Visitor};
use serde::Deserialize;

use crate::provider::decode::Listed;

/// A required id or name: a non-empty string.
fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Err(de::Error::invalid_value(
            Unexpected::Str(""),
            &"a non-empty string",
        ));
    }
    Ok(text)
}

/// An optional string where `null` and `""` mean absent, as in an unbound port's `device_id`.
fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|text| !text.is_empty()))
}

/// `null` as the default value: an empty list or string, `false`.
fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The length of a list whose items do not matter (a router's extra routes).
fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    Ok(Option::<Vec<IgnoredAny>>::deserialize(deserializer)?.map_or(0, |items| items.len()))
}

/// OpenStack timestamps come with or without a zone (`2026-11-22T01:02:03Z`, `...03.000000`). One
/// that cannot be read counts as absent: the age is then counted from the first sighting.
fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Ok(parsed) = DateTime::parse_from_rfc3339(&raw) {
        return Ok(Some(parsed.with_timezone(&Utc)));
    }
    Ok(["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&raw, format).ok())
        .map(|naive| naive.and_utc()))
}

/// The fields every listed Nova, Neutron and Cinder item shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Common<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub tags: &'a [String],
    pub created: Option<DateTime<Utc>>,
    pub status: &'a str,
    /// The owning project: `project_id`, else `tenant_id`.
    pub owner: Option<&'a str>,
}

/// A listed item: its shared fields.
pub trait Item {
    fn common(&self) -> Common<'_>;
}

/// Declares a listed item type with the fields every item shares (`id`, `name`, `tags`, `created_at`
/// or Nova's `created`, `status`, `project_id` or `tenant_id`) followed by the kind's own.
macro_rules! listed_item {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident: $type:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        pub struct $name {
            #[serde(deserialize_with = "required")]
            pub id: String,
            #[serde(default, deserialize_with = "or_default")]
            pub name: String,
            #[serde(default, deserialize_with = "or_default")]
            pub tags: Vec<String>,
            #[serde(default, deserialize_with = "timestamp")]
            pub created_at: Option<DateTime<Utc>>,
            #[serde(default, deserialize_with = "timestamp")]
            pub created: Option<DateTime<Utc>>,
            #[serde(default, deserialize_with = "or_default")]
            pub status: String,
            #[serde(default, deserialize_with = "non_empty")]
            pub project_id: Option<String>,
            #[serde(default, deserialize_with = "non_empty")]
            pub tenant_id: Option<String>,
            $($(#[$field_meta])* pub $field: $type,)*
        }

        impl Item for $name {
            fn common(&self) -> Common<'_> {
                Common {
                    id: &self.id,
                    name: &self.name,
                    tags: &self.tags,
                    created: self.created_at.or(self.created),
                    status: &self.status,
                    owner: self.project_id.as_deref().or(self.tenant_id.as_deref()),
                }
            }
        }
    };
}

listed_item! {
    /// A Neutron network.
    Network {
        #[serde(rename = "router:external", default, deserialize_with = "or_default")]
        external: bool,
        #[serde(default, deserialize_with = "or_default")]
        shared: bool,
    }
}

listed_item! {
    /// A Neutron subnet.
    Subnet {
        #[serde(default, deserialize_with = "non_empty")]
        network_id: Option<String>,
    }
}

listed_item! {
    /// A Neutron router.
    Router {
        #[serde(default)]
        external_gateway_info: Option<GatewayInfo>,
        #[serde(default, deserialize_with = "count")]
        routes: usize,
    }
}

/// A router's `external_gateway_info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GatewayInfo {
    #[serde(default, deserialize_with = "non_empty")]
    pub network_id: Option<String>,
}

listed_item! {
    /// A Neutron port.
    Port {
        #[serde(default, deserialize_with = "non_empty")]
        device_owner: Option<String>,
        #[serde(default, deserialize_with = "non_empty")]
        device_id: Option<String>,
        #[serde(default, deserialize_with = "non_empty")]
        network_id: Option<String>,
        #[serde(default, deserialize_with = "or_default")]
        fixed_ips: Vec<FixedIp>,
        #[serde(default, deserialize_with = "or_default")]
        security_groups: Vec<String>,
    }
}

/// One of a port's `fixed_ips`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FixedIp {
    #[serde(default, deserialize_with = "non_empty")]
    pub subnet_id: Option<String>,
}

listed_item! {
    /// A Neutron floating IP.
    FloatingIp {
        #[serde(default, deserialize_with = "non_empty")]
        floating_ip_address: Option<String>,
        #[serde(default, deserialize_with = "non_empty")]
        port_id: Option<String>,
        #[serde(default, deserialize_with = "non_empty")]
        router_id: Option<String>,
    }
}

listed_item! {
    /// A Neutron security group.
    SecurityGroup {}
}

listed_item! {
    /// A Nova server, as `/servers/detail` lists it.
    Server {
        #[serde(default, deserialize_with = "non_empty")]
        key_name: Option<String>,
        #[serde(
            rename = "os-extended-volumes:volumes_attached",
            default,
            deserialize_with = "or_default"
        )]
        volumes_attached: Vec<AttachedVolume>,
        #[serde(default, deserialize_with = "or_default")]
        locked: bool,
    }
}

/// One of a server's `os-extended-volumes:volumes_attached`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AttachedVolume {
    #[serde(default, deserialize_with = "non_empty")]
    pub id: Option<String>,
}

listed_item! {
    /// A Nova server group.
    ServerGroup {
        #[serde(default, deserialize_with = "or_default")]
        members: Vec<String>,
    }
}

listed_item! {
    /// A Cinder volume.
    Volume {
        #[serde(default, deserialize_with = "or_default")]
        metadata: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "or_default")]
        attachments: Vec<VolumeAttachment>,
    }
}

/// One of a volume's `attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VolumeAttachment {
    #[serde(default, deserialize_with = "non_empty")]
    pub server_id: Option<String>,
}

listed_item! {
    /// A Cinder snapshot.
    Snapshot {
        #[serde(default, deserialize_with = "or_default")]
        metadata: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "non_empty")]
        volume_id: Option<String>,
    }
}

listed_item! {
    /// An Octavia load balancer: its `provisioning_status` is its status.
    LoadBalancer {
        #[serde(default, deserialize_with = "or_default")]
        provisioning_status: String,
        #[serde(default, deserialize_with = "non_empty")]
        vip_subnet_id: Option<String>,
        #[serde(default, deserialize_with = "non_empty")]
        vip_network_id: Option<String>,
    }
}

/// An entry of `/os-keypairs`: `{"keypair": {...}}`. Keypairs are named, not id'd, and carry no tags.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeypairEntry {
    pub keypair: Keypair,
}

/// A Nova keypair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Keypair {
    #[serde(deserialize_with = "required")]
    pub name: String,
    #[serde(default, deserialize_with = "timestamp")]
    pub created_at: Option<DateTime<Utc>>,
}

/// `GET /servers/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerBody {
    pub server: ServerState,
}

/// What a server's status read decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ServerState {
    #[serde(default, deserialize_with = "or_default")]
    pub status: String,
    #[serde(rename = "OS-EXT-STS:task_state", default, deserialize_with = "non_empty")]
    pub task_state: Option<String>,
    #[serde(default, deserialize_with = "or_default")]
    pub locked: bool,
}

/// `GET /volumes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VolumeBody {
    pub volume: CinderState,
}

/// `GET /snapshots/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapshotBody {
    pub snapshot: CinderState,
}

/// What a volume's or snapshot's status read decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CinderState {
    #[serde(default, deserialize_with = "or_default")]
    pub status: String,
}

/// `GET /lbaas/loadbalancers/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoadBalancerBody {
    pub loadbalancer: LoadBalancerState,
}

/// What a load balancer's status read decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LoadBalancerState {
    #[serde(default, deserialize_with = "or_default")]
    pub provisioning_status: String,
}

/// `GET /ports/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortBody {
    pub port: PortBinding,
}

/// What a port's status read decides on: whether a server still holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PortBinding {
    #[serde(default, deserialize_with = "non_empty")]
    pub device_id: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    pub device_owner: Option<String>,
}

/// A listed item's id with what its status read decides on, for batched status reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Stated<S> {
    #[serde(deserialize_with = "required")]
    pub id: String,
    #[serde(flatten)]
    pub state: S,
}

/// One page of a collection: `{"<collection>": [...], "<collection>_links": [{"rel": "next",
/// "href": ...}]}`, the shape Nova, Neutron and Cinder share.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `next` link, if any.
    pub next: Option<String>,
}

/// Decodes a [`Page`] of the collection named at run time: the items straight into `T`, every other
/// member skipped.
pub struct PageOf<'a, T> {
    collection: &'a str,
    items: PhantomData<T>,
}

impl<'a, T> PageOf<'a, T> {
    pub fn new(collection: &'a str) -> Self {
        PageOf {
            collection,
            items: PhantomData,
        }
    }
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    rel: Option<String>,
    #[serde(default)]
    href: Option<String>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for PageOf<'_, T> {
    type Value = Page<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Page<T>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for PageOf<'_, T> {
    type Value = Page<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "an object with a `{}` list", self.collection)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page<T>, A::Error> {
        let links_key = format!("{}_links", self.collection);
        let mut items = None;
        let mut next = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.collection {
                items = Some(map.next_value::<Listed<T>>()?.0);
            } else if key == links_key {
                let links: Option<Vec<Link>> = map.next_value()?;
                next = links
                    .unwrap_or_default()
                    .into_iter()
                    .find(|link| link.rel.as_deref() == Some("next"))
                    .and_then(|link| link.href);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let items =
            items.ok_or_else(|| de::Error::custom(format_args!("missing field `{}`", self.collection)))?;
        Ok(Page { items, next })
    }
}

/// The shapes of an OpenStack error body's members: `{"NeutronError": {"type", "message"}}`,
/// `{"itemNotFound": {"message"}}`, `{"error": {"message"}}`, `{"message": "..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ErrorMember {
    Detail {
        message: String,
        #[serde(rename = "type", default)]
        kind: Option<String>,
    },
    Text(String),
    Other(IgnoredAny),
}

/// An error body: its members by name, in name order.
pub type ErrorBody = BTreeMap<String, ErrorMember>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::decode::decode_seed;

    fn page<T: for<'de> Deserialize<'de>>(collection: &str, body: &str) -> Result<Page<T>, String> {
        let url = reqwest::Url::parse("http://127.0.0.1:9696/v2.0/ports").map_err(|e| e.to_string())?;
        let what = format!("network: {collection}");
        decode_seed(body.as_bytes(), &url, &what, PageOf::new(collection)).map_err(|e| e.to_string())
    }

    #[test]
    fn timestamps_with_and_without_a_zone_and_unreadable_ones() {
        let ports: Page<Port> = page(
            "ports",
            r#"{"ports": [
                {"id": "a", "created_at": "2026-11-22T01:02:03Z"},
                {"id": "b", "created_at": "2026-11-22T01:02:03.000000"},
                {"id": "c", "created_at": "2026-11-22T01:02:03"},
                {"id": "d", "created_at": "yesterday"},
                {"id": "e", "created_at": null}
            ]}"#,
        )
        .expect("a page");
        let created: Vec<Option<DateTime<Utc>>> = ports.items.iter().map(|p| p.common().created).collect();
        let at = DateTime::parse_from_rfc3339("2026-11-22T01:02:03Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(created, vec![at, at, at, None, None]);
    }

    #[test]
    fn empty_strings_and_nulls_are_absent_and_tenant_id_stands_in_for_project_id() {
        let ports: Page<Port> = page(
            "ports",
            r#"{"ports": [{"id": "p", "device_id": "", "device_owner": null, "network_id": "n",
                "tenant_id": "t", "project_id": "", "fixed_ips": null, "tags": null, "name": null}],
                "ports_links": [{"rel": "next", "href": "http://n/v2.0/ports?marker=p"}]}"#,
        )
        .expect("a page");
        let port = &ports.items[0];
        assert_eq!(
            (port.device_id.as_deref(), port.device_owner.as_deref()),
            (None, None)
        );
        assert_eq!(port.network_id.as_deref(), Some("n"));
        assert_eq!(port.common().owner, Some("t"));
        assert_eq!((port.common().name, port.fixed_ips.len()), ("", 0));
        assert_eq!(ports.next.as_deref(), Some("http://n/v2.0/ports?marker=p"));
    }

    #[test]
    fn a_page_without_its_collection_or_an_item_without_an_id_is_refused() {
        assert_eq!(
            page::<Port>("ports", r#"{"networks": []}"#).expect_err("no ports"),
            "http://127.0.0.1:9696/v2.0/ports: unexpected response: network: ports: missing field `ports`"
        );
        assert_eq!(
            page::<Port>("ports", r#"{"ports": [{"id": "a"}, {"id": ""}]}"#).expect_err("empty id"),
            "http://127.0.0.1:9696/v2.0/ports: unexpected response: network: ports: item 1: \
             invalid value: string \"\", expected a non-empty string"
        );
        let keypairs: Page<KeypairEntry> = page(
            "keypairs",
            r#"{"keypairs": [{"keypair": {"name": "ci-key", "created_at": "2026-11-22T01:02:03.000000"}}]}"#,
        )
        .expect("wrapped keypairs");
        assert_eq!(keypairs.items[0].keypair.name, "ci-key");
    }

    #[test]
    fn error_members_of_every_shape() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"NeutronError": {"type": "SecurityGroupInUse", "message": "in use", "detail": ""}, "code": 409}"#,
        )
        .expect("an error body");
        assert_eq!(
            body.get("NeutronError"),
            Some(&ErrorMember::Detail {
                message: "in use".into(),
                kind: Some("SecurityGroupInUse".into())
            })
        );
        assert_eq!(body.get("code"), Some(&ErrorMember::Other(IgnoredAny)));
    }
}
