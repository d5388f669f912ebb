//! The command line as a user meets it: exit codes of `once`, bad-config messages, `plan` deleting
//! nothing, and the daemon's `/metrics`, `/healthz` and `/readyz` — against the simulated clouds on
//! 127.0.0.1.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cloud_janitor::demo::{config_text, start_openstack};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloud-janitor"));
    command.env_remove("OS_CLOUD").env("CLOUD_JANITOR_LOG", "warn");
    command
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cj-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(path: &Path, content: &str) -> PathBuf {
    std::fs::write(path, content).unwrap();
    path.to_path_buf()
}

/// Runs a blocking command without stalling the simulator's runtime.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_1_with_leftovers_and_names_them_then_0_when_nothing_selected_is_left() {
    let dir = scratch("once");
    let cloud = start_openstack("127.0.0.1:0".parse().unwrap(), dir.join("clouds.yaml"), false)
        .await
        .unwrap();
    let seeded_sg = cloud.sim.count("security_group");
    let config = write(
        &dir.join("janitor.toml"),
        &config_text(&cloud.clouds_yaml, "127.0.0.1:0", None),
    );

    // Plan first: it lists the work and deletes nothing.
    let mut plan = binary();
    plan.args(["plan", "--config"])
        .arg(&config)
        .args(["--output", "json"]);
    let output = run(plan).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let nodes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let deletes = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "delete")
        .count();
    assert!(deletes > 20, "plan lists the leftovers: {deletes}");
    assert_eq!(
        cloud.sim.count("security_group"),
        seeded_sg,
        "plan deleted nothing"
    );

    let metrics_file = dir.join("metrics.prom");
    let mut once = binary();
    once.args(["once", "--config"])
        .arg(&config)
        .arg("--metrics-file")
        .arg(&metrics_file);
    let output = run(once).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "leftovers remain: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("ci-job-3-sg") && stdout.contains("in use by port"),
        "{stdout}"
    );
    assert!(
        stdout.contains("busy: locked"),
        "the locked server is reported: {stdout}"
    );
    let metrics = std::fs::read_to_string(&metrics_file).unwrap();
    assert!(
        metrics.contains(
            r#"cloud_janitor_leftover_resources{cloud="sim",kind="security_group",reason="in_use"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cloud_janitor_passes_total{result="leftovers"} 1"#),
        "{metrics}"
    );
    assert!(
        cloud.sim.exists("security_group", &cloud_in_use_sg(&stdout)),
        "the in-use group survives"
    );

    // Narrow the selection to one job whose leftovers can all go: exit 0.
    let clean = config_text(&cloud.clouds_yaml, "127.0.0.1:0", None)
        .replace("tags_all = [\"ci-job\"]", "tags_all = [\"ci-job\", \"job-2\"]");
    let config = write(&dir.join("clean.toml"), &clean);
    let mut once = binary();
    once.args(["once", "--config"]).arg(&config);
    let output = run(once).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "nothing of job-2 is left: {stdout}\n{stderr}"
    );
    cloud.sim.shutdown();
}

/// Kills the child process if the test ends before it was waited for (a failed assertion).
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn wait(mut self) -> std::process::ExitStatus {
        self.0.take().unwrap().wait().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn cloud_in_use_sg(report: &str) -> String {
    report
        .lines()
        .find(|l| l.contains("ci-job-3-sg"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn once_exits_2_when_the_cloud_cannot_be_reached_or_refuses_the_credentials() {
    let dir = scratch("unreachable");
    // Nothing listens on this port: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let clouds = write(
        &dir.join("clouds.yaml"),
        &format!("clouds:\n  gone:\n    auth: {{auth_url: 'http://127.0.0.1:{port}/v3', username: u, password: p, project_name: x}}\n"),
    );
    let config = write(
        &dir.join("janitor.toml"),
        &format!(
            "schedule = \"0 * * * * *\"\n[retry]\nmax_attempts = 1\n[[clouds]]\nname = \"gone\"\ntype = \"openstack\"\ncloud = \"gone\"\nclouds_yaml = \"{}\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
            clouds.display()
        ),
    );
    let output = binary().args(["once", "--config"]).arg(&config).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("cloud gone could not be listed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_exit_2_naming_where_they_came_from() {
    let dir = scratch("auth");
    let cloud = start_openstack("127.0.0.1:0".parse().unwrap(), dir.join("clouds.yaml"), true)
        .await
        .unwrap();
    let yaml = std::fs::read_to_string(&cloud.clouds_yaml)
        .unwrap()
        .replace("demopass", "wrong");
    write(&cloud.clouds_yaml, &yaml);
    let config = write(
        &dir.join("janitor.toml"),
        &config_text(&cloud.clouds_yaml, "127.0.0.1:0", None),
    );
    let mut once = binary();
    once.args(["once", "--config"]).arg(&config);
    let output = run(once).await;
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("authentication") && stdout.contains("clouds.yaml"),
        "{stdout}"
    );
    cloud.sim.shutdown();
}

#[test]
fn bad_config_exits_64_naming_the_file_and_the_key() {
    let dir = scratch("bad");
    let cases = [
        ("schedule = \"every minute\"\nclouds = []\n", "schedule"),
        ("schedule = \"0 * * * * *\"\nshedule = 1\nclouds = []\n", "shedule"),
        (
            "schedule = \"0 * * * * *\"\n[[clouds]]\nname = \"a\"\ntype = \"openstack\"\n[clouds.select]\n",
            "clouds[0] (`a`).select",
        ),
        (
            "schedule = \"0 * * * * *\"\n[[clouds]]\nname = \"a\"\ntype = \"openstack\"\nregoin = \"x\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
            "regoin",
        ),
        (
            "schedule = \"0 * * * * *\"\n[[clouds]]\nname = \"a\"\ntype = \"openstack\"\nmax_requests_per_second = 0\n[clouds.select]\ntags_all = [\"ci\"]\n",
            "max_requests_per_second: must be a positive number",
        ),
        (
            "schedule = \"0 * * * * *\"\n[[clouds]]\nname = \"a\"\ntype = \"vmware\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
            "unknown provider `vmware`",
        ),
        ("schedule = \"0 * * * * *\"\n[retry]\nmax_attempts = \"many\"\n[[clouds]]\nname = \"a\"\n", "max_attempts"),
    ];
    for (number, (content, expected)) in cases.iter().enumerate() {
        let path = write(&dir.join(format!("bad-{number}.toml")), content);
        let output = binary().args(["once", "--config"]).arg(&path).output().unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(64), "case {number}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "case {number} names the file: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "case {number} names `{expected}`: {stderr}"
        );
    }
    let missing = binary()
        .args(["plan", "--config", "/nonexistent/janitor.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
    assert!(text(&missing)
        .1
        .contains("/nonexistent/janitor.toml: no such file"));
}

#[test]
fn an_environment_variable_overrides_a_key_and_is_checked_like_one() {
    let dir = scratch("env");
    let path = write(
        &dir.join("janitor.toml"),
        "schedule = \"0 * * * * *\"\n[[clouds]]\nname = \"a\"\ntype = \"openstack\"\ncloud = \"none\"\nclouds_yaml = \"/nonexistent\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
    );
    let output = binary()
        .env("CLOUD_JANITOR_SCHEDULE", "not cron")
        .args(["plan", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(
        text(&output).1.contains("`not cron` is not a cron expression"),
        "{}",
        text(&output).1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_health_and_metrics_before_and_after_its_first_pass() {
    let dir = scratch("daemon");
    let cloud = start_openstack("127.0.0.1:0".parse().unwrap(), dir.join("clouds.yaml"), false)
        .await
        .unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = config_text(&cloud.clouds_yaml, &format!("127.0.0.1:{port}"), None)
        .replace("*/10 * * * * *", "*/2 * * * * *");
    let config = write(&dir.join("janitor.toml"), &config);
    let daemon = KillOnDrop(Some(
        binary().args(["run", "--config"]).arg(&config).spawn().unwrap(),
    ));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/metrics")).send().await {
            metrics = response.text().await.unwrap();
            // Every result series exists from start-up at 0; wait for the first pass to count.
            if metrics.contains("cloud_janitor_passes_total{result=\"leftovers\"} 1") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        metrics.contains("cloud_janitor_passes_total{result=\"leftovers\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloud_janitor_deletes_total{cloud=\"sim\",kind=\"server\",outcome=\"deleted\"}")
    );
    assert!(metrics.contains(
        "cloud_janitor_leftover_resources{cloud=\"sim\",kind=\"security_group\",reason=\"in_use\"} 1"
    ));
    assert!(metrics.contains(
        "cloud_janitor_api_requests_total{cloud=\"sim\",service=\"network\",status_class=\"2xx\"}"
    ));
    assert!(metrics.contains("cloud_janitor_last_pass_success_timestamp_seconds"));
    // The first pass waits out the locked server (busy_timeout 5 s) while ticks come every 2 s:
    // those ticks are skipped, never run as a second pass at the same time.
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cloud_janitor_passes_skipped_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        skipped >= 1.0,
        "ticks during the pass are skipped and counted: {metrics}"
    );
    for endpoint in ["healthz", "readyz"] {
        let status = client
            .get(format!("{base}/{endpoint}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "{endpoint}");
    }
    // SIGTERM: the daemon finishes and exits 0.
    let pid = daemon.0.as_ref().unwrap().id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || daemon.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    cloud.sim.shutdown();
}

#[test]
fn every_example_config_in_config_dir_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = cloud_janitor::config::Config::load_with_env(&path, Default::default());
            assert!(config.is_ok(), "{}: {:?}", path.display(), config.err());
            checked += 1;
        }
    }
    assert!(checked >= 3, "examples found: {checked}");
}

#[test]
fn variables_kubernetes_injects_for_a_service_named_cloud_janitor_are_not_config_keys() {
    let dir = scratch("k8s-env");
    let path = write(
        &dir.join("janitor.toml"),
        "schedule = \"0 * * * * *\"\n[[clouds]]\nname = \"a\"\ntype = \"openstack\"\ncloud = \"none\"\nclouds_yaml = \"/nonexistent\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
    );
    let env = [
        ("CLOUD_JANITOR_SERVICE_HOST", "10.0.0.1"),
        ("CLOUD_JANITOR_PORT", "tcp://10.0.0.1:9464"),
        ("CLOUD_JANITOR_PORT_9464_TCP_PORT", "9464"),
    ];
    let config = cloud_janitor::config::Config::load_with_env(
        &path,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    );
    // load_with_env takes the environment as given; the binary filters it the same way.
    assert!(config.is_err(), "the raw loader sees them as keys");
    let output = binary()
        .envs(env)
        .args(["plan", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = text(&output).1;
    assert!(!stderr.contains("unknown field"), "{stderr}");
    assert!(
        stderr.contains("no clouds.yaml found"),
        "it got past the config keys: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_the_verdict_exits_1_with_the_closest_names_and_64_on_a_bad_config() {
    let dir = scratch("explain");
    let cloud = start_openstack("127.0.0.1:0".parse().unwrap(), dir.join("clouds.yaml"), false)
        .await
        .unwrap();
    let config = write(
        &dir.join("janitor.toml"),
        &config_text(&cloud.clouds_yaml, "127.0.0.1:0", None),
    );
    let ports = cloud.sim.count("port");
    let explain = |args: &[&str]| {
        let mut command = binary();
        command.args(["explain", "--config"]).arg(&config).args(args);
        run(command)
    };

    let output = explain(&["ci-job-1-port"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let verdict = stdout
        .lines()
        .find(|l| l.starts_with("Verdict: "))
        .unwrap_or_else(|| panic!("a verdict line: {stdout}"));
    assert!(
        verdict.starts_with("Verdict: would be deleted after server ")
            && verdict.contains(" (ci-job-1-vm-a) and floating_ip ")
            && verdict.ends_with(" (172.24.4.3)"),
        "{verdict}"
    );

    let output = explain(&["ci-job-3-sg", "--output", "json"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let verdict = explained[0]["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("held: in use by port ")
            && verdict.ends_with(" (keep-port), which is not selected (not matched: tags_all)"),
        "{verdict}"
    );

    let output = explain(&["ci-job-1-prot"]).await;
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("no resource with id or name `ci-job-1-prot` in cloud sim\nThe closest:\n")
            && stdout
                .lines()
                .nth(2)
                .is_some_and(|l| l.ends_with(" ci-job-1-port")),
        "{stdout}"
    );

    let output = explain(&["--cloud", "elsewhere", "ci-job-1-port"]).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("no cloud `elsewhere` (configured: sim)"),
        "{stderr}"
    );

    let bad = write(&dir.join("bad.toml"), "schedule = \"never\"\nclouds = []\n");
    let mut command = binary();
    command.args(["explain", "--config"]).arg(&bad).arg("x");
    assert_eq!(run(command).await.status.code(), Some(64));

    assert_eq!(cloud.sim.count("port"), ports, "explain deletes nothing");
    cloud.sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_explains_a_held_resource_and_reports_a_suspected_leak() {
    let mut demo = binary();
    demo.arg("demo");
    let output = run(demo).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let verdict = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Verdict: "))
        .unwrap_or_else(|| panic!("an explained verdict: {stdout}"));
    assert!(
        verdict.trim().starts_with("Verdict: held: in use by port ")
            && verdict.ends_with(" (keep-port), which is not selected (not matched: tags_all)"),
        "{verdict}"
    );
    let leaks = stdout
        .split("Suspected leaks (1): ")
        .nth(1)
        .and_then(|rest| rest.lines().nth(1))
        .unwrap_or_else(|| panic!("a suspected leak section: {stdout}"));
    assert!(
        leaks.contains(" floating_ip ")
            && leaks.ends_with(
                "a floating IP with no port: reported only (delete_suspected_leaks opts in per kind)"
            ),
        "{leaks}"
    );
    assert!(
        stdout.contains(r#"cloud_janitor_suspected_leaks{cloud="demo-openstack",kind="floating_ip"} 1"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"cloud_janitor_deletes_total{cloud="demo-openstack",kind="load_balancer",outcome="deleted"} 1"#
        ),
        "{stdout}"
    );
}
