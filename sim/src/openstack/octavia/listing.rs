//! Octavia's lists: the caller's project's objects (every project's for an admin), filtered on any
//! attribute and on tags, sorted by `created_at` then `id`, cut into pages after a `marker`, with
//! `fields=` projection and `*_links`.

use serde_json::{json, Map, Value};

use super::{bad_request, Object};
use crate::openstack::errors::{ApiError, Service};
use crate::openstack::listing::{self, Params};
use crate::openstack::state::{Ctx, LoadBalancing};

/// The largest page (Octavia's `pagination_max_limit` default).
const MAX_LIMIT: usize = 1000;

/// Parameters that shape the answer rather than filter it.
fn is_control(key: &str) -> bool {
    matches!(
        key,
        "fields" | "limit" | "marker" | "page_reverse" | "sort" | "sort_key" | "sort_dir"
    ) || listing::is_tag_filter(key)
}

/// Whether a rendered attribute equals a filter value.
fn matches(field: &Value, wanted: &str) -> bool {
    match field {
        Value::String(s) => s == wanted,
        Value::Bool(b) => wanted.eq_ignore_ascii_case(&b.to_string()),
        Value::Number(n) => n.to_string() == wanted,
        _ => false,
    }
}

/// `GET .../{plural}`: one page of the caller's `O`s (of pool `parent`, for members) that pass the
/// filters. `url` is the list's full URL, for its links.
pub(super) fn list<O: Object>(
    octavia: &LoadBalancing,
    ctx: &Ctx,
    parent: Option<&str>,
    params: &Params,
    url: &str,
) -> Result<Value, ApiError> {
    let mut objects: Vec<&O> = O::table(octavia)
        .values()
        .filter(|o| ctx.owns(&o.common().project_id) && parent.is_none_or(|p| o.parent() == Some(p)))
        .collect();
    objects.sort_by(|a, b| (a.common().created, &a.common().id).cmp(&(b.common().created, &b.common().id)));
    let items: Vec<Value> = objects
        .into_iter()
        .map(|o| o.render(octavia))
        .filter(|item| {
            let tags: Vec<String> = serde_json::from_value(item["tags"].clone()).unwrap_or_default();
            listing::tags_match(&tags, params)
                && params
                    .iter()
                    .filter(|(key, _)| !is_control(key))
                    .all(|(key, wanted)| matches(&item[key.as_str()], wanted))
        })
        .collect();
    let limit = listing::limit(params, Service::Octavia)?
        .unwrap_or(MAX_LIMIT)
        .min(MAX_LIMIT);
    let marker = listing::param(params, "marker");
    let page = listing::paginate(
        items,
        |item| item["id"].as_str().unwrap_or_default(),
        Some(limit),
        marker,
    )
    .ok_or_else(|| {
        bad_request(format!(
            "Supplied pagination marker '{}' is not valid.",
            marker.unwrap_or_default()
        ))
    })?;
    let mut links = Vec::new();
    if let (Some(first), Some(last)) = (page.items.first(), page.items.last()) {
        let id = |item: &Value| item["id"].as_str().unwrap_or_default().to_string();
        if marker.is_some() {
            links.push(json!({"rel": "previous",
                "href": format!("{url}?limit={limit}&marker={}&page_reverse=True", id(first))}));
        }
        if page.items.len() >= limit {
            links.push(json!({"rel": "next", "href": format!("{url}?limit={limit}&marker={}", id(last))}));
        }
    }
    let mut body = Map::new();
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|item| listing::project_fields(item, params))
        .collect();
    body.insert(O::PLURAL.to_string(), Value::Array(items));
    body.insert(format!("{}_links", O::PLURAL), Value::Array(links));
    Ok(Value::Object(body))
}
