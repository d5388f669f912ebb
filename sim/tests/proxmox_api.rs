//! The simulated Proxmox VE speaks the real API's wire format: envelopes, 0/1 booleans, error texts
//! in the status line and the body, auth, tasks, offline nodes and injected faults. Tasks are moved on
//! with `advance_clock`, never waited for.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use cloud_janitor_sim::faults::FaultRule;
use cloud_janitor_sim::proxmox::{ProxmoxSim, ProxmoxSimConfig};
use reqwest::RequestBuilder;
use serde_json::Value;

/// How long the tasks of a [`start`]ed simulator run: far longer than any test, so a task runs until
/// the test advances the clock by this much.
const TASK_DURATION: Duration = Duration::from_secs(60);

/// A simulator and a client that authenticates with its API token.
struct Pve {
    sim: ProxmoxSim,
    http: reqwest::Client,
    auth: String,
}

async fn start() -> Pve {
    let config = ProxmoxSimConfig {
        task_duration: TASK_DURATION,
        ..ProxmoxSimConfig::default()
    };
    let sim = ProxmoxSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap();
    let auth = format!("PVEAPIToken={}={}", sim.token_id(), sim.token_secret());
    Pve {
        sim,
        http: reqwest::Client::new(),
        auth,
    }
}

impl Pve {
    /// `path` under the API's URL (`/version`).
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.url())
    }

    /// Sends the request as is; returns the status and the body (`null` when it is not JSON).
    async fn send(&self, request: RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path` with the API token.
    async fn get(&self, path: &str) -> (u16, Value) {
        let request = self.http.get(self.url(path));
        self.send(request.header("Authorization", &self.auth)).await
    }
}

#[tokio::test]
async fn envelopes_booleans_and_error_texts() {
    let pve = start().await;
    let seeded = pve.sim.seed_ci_leftovers();
    let (_, resources) = pve.get("/cluster/resources?type=vm").await;
    let template = resources["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == seeded.template_vm)
        .unwrap();
    assert_eq!(template["template"], 1);
    assert_eq!(template["tags"], "ci-janitor-test;job-4711");

    let delete = pve.http.delete(pve.url("/nodes/pve1/qemu/101?purge=1"));
    let (status, body) = pve.send(delete.header("Authorization", &pve.auth)).await;
    assert_eq!(status, 500);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["message"], "VM 101 is running - destroy failed\n");

    let (_, body) = pve.get("/nodes/pve1/qemu/4242/status/current").await;
    assert_eq!(
        body["message"],
        "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist\n"
    );

    let (status, body) = pve
        .get("/nodes/pve1/tasks/UPID:pve1:00000001:00000002:00000003:qmstop:1:root@pam:/status")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"]["upid"], "no such task");
}

#[tokio::test]
async fn tasks_end_with_an_exit_status_on_their_node() {
    let pve = start().await;
    pve.sim.seed_ci_leftovers();
    let stop = pve.http.post(pve.url("/nodes/pve2/qemu/102/status/stop"));
    let (_, started) = pve
        .send(
            stop.header("Authorization", &pve.auth)
                .form(&[("overrule-shutdown", "1")]),
        )
        .await;
    let upid = started["data"].as_str().unwrap().to_string();
    assert!(upid.starts_with("UPID:pve2:") && upid.contains(":qmstop:102:root@pam!janitor:"));
    let status_path = format!("/nodes/pve2/tasks/{upid}/status");
    let (_, running) = pve.get(&status_path).await;
    assert_eq!(running["data"]["status"], "running");
    assert!(running["data"].get("exitstatus").is_none());
    assert!(pve.sim.is_running(102));

    pve.sim.advance_clock(TASK_DURATION);
    let (_, status) = pve.get(&status_path).await;
    assert_eq!(status["data"]["status"], "stopped");
    assert_eq!(status["data"]["exitstatus"], "OK");
    assert!(!pve.sim.is_running(102));
}

#[tokio::test]
async fn auth_offline_nodes_and_faults() {
    let pve = start().await;
    let (status, _) = pve.send(pve.http.get(pve.url("/version"))).await;
    assert_eq!(status, 401);
    let login = pve.http.post(pve.url("/access/ticket"));
    let (_, login) = pve
        .send(login.form(&[("username", pve.sim.user()), ("password", pve.sim.password())]))
        .await;
    let cookie = format!("PVEAuthCookie={}", login["data"]["ticket"].as_str().unwrap());
    let by_ticket = pve.http.get(pve.url("/version")).header("Cookie", &cookie);
    assert_eq!(pve.send(by_ticket).await.0, 200);
    let no_csrf = pve.http.post(pve.url("/pools")).header("Cookie", &cookie);
    assert_eq!(pve.send(no_csrf.form(&[("poolid", "ci")])).await.0, 401);

    pve.sim.set_node_online("pve2", false);
    assert_eq!(pve.get("/nodes/pve2/qemu").await.0, 595);

    pve.sim.faults().add(FaultRule::status("GET", "/version", 503, 1));
    assert_eq!(pve.get("/version").await.0, 503);
    assert_eq!(pve.get("/version").await.0, 200);
    assert!(pve
        .sim
        .request_log()
        .iter()
        .any(|(m, p, s)| m == "GET" && p.ends_with("/version") && *s == 503));
    pve.sim.shutdown();
    support::wait_until_refused(&pve.url("/version")).await;
}

#[tokio::test]
async fn a_stopped_vm_becomes_a_template_by_a_task_and_a_running_one_is_refused() {
    use cloud_janitor_sim::proxmox::GuestSpec;
    let pve = start().await;
    let stopped = pve.sim.add_guest(GuestSpec::vm(301, "golden"));
    let running = pve.sim.add_guest(GuestSpec::vm(302, "busy").running());
    let post = |vmid: u32| {
        pve.http
            .post(pve.url(&format!("/nodes/pve1/qemu/{vmid}/template")))
            .header("Authorization", &pve.auth)
    };
    let (status, body) = pve.send(post(running)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (500, Some("you can't convert a VM to template if VM is running\n"))
    );
    let (status, body) = pve.send(post(stopped)).await;
    assert_eq!(status, 200);
    let upid = body["data"].as_str().unwrap().to_string();
    assert!(upid.contains(":qmtemplate:301:"), "{upid}");
    pve.sim.advance_clock(TASK_DURATION);
    let (_, task) = pve.get(&format!("/nodes/pve1/tasks/{upid}/status")).await;
    assert_eq!(task["data"]["exitstatus"], "OK");
    let (_, config) = pve.get("/nodes/pve1/qemu/301/config").await;
    assert_eq!(config["data"]["template"], 1);
    let (status, body) = pve.send(post(stopped)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (500, Some("you can't convert a template to a template\n"))
    );
}

#[tokio::test]
async fn a_hung_task_runs_holding_the_lock_until_released_then_fails() {
    let pve = start().await;
    let vmid = pve
        .sim
        .add_guest(cloud_janitor_sim::proxmox::GuestSpec::vm(120, "ci-hung").running());
    pve.sim.hang_tasks(vmid, true);
    let stop = |pve: &Pve| {
        pve.http
            .post(pve.url(&format!("/nodes/pve1/qemu/{vmid}/status/stop")))
            .header("Authorization", &pve.auth)
    };
    let (_, started) = pve.send(stop(&pve)).await;
    let status_path = format!("/nodes/pve1/tasks/{}/status", started["data"].as_str().unwrap());
    pve.sim.advance_clock(TASK_DURATION * 1000);
    let (_, running) = pve.get(&status_path).await;
    assert_eq!(running["data"]["status"], "running");
    assert!(pve.sim.is_running(vmid));
    // The hung task holds the config lock file: the next one waits, then times out.
    pve.sim.advance_clock(Duration::from_secs(1));
    let (status, body) = pve.send(stop(&pve)).await;
    assert_eq!(status, 500);
    assert_eq!(
        body["message"],
        format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout\n")
    );

    pve.sim.hang_tasks(vmid, false);
    let (_, ended) = pve.get(&status_path).await;
    assert_eq!(
        (&ended["data"]["status"], &ended["data"]["exitstatus"]),
        (&Value::from("stopped"), &Value::from("interrupted by signal"))
    );
    assert!(pve.sim.is_running(vmid), "a killed stop stops nothing");
    let (_, started) = pve.send(stop(&pve)).await;
    pve.sim.advance_clock(TASK_DURATION);
    let status_path = format!("/nodes/pve1/tasks/{}/status", started["data"].as_str().unwrap());
    assert_eq!(pve.get(&status_path).await.1["data"]["exitstatus"], "OK");
    assert!(!pve.sim.is_running(vmid));
}

#[tokio::test]
async fn a_volume_added_with_a_creation_time_lists_it() {
    let pve = start().await;
    let volid = pve
        .sim
        .add_volume_created("pve1", "local-lvm", "vm-991-disk-0", 1_700_000_000);
    assert_eq!(volid, "local-lvm:vm-991-disk-0");
    let (_, content) = pve.get("/nodes/pve1/storage/local-lvm/content").await;
    let listed = content["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volid"] == volid.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["ctime"], 1_700_000_000);
}
