//! The simulated Proxmox VE speaks the real API's wire format: envelopes, 0/1 booleans, error texts
//! in the status line and the body, auth, tasks, offline nodes and injected faults.

use std::net::SocketAddr;
use std::time::Duration;

use cloud_janitor_sim::faults::FaultRule;
use cloud_janitor_sim::proxmox::{ProxmoxSim, ProxmoxSimConfig};
use serde_json::Value;

async fn start() -> (ProxmoxSim, reqwest::Client, String) {
    let sim = ProxmoxSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), ProxmoxSimConfig::default())
        .await
        .unwrap();
    let auth = format!("PVEAPIToken={}={}", sim.token_id(), sim.token_secret());
    (sim, reqwest::Client::new(), auth)
}

#[tokio::test]
async fn envelopes_booleans_and_error_texts() {
    let (sim, http, auth) = start().await;
    let seeded = sim.seed_ci_leftovers();
    let url = sim.url();
    let resources: Value = http
        .get(format!("{url}/cluster/resources?type=vm"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let template = resources["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == seeded.template_vm)
        .unwrap();
    assert_eq!(template["template"], 1);
    assert_eq!(template["tags"], "ci-janitor-test;job-4711");

    let response = http
        .delete(format!("{url}/nodes/pve1/qemu/101?purge=1"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["message"], "VM 101 is running - destroy failed\n");

    let missing = http
        .get(format!("{url}/nodes/pve1/qemu/4242/status/current"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    let body: Value = missing.json().await.unwrap();
    assert_eq!(
        body["message"],
        "Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist\n"
    );

    let task = http
        .get(format!(
            "{url}/nodes/pve1/tasks/UPID:pve1:00000001:00000002:00000003:qmstop:1:root@pam:/status"
        ))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(task.status().as_u16(), 400);
    let body: Value = task.json().await.unwrap();
    assert_eq!(body["errors"]["upid"], "no such task");
}

#[tokio::test]
async fn tasks_end_with_an_exit_status_on_their_node() {
    let (sim, http, auth) = start().await;
    sim.seed_ci_leftovers();
    let url = sim.url();
    let started: Value = http
        .post(format!("{url}/nodes/pve2/qemu/102/status/stop"))
        .header("Authorization", &auth)
        .form(&[("overrule-shutdown", "1")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upid = started["data"].as_str().unwrap().to_string();
    assert!(upid.starts_with("UPID:pve2:") && upid.contains(":qmstop:102:root@pam!janitor:"));
    let mut status = Value::Null;
    for _ in 0..100 {
        status = http
            .get(format!("{url}/nodes/pve2/tasks/{upid}/status"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["data"]["status"] == "stopped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status["data"]["exitstatus"], "OK");
    assert!(!sim.is_running(102));
}

#[tokio::test]
async fn auth_offline_nodes_and_faults() {
    let (sim, http, auth) = start().await;
    let url = sim.url();
    assert_eq!(
        http.get(format!("{url}/version"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let login: Value = http
        .post(format!("{url}/access/ticket"))
        .form(&[("username", sim.user()), ("password", sim.password())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cookie = format!("PVEAuthCookie={}", login["data"]["ticket"].as_str().unwrap());
    assert_eq!(
        http.get(format!("{url}/version"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let no_csrf = http
        .post(format!("{url}/pools"))
        .header("Cookie", &cookie)
        .form(&[("poolid", "ci")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status().as_u16(), 401);

    sim.set_node_online("pve2", false);
    let offline = http
        .get(format!("{url}/nodes/pve2/qemu"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(offline.status().as_u16(), 595);

    sim.faults().add(FaultRule::status("GET", "/version", 503, 1));
    assert_eq!(
        http.get(format!("{url}/version"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        503
    );
    assert_eq!(
        http.get(format!("{url}/version"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(sim
        .request_log()
        .iter()
        .any(|(m, p, s)| m == "GET" && p.ends_with("/version") && *s == 503));
    sim.shutdown();
}
