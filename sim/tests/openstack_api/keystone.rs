//! Keystone: tokens, catalog, application credentials, expiry, and version discovery.

use std::time::Duration;

use cloud_janitor_sim::openstack::SimConfig;
use serde_json::{json, Value};

use crate::client::{self, issue_token, password_auth, Client};

#[tokio::test]
async fn password_token_carries_a_catalog_pointing_at_the_sim() {
    let sim = client::start().await;
    let (status, token, body) = issue_token(&sim, &password_auth("demo", "demopass", "demo")).await;
    assert_eq!(status, 201);
    assert!(token.is_some());
    let token = &body["token"];
    assert_eq!(token["project"]["name"], "demo");
    assert_eq!(token["user"]["name"], "demo");
    assert!(token["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(token["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "member"));
    let catalog = token["catalog"].as_array().unwrap();
    for service_type in ["identity", "compute", "network", "block-storage", "volumev3"] {
        let service = catalog.iter().find(|s| s["type"] == service_type).unwrap();
        let endpoints = service["endpoints"].as_array().unwrap();
        let interfaces: Vec<&str> = endpoints
            .iter()
            .map(|e| e["interface"].as_str().unwrap())
            .collect();
        assert_eq!(interfaces, ["public", "internal", "admin"], "{service_type}");
        assert!(endpoints.iter().all(|e| e["region_id"] == "RegionOne"));
        assert!(endpoints[0]["url"].as_str().unwrap().starts_with(&sim.url()));
    }
    let volume = catalog.iter().find(|s| s["type"] == "block-storage").unwrap();
    let project_id = token["project"]["id"].as_str().unwrap();
    assert!(volume["endpoints"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/volume/v3/{project_id}")));
}

#[tokio::test]
async fn wrong_password_gets_keystones_401() {
    let sim = client::start().await;
    let (status, token, body) = issue_token(&sim, &password_auth("demo", "nope", "demo")).await;
    assert_eq!((status, token), (401, None));
    assert_eq!(
        body,
        json!({"error": {"code": 401, "title": "Unauthorized",
                         "message": "The request you have made requires authentication."}})
    );
}

#[tokio::test]
async fn application_credentials_authenticate_by_id_and_by_name() {
    let sim = client::start().await;
    let yaml = sim.clouds_yaml();
    let field = |key: &str| {
        let line = yaml.lines().find(|l| l.trim_start().starts_with(key)).unwrap();
        line.split_once(": ").unwrap().1.trim().to_string()
    };
    let (id, secret) = (
        field("application_credential_id"),
        field("application_credential_secret"),
    );
    let by_id = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret}}}});
    let (status, _, body) = issue_token(&sim, &by_id).await;
    assert_eq!(status, 201);
    assert_eq!(body["token"]["project"]["name"], "demo");
    assert_eq!(body["token"]["application_credential"]["id"], Value::String(id));
    let by_name = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"name": "cloud-janitor", "secret": secret,
                                   "user": {"name": "demo", "domain": {"id": "default"}}}}}});
    assert_eq!(issue_token(&sim, &by_name).await.0, 201);
    let wrong = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"name": "cloud-janitor", "secret": "wrong",
                                   "user": {"name": "demo", "domain": {"id": "default"}}}}}});
    assert_eq!(issue_token(&sim, &wrong).await.0, 401);
    for cloud in ["  sim:", "  sim-admin:", "  sim-appcred:"] {
        assert!(yaml.contains(cloud), "{yaml}");
    }
}

#[tokio::test]
async fn every_service_refuses_missing_unknown_and_expired_tokens() {
    let token_ttl = Duration::from_secs(600);
    let sim = client::start_with(SimConfig {
        token_ttl,
        ..SimConfig::default()
    })
    .await;
    let mut client = Client::demo(&sim).await;
    let paths = [
        "/compute/v2.1/servers/detail",
        "/network/v2.0/networks",
        "/volume/v3/{project}/volumes/detail",
    ];
    for path in paths {
        assert_eq!(client.get(path).await.0, 200, "{path}");
    }
    // Expiry needs time to pass on the server's clock.
    sim.advance_clock(token_ttl);
    for path in paths {
        let (status, body) = client.get(path).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["title"], "Unauthorized");
    }
    client.token = "not-a-token".into();
    assert_eq!(client.get(paths[0]).await.0, 401);
    let (status, _) = reqwest_get(&format!("{}/network/v2.0/ports", sim.url())).await;
    assert_eq!(status, 401);
}

async fn reqwest_get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn version_documents_answer_without_a_token() {
    let sim = client::start().await;
    let url = sim.url();
    let (status, root) = reqwest_get(&format!("{url}/identity")).await;
    assert_eq!(status, 300);
    assert_eq!(root["versions"]["values"][0]["id"], "v3.14");
    assert_eq!(reqwest_get(&format!("{url}/")).await.0, 300);
    let (_, v3) = reqwest_get(&sim.auth_url()).await;
    assert_eq!(v3["version"]["status"], "stable");

    let (_, compute) = reqwest_get(&format!("{url}/compute/v2.1")).await;
    assert_eq!(compute["version"]["min_version"], "2.1");
    let max: u32 = compute["version"]["version"].as_str().unwrap()[2..]
        .parse()
        .unwrap();
    assert!(max >= 79, "{compute}");
    let (_, compute_root) = reqwest_get(&format!("{url}/compute/")).await;
    assert_eq!(compute_root["versions"][0]["id"], "v2.1");

    let (_, network) = reqwest_get(&format!("{url}/network/")).await;
    assert_eq!(network["versions"][0]["id"], "v2.0");
    assert_eq!(
        network["versions"][0]["links"][0]["href"],
        format!("{url}/network/v2.0/")
    );

    let (status, volume) = reqwest_get(&format!("{url}/volume/")).await;
    assert_eq!(status, 300);
    assert_eq!(volume["versions"][0]["id"], "v3.0");
    let (_, volume_v3) = reqwest_get(&format!("{url}/volume/v3")).await;
    assert_eq!(volume_v3["versions"][0]["min_version"], "3.0");
}

#[tokio::test]
async fn unknown_paths_answer_404_in_each_services_shape() {
    let (_, client) = client::demo().await;
    let (status, body) = client.get("/compute/v2.1/os-hypervisors-nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["itemNotFound"]["code"], 404);
    let (status, body) = client.get("/network/v2.0/lbaas-nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["NeutronError"]["type"], "HTTPNotFound");
    let (status, body) = client.get("/volume/v3/{project}/backups-nope/x/y").await;
    assert_eq!(status, 404);
    assert_eq!(body["itemNotFound"]["code"], 404);
}
