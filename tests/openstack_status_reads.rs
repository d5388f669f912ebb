//! What a pass's batched status reads ask of the simulated OpenStack, read off its request log:
//! every delete follows a read of that resource, taken after what had to go first was gone; one read
//! allows one delete; nothing unselected is written to; and the reads are fewer than the deletes.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use cloud_janitor::demo::{demo_janitor, DemoCloud};
use cloud_janitor::metrics::Metrics;
use cloud_janitor_sim::openstack::{LoggedRequest, OpenStackSim, SimConfig};

/// Whether `request` is a status read that can speak for the resource the delete of `deleted`
/// (a path ending in its collection and id) removes: a Neutron list filtered by that id, or the
/// whole list of its own collection (Nova and Cinder cannot filter by id), without the `limit`
/// discovery always sets.
fn reads(request: &LoggedRequest, deleted: &str) -> bool {
    let (method, path, _) = request;
    let mut segments = deleted.rsplit('/');
    let (Some(id), Some(collection)) = (segments.next(), segments.next()) else {
        return false;
    };
    let listed = path.split('?').next().unwrap_or_default();
    method == "GET"
        && !path.contains("limit=")
        && (path.contains(&format!("id={id}"))
            || listed.ends_with(&format!("/{collection}/detail"))
            || listed.ends_with(&format!("/{collection}")))
}

/// Whether `request` is a write to `id`.
fn writes(request: &LoggedRequest, id: &str) -> bool {
    let (method, path, _) = request;
    method != "GET" && path.contains(id) && !path.contains("/auth/tokens")
}

#[tokio::test]
async fn every_delete_follows_a_fresh_batched_read_and_nothing_unselected_is_written_to() {
    let sim = OpenStackSim::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let seeded = sim.seed_ci_leftovers();
    sim.set_server_locked(&seeded.locked_server, false).unwrap();
    let dir = support::temp_dir();
    let clouds_yaml = support::write(dir.path(), "clouds.yaml", &sim.clouds_yaml());
    let cloud = DemoCloud {
        sim: sim.clone(),
        clouds_yaml,
        seeded: Some(seeded.clone()),
        load_balancer_job: None,
        idle_floating_ip: None,
    };
    let janitor = demo_janitor(&cloud, None, Arc::new(Metrics::new())).unwrap();
    sim.clear_request_log();
    janitor
        .run_pass(tokio_util::sync::CancellationToken::new(), None)
        .await;
    let log = sim.request_log();

    // Every DELETE (and router interface removal) follows a status read that could speak for the
    // resource, with no other write to it in between: a read allows one delete.
    for (at, request) in log.iter().enumerate() {
        let (method, path, _) = request;
        if method != "DELETE" {
            continue;
        }
        let id = path.rsplit('/').next().unwrap();
        let earlier = &log[..at];
        let read = earlier.iter().rposition(|r| reads(r, path));
        // (A router's delete clears its gateway by PUT first, as one delete.)
        let previous_write = earlier.iter().rposition(|r| r.0 == "DELETE" && r.1.ends_with(id));
        let read = read.unwrap_or_else(|| panic!("DELETE {path} without a status read before it"));
        assert!(
            previous_write.is_none_or(|write| write < read),
            "DELETE {path} reuses a read already used by another delete"
        );
    }

    // Reads are taken after what had to go first: a job's subnet is read only after its port is
    // deleted and its router interface removed.
    let job = &seeded.jobs[1];
    let router = job.router.as_deref().unwrap();
    let subnet_read = log
        .iter()
        .position(|r| {
            r.0 == "GET" && r.1.contains("/subnets?") && r.1.contains(&format!("id={}", job.subnet))
        })
        .expect("the job's subnet was read");
    for blocker in [
        log.iter()
            .position(|r| r.0 == "DELETE" && r.1.ends_with(&job.ports[0])),
        log.iter()
            .position(|r| r.0 == "PUT" && r.1.contains(router) && r.1.ends_with("/remove_router_interface")),
    ] {
        let blocker = blocker.expect("the job's port and router interface went");
        assert!(
            blocker < subnet_read,
            "read {subnet_read} before its blocker went at {blocker}"
        );
    }

    // Nothing outside the selection is sent a write, and Nova's ports are never deleted.
    for (kind, id) in seeded.survivors() {
        assert!(!log.iter().any(|r| writes(r, &id)), "{kind} {id} was written to");
    }
    for job in &seeded.jobs {
        for port in &job.nova_ports {
            assert!(!log
                .iter()
                .any(|r| r.0 == "DELETE" && r.1.ends_with(port.as_str())));
        }
    }

    // Neutron reads ask for what they decide on only, and batching makes reads fewer than deletes.
    let neutron_reads: Vec<_> = log
        .iter()
        .filter(|r| r.0 == "GET" && r.1.starts_with("/network/v2.0/") && r.1.contains("?id="))
        .collect();
    assert!(!neutron_reads.is_empty(), "Neutron's resources were read by id");
    assert!(
        neutron_reads.iter().all(|r| r.1.contains("fields=id")),
        "{neutron_reads:?}"
    );
    let status_reads = log
        .iter()
        .filter(|r| r.0 == "GET" && !r.1.contains("limit="))
        .count();
    let writes = log
        .iter()
        .filter(|r| r.0 != "GET" && !r.1.contains("/auth/tokens"))
        .count();
    assert!(
        status_reads < writes,
        "{status_reads} status reads for {writes} writes"
    );
    sim.shutdown();
}
