//! Batched status reads. Neutron filters a collection by several ids in one request
//! (`GET /v2.0/ports?id=A&id=B&fields=...`); Nova and Cinder let a project member filter by no id
//! (Nova ignores `uuid` for members, Cinder's default filters have no `id`), so their batches read
//! the project's list, page by page, until every asked-for id is seen or the list ends.
//!
//! A resource present in the answer gets the state its single read would give; one absent from a
//! complete answer is gone (as a 404 would say); one the answer cannot speak for (a Neutron answer
//! that paginated) is read alone. Nothing becomes "ready" on a guess.

use std::collections::{HashMap, HashSet};

use reqwest::Url;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

use super::session::Service;
use super::states::{cinder_state, port_state, server_state};
use super::wire::{KeypairEntry, Page, PageOf, PortBinding, Stated};
use super::{OpenStackDetails, OpenStackProvider};
use crate::model::{Kind, Observed, Removal, Resource};
use crate::provider::decode::decode_seed;
use crate::provider::http::ApiPath;
use crate::provider::{BatchKey, ProviderError};

/// Where one kind's batched status read comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A Neutron collection filtered by `id`: its URL segment and body key.
    Neutron(&'static str, &'static str),
    /// A Nova or Cinder list: its service, URL path, body key, and how an item reads.
    Listing(Service, &'static [&'static str], &'static str, Reading),
}

/// How a listed item maps to a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Server,
    Cinder,
    /// Keypairs: `{"keypair": {"name": ...}}`, present means deletable.
    Keypair,
    /// Present means deletable.
    Present,
}

fn source_of(kind: Kind) -> Option<Source> {
    Some(match kind {
        Kind::Port | Kind::RouterInterface => Source::Neutron("ports", "ports"),
        Kind::Router => Source::Neutron("routers", "routers"),
        Kind::Subnet => Source::Neutron("subnets", "subnets"),
        Kind::Network => Source::Neutron("networks", "networks"),
        Kind::SecurityGroup => Source::Neutron("security-groups", "security_groups"),
        Kind::FloatingIp => Source::Neutron("floatingips", "floatingips"),
        Kind::Server => Source::Listing(
            Service::Compute,
            &["servers", "detail"],
            "servers",
            Reading::Server,
        ),
        Kind::Volume => Source::Listing(
            Service::BlockStorage,
            &["volumes", "detail"],
            "volumes",
            Reading::Cinder,
        ),
        Kind::VolumeSnapshot => Source::Listing(
            Service::BlockStorage,
            &["snapshots", "detail"],
            "snapshots",
            Reading::Cinder,
        ),
        Kind::Keypair => Source::Listing(Service::Compute, &["os-keypairs"], "keypairs", Reading::Keypair),
        Kind::ServerGroup => Source::Listing(
            Service::Compute,
            &["os-server-groups"],
            "server_groups",
            Reading::Present,
        ),
        // Load balancers are few per job and read one by one (Octavia lists are not filtered by id
        // here); guests and disks are not OpenStack's.
        Kind::LoadBalancer | Kind::Vm | Kind::Container | Kind::Disk => return None,
    })
}

/// The batch key of `kind`'s status reads: its collection.
pub(super) fn batch_key(kind: Kind) -> Option<BatchKey> {
    source_of(kind).map(|source| match source {
        Source::Neutron(segment, _) => BatchKey::Borrowed(segment),
        Source::Listing(_, _, key, _) => BatchKey::Borrowed(key),
    })
}

/// What a Neutron item's status decides on: present, and for a port whether a server holds it.
#[derive(Debug, Clone, Deserialize)]
struct NeutronItem {
    #[serde(flatten)]
    binding: PortBinding,
}

/// The states read for a batch, by id, and whether the answer lists everything it could.
struct Answer {
    states: HashMap<String, Observed>,
    complete: bool,
}

impl OpenStackProvider {
    /// Reads the state of every resource in `batch` (one kind's collection) in as few requests as
    /// the API allows. See the module documentation.
    pub(super) async fn observe_batch(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        let Some(source) = batch.first().and_then(|first| source_of(first.key.kind)) else {
            return self.observe_each(batch).await;
        };
        let read = match source {
            Source::Neutron(segment, key) => self.neutron_states(segment, key, batch).await,
            Source::Listing(service, path, key, reading) => {
                self.listed_states(service, path, key, reading, batch).await
            }
        };
        let answer = match read {
            Ok(answer) if batch.iter().any(|r| OpenStackDetails::of(r).is_err()) => Answer {
                // Another provider's resource (or a stand-in) is never read on a guess.
                states: answer
                    .states
                    .into_iter()
                    .filter(|(id, _)| {
                        batch
                            .iter()
                            .any(|r| &r.key.id == id && OpenStackDetails::of(r).is_ok())
                    })
                    .collect(),
                complete: false,
            },
            Ok(answer) => answer,
            // The one request failed (after its retries): every resource in it failed to be read.
            Err(error) => return batch.iter().map(|_| Err(error.duplicate())).collect(),
        };
        let mut out = Vec::with_capacity(batch.len());
        for resource in batch {
            out.push(match answer.states.get(&resource.key.id) {
                Some(state) => Ok(state.clone()),
                None if answer.complete => Ok(Observed::Gone),
                None => super::Provider::observe(self, resource).await,
            });
        }
        out
    }

    async fn observe_each(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        let mut out = Vec::with_capacity(batch.len());
        for resource in batch {
            out.push(super::Provider::observe(self, resource).await);
        }
        out
    }

    /// `GET /v2.0/{segment}?id=A&id=B&fields=id[&fields=device_id&fields=device_owner]`.
    async fn neutron_states(
        &self,
        segment: &str,
        key: &str,
        batch: &[&Resource],
    ) -> Result<Answer, ProviderError> {
        let mut path = ApiPath::new([segment]);
        for resource in batch {
            path = path.query("id", resource.key.id.as_str());
        }
        path = path.query("fields", "id");
        let owned_by_server: HashMap<&str, bool> = batch
            .iter()
            .map(|r| (r.key.id.as_str(), matches!(r.removal, Removal::WithOwner(_))))
            .collect();
        if owned_by_server.values().any(|owned| *owned) {
            path = path.query("fields", "device_id").query("fields", "device_owner");
        }
        let url = self.session.url(Service::Network, &path).await?;
        let page: Page<Stated<NeutronItem>> = self.read_page(Service::Network, &url, key).await?;
        let states = page
            .items
            .into_iter()
            .map(|item| {
                // Neutron's resources have no transitional states that block a delete: present
                // means deletable, except a port its server still holds.
                let state = if owned_by_server.get(item.id.as_str()).copied().unwrap_or(false) {
                    port_state(&item.state.binding)
                } else {
                    Observed::Ready
                };
                (item.id, state)
            })
            .collect();
        Ok(Answer {
            states,
            complete: page.next.is_none(),
        })
    }

    /// `GET /{path}`, page after page until every id in `batch` is seen or the list ends.
    async fn listed_states(
        &self,
        service: Service,
        path: &[&str],
        key: &str,
        reading: Reading,
        batch: &[&Resource],
    ) -> Result<Answer, ProviderError> {
        let mut missing: HashSet<&str> = batch.iter().map(|r| r.key.id.as_str()).collect();
        let mut states = HashMap::new();
        // No `limit`: the service's own page size (1,000 by default on both) serves a status read.
        let first = ApiPath::new(path);
        let mut url = self.session.url(service, &first).await?;
        let mut seen_pages = HashSet::new();
        loop {
            let page = match reading {
                Reading::Server => map_page(self.read_page(service, &url, key).await?, server_state),
                Reading::Cinder => map_page(self.read_page(service, &url, key).await?, cinder_state),
                Reading::Present => map_page(self.read_page(service, &url, key).await?, |_: &IgnoredAny| {
                    Observed::Ready
                }),
                Reading::Keypair => {
                    let page: Page<KeypairEntry> = self.read_page(service, &url, key).await?;
                    Page {
                        items: page
                            .items
                            .into_iter()
                            .map(|entry| (entry.keypair.name, Observed::Ready))
                            .collect(),
                        next: page.next,
                    }
                }
            };
            let items = page.items.len();
            for (id, state) in page.items {
                missing.remove(id.as_str());
                states.insert(id, state);
            }
            let next = match page.next.filter(|_| items > 0 && !missing.is_empty()) {
                None => {
                    return Ok(Answer {
                        states,
                        complete: true,
                    })
                }
                Some(link) => url.join(&link).ok(),
            };
            match next {
                // A page already read, or a link that is no URL: what is missing stays unknown.
                Some(next) if seen_pages.insert(next.to_string()) => url = next,
                _ => {
                    return Ok(Answer {
                        states,
                        complete: false,
                    })
                }
            }
        }
    }

    async fn read_page<T: DeserializeOwned>(
        &self,
        service: Service,
        url: &Url,
        key: &str,
    ) -> Result<Page<T>, ProviderError> {
        let response = self.session.get(service, url).await?;
        let what = format!("{}: {key} status", service.label());
        decode_seed(&response.body, url, &what, PageOf::<T>::new(key))
    }
}

/// A page of states by id.
fn map_page<S>(page: Page<Stated<S>>, state_of: fn(&S) -> Observed) -> Page<(String, Observed)> {
    Page {
        items: page
            .items
            .into_iter()
            .map(|item| {
                let state = state_of(&item.state);
                (item.id, state)
            })
            .collect(),
        next: page.next,
    }
}
