//! List calls shared by the services: query parameters, tag filters, `fields=` projection, and
//! `limit`/`marker` pages with their `*_links` next links.

use std::fmt::Write;

use serde_json::{json, Value};

use super::errors::{ApiError, Service};

/// The query string as `(key, value)` pairs, repeated keys kept in order.
pub(crate) type Params = Vec<(String, String)>;

/// The first value of `key`.
pub(crate) fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Every value of `key`, repeated keys and comma lists flattened.
fn comma_values<'a>(params: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    params
        .iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| v.split(','))
        .filter(|v| !v.is_empty())
        .collect()
}

/// Whether `tags` pass the `tags` (all of), `tags-any` (one of), `not-tags` (not all of) and
/// `not-tags-any` (none of) filters, as Nova and Neutron define them.
pub(crate) fn tags_match(tags: &[String], params: &[(String, String)]) -> bool {
    let has = |tag: &&str| tags.iter().any(|t| t == tag);
    let all = comma_values(params, "tags");
    let any = comma_values(params, "tags-any");
    let not_all = comma_values(params, "not-tags");
    let not_any = comma_values(params, "not-tags-any");
    all.iter().all(has)
        && (any.is_empty() || any.iter().any(has))
        && (not_all.is_empty() || !not_all.iter().all(has))
        && !not_any.iter().any(has)
}

/// Whether the query uses any tag filter.
pub(crate) fn is_tag_filter(key: &str) -> bool {
    matches!(key, "tags" | "tags-any" | "not-tags" | "not-tags-any")
}

/// `limit` as a number; a 400 in the service's shape when it is not one.
pub(crate) fn limit(params: &[(String, String)], service: Service) -> Result<Option<usize>, ApiError> {
    match param(params, "limit") {
        None => Ok(None),
        Some(text) => text
            .parse::<usize>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(service, format!("limit param must be an integer: {text}"))),
    }
}

/// The two forms of a Nova or Cinder list: ids and names only, or every attribute (`.../detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Brief,
    Detail,
}

impl View {
    /// What the list's URL ends with after the collection.
    pub fn suffix(self) -> &'static str {
        match self {
            View::Brief => "",
            View::Detail => "/detail",
        }
    }
}

/// One page of an already filtered and sorted list.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    /// Whether items follow this page.
    pub more: bool,
}

/// Cuts the page after `marker` (an id in `items`) holding at most `limit` items; `None` when the
/// marker is not in the list.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    id_of: impl Fn(&T) -> &str,
    limit: Option<usize>,
    marker: Option<&str>,
) -> Option<Page<T>> {
    let start = match marker {
        None => 0,
        Some(marker) => items.iter().position(|item| id_of(item) == marker)? + 1,
    };
    let rest: Vec<T> = items.into_iter().skip(start).collect();
    let limit = limit.unwrap_or(usize::MAX);
    let more = rest.len() > limit;
    Some(Page {
        items: rest.into_iter().take(limit).collect(),
        more,
    })
}

/// `[{"rel": "next", "href": ...}]`, the `*_links` of a page that others may follow.
pub(crate) fn next_links(
    url: &str,
    path: &str,
    params: &[(String, String)],
    limit: usize,
    marker: &str,
) -> Value {
    json!([{"rel": "next", "href": next_link(url, path, params, limit, marker)}])
}

/// One page of `items` (already filtered and sorted, each with its id), as Nova and Cinder answer it:
/// `{key: [...]}`, plus `{key}_links` when the page is full (even if nothing follows). `max_limit`
/// is the default and the largest `limit` (`None`: no default, no cap); `marker_missing` is the
/// service's error for a marker not in the list.
pub(crate) fn page_body(
    page: PageOf<'_>,
    items: Vec<(String, Value)>,
    params: &[(String, String)],
    marker_missing: impl FnOnce(&str) -> ApiError,
) -> Result<Value, ApiError> {
    let asked = limit(params, page.service)?;
    let limit = match page.max_limit {
        Some(max) => Some(asked.unwrap_or(max).min(max)),
        None => asked,
    };
    let marker = param(params, "marker");
    let cut = paginate(items, |(id, _)| id.as_str(), limit, marker)
        .ok_or_else(|| marker_missing(marker.unwrap_or("")))?;
    let last = cut.items.last().map(|(id, _)| id.clone());
    let full = limit.is_some_and(|l| cut.items.len() == l);
    let mut body = json!({ page.key: cut.items.into_iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if let (Some(limit), true, Some(last)) = (limit, full, last) {
        body[format!("{}_links", page.key)] = next_links(page.url, page.path, params, limit, &last);
    }
    Ok(body)
}

/// Where a page of [`page_body`] comes from and how its service pages.
pub(crate) struct PageOf<'a> {
    /// The simulator's URL and the list's path, for the next link.
    pub url: &'a str,
    pub path: &'a str,
    /// The body key of the list (`servers`).
    pub key: &'a str,
    /// Whose 400 a bad `limit` gets.
    pub service: Service,
    pub max_limit: Option<usize>,
}

/// A next link: `path` with the query's other parameters, `limit` and `marker` set.
pub(crate) fn next_link(
    url: &str,
    path: &str,
    params: &[(String, String)],
    limit: usize,
    marker: &str,
) -> String {
    let mut href = format!("{url}{path}?limit={limit}&marker={}", encode(marker));
    for (key, value) in params.iter().filter(|(k, _)| k != "limit" && k != "marker") {
        let _ = write!(href, "&{}={}", encode(key), encode(value));
    }
    href
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Keeps only the `fields=` attributes (repeated or comma-separated), when any are asked for.
pub(crate) fn project_fields(item: Value, params: &[(String, String)]) -> Value {
    let fields: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "fields")
        .flat_map(|(_, v)| v.split(','))
        .filter(|f| !f.is_empty())
        .collect();
    match item {
        Value::Object(map) if !fields.is_empty() => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tag_filters_follow_the_api_reference() {
        let tags = vec!["ci-job".to_string(), "job-1".to_string()];
        assert!(tags_match(&tags, &params(&[("tags", "ci-job,job-1")])));
        assert!(!tags_match(&tags, &params(&[("tags", "ci-job,job-2")])));
        assert!(tags_match(&tags, &params(&[("tags-any", "job-2,job-1")])));
        assert!(!tags_match(&tags, &params(&[("not-tags", "ci-job,job-1")])));
        assert!(tags_match(&tags, &params(&[("not-tags", "ci-job,job-2")])));
        assert!(!tags_match(&tags, &params(&[("not-tags-any", "job-2,job-1")])));
        assert!(tags_match(&[], &params(&[("not-tags", "ci-job")])));
    }

    #[test]
    fn pages_follow_the_marker() {
        let items = vec!["a", "b", "c", "d", "e"];
        let page = paginate(items.clone(), |s| s, Some(2), Some("b")).map(|p| (p.items, p.more));
        assert_eq!(page, Some((vec!["c", "d"], true)));
        let last = paginate(items.clone(), |s| s, Some(2), Some("d")).map(|p| (p.items, p.more));
        assert_eq!(last, Some((vec!["e"], false)));
        assert!(paginate(items, |s| s, Some(2), Some("zz")).is_none());
        let href = next_link(
            "http://h",
            "/v2.0/ports",
            &params(&[("tags", "a,b"), ("limit", "2")]),
            2,
            "x",
        );
        assert_eq!(href, "http://h/v2.0/ports?limit=2&marker=x&tags=a%2Cb");
    }
}
