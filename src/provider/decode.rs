//! Decoding vendor JSON straight from response bytes into typed values, with errors that say what
//! was read and where it went wrong: `network: ports: item 3: missing field `id``.

use std::fmt;
use std::marker::PhantomData;

use reqwest::Url;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::ProviderError;

/// Decodes `body`, read from `url`, as a `T`. `what` names the service and the kind read
/// (`network: ports`, `proxmox: guest config`) for the [`ProviderError::Decode`] message.
pub fn decode<T: DeserializeOwned>(body: &[u8], url: &Url, what: &str) -> Result<T, ProviderError> {
    decode_seed(body, url, what, PhantomData::<T>)
}

/// [`decode`] for a shape known only at run time, such as a page keyed by its collection's name.
pub fn decode_seed<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    url: &Url,
    what: &str,
    seed: S,
) -> Result<S::Value, ProviderError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    seed.deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| ProviderError::Decode {
            url: url.to_string(),
            message: format!("{what}: {}", without_position(&error.to_string())),
        })
}

/// serde_json ends a message with ` at line L column C` at every level it passes, so an error in a
/// list item would carry two; the item index says where instead.
fn without_position(message: &str) -> &str {
    let Some((text, position)) = message.rsplit_once(" at line ") else {
        return message;
    };
    let is_position = position.split_once(" column ").is_some_and(|(line, column)| {
        [line, column]
            .iter()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    });
    if is_position {
        text
    } else {
        message
    }
}

/// A JSON list whose items are decoded one at a time, so that an error names the item's index
/// (`item 3: missing field `id``).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Listed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
            type Value = Listed<T>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a list")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listed<T>, A::Error> {
                let mut items = Vec::new();
                loop {
                    match seq.next_element() {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => return Ok(Listed(items)),
                        Err(error) => {
                            let message = error.to_string();
                            return Err(de::Error::custom(format_args!(
                                "item {}: {}",
                                items.len(),
                                without_position(&message)
                            )));
                        }
                    }
                }
            }
        }

        deserializer.deserialize_seq(Items(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Port {
        id: String,
    }

    #[derive(Debug, Deserialize)]
    struct Ports {
        ports: Listed<Port>,
    }

    fn url() -> Url {
        Url::parse("http://127.0.0.1:9696/v2.0/ports").expect("a URL")
    }

    #[test]
    fn an_item_without_a_required_field_is_named_by_its_index_and_the_field() {
        let whole = decode::<Ports>(br#"{"ports": [{"id": "a"}]}"#, &url(), "network: ports");
        assert_eq!(
            whole.expect("one port").ports,
            Listed(vec![Port { id: "a".into() }])
        );
        let body = br#"{"ports": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"name": "no id"}]}"#;
        let error = decode::<Ports>(body, &url(), "network: ports").expect_err("item 3 has no id");
        assert_eq!(
            error.to_string(),
            "http://127.0.0.1:9696/v2.0/ports: unexpected response: network: ports: item 3: missing field `id`"
        );
    }

    #[test]
    fn a_wrong_type_and_trailing_garbage_are_decode_errors() {
        let error =
            decode::<Listed<Port>>(br#"[{"id": 7}]"#, &url(), "network: ports").expect_err("a number");
        assert_eq!(
            error.to_string(),
            "http://127.0.0.1:9696/v2.0/ports: unexpected response: network: ports: item 0: \
             invalid type: integer `7`, expected a string"
        );
        assert!(decode::<Listed<Port>>(b"[] x", &url(), "network: ports").is_err());
        assert_eq!(
            decode::<Listed<Port>>(
                br#"[{"id": "a", "extra": [1, {"x": 2}]}]"#,
                &url(),
                "network: ports"
            )
            .expect("unknown fields are ignored"),
            Listed(vec![Port { id: "a".into() }])
        );
    }

    #[test]
    fn only_a_real_position_is_cut_off() {
        assert_eq!(
            without_position("missing field `id` at line 1 column 9"),
            "missing field `id`"
        );
        assert_eq!(without_position("stopped at line 4"), "stopped at line 4");
        assert_eq!(without_position("no position"), "no position");
    }
}
