//! `cloud-janitor once`: one pass, its report on stdout, and an exit status that says how it went.
//! Its metrics can be written to a file (a node exporter's textfile collector) or pushed to a
//! Prometheus Pushgateway, so that a scheduled `once` (a Kubernetes CronJob) is watched as the daemon is.

use std::path::PathBuf;
use std::time::Duration;

use super::{CommandError, Exit, PassArgs, TableOrJson};
use crate::shutdown::shutdown_token;

/// The Pushgateway group a bare `--pushgateway` address pushes to: the pushed series carry
/// `job="cloud-janitor-once"`, which `deploy/prometheus/cloud-janitor-once-rules.yaml` selects.
pub const DEFAULT_PUSH_GROUP: &str = "job/cloud-janitor-once";

/// How long one push may take: a Pushgateway that does not answer must not hold the Job up.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub pass: PassArgs,
    /// Also write the Prometheus metrics to this file at the end.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    /// Also push the metrics to this Prometheus Pushgateway at the end (HTTP PUT: they replace the
    /// group's earlier ones). `http://HOST:9091` pushes to the group `job/cloud-janitor-once`; a URL
    /// whose path is `/metrics/job/NAME[/LABEL/VALUE...]` names the group itself. A failed push is
    /// logged and leaves the exit status as the pass made it.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
    pub output: TableOrJson,
}

pub async fn run(args: Args) -> Result<Exit, CommandError> {
    let (metrics, _, janitor) = args.pass.load()?;
    for note in janitor.notes() {
        tracing::warn!("{note}");
    }
    let report = janitor.run_pass(shutdown_token(), None).await;
    janitor.history().flush();
    match args.output {
        TableOrJson::Table => print!("{}", report.render_table()),
        TableOrJson::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    // Rendered once, after the pass, for the file and the push alike.
    let exposition = (args.metrics_file.is_some() || args.pushgateway.is_some()).then(|| metrics.render());
    if let (Some(path), Some(exposition)) = (args.metrics_file, &exposition) {
        std::fs::write(&path, exposition).map_err(CommandError::io(format!(
            "cannot write metrics to {}",
            path.display()
        )))?;
    }
    if let (Some(pushgateway), Some(exposition)) = (args.pushgateway, exposition) {
        // The pass has run and its report is out: a lost push is the monitoring's problem, which
        // the Pushgateway's staleness alert (CloudJanitorOnceNotReporting) reports, not the pass's.
        let url = push_url(&pushgateway);
        match push(&url, exposition).await {
            Ok(()) => tracing::info!(url = %url, "metrics pushed"),
            Err(error) => tracing::error!(url = %url, %error, "cannot push the metrics"),
        }
    }
    Ok(report.result().into())
}

/// Why the metrics did not reach the Pushgateway.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("PUT {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("PUT {url}: HTTP {status}: {body}")]
    Refused {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
}

/// The URL the metrics are PUT to: `pushgateway` itself when its path names a group
/// (`/metrics/job/...`), else `pushgateway` with the default group.
pub fn push_url(pushgateway: &str) -> String {
    if pushgateway.contains("/metrics/job/") {
        pushgateway.to_string()
    } else {
        format!(
            "{}/metrics/{DEFAULT_PUSH_GROUP}",
            pushgateway.trim_end_matches('/')
        )
    }
}

/// PUTs `exposition` (Prometheus text format) to `url`. PUT, not POST: the group is replaced as a
/// whole, so a series an earlier pass had (a kind that is now clean) does not linger.
pub async fn push(url: &str, exposition: String) -> Result<(), PushError> {
    let request = |source| PushError::Request {
        url: url.to_string(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .build()
        .map_err(request)?;
    let response = client
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)
        .body(exposition)
        .send()
        .await
        .map_err(request)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(PushError::Refused {
        url: url.to_string(),
        status,
        body: body.trim().chars().take(200).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::put;

    use super::*;
    use crate::metrics::Metrics;

    /// What the tiny Pushgateway below received: path, content type, body.
    type Received = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A stand-in Pushgateway on 127.0.0.1:0 that records every PUT and answers `status`.
    async fn pushgateway(status: StatusCode) -> (String, Received) {
        let received: Received = Arc::default();
        let log = received.clone();
        let app = axum::Router::new().route(
            "/{*group}",
            put(move |uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                async move {
                    let content_type = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    log.lock().unwrap().push((
                        uri.path().to_string(),
                        content_type,
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    (status, "push refused: bad label")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}"), received)
    }

    #[test]
    fn a_bare_address_gets_the_default_group_and_a_group_path_is_kept() {
        let cases = [
            ("http://pg:9091", "http://pg:9091/metrics/job/cloud-janitor-once"),
            ("http://pg:9091/", "http://pg:9091/metrics/job/cloud-janitor-once"),
            ("http://pg:9091/metrics/job/ci", "http://pg:9091/metrics/job/ci"),
            (
                "http://pg:9091/metrics/job/ci/cluster/east",
                "http://pg:9091/metrics/job/ci/cluster/east",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(push_url(given), expected, "for {given}");
        }
    }

    #[tokio::test]
    async fn the_metrics_are_put_to_the_group_as_prometheus_text() {
        let (address, received) = pushgateway(StatusCode::OK).await;
        let metrics = Metrics::new();
        metrics.pass_started();
        push(&push_url(&address), metrics.render()).await.unwrap();

        let received = received.lock().unwrap();
        assert_eq!(received.len(), 1, "one PUT");
        let (path, content_type, body) = &received[0];
        assert_eq!(path, "/metrics/job/cloud-janitor-once");
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        assert!(
            body.contains("cloud_janitor_last_pass_start_timestamp_seconds "),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_refused_push_names_the_url_and_the_status() {
        let (address, _) = pushgateway(StatusCode::BAD_REQUEST).await;
        let url = format!("{address}/metrics/job/ci");
        let error = push(&url, "x 1\n".to_string()).await.unwrap_err();
        let message = error.to_string().replace(&address, "http://PUSHGATEWAY");
        insta::assert_snapshot!(message, @"PUT http://PUSHGATEWAY/metrics/job/ci: HTTP 400 Bad Request: push refused: bad label");
    }

    #[tokio::test]
    async fn an_unreachable_pushgateway_is_an_error_not_a_hang() {
        // Bound and dropped: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = push_url(&format!("http://127.0.0.1:{port}"));
        let error = push(&url, String::new()).await.unwrap_err();
        assert!(matches!(error, PushError::Request { .. }), "{error}");
    }
}
