//! Secrets never leave the janitor: passwords, application-credential secrets and Proxmox token
//! secrets appear in no log line (at trace level), metric, plan, report, history or error message,
//! whether the cloud accepts them or rejects them.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use cloud_janitor::demo::config_text;
use support::{janitor_cli, proxmox, run, write, Cloud, Run};

/// Everything a run leaves for people and machines to read, as one text.
fn everything(runs: &[Run], files: &[PathBuf]) -> String {
    let mut text: String = runs.iter().map(Run::both).collect();
    for file in files {
        for candidate in [file.clone(), PathBuf::from(format!("{}-wal", file.display()))] {
            if let Ok(bytes) = std::fs::read(&candidate) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    text
}

/// `once` (trace logs, JSON report, metrics file), `plan` and `history` with `config`.
async fn every_output(config: &Path, dir: &Path) -> (Vec<Run>, Vec<PathBuf>) {
    let metrics = dir.join("metrics.prom");
    let mut once = janitor_cli(&["once", "--output", "json"], config);
    once.env("CLOUD_JANITOR_LOG", "trace")
        .env("CLOUD_JANITOR_WAITS__BUSY_TIMEOUT", "300ms")
        .arg("--metrics-file")
        .arg(&metrics);
    let mut plan = janitor_cli(&["plan", "--output", "json"], config);
    plan.env("CLOUD_JANITOR_LOG", "trace");
    let history = janitor_cli(&["history", "--output", "json"], config);
    let runs = vec![run(once).await, run(plan).await, run(history).await];
    (runs, vec![metrics, dir.join("history.db")])
}

/// A copy of `config` (beside it) whose OpenStack cloud logs in with the application credential.
fn with_application_credential(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    write(
        config.parent().unwrap(),
        "appcred.toml",
        &text.replace("cloud = \"sim\"", "cloud = \"sim-appcred\""),
    )
}

fn assert_absent(text: &str, secrets: &[&str]) {
    assert!(text.len() > 1000, "there is output to look through: {text}");
    for secret in secrets {
        assert!(!secret.is_empty());
        if let Some(at) = text.find(secret) {
            let start = at.saturating_sub(200);
            panic!(
                "`{secret}` leaked: ...{}...",
                &text[start..(at + secret.len() + 50).min(text.len())]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_secrets_appear_in_no_output() {
    let cloud = Cloud::start(true).await;
    let (cluster, _cluster_dir) = proxmox(true).await;
    let token_secret = cluster.sim.token_secret();
    let config = config_text(cloud.clouds_yaml(), "127.0.0.1:0", Some(&cluster));
    let history = cloud.dir.path().join("history.db");
    let config = write(
        cloud.dir.path(),
        "janitor.toml",
        &format!("history_file = \"{}\"\n{config}", history.display()),
    );
    let (runs, files) = every_output(&config, cloud.dir.path()).await;
    assert_eq!(runs[0].code, Some(1), "{}", runs[0].both());
    assert!(runs[0].stderr.contains("TRACE"), "trace logs were on");
    // The application credential is used by its own run.
    let appcred = with_application_credential(&config);
    let (more_runs, more_files) = every_output(&appcred, cloud.dir.path()).await;
    assert_ne!(more_runs[0].code, Some(64), "{}", more_runs[0].both());
    let text = everything(&runs, &files) + &everything(&more_runs, &more_files);
    assert_absent(&text, &["demopass", "janitor-appcred-secret", &token_secret]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_secrets_appear_in_no_error_message() {
    let cloud = Cloud::start(false).await;
    let (cluster, cluster_dir) = proxmox(false).await;
    let (password, appcred_secret, token_secret) = (
        "Rejected-Passw0rd-4711",
        "Rejected-AppCred-4711",
        "Rejected-PveToken-4711",
    );
    let yaml = std::fs::read_to_string(cloud.clouds_yaml())
        .unwrap()
        .replace("demopass", password)
        .replace("janitor-appcred-secret", appcred_secret);
    std::fs::write(cloud.clouds_yaml(), yaml).unwrap();
    std::fs::write(&cluster.token_secret_file, token_secret).unwrap();
    let config = write(
        cloud.dir.path(),
        "janitor.toml",
        &config_text(cloud.clouds_yaml(), "127.0.0.1:0", Some(&cluster)),
    );
    let (runs, files) = every_output(&config, cloud.dir.path()).await;
    assert_eq!(runs[0].code, Some(2), "{}", runs[0].both());
    assert!(
        runs[0].stdout.contains("authentication against"),
        "the rejection is reported: {}",
        runs[0].both()
    );
    let appcred = with_application_credential(&config);
    let (more_runs, more_files) = every_output(&appcred, cloud.dir.path()).await;
    assert_eq!(more_runs[0].code, Some(2), "{}", more_runs[0].both());
    let text = everything(&runs, &files) + &everything(&more_runs, &more_files);
    assert_absent(&text, &[password, appcred_secret, token_secret]);
    drop(cluster_dir);
}
