//! The command line as a user meets it, against the simulated clouds on 127.0.0.1: what `plan`,
//! `once`, `history` and `healthcheck` print and exit with, bad configs, and the daemon's endpoints,
//! schedule, signals, config reload and lock.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::{
    cli, daemon_cli, free_port, janitor_cli, metric, run, run_blocking, temp_dir, wait_for, write, Cloud,
    Daemon,
};

/// Waits long enough for a pass of the seeded demo cloud, short enough to end a hung test.
const PASS_DEADLINE: Duration = Duration::from_secs(60);

/// `busy_timeout` for tests: the locked server is given up on quickly.
const QUICK_BUSY: (&str, &str) = ("CLOUD_JANITOR_WAITS__BUSY_TIMEOUT", "300ms");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_what_would_go_in_order_and_sends_no_write() {
    let cloud = Cloud::start(true).await;
    let seeded = cloud.demo.seeded.clone().unwrap();
    let config = cloud.config("janitor.toml", "");
    let plan = janitor_cli(&["plan", "--output", "json"], &config);
    let run = run(plan).await;
    assert_eq!(run.code, Some(0), "{}", run.both());
    let nodes: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let planned: Vec<&serde_json::Value> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "delete")
        .collect();
    // Everything planned carries the CI tag, or is a kind without tags named like a CI job's; a
    // router interface goes with its router.
    for node in &planned {
        let tagged = node["tags"].as_array().unwrap().iter().any(|t| t == "ci-job");
        let named = matches!(node["kind"].as_str(), Some("keypair" | "server_group"))
            && node["name"].as_str().unwrap().starts_with("ci-job-");
        assert!(tagged || named, "planned without the tag: {node}");
    }
    // Everything the seed tagged is planned, but for what a correct cleanup leaves.
    let planned_ids: BTreeSet<&str> = planned.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let held: BTreeSet<String> = seeded.expected_left().into_iter().map(|(_, id)| id).collect();
    let missing: Vec<String> = seeded
        .tagged()
        .into_iter()
        .map(|(_, id)| id)
        .filter(|id| !held.contains(id) && !planned_ids.contains(id.as_str()))
        .collect();
    assert_eq!(missing, Vec::<String>::new(), "tagged but not planned");
    assert_eq!(cloud.writes(), Vec::<String>::new(), "plan writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_deletes_the_leftovers_names_what_stayed_and_never_writes_to_a_survivor() {
    let cloud = Cloud::start(true).await;
    let seeded = cloud.demo.seeded.clone().unwrap();
    let config = cloud.config("janitor.toml", "");
    let metrics_file = cloud.dir.path().join("metrics.prom");
    let mut once = janitor_cli(&["once"], &config);
    once.env(QUICK_BUSY.0, QUICK_BUSY.1)
        .arg("--metrics-file")
        .arg(&metrics_file);
    let run = run(once).await;
    assert_eq!(run.code, Some(1), "leftovers remain: {}", run.both());

    // One line carries the group, why it stayed and who holds it.
    let in_use = run.line_with(&seeded.in_use_security_group);
    assert!(
        in_use.contains("in use by port") && in_use.contains("(keep-port)"),
        "{in_use}"
    );
    assert!(run.line_with(&seeded.locked_server).contains("busy: locked"));

    // What a correct cleanup leaves is there; everything else tagged is gone.
    let left: BTreeSet<String> = seeded.expected_left().into_iter().map(|(_, id)| id).collect();
    for (kind, id) in seeded.tagged() {
        let exists = cloud.sim.exists(kind, &id);
        assert_eq!(exists, left.contains(&id), "{kind} {id}: exists {exists}");
    }
    // The survivors were never sent a write, and are still there.
    for (kind, id) in seeded.survivors() {
        assert!(cloud.sim.exists(kind, &id), "{kind} {id} survives");
        assert_eq!(
            cloud.writes_to(&id),
            Vec::<String>::new(),
            "{kind} {id} untouched"
        );
    }

    let text = std::fs::read_to_string(&metrics_file).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    let servers = seeded
        .tagged()
        .iter()
        .filter(|(kind, _)| *kind == "server")
        .count() as f64;
    assert_eq!(
        value(
            "cloud_janitor_deletes_total",
            &[("cloud", "sim"), ("kind", "server"), ("outcome", "deleted")]
        ),
        Some(servers - 1.0),
        "every server but the locked one"
    );
    assert_eq!(
        value(
            "cloud_janitor_deletes_total",
            &[("cloud", "sim"), ("kind", "server"), ("outcome", "failed")]
        ),
        Some(1.0),
        "the locked one"
    );
    let leftovers = |kind, reason| {
        value(
            "cloud_janitor_leftover_resources",
            &[("cloud", "sim"), ("kind", kind), ("reason", reason)],
        )
    };
    assert_eq!(leftovers("server", "busy"), Some(1.0));
    assert_eq!(leftovers("security_group", "in_use"), Some(1.0));
    assert_eq!(leftovers("security_group", "blocked"), Some(1.0));
    assert_eq!(value("cloud_janitor_cloud_up", &[("cloud", "sim")]), Some(1.0));
    assert_eq!(
        value("cloud_janitor_passes_total", &[("result", "leftovers")]),
        Some(1.0)
    );
    assert_eq!(
        value("cloud_janitor_passes_total", &[("result", "clean")]),
        Some(0.0)
    );
    assert_eq!(value("cloud_janitor_pass_duration_seconds_count", &[]), Some(1.0));
    let age = value(
        "cloud_janitor_oldest_leftover_age_seconds",
        &[("cloud", "sim"), ("kind", "security_group")],
    )
    .unwrap();
    assert!(age > 0.0, "the group is older than the pass: {age}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_0_after_a_pass_that_deleted_everything_it_selected() {
    let cloud = Cloud::start(true).await;
    let seeded = cloud.demo.seeded.clone().unwrap();
    let job_2 = &seeded.jobs[1];
    assert_eq!(job_2.job, "job-2");
    let config = cloud.config("janitor.toml", "");
    let mut once = janitor_cli(&["once", "--output", "json"], &config);
    once.env(
        "CLOUD_JANITOR_CLOUDS__SIM__SELECT__TAGS_ALL",
        r#"["ci-job", "job-2"]"#,
    )
    .env(
        "CLOUD_JANITOR_CLOUDS__SIM__SELECT__UNTAGGABLE_NAME_PATTERN",
        "^ci-job-2-",
    );
    let run = run(once).await;
    assert_eq!(run.code, Some(0), "nothing of job-2 is left: {}", run.both());
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let deleted: BTreeSet<String> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"]["status"] == "deleted")
        .map(|i| i["key"]["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<(&str, &String)> = job_2.servers.iter().map(|id| ("server", id)).collect();
    expected.extend(job_2.volumes.iter().map(|id| ("volume", id)));
    expected.extend([
        ("network", &job_2.network),
        ("security_group", &job_2.security_group),
    ]);
    for (kind, id) in expected {
        assert!(deleted.contains(id), "{kind} {id} deleted: {deleted:?}");
        assert!(!cloud.sim.exists(kind, id), "{kind} {id} gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_only_deletes_nothing_and_says_what_it_would_delete() {
    let cloud = Cloud::start(true).await;
    let config = cloud.config("janitor.toml", "");
    let metrics_file = cloud.dir.path().join("metrics.prom");
    let mut once = janitor_cli(&["once", "--report-only"], &config);
    once.arg("--metrics-file").arg(&metrics_file);
    let run = run(once).await;
    assert_eq!(
        run.code,
        Some(1),
        "held resources are still leftovers: {}",
        run.both()
    );
    let headline = run.stdout.lines().next().unwrap();
    assert!(
        headline.contains("(report-only, nothing deleted): ") && headline.contains(" would be deleted"),
        "{headline}"
    );
    assert_eq!(cloud.writes(), Vec::<String>::new(), "report-only writes nothing");
    // Every tagged server is planned: a lock shows only in the status read right before a delete.
    let seeded = cloud.demo.seeded.clone().unwrap();
    let servers = seeded
        .tagged()
        .iter()
        .filter(|(kind, _)| *kind == "server")
        .count() as f64;
    let text = std::fs::read_to_string(&metrics_file).unwrap();
    assert_eq!(
        metric(
            &text,
            "cloud_janitor_would_delete_resources",
            &[("cloud", "sim"), ("kind", "server")]
        ),
        Some(servers)
    );
}

#[test]
fn once_and_plan_exit_2_when_the_cloud_cannot_be_reached() {
    let dir = temp_dir();
    let clouds = write(
        dir.path(),
        "clouds.yaml",
        &format!(
            "clouds:\n  gone:\n    auth: {{auth_url: 'http://127.0.0.1:{}/v3', username: u, password: p, project_name: x}}\n",
            free_port()
        ),
    );
    let config = write(
        dir.path(),
        "janitor.toml",
        &format!(
            "schedule = \"0 * * * * *\"\n[retry]\nmax_attempts = 1\n[[clouds]]\nname = \"gone\"\ntype = \"openstack\"\ncloud = \"gone\"\nclouds_yaml = \"{}\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
            clouds.display()
        ),
    );
    for command in ["once", "plan"] {
        let run = run_blocking(janitor_cli(&[command], &config));
        assert_eq!(run.code, Some(2), "{command}: {}", run.both());
        let said = if command == "once" {
            &run.stdout
        } else {
            &run.stderr
        };
        assert!(
            said.contains("cloud gone could not be listed"),
            "{command}: {}",
            run.both()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_that_fails_outranks_leftovers_and_the_other_cloud_is_still_cleaned() {
    let cloud = Cloud::start(true).await;
    let seeded = cloud.demo.seeded.clone().unwrap();
    let gone = write(
        cloud.dir.path(),
        "gone.yaml",
        &format!(
            "clouds:\n  gone:\n    auth: {{auth_url: 'http://127.0.0.1:{}/v3', username: u, password: p, project_name: x}}\n",
            free_port()
        ),
    );
    let second = format!(
        "\n[[clouds]]\nname = \"gone\"\ntype = \"openstack\"\ncloud = \"gone\"\nclouds_yaml = \"{}\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
        gone.display()
    );
    let config = cloud.config("janitor.toml", "");
    let text = std::fs::read_to_string(&config).unwrap() + &second;
    let config = write(cloud.dir.path(), "two-clouds.toml", &text);
    let mut once = janitor_cli(&["once"], &config);
    once.env(QUICK_BUSY.0, QUICK_BUSY.1)
        .env("CLOUD_JANITOR_RETRY__MAX_ATTEMPTS", "1");
    let run = run(once).await;
    assert_eq!(
        run.code,
        Some(2),
        "a failed cloud outranks leftovers: {}",
        run.both()
    );
    assert!(run.stdout.starts_with("pass 1 failed"), "{}", run.both());
    let job_2 = &seeded.jobs[1];
    assert!(
        !cloud.sim.exists("server", &job_2.servers[0]),
        "the reachable cloud was cleaned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_exit_2_naming_where_they_came_from() {
    let cloud = Cloud::start(false).await;
    let yaml = std::fs::read_to_string(cloud.clouds_yaml())
        .unwrap()
        .replace("demopass", "wrong");
    std::fs::write(cloud.clouds_yaml(), yaml).unwrap();
    let config = cloud.config("janitor.toml", "");
    let once = janitor_cli(&["once"], &config);
    let run = run(once).await;
    assert_eq!(run.code, Some(2), "{}", run.both());
    let line = run.line_with("could not be listed");
    assert!(
        line.contains("authentication") && line.contains(&cloud.clouds_yaml().display().to_string()),
        "{line}"
    );
}

#[test]
fn bad_config_exits_64_naming_the_file_and_the_key() {
    let dir = temp_dir();
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
        let path = write(dir.path(), &format!("bad-{number}.toml"), content);
        let once = janitor_cli(&["once"], &path);
        let run = run_blocking(once);
        assert_eq!(run.code, Some(64), "case {number}: {}", run.both());
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("case {number}: no error line: {}", run.both()));
        assert!(
            line.contains(&path.display().to_string()) && line.contains(expected),
            "case {number}: one line names the file and `{expected}`: {line}"
        );
    }
    let mut missing = cli();
    missing.args(["plan", "--config", "/nonexistent/janitor.toml"]);
    let run = run_blocking(missing);
    assert_eq!(run.code, Some(64));
    assert_eq!(
        run.stderr.trim(),
        "error: config /nonexistent/janitor.toml: no such file"
    );
}

/// `plan` with `env`, on a config whose one cloud points nowhere: a config that passes gets as far
/// as that cloud's missing clouds.yaml.
fn plan_on_a_cloud_nowhere(env: &[(&str, &str)]) -> support::Run {
    let dir = temp_dir();
    let path = write(
        dir.path(),
        "janitor.toml",
        "schedule = \"0 * * * * *\"\n[[clouds]]\nname = \"a\"\ntype = \"openstack\"\ncloud = \"none\"\nclouds_yaml = \"/nonexistent\"\n[clouds.select]\ntags_all = [\"ci\"]\n",
    );
    let mut plan = janitor_cli(&["plan"], &path);
    plan.envs(env.iter().copied());
    run_blocking(plan)
}

#[test]
fn an_environment_variable_overrides_a_key_and_is_checked_like_one() {
    let run = plan_on_a_cloud_nowhere(&[("CLOUD_JANITOR_SCHEDULE", "not cron")]);
    assert_eq!(run.code, Some(64));
    assert!(
        run.stderr.contains("`not cron` is not a cron expression"),
        "{}",
        run.both()
    );
}

#[test]
fn variables_kubernetes_injects_for_a_service_named_cloud_janitor_are_not_config_keys() {
    let run = plan_on_a_cloud_nowhere(&[
        ("CLOUD_JANITOR_SERVICE_HOST", "10.0.0.1"),
        ("CLOUD_JANITOR_PORT", "tcp://10.0.0.1:9464"),
        ("CLOUD_JANITOR_PORT_9464_TCP_PORT", "9464"),
    ]);
    assert_eq!(run.code, Some(64), "{}", run.both());
    assert!(!run.stderr.contains("unknown field"), "{}", run.both());
    assert!(
        run.stderr.contains("no clouds.yaml found"),
        "it got past the config keys: {}",
        run.both()
    );
}

#[test]
fn every_example_config_in_config_dir_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = cloud_janitor::config::Config::load_with_env(&path, Default::default());
            assert!(config.is_ok(), "{}: {}", path.display(), config.err().unwrap());
            checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    checked.sort();
    assert_eq!(checked, ["both.toml", "openstack.toml", "proxmox.toml"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let cloud = Cloud::start(false).await;
    let config = cloud.config("janitor.toml", "");
    let mut once = janitor_cli(&["once"], &config);
    once.env("CLOUD_JANITOR_LOG", "info")
        .env("CLOUD_JANITOR_LOG_FORMAT", "json");
    let run = run(once).await;
    assert_eq!(run.code, Some(0), "{}", run.both());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty(), "{}", run.both());
    for line in lines {
        let object: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            object["level"].is_string() && object["fields"].is_object(),
            "{line}"
        );
    }
}

/// Reads a daemon's page; `None` while it does not answer.
async fn page(base: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("{base}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_its_pages_skips_ticks_during_a_pass_and_stops_on_sigterm() {
    let cloud = Cloud::start(true).await;
    // Every server delete takes 3 s: the first pass outlasts several one-second ticks.
    cloud.sim.faults().add(cloud_janitor_sim::faults::FaultRule {
        method: Some("DELETE".into()),
        ..cloud_janitor_sim::faults::FaultRule::latency("/servers/", Duration::from_secs(3))
    });
    let port = free_port();
    let config = cloud.config("janitor.toml", "");
    let mut run = daemon_cli(&config, "* * * * * *", port);
    run.env(QUICK_BUSY.0, QUICK_BUSY.1);
    let daemon = Daemon::spawn(run);
    let base = format!("http://127.0.0.1:{port}");

    // From start-up: health, a landing page and metrics, before any pass.
    wait_for(PASS_DEADLINE, "the daemon answering", || async {
        page(&base, "/healthz").await.is_some()
    })
    .await;
    let (status, landing) = page(&base, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        landing.contains("href=\"/metrics\"") && landing.contains("href=\"/readyz\""),
        "{landing}"
    );
    let (status, ready) = page(&base, "/readyz").await.unwrap();
    assert_eq!((status, ready.lines().next()), (200, Some("ready")));
    assert!(
        ready.contains("history not persistent: no history_file configured"),
        "the note says history is not kept: {ready}"
    );

    wait_for(PASS_DEADLINE, "the first pass counted", || async {
        page(&base, "/metrics").await.is_some_and(|(_, text)| {
            metric(&text, "cloud_janitor_passes_total", &[("result", "leftovers")]) == Some(1.0)
        })
    })
    .await;
    let (_, metrics) = page(&base, "/metrics").await.unwrap();
    let skipped = metric(&metrics, "cloud_janitor_passes_skipped_total", &[]).unwrap();
    assert!(
        skipped >= 2.0,
        "ticks during the pass are skipped and counted: {skipped}"
    );
    assert_eq!(
        metric(&metrics, "cloud_janitor_cloud_up", &[("cloud", "sim")]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "cloud_janitor_leftover_resources",
            &[("cloud", "sim"), ("kind", "security_group"), ("reason", "in_use")]
        ),
        Some(1.0)
    );
    assert!(metric(&metrics, "process_resident_memory_bytes", &[]).unwrap() > 0.0);

    let mut healthcheck = cli();
    healthcheck.args(["healthcheck", "--url", &format!("{base}/healthz")]);
    assert_eq!(run_blocking(healthcheck).code, Some(0));

    // SIGTERM: the daemon finishes the pass in flight and exits 0; the port then stops answering.
    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(PASS_DEADLINE).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let mut healthcheck = cli();
    healthcheck.args(["healthcheck", "--url", &format!("{base}/healthz")]);
    assert_eq!(
        run_blocking(healthcheck).code,
        Some(1),
        "nothing answers any more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_130() {
    let cloud = Cloud::start(true).await;
    // Server deletes hang for a minute: the first signal alone would wait for them.
    cloud.sim.faults().add(cloud_janitor_sim::faults::FaultRule {
        method: Some("DELETE".into()),
        ..cloud_janitor_sim::faults::FaultRule::latency("/servers/", Duration::from_secs(60))
    });
    let config = cloud.config("janitor.toml", "");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let daemon = Daemon::spawn(daemon_cli(&config, "* * * * * *", port));
    // Floating IPs go in the same first wave as the servers: once one is answered, the server
    // deletes are in flight.
    wait_for(PASS_DEADLINE, "a delete in flight", || async {
        cloud
            .writes()
            .iter()
            .any(|w| w.starts_with("DELETE") && w.contains("/floatingips/"))
    })
    .await;
    daemon.signal("TERM");
    // Two signals sent at once can reach the process as one: the second goes once the first was
    // taken (the daemon stops serving its pages as it starts to shut down).
    wait_for(PASS_DEADLINE, "the first signal taken", || async {
        page(&base, "/healthz").await.is_none()
    })
    .await;
    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(130), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_config_keeps_the_last_good_one_and_says_so_until_it_is_fixed() {
    let cloud = Cloud::start(false).await;
    let config = cloud.config("janitor.toml", "");
    let good = std::fs::read_to_string(&config).unwrap();
    let port = free_port();
    let daemon = Daemon::spawn(daemon_cli(&config, "0 0 0 1 1 *", port));
    let base = format!("http://127.0.0.1:{port}");
    wait_for(PASS_DEADLINE, "the daemon ready", || async {
        page(&base, "/readyz")
            .await
            .is_some_and(|(status, _)| status == 200)
    })
    .await;

    std::fs::write(&config, good.replace("tags_all", "tags_everything")).unwrap();
    daemon.signal("HUP");
    wait_for(PASS_DEADLINE, "the refusal in /readyz", || async {
        page(&base, "/readyz")
            .await
            .is_some_and(|(_, text)| text.contains("was rejected"))
    })
    .await;
    let (_, ready) = page(&base, "/readyz").await.unwrap();
    assert!(ready.contains("unknown field `tags_everything`"), "{ready}");
    let (_, metrics) = page(&base, "/metrics").await.unwrap();
    assert_eq!(metric(&metrics, "cloud_janitor_config_valid", &[]), Some(0.0));
    assert_eq!(
        metric(
            &metrics,
            "cloud_janitor_config_reloads_total",
            &[("result", "rejected")]
        ),
        Some(1.0)
    );

    std::fs::write(&config, &good).unwrap();
    daemon.signal("HUP");
    wait_for(PASS_DEADLINE, "the fixed config applied", || async {
        page(&base, "/metrics")
            .await
            .is_some_and(|(_, text)| metric(&text, "cloud_janitor_config_valid", &[]) == Some(1.0))
    })
    .await;
    let (_, ready) = page(&base, "/readyz").await.unwrap();
    assert!(!ready.contains("rejected"), "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_janitor_on_the_same_history_exits_2_naming_the_first() {
    let cloud = Cloud::start(false).await;
    let history = cloud.dir.path().join("history.db");
    let config = cloud.config(
        "janitor.toml",
        &format!("history_file = \"{}\"", history.display()),
    );
    let port = free_port();
    let daemon = Daemon::spawn(daemon_cli(&config, "0 0 0 1 1 *", port));
    wait_for(PASS_DEADLINE, "the daemon ready", || async {
        page(&format!("http://127.0.0.1:{port}"), "/readyz")
            .await
            .is_some()
    })
    .await;
    let once = janitor_cli(&["once"], &config);
    let second = run_blocking(once);
    assert_eq!(second.code, Some(2), "{}", second.both());
    assert!(
        second
            .stderr
            .contains(&format!("held by another janitor (pid {} on ", daemon.pid())),
        "{}",
        second.both()
    );
    // `plan` and `history` only look: they run beside it.
    let plan = janitor_cli(&["plan"], &config);
    assert_eq!(run_blocking(plan).code, Some(0));
    let history = janitor_cli(&["history"], &config);
    let listed = run_blocking(history);
    assert_eq!(listed.code, Some(0), "{}", listed.both());
}

/// A command refused for `--cloud elsewhere`, a cloud the config (one cloud, `sim`) lacks: exit 64,
/// naming the configured clouds.
fn assert_no_cloud_elsewhere(run: &support::Run) {
    assert_eq!(run.code, Some(64), "{}", run.both());
    assert!(
        run.stderr.contains("no cloud `elsewhere` (configured: sim)"),
        "{}",
        run.both()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_attempts_and_why_a_resource_stayed_left_longest_first() {
    let cloud = Cloud::start(true).await;
    let seeded = cloud.demo.seeded.clone().unwrap();
    let history = cloud.dir.path().join("history.db");
    let config = cloud.config(
        "janitor.toml",
        &format!("history_file = \"{}\"", history.display()),
    );
    for _ in 0..2 {
        let mut once = janitor_cli(&["once"], &config);
        once.env(QUICK_BUSY.0, QUICK_BUSY.1);
        assert_eq!(run(once).await.code, Some(1));
    }
    let mut show = janitor_cli(&["history", "--output", "json"], &config);
    show.arg(&seeded.locked_server);
    let run = run(show).await;
    assert_eq!(run.code, Some(0), "{}", run.both());
    let records: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let record = &records[0];
    assert_eq!(record["id"], seeded.locked_server.as_str());
    assert_eq!(record["left_streak"], 2, "left in two passes in a row: {record}");
    assert_eq!(record["last_outcome"], "busy");
    assert_eq!(record["last_error"], "busy: locked");

    let table = janitor_cli(&["history"], &config);
    let table = run_blocking(table);
    let first = table.stdout.lines().nth(1).unwrap();
    assert!(
        first.contains("       2  "),
        "what stayed longest comes first: {}",
        table.stdout
    );

    assert_no_cloud_elsewhere(&run_blocking(janitor_cli(
        &["history", "--cloud", "elsewhere"],
        &config,
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_the_verdict_exits_1_with_the_closest_names_and_64_on_a_bad_config() {
    let cloud = Cloud::start(true).await;
    let config = cloud.config("janitor.toml", "");
    let explain = |args: &[&str]| {
        let mut command = janitor_cli(&["explain"], &config);
        command.args(args);
        run(command)
    };

    let explained = explain(&["ci-job-1-port"]).await;
    assert_eq!(explained.code, Some(0), "{}", explained.both());
    let verdict = explained.line_with("Verdict: ");
    assert!(
        verdict.starts_with("Verdict: would be deleted after server ")
            && verdict.contains(" (ci-job-1-vm-a) and floating_ip ")
            && verdict.ends_with(" (172.24.4.3)"),
        "{verdict}"
    );

    let explained = explain(&["ci-job-3-sg", "--output", "json"]).await;
    assert_eq!(explained.code, Some(0), "{}", explained.both());
    let document: serde_json::Value = serde_json::from_str(&explained.stdout).unwrap();
    let verdict = document[0]["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("held: in use by port ")
            && verdict.ends_with(" (keep-port), which is not selected (not matched: tags_all)"),
        "{verdict}"
    );

    let missed = explain(&["ci-job-1-prot"]).await;
    assert_eq!(missed.code, Some(1), "{}", missed.both());
    assert!(
        missed
            .stdout
            .starts_with("no resource with id or name `ci-job-1-prot` in cloud sim\nThe closest:\n")
            && missed
                .stdout
                .lines()
                .nth(2)
                .is_some_and(|l| l.ends_with(" ci-job-1-port")),
        "{}",
        missed.both()
    );

    assert_no_cloud_elsewhere(&explain(&["--cloud", "elsewhere", "ci-job-1-port"]).await);

    let bad = write(
        cloud.dir.path(),
        "bad.toml",
        "schedule = \"never\"\nclouds = []\n",
    );
    let mut command = janitor_cli(&["explain"], &bad);
    command.arg("x");
    assert_eq!(run(command).await.code, Some(64));
    assert_eq!(cloud.writes(), Vec::<String>::new(), "explain writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_explains_a_held_resource_and_reports_a_suspected_leak() {
    let mut demo = cli();
    demo.arg("demo");
    let demo = run(demo).await;
    assert_eq!(demo.code, Some(0), "{}", demo.both());
    let verdict = demo.line_with("Verdict: ").trim();
    assert!(
        verdict.starts_with("Verdict: held: in use by port ")
            && verdict.ends_with(" (keep-port), which is not selected (not matched: tags_all)"),
        "{verdict}"
    );
    let leaks = demo
        .stdout
        .split("Suspected leaks (1): ")
        .nth(1)
        .and_then(|rest| rest.lines().nth(1))
        .unwrap_or_else(|| panic!("a suspected leak section: {}", demo.both()));
    assert!(
        leaks.contains(" floating_ip ")
            && leaks.ends_with(
                "a floating IP with no port: reported only (delete_suspected_leaks opts in per kind)"
            ),
        "{leaks}"
    );
    for line in [
        r#"cloud_janitor_suspected_leaks{cloud="demo-openstack",kind="floating_ip"} 1"#,
        r#"cloud_janitor_deletes_total{cloud="demo-openstack",kind="load_balancer",outcome="deleted"} 1"#,
    ] {
        assert!(
            demo.stdout.lines().any(|l| l.trim() == line),
            "{line}: {}",
            demo.both()
        );
    }
}
