//! Neutron's lists: which query parameters filter (and the 400 for one that cannot), how a rendered
//! attribute compares with a filter value, `fields=`, and `limit`/`marker` pages with their next links.

use serde_json::{json, Map, Value};

use super::{hide_admin_only, Resource, API};
use crate::openstack::errors::{ApiError, Service};
use crate::openstack::listing::{self, Params};
use crate::openstack::state::{Cloud, Ctx};

/// Attributes every collection filters on, besides its own [`Resource::FILTERS`].
const COMMON_FILTERS: &str = "id project_id tenant_id description revision_number";

/// Whether `key` is one of the space-separated `names`.
fn among(names: &str, key: &str) -> bool {
    names.split_whitespace().any(|name| name == key)
}

/// Whether a rendered attribute equals a filter value as Neutron compares them.
fn value_matches(field: &Value, wanted: &str) -> bool {
    match field {
        Value::String(s) => s == wanted,
        Value::Bool(b) => match wanted.to_ascii_lowercase().as_str() {
            "true" | "1" => *b,
            "false" | "0" => !*b,
            _ => false,
        },
        Value::Number(n) => n.to_string() == wanted,
        Value::Null => wanted.is_empty() || wanted == "None",
        Value::Array(items) => items.iter().any(|i| value_matches(i, wanted)),
        Value::Object(_) => false,
    }
}

/// `fixed_ips=subnet_id=X` / `fixed_ips=ip_address=Y`.
fn fixed_ips_match(field: &Value, wanted: &str) -> bool {
    let Some((key, value)) = wanted.split_once('=') else {
        return false;
    };
    field.as_array().is_some_and(|ips| {
        ips.iter()
            .any(|ip| ip.get(key).and_then(Value::as_str) == Some(value))
    })
}

/// Parameters that shape the answer rather than filter it.
fn is_control_param(key: &str) -> bool {
    matches!(
        key,
        "fields" | "limit" | "marker" | "page_reverse" | "sort_key" | "sort_dir"
    ) || listing::is_tag_filter(key)
}

fn item_matches(item: &Value, params: &[(String, String)]) -> bool {
    let tags: Vec<String> = item
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if !listing::tags_match(&tags, params) {
        return false;
    }
    let mut keys: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !is_control_param(k))
        .collect();
    keys.dedup();
    keys.iter().all(|key| {
        let field = item.get(*key).unwrap_or(&Value::Null);
        params.iter().filter(|(k, _)| k == key).any(|(_, wanted)| {
            if *key == "fixed_ips" {
                fixed_ips_match(field, wanted)
            } else {
                value_matches(field, wanted)
            }
        })
    })
}

/// `GET /v2.0/{collection}`: the caller's `R`s that pass the filters, sorted by id, one page of them.
pub(super) fn list<R: Resource>(
    cloud: &mut Cloud,
    url: &str,
    ctx: &Ctx,
    params: &Params,
) -> Result<Value, ApiError> {
    if let Some((key, _)) = params
        .iter()
        .find(|(k, _)| !is_control_param(k) && !among(COMMON_FILTERS, k) && !among(R::FILTERS, k))
    {
        return Err(ApiError::bad_request(
            Service::Neutron,
            format!("[{key}] is invalid attribute for filtering"),
        ));
    }
    R::before_list(cloud, ctx);
    let items: Vec<Value> = R::table(cloud)
        .values()
        .filter(|r| r.visible(cloud, ctx))
        .map(|r| r.render(cloud))
        .filter(|item| item_matches(item, params))
        .map(|item| hide_admin_only::<R>(ctx, item))
        .collect();
    let limit = listing::limit(params, Service::Neutron)?;
    let marker = listing::param(params, "marker");
    let page = listing::paginate(
        items,
        |v| v.get("id").and_then(Value::as_str).unwrap_or(""),
        limit,
        marker,
    )
    .ok_or_else(|| R::not_found(marker.unwrap_or("")))?;
    let plural = format!("{}s", R::SINGULAR);
    let mut body = Map::new();
    if let (Some(limit), true, Some(last)) = (limit, page.more, page.items.last()) {
        let last_id = last.get("id").and_then(Value::as_str).unwrap_or("");
        let path = format!("{API}/{}", plural.replace('_', "-"));
        let href = listing::next_link(url, &path, params, limit, last_id);
        body.insert(format!("{plural}_links"), json!([{"rel": "next", "href": href}]));
    }
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|item| listing::project_fields(item, params))
        .collect();
    body.insert(plural, Value::Array(items));
    Ok(Value::Object(body))
}
