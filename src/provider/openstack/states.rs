//! The mapping of one OpenStack resource's status read (single or batched) to an [`Observed`]
//! state: what is ready to delete, busy, failed or gone, per kind.

use reqwest::Url;
use serde::de::IgnoredAny;

use super::discover::OCTAVIA_OWNER;
use super::session::Service;
use super::wire::{
    CinderState, LoadBalancerBody, LoadBalancerState, PortBinding, PortBody, ServerBody, ServerState,
    SnapshotBody, VolumeBody,
};
use crate::model::{Kind, Observed, Removal, Resource};
use crate::provider::decode::decode;
use crate::provider::ProviderError;

/// Decodes the single-resource GET of `resource` (its `body`, read from `url`) and maps it to an
/// [`Observed`] state.
pub(super) fn observed(
    resource: &Resource,
    service: Service,
    url: &Url,
    body: &[u8],
) -> Result<Observed, ProviderError> {
    let what = format!("{}: {}", service.label(), resource.key.kind);
    Ok(match resource.key.kind {
        Kind::Server => server_state(&decode::<ServerBody>(body, url, &what)?.server),
        Kind::Volume => cinder_state(&decode::<VolumeBody>(body, url, &what)?.volume),
        Kind::VolumeSnapshot => cinder_state(&decode::<SnapshotBody>(body, url, &what)?.snapshot),
        Kind::Port if matches!(resource.removal, Removal::WithOwner(_)) => {
            port_state(&decode::<PortBody>(body, url, &what)?.port)
        }
        Kind::LoadBalancer => {
            load_balancer_state(&decode::<LoadBalancerBody>(body, url, &what)?.loadbalancer)
        }
        // Neutron's resources are deleted synchronously and have no transitional states that block
        // it: any JSON answer means present and deletable.
        _ => {
            decode::<IgnoredAny>(body, url, &what)?;
            Observed::Ready
        }
    })
}

/// A server's state. An empty status is "busy", never ready and never gone. `DELETED` is gone: Nova
/// shows it for a moment after the hypervisor destroyed the server and freed its ports and volumes,
/// and leaves it out of its lists, where a batched read sees it gone already.
pub(super) fn server_state(server: &ServerState) -> Observed {
    let lower = server.status.to_ascii_lowercase();
    let task = server.task_state.as_deref();
    if lower == "deleted" {
        Observed::Gone
    } else if server.locked {
        Observed::Busy("locked".into())
    } else if lower == "soft_deleted" || task == Some("deleting") {
        Observed::Busy("deleting".into())
    } else if let Some(task) = task {
        Observed::Busy(format!("task {task}"))
    } else if server.status.is_empty() {
        Observed::Busy(String::new())
    } else {
        Observed::Ready
    }
}

/// A volume's or snapshot's state.
pub(super) fn cinder_state(state: &CinderState) -> Observed {
    match state.status.to_ascii_lowercase().as_str() {
        "available" | "error" | "error_restoring" | "error_extending" | "error_managing" => Observed::Ready,
        "error_deleting" => Observed::Failed(format!("status {}", state.status)),
        _ => Observed::Busy(state.status.clone()),
    }
}

/// The state of a port its owner's removal takes along: busy while still bound to the server, or
/// held by the load balancer, that owns it.
pub(super) fn port_state(port: &PortBinding) -> Observed {
    let owner = port.device_owner.as_deref().unwrap_or_default();
    match &port.device_id {
        Some(device) if owner.starts_with("compute:") => Observed::Busy(format!("bound to server {device}")),
        Some(device) if owner == OCTAVIA_OWNER => match device.strip_prefix("lb-") {
            Some(load_balancer) => Observed::Busy(format!("VIP port of load balancer {load_balancer}")),
            None => Observed::Busy(format!("held by Octavia ({device})")),
        },
        _ => Observed::Ready,
    }
}

/// A load balancer's state. `ACTIVE` and `ERROR` may be deleted; `PENDING_*` is busy (Octavia
/// answers 409 to anything sent); an empty or unknown status is busy too, never ready or gone.
fn load_balancer_state(load_balancer: &LoadBalancerState) -> Observed {
    match load_balancer.provisioning_status.as_str() {
        "ACTIVE" | "ERROR" => Observed::Ready,
        other => Observed::Busy(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceKey;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:8774/compute/v2.1/servers/s1").expect("a URL")
    }

    /// The state a status read of a `kind` resource with this `body` maps to.
    fn observe(kind: Kind, removal: Removal, body: &str) -> Result<Observed, String> {
        let mut resource = Resource::new(ResourceKey::new("sim", kind, "id-1"), "r");
        resource.removal = removal;
        let service = super::super::OpenStackProvider::service_of(kind);
        observed(&resource, service, &url(), body.as_bytes()).map_err(|e| e.to_string())
    }

    /// Asserts the state each status read in `cases` maps to.
    fn assert_states(kind: Kind, removal: &Removal, cases: &[(&str, Result<Observed, &str>)]) {
        for (body, expected) in cases {
            let expected = expected.clone().map_err(str::to_string);
            assert_eq!(observe(kind, removal.clone(), body), expected, "{kind} {body}");
        }
    }

    #[test]
    fn server_states_an_empty_status_soft_deleted_a_task_and_a_lock_are_busy_and_deleted_is_gone() {
        let busy = |state: &str| Ok(Observed::Busy(state.to_string()));
        assert_states(
            Kind::Server,
            &Removal::Delete,
            &[
                (r#"{"server": {"status": ""}}"#, busy("")),
                (r#"{"server": {}}"#, busy("")),
                (r#"{"server": {"status": "DELETED"}}"#, Ok(Observed::Gone)),
                (
                    r#"{"server": {"status": "DELETED", "locked": true}}"#,
                    Ok(Observed::Gone),
                ),
                (r#"{"server": {"status": "SOFT_DELETED"}}"#, busy("deleting")),
                (
                    r#"{"server": {"status": "ACTIVE", "OS-EXT-STS:task_state": "deleting"}}"#,
                    busy("deleting"),
                ),
                (
                    r#"{"server": {"status": "ACTIVE", "OS-EXT-STS:task_state": "powering-off"}}"#,
                    busy("task powering-off"),
                ),
                (
                    r#"{"server": {"status": "ACTIVE", "locked": true, "OS-EXT-STS:task_state": null}}"#,
                    busy("locked"),
                ),
                (
                    r#"{"server": {"status": "ACTIVE", "locked": false, "OS-EXT-STS:task_state": ""}}"#,
                    Ok(Observed::Ready),
                ),
                (
                    r#"{"servers": []}"#,
                    Err(
                        "http://127.0.0.1:8774/compute/v2.1/servers/s1: unexpected response: \
                         compute: server: missing field `server`",
                    ),
                ),
            ],
        );
    }

    #[test]
    fn volume_states_available_is_ready_error_deleting_failed_and_the_rest_busy() {
        assert_states(
            Kind::Volume,
            &Removal::Delete,
            &[
                (r#"{"volume": {"status": "available"}}"#, Ok(Observed::Ready)),
                (r#"{"volume": {"status": "error"}}"#, Ok(Observed::Ready)),
                (
                    r#"{"volume": {"status": "error_deleting"}}"#,
                    Ok(Observed::Failed("status error_deleting".into())),
                ),
                (
                    r#"{"volume": {"status": "deleting"}}"#,
                    Ok(Observed::Busy("deleting".into())),
                ),
                (
                    r#"{"volume": {"status": null}}"#,
                    Ok(Observed::Busy(String::new())),
                ),
            ],
        );
        assert_states(
            Kind::VolumeSnapshot,
            &Removal::Delete,
            &[(r#"{"snapshot": {"status": "available"}}"#, Ok(Observed::Ready))],
        );
    }

    #[test]
    fn a_port_removed_with_its_server_is_busy_while_still_bound_to_it() {
        let bound = r#"{"port": {"device_id": "s1", "device_owner": "compute:nova"}}"#;
        assert_states(
            Kind::Port,
            &Removal::WithOwner(ResourceKey::new("sim", Kind::Server, "s1")),
            &[
                (bound, Ok(Observed::Busy("bound to server s1".into()))),
                (
                    r#"{"port": {"device_id": "", "device_owner": ""}}"#,
                    Ok(Observed::Ready),
                ),
                (
                    r#"{"port": {"device_id": "r1", "device_owner": "network:router_interface"}}"#,
                    Ok(Observed::Ready),
                ),
            ],
        );
        // A port deleted directly, and any other Neutron resource: present means deletable.
        assert_states(Kind::Port, &Removal::Delete, &[(bound, Ok(Observed::Ready))]);
        assert_states(
            Kind::Network,
            &Removal::Delete,
            &[(r#"{"network": {"status": ""}}"#, Ok(Observed::Ready))],
        );
        assert!(observe(Kind::Network, Removal::Delete, "<html>").is_err());
    }

    #[test]
    fn load_balancers_pending_are_busy_active_and_error_may_be_deleted() {
        let body = |status: &str| format!(r#"{{"loadbalancer": {{"provisioning_status": "{status}"}}}}"#);
        let busy = |state: &str| Ok(Observed::Busy(state.to_string()));
        assert_states(
            Kind::LoadBalancer,
            &Removal::Delete,
            &[
                (&body("ACTIVE"), Ok(Observed::Ready)),
                (&body("ERROR"), Ok(Observed::Ready)),
                (&body("PENDING_CREATE"), busy("PENDING_CREATE")),
                (&body("PENDING_UPDATE"), busy("PENDING_UPDATE")),
                (&body("PENDING_DELETE"), busy("PENDING_DELETE")),
                (&body(""), busy("")),
                (r#"{"loadbalancer": {}}"#, busy("")),
            ],
        );
        let vip = r#"{"port": {"device_id": "lb-l1", "device_owner": "Octavia"}}"#;
        assert_states(
            Kind::Port,
            &Removal::WithOwner(ResourceKey::new("sim", Kind::LoadBalancer, "l1")),
            &[(vip, busy("VIP port of load balancer l1"))],
        );
    }
}
