//! What the janitor's integration tests share, one helper each: temporary directories and files,
//! the binary run with a timeout (and killed if it overstays), a daemon killed when its test ends,
//! metric values read from an exposition, the simulators started and seeded, janitor configs for
//! them, an in-process janitor built from a config, and request-log lookups (which resource a write
//! names). Waiting for real-time events is `cloud_janitor_sim::wait::wait_for`.
#![allow(dead_code)] // Each test binary uses a different part of it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use cloud_janitor::config::Config;
use cloud_janitor::demo::{config_text, start_openstack, start_proxmox, DemoCloud, DemoCluster};
use cloud_janitor::history::Access;
use cloud_janitor::metrics::Metrics;
use cloud_janitor::pass::Janitor;
use cloud_janitor::setup::build_janitor;
use cloud_janitor_sim::openstack::OpenStackSim;
use cloud_janitor_sim::proxmox::ProxmoxSim;
#[allow(unused_imports)] // Not every test binary waits.
pub use cloud_janitor_sim::wait::wait_for;
use tempfile::TempDir;

/// The longest any one run of the binary may take before the test kills it and fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Writes `content` to `name` in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("a test file");
    path
}

/// The janitor binary with an environment of its own: no `OS_*` or `CLOUD_JANITOR_*` variable of
/// the machine running the tests leaks in, and logs are quiet unless asked for.
pub fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloud-janitor"));
    for (key, _) in std::env::vars() {
        if key.starts_with("OS_") || key.starts_with("CLOUD_JANITOR_") {
            command.env_remove(key);
        }
    }
    command.env("CLOUD_JANITOR_LOG", "warn");
    command
}

/// `cloud-janitor ARGS... --config CONFIG`, with the environment of [`cli`].
pub fn janitor_cli(args: &[&str], config: &Path) -> Command {
    let mut command = cli();
    command.args(args).arg("--config").arg(config);
    command
}

/// The daemon (`cloud-janitor run`) on `config`, ticking on `schedule`, serving on
/// 127.0.0.1:`port`.
pub fn daemon_cli(config: &Path, schedule: &str, port: u16) -> Command {
    let mut command = janitor_cli(&["run"], config);
    command
        .env("CLOUD_JANITOR_SCHEDULE", schedule)
        .env("CLOUD_JANITOR_LISTEN", format!("127.0.0.1:{port}"));
    command
}

/// What a finished run printed, as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// The one line of stdout that contains `marker`; fails naming the output when there is none.
    pub fn line_with(&self, marker: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| line.contains(marker))
            .unwrap_or_else(|| panic!("no line with `{marker}`:\n{}", self.both()))
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `command` to its end, killing it (and failing) after [`COMMAND_TIMEOUT`]. Blocking: from
/// an async test, use [`run`] so the simulators on the same runtime keep answering.
pub fn run_blocking(mut command: Command) -> Run {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Drain the pipes while waiting, so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let Some(status) = wait_with_timeout(&mut child, COMMAND_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
        panic!(
            "the binary overstayed {COMMAND_TIMEOUT:?} and was killed\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    };
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    output.into()
}

/// [`run_blocking`] off the async runtime.
pub async fn run(command: Command) -> Run {
    tokio::task::spawn_blocking(move || run_blocking(command))
        .await
        .expect("the run's thread")
}

/// Waits for `child` up to `timeout`; `None` if it is still running then.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running child (`run`), killed when the test ends however it ends.
pub struct Daemon(Option<Child>);

impl Daemon {
    pub fn spawn(mut command: Command) -> Self {
        Daemon(Some(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the daemon starts"),
        ))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("a running daemon").id()
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, `HUP`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the daemon to exit, failing after `timeout`; returns its status and stderr.
    pub async fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.0.take().expect("a running daemon");
        tokio::task::spawn_blocking(move || {
            let status = wait_with_timeout(&mut child, timeout);
            let mut stderr = String::new();
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            match status {
                Some(status) => (status, stderr),
                None => panic!("the daemon did not exit within {timeout:?}\n{stderr}"),
            }
        })
        .await
        .expect("the wait's thread")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("its address").port()
}

/// The value of the series `name{labels}` in a Prometheus text exposition; labels must match
/// exactly (all of them, in any order). `None` when the series is not there.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let mut found: Vec<(&str, &str)> = series_labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                Some((key, value.trim_matches('"')))
            })
            .collect();
        let mut wanted = labels.to_vec();
        found.sort_unstable();
        wanted.sort_unstable();
        (found == wanted).then(|| value.parse().ok()).flatten()
    })
}

/// The quick waits and retries of the in-process janitors, unless a test says otherwise: a pass over
/// the seeded simulated OpenStack takes about a second.
pub const QUICK: [(&str, &str); 4] = [
    ("CLOUD_JANITOR_WAITS__BUSY_TIMEOUT", "300ms"),
    ("CLOUD_JANITOR_WAITS__POLL_INTERVAL", "20ms"),
    ("CLOUD_JANITOR_RETRY__BASE_DELAY", "20ms"),
    ("CLOUD_JANITOR_RETRY__MAX_DELAY", "100ms"),
];

/// A janitor built in process from the config at `path` as `once` builds it, with [`QUICK`] and
/// then `env` (which wins) as its environment.
pub fn janitor_from(path: &Path, env: &[(&str, &str)]) -> (Janitor, std::sync::Arc<Metrics>) {
    let environment = QUICK
        .iter()
        .chain(env)
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let config = Config::load_with_env(path, environment).expect("the config is valid");
    let metrics = std::sync::Arc::new(Metrics::new());
    let janitor = build_janitor(&config, metrics.clone(), Access::Exclusive).expect("the janitor builds");
    (janitor, metrics)
}

/// The `[[clouds]]` table of Proxmox VE cloud `name` on `sim`, authenticated by its API token
/// (the secret written into `dir` as a file), with `extra` keys of that table after it.
pub fn proxmox_cloud_table(name: &str, sim: &ProxmoxSim, dir: &Path, extra: &str) -> String {
    let secret = write(dir, &format!("{name}-token-secret"), &sim.token_secret());
    format!(
        r#"[[clouds]]
name = "{name}"
type = "proxmox"
url = "{url}"
token_id = "{token_id}"
token_secret_file = "{secret}"
{extra}
"#,
        url = sim.url(),
        token_id = sim.token_id(),
        secret = secret.display(),
    )
}

/// The simulated OpenStack, seeded with the demo's CI leftovers (or empty), with its clouds.yaml in
/// a directory of its own.
pub struct Cloud {
    pub sim: OpenStackSim,
    pub demo: DemoCloud,
    pub dir: TempDir,
}

impl Cloud {
    pub async fn start(seeded: bool) -> Cloud {
        let dir = temp_dir();
        let demo = start_openstack(
            "127.0.0.1:0".parse().expect("an address"),
            dir.path().join("clouds.yaml"),
            !seeded,
        )
        .await
        .expect("the simulated OpenStack starts");
        Cloud {
            sim: demo.sim.clone(),
            demo,
            dir,
        }
    }

    pub fn clouds_yaml(&self) -> &Path {
        &self.demo.clouds_yaml
    }

    /// A janitor config for this cloud (as `simulate --config-out` writes it) with `extra` TOML
    /// appended to the top level, written into the cloud's directory as `name`.
    pub fn config(&self, name: &str, extra_top_level: &str) -> PathBuf {
        let text = config_text(self.clouds_yaml(), "127.0.0.1:0", None);
        write(self.dir.path(), name, &format!("{extra_top_level}\n{text}"))
    }

    /// The write requests the simulator answered (anything but GET, and but token requests), as
    /// `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.sim
            .request_log()
            .into_iter()
            .filter(|(method, path, _)| method != "GET" && !path.ends_with("/auth/tokens"))
            .map(|(method, path, _)| format!("{method} {path}"))
            .collect()
    }

    /// Every write whose path names `id`.
    pub fn writes_to(&self, id: &str) -> Vec<String> {
        self.writes().into_iter().filter(|w| w.contains(id)).collect()
    }
}

/// The simulated Proxmox VE, seeded (or empty), with its token secret in a directory of its own.
pub async fn proxmox(seeded: bool) -> (DemoCluster, TempDir) {
    let dir = temp_dir();
    let cluster = start_proxmox(
        "127.0.0.1:0".parse().expect("an address"),
        dir.path().join("proxmox-token-secret"),
        !seeded,
        false,
    )
    .await
    .expect("the simulated Proxmox VE starts");
    (cluster, dir)
}

/// What a write request to a simulator acts on, read from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteTarget {
    /// An OpenStack resource: its collection (`ports`, `routers`, `os-keypairs`, ...) and its id (a
    /// keypair's name). A router's interface removal and gateway change name the router.
    OpenStack { collection: String, id: String },
    /// A Proxmox guest, by vmid (stop, shutdown, destroy).
    Guest(u32),
    /// A Proxmox volume, deleted through `node`'s view of its storage.
    Volume { node: String, volid: String },
    /// A write that names no resource the janitor may touch (anything else).
    Other(String),
}

/// `%XX` escapes decoded (paths in the request logs are as sent).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| text.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path's segments, query dropped, each decoded.
fn segments(path: &str) -> Vec<String> {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decoded)
        .collect()
}

/// What a request to the simulated OpenStack writes to; `None` for reads and token requests.
pub fn openstack_write_target(method: &str, path: &str) -> Option<WriteTarget> {
    if method == "GET" || path.ends_with("/auth/tokens") {
        return None;
    }
    let parts = segments(path);
    let target = match parts.as_slice() {
        [.., collection, id, action] if collection == "routers" && action.ends_with("_router_interface") => {
            WriteTarget::OpenStack {
                collection: collection.clone(),
                id: id.clone(),
            }
        }
        [.., collection, id] if method == "DELETE" || method == "PUT" => WriteTarget::OpenStack {
            collection: collection.clone(),
            id: id.clone(),
        },
        _ => WriteTarget::Other(format!("{method} {path}")),
    };
    Some(target)
}

/// The segments of a Proxmox VE path after `nodes`.
fn after_nodes(path: &str) -> Vec<String> {
    let parts = segments(path);
    match parts.iter().position(|s| s == "nodes") {
        Some(at) => parts[at + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// The guest a Proxmox VE path names (`/nodes/{node}/{qemu|lxc}/{vmid}/...`).
pub fn proxmox_guest_of(path: &str) -> Option<u32> {
    match after_nodes(path).as_slice() {
        [_node, kind, vmid, ..] if kind == "qemu" || kind == "lxc" => vmid.parse().ok(),
        _ => None,
    }
}

/// What a request to the simulated Proxmox VE writes to; `None` for reads.
pub fn proxmox_write_target(method: &str, path: &str) -> Option<WriteTarget> {
    if method == "GET" {
        return None;
    }
    let target = match (proxmox_guest_of(path), after_nodes(path).as_slice()) {
        (Some(vmid), _) => WriteTarget::Guest(vmid),
        (None, [node, storage_word, _storage, content, volid @ ..])
            if storage_word == "storage"
                && content == "content"
                && !volid.is_empty()
                && method == "DELETE" =>
        {
            WriteTarget::Volume {
                node: node.clone(),
                volid: volid.join("/"),
            }
        }
        _ => WriteTarget::Other(format!("{method} {path}")),
    };
    Some(target)
}
