//! A small authenticated client for the tests: JSON in, `(status, JSON)` out.

use std::time::Duration;

use cloud_janitor_sim::openstack::{OpenStackSim, SimConfig};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Client {
    pub sim: OpenStackSim,
    pub token: String,
    pub project_id: String,
    http: reqwest::Client,
    /// Sent as `OpenStack-API-Version: compute 2.x` when set.
    pub compute_version: Option<String>,
}

/// How long the simulators of [`start`] take to delete a server, volume or snapshot: far longer than
/// any test runs, so a resource shows `deleting` until the test advances the clock by this much.
pub const DELETE_DELAY: Duration = Duration::from_secs(60);

pub async fn start() -> OpenStackSim {
    start_with(SimConfig {
        server_delete_delay: DELETE_DELAY,
        volume_delete_delay: DELETE_DELAY,
        ..SimConfig::default()
    })
    .await
}

/// A [`start`]ed simulator and a client logged in as `demo`.
pub async fn demo() -> (OpenStackSim, Client) {
    let sim = start().await;
    let client = Client::demo(&sim).await;
    (sim, client)
}

pub async fn start_with(config: SimConfig) -> OpenStackSim {
    OpenStackSim::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

pub fn password_auth(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
}

/// Issues a token; returns status, the `X-Subject-Token` header and the body.
pub async fn issue_token(sim: &OpenStackSim, body: &Value) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let token = response
        .headers()
        .get("x-subject-token")
        .map(|v| v.to_str().unwrap().to_string());
    (status, token, response.json().await.unwrap_or(Value::Null))
}

impl Client {
    pub async fn login(sim: &OpenStackSim, user: &str, password: &str, project: &str) -> Client {
        let (status, token, body) = issue_token(sim, &password_auth(user, password, project)).await;
        assert_eq!(status, 201, "{body}");
        Client {
            sim: sim.clone(),
            token: token.unwrap(),
            project_id: body["token"]["project"]["id"].as_str().unwrap().to_string(),
            http: reqwest::Client::new(),
            compute_version: Some("2.90".into()),
        }
    }

    pub async fn demo(sim: &OpenStackSim) -> Client {
        Client::login(sim, "demo", "demopass", "demo").await
    }

    pub async fn admin(sim: &OpenStackSim) -> Client {
        Client::login(sim, "admin", "secret", "admin").await
    }

    /// Sends a request to a path under the sim's URL; `{project}` in the path is the token's project.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.try_send(method, path, body).await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// [`Client::send`], the body as text, and a broken connection as the client's error.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, String), reqwest::Error> {
        let url = format!(
            "{}{}",
            self.sim.url(),
            path.replace("{project}", &self.project_id)
        );
        let mut request = self.http.request(method, url).header("X-Auth-Token", &self.token);
        if let Some(version) = &self.compute_version {
            request = request.header("OpenStack-API-Version", format!("compute {version}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    pub async fn try_get(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        self.try_send(Method::GET, path, None).await
    }

    pub async fn try_delete(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        self.try_send(Method::DELETE, path, None).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a resource and returns its id, asserting the expected status.
    pub async fn create(&self, path: &str, key: &str, body: Value) -> String {
        let (status, answer) = self.post(path, json!({ key: body })).await;
        assert!((200..=202).contains(&status), "POST {path}: {status} {answer}");
        answer[key]["id"].as_str().unwrap().to_string()
    }

    /// Lets every asynchronous delete of a [`start`]ed simulator finish, then GETs `path`, which must
    /// answer 404 now; returns the 404's body.
    pub async fn get_after_deletes(&self, path: &str) -> Value {
        self.sim.advance_clock(DELETE_DELAY);
        let (status, body) = self.get(path).await;
        assert_eq!(status, 404, "{path} still answers: {body}");
        body
    }
}

/// The items of the list `body[list]`.
pub fn items<'a>(body: &'a Value, list: &str) -> &'a [Value] {
    body[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is not a list in {body}"))
}

/// The text attribute `field` of every item of the list `body[list]`, in order.
pub fn strings(body: &Value, list: &str, field: &str) -> Vec<String> {
    items(body, list)
        .iter()
        .map(|item| {
            item[field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field} in {item}"))
                .to_string()
        })
        .collect()
}

/// `strings`, sorted.
pub fn sorted(mut strings: Vec<String>) -> Vec<String> {
    strings.sort();
    strings
}

/// The NeutronError type of a body.
pub fn neutron_type(body: &Value) -> &str {
    body["NeutronError"]["type"].as_str().unwrap_or("")
}

/// A network with one subnet (`10.<n>.0.0/24`) as the test's user; returns (network, subnet).
pub async fn network_with_subnet(client: &Client, name: &str, n: u8) -> (String, String) {
    let network = client
        .create("/network/v2.0/networks", "network", json!({"name": name}))
        .await;
    let subnet = client
        .create(
            "/network/v2.0/subnets",
            "subnet",
            json!({"network_id": network, "cidr": format!("10.{n}.0.0/24"), "ip_version": 4}),
        )
        .await;
    (network, subnet)
}
