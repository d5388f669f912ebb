//! The daemon: serves `/metrics`, `/healthz` and `/readyz` from start-up, runs a pass on each cron
//! tick (never two at once: a tick during a pass is skipped and counted), and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::reload::Reloader;

/// Whether the daemon is ready: set once the scheduler runs, cleared at shutdown; with notes an
/// operator should see in `/readyz` (history not persistent, for one).
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    notes: Arc<Mutex<Vec<String>>>,
}

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Replaces the notes `/readyz` shows.
    pub fn set_notes(&self, notes: Vec<String>) {
        *self.notes.lock().unwrap_or_else(PoisonError::into_inner) = notes;
    }

    fn text(&self) -> String {
        let mut text = String::from(if self.is_ready() { "ready\n" } else { "not ready\n" });
        for note in self.notes.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            text.push_str(note);
            text.push('\n');
        }
        text
    }
}

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

async fn metrics_page(State(health): State<Health>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        health.metrics.render(),
    )
}

/// A page for people who open the port in a browser.
async fn landing() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        concat!(
            "<!doctype html>\n<html><head><title>cloud-janitor</title></head><body>\n",
            "<h1>cloud-janitor ",
            env!("CARGO_PKG_VERSION"),
            "</h1>\n<ul>\n",
            "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n",
            "<li><a href=\"/healthz\">/healthz</a>: the process is alive</li>\n",
            "<li><a href=\"/readyz\">/readyz</a>: the scheduler runs, and what an operator should know</li>\n",
            "</ul>\n</body></html>\n"
        ),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Health>) -> (StatusCode, String) {
    let status = if health.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, health.readiness.text())
}

/// Binds the metrics server. Returns the bound address (useful with port 0) and the serving future.
pub async fn serve_metrics(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Health { metrics, readiness });
    let serve = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
    };
    Ok((address, serve))
}

/// Sets the flag back to false when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Runs a pass on every tick of the config's schedule until `cancel` fires, then waits for the
/// running pass (which starts no new delete) to finish. The config is read again before each pass
/// and on SIGHUP.
pub async fn run_schedule(reloader: Arc<Reloader>, readiness: Readiness, cancel: CancellationToken) {
    let running = Arc::new(AtomicBool::new(false));
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    let mut hangups = hangups();
    readiness.set_notes(reloader.notes());
    readiness.set_ready(true);
    loop {
        let schedule = reloader.config().schedule;
        let Some(next) = schedule.upcoming(Utc).next() else {
            tracing::warn!("the schedule has no future tick; no more passes will run");
            cancel.cancelled().await;
            break;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            _ = next_hangup(&mut hangups) => {
                tracing::info!("SIGHUP: reading the config again");
                let _ = reloader.reload();
                readiness.set_notes(reloader.notes());
                continue;
            }
        }
        if running.swap(true, Ordering::SeqCst) {
            reloader.janitor().metrics().passes_skipped_total.inc();
            tracing::warn!("a scheduled pass was skipped: the previous pass is still running");
            continue;
        }
        let _ = reloader.reload();
        let janitor = reloader.janitor();
        let (reloader, running, cancel, readiness) = (
            reloader.clone(),
            running.clone(),
            cancel.clone(),
            readiness.clone(),
        );
        current = Some(tokio::spawn(async move {
            // Cleared however the task ends, unwinding included: a pass that dies must not leave
            // every later tick skipped as "still running".
            let _running = ClearOnDrop(running);
            let report = janitor.run_pass(cancel, None).await;
            tracing::info!(result = report.result().as_str(), "{}", report.render_table());
            readiness.set_notes(reloader.notes());
        }));
    }
    readiness.set_ready(false);
    if let Some(pass) = current {
        tracing::info!("shutting down: waiting for in-flight deletes to finish");
        if let Err(error) = pass.await {
            tracing::error!(error = %error, "the last pass ended abnormally");
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup())
            .map_err(|error| tracing::warn!(%error, "SIGHUP cannot be caught; the config is read before each pass only"))
            .ok()
    }
}

/// Waits for the next SIGHUP; forever where there is none.
async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        if signal.recv().await.is_some() {
            return;
        }
    }
    std::future::pending::<()>().await
}
