//! The instrumented HTTP client every provider uses: one reqwest client per cloud with timeouts, TLS
//! settings and a cap on the size of an answer's body, every request counted in
//! `cloud_janitor_api_requests_total`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode, Url};

use super::ProviderError;
use crate::metrics::Metrics;
use crate::policy::{decide, Decision, GiveUpReason, RetryPolicy};

/// How a cloud's TLS certificates are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsTrust {
    /// The bundled Mozilla roots (webpki-roots), as most public clouds need.
    #[default]
    BundledRoots,
    /// The bundled roots plus the PEM certificates in this file (a private CA).
    CaFile(PathBuf),
    /// No certificate checks at all: only when the operator opted out explicitly.
    InsecureSkipVerify,
}

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl HttpResponse {
    /// The body as text, lossily, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Retry-After`, in seconds or as an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(&self.headers)
    }
}

/// Parses a `Retry-After` header: delay seconds, or an HTTP date (the wait until then; none when
/// it has passed).
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Spaces requests evenly so that one cloud sees at most `per_second` of them, whatever the
/// concurrency: the API's own rate limit is never the first to say no.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_slot: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    /// `per_second` must be positive and finite (the settings validate it).
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next_slot: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this request's slot.
    pub async fn wait_turn(&self) {
        let wait = {
            let mut next_slot = self.next_slot.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next_slot).max(now);
            *next_slot = slot + self.interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The largest answer body read by default, 16 MiB: several times the largest page the janitor asks
/// for (a thousand detailed Nova servers make about 3 MB). A body past it (a runaway listing, an
/// endless stream) is refused, so what a pass holds in memory stays bounded by the cap times the
/// requests in flight.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// The default of every cloud's `max_response_bytes`.
pub fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// The default of every cloud's `request_timeout`: 30 s.
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Checks a `max_response_bytes` setting.
pub fn validate_max_response_bytes(bytes: u64) -> Result<(), String> {
    if bytes == 0 {
        return Err("max_response_bytes: must be at least 1".to_string());
    }
    Ok(())
}

/// Checks a `max_requests_per_second` setting.
pub fn validate_rate(per_second: Option<f64>) -> Result<(), String> {
    match per_second {
        Some(rate) if !(rate.is_finite() && rate > 0.0) => Err(format!(
            "max_requests_per_second: must be a positive number, not {rate}"
        )),
        _ => Ok(()),
    }
}

/// One cloud's HTTP client.
#[derive(Clone)]
pub struct ApiClient {
    client: reqwest::Client,
    cloud: String,
    metrics: Arc<Metrics>,
    limiter: Option<Arc<RateLimiter>>,
    retry: RetryPolicy,
    /// Answers that asked to slow down (429, 503) or never came, shared by the client's clones.
    throttled: Arc<AtomicU64>,
    max_response_bytes: u64,
}

impl ApiClient {
    /// Builds the client; `timeout` bounds every request from connect to the last body byte.
    pub fn new(
        cloud: &str,
        metrics: Arc<Metrics>,
        trust: &TlsTrust,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        // Servers close idle keep-alive connections (gunicorn, which serves most OpenStack APIs,
        // after 2 s); reusing one then fails the request. Idle connections are dropped before that.
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_millis(1500))
            .user_agent(concat!("cloud-janitor/", env!("CARGO_PKG_VERSION")));
        match trust {
            TlsTrust::BundledRoots => {}
            TlsTrust::CaFile(path) => {
                for certificate in read_certificates(path)? {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            TlsTrust::InsecureSkipVerify => builder = builder.danger_accept_invalid_certs(true),
        }
        let client = builder.build().map_err(|error| {
            ProviderError::Config(format!("cloud {cloud}: cannot build an HTTP client: {error}"))
        })?;
        Ok(ApiClient {
            client,
            cloud: cloud.to_string(),
            metrics,
            limiter: None,
            retry: RetryPolicy::default(),
            throttled: Arc::new(AtomicU64::new(0)),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Refuses answers whose body is larger than `bytes` (see [`ApiClient::send`]).
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Retries reads by `policy` (see [`ApiClient::read`]).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Runs `request`, a read the janitor may repeat safely (a list page, a status read, a token
    /// request, a task's status), again while it fails in a way that passes: 429 and 5xx (honouring
    /// `Retry-After`), no answer, a timeout. The policy and its pure decision are the executor's
    /// (`policy::decide`), so reads and deletes back off alike; anything else is returned at once.
    /// Writes are never retried here: the executor requeues them, with a status read first.
    pub async fn read<T, F, Fut>(&self, service: &str, what: &str, mut request: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 0;
        loop {
            let error = match request().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            attempt += 1;
            match decide(error.class(), attempt, &self.retry, rand::random::<f64>()) {
                Decision::Retry(delay) => {
                    self.metrics.api_retry(&self.cloud, service);
                    tracing::info!(cloud = %self.cloud, what, attempt, delay = ?delay, %error, "read failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Decision::GiveUp(GiveUpReason::AttemptsExhausted) => {
                    return Err(ProviderError::Exhausted {
                        attempts: attempt,
                        source: Box::new(error),
                    })
                }
                Decision::Done | Decision::Requeue(_) | Decision::GiveUp(GiveUpReason::Permanent) => {
                    return Err(error)
                }
            }
        }
    }

    /// How many answers so far were 429 or 503, or never came (a timeout, a refused connection).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Limits this cloud to `per_second` requests (none when `None`).
    pub fn with_rate_limit(mut self, per_second: Option<f64>) -> Self {
        self.limiter = per_second.map(|rate| Arc::new(RateLimiter::new(rate)));
        self
    }

    /// Starts a request; finish it with [`ApiClient::send`].
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends the request and reads the whole body, counting it under `service`. Any status is
    /// returned as `Ok`: classifying it is the provider's job. A missing answer is an error, and so
    /// is a body larger than `max_response_bytes`, which is read no further (a
    /// [`ProviderError::Decode`]: asking again would bring the same).
    pub async fn send(&self, service: &str, request: RequestBuilder) -> Result<HttpResponse, ProviderError> {
        let (client, request) = request.build_split();
        let request = request.map_err(|error| ProviderError::Config(format!("invalid request: {error}")))?;
        let method = request.method().to_string();
        let url = redact_query(request.url());
        if let Some(limiter) = &self.limiter {
            limiter.wait_turn().await;
        }
        let cap = self.max_response_bytes;
        let outcome = async {
            let mut response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            // A promised length over the cap is refused before a byte of the body is read.
            if response.content_length().is_some_and(|length| length > cap) {
                return Ok(Err(status));
            }
            let mut body = bytes::BytesMut::new();
            while let Some(chunk) = response.chunk().await? {
                if (body.len() + chunk.len()) as u64 > cap {
                    return Ok(Err(status));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok(HttpResponse {
                status,
                headers,
                body: body.freeze(),
            }))
        }
        .await;
        match outcome {
            Ok(Ok(response)) => {
                if matches!(response.status.as_u16(), 429 | 503) {
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                }
                self.metrics
                    .api_request(&self.cloud, service, Some(response.status.as_u16()));
                Ok(response)
            }
            Ok(Err(status)) => {
                self.metrics
                    .api_request(&self.cloud, service, Some(status.as_u16()));
                Err(ProviderError::Decode {
                    url,
                    message: format!(
                        "{method}: HTTP {}: the answer is larger than max_response_bytes ({cap} bytes) \
                         and was not read further; raise max_response_bytes for this cloud, or lower page_size",
                        status.as_u16()
                    ),
                })
            }
            Err(source) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                self.metrics.api_request(&self.cloud, service, None);
                Err(ProviderError::Network { method, url, source })
            }
        }
    }
}

/// A request path below an API base: segments and query pairs, each percent-encoded on its own, so
/// that an id, name or tag holding `/`, `?`, `&`, `#`, `=` or a space stays one value and cannot
/// change the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiPath {
    segments: Vec<String>,
    query: Vec<(&'static str, String)>,
}

impl ApiPath {
    /// The path made of `segments`.
    pub fn new<S: AsRef<str>>(segments: impl IntoIterator<Item = S>) -> Self {
        ApiPath::default().join(segments)
    }

    /// This path with `segments` appended.
    pub fn join<S: AsRef<str>>(&self, segments: impl IntoIterator<Item = S>) -> Self {
        let mut path = self.clone();
        path.segments
            .extend(segments.into_iter().map(|s| s.as_ref().to_string()));
        path
    }

    /// This path with the query pair `key=value` appended.
    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// The URL of this path below `base` (which keeps its own path: `.../v2.0`, `.../api2/json`).
    pub fn url(&self, base: &Url) -> Result<Url, ProviderError> {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::Config(format!("`{base}` cannot be the base of an API path")))?
            .pop_if_empty()
            .extend(&self.segments);
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        Ok(url)
    }
}

/// The URL for messages and logs: path only, query dropped (it can carry filters but never secrets
/// today; dropping it keeps messages short and safe if that ever changes).
fn redact_query(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.to_string()
}

fn read_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, ProviderError> {
    let pem = std::fs::read(path)
        .map_err(|error| ProviderError::Config(format!("cannot read CA file {}: {error}", path.display())))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
        ProviderError::Config(format!(
            "CA file {} holds no usable PEM certificate: {error}",
            path.display()
        ))
    })?;
    if certificates.is_empty() {
        return Err(ProviderError::Config(format!(
            "CA file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_and_query_values_stay_one_value_each() {
        let base = Url::parse("http://127.0.0.1:8774/compute/v2.1/").expect("a URL");
        let url = ApiPath::new(["os-keypairs", "ci key/1?#"])
            .query("tags", "ci job&x=1#frag")
            .query("limit", "2")
            .url(&base)
            .expect("an http base");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8774/compute/v2.1/os-keypairs/ci%20key%2F1%3F%23?tags=ci+job%26x%3D1%23frag&limit=2"
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("tags".to_string(), "ci job&x=1#frag".to_string()),
                ("limit".to_string(), "2".to_string())
            ]
        );
        let bare = ApiPath::new(["nodes", "pve1"]).join(["qemu", "101"]);
        let base = Url::parse("https://pve:8006/api2/json").expect("a URL");
        assert_eq!(
            bare.url(&base).expect("an https base").as_str(),
            "https://pve:8006/api2/json/nodes/pve1/qemu/101"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_spaces_requests_evenly() {
        let limiter = Arc::new(RateLimiter::new(10.0));
        let started = tokio::time::Instant::now();
        let waits: Vec<_> = (0..5)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.wait_turn().await })
            })
            .collect();
        for wait in waits {
            wait.await.unwrap();
        }
        // Five requests at 10/s: the first at once, the last 400 ms later.
        assert_eq!(started.elapsed(), Duration::from_millis(400));
        assert!(validate_rate(Some(0.0)).is_err());
        assert!(validate_rate(Some(f64::NAN)).is_err());
        assert!(validate_rate(Some(2.5)).is_ok() && validate_rate(None).is_ok());
    }

    /// Serves one connection on 127.0.0.1: `head`, then `chunk` (when given) as chunked body chunks
    /// until the client hangs up. Returns the base URL.
    async fn serve_forever(head: &'static str, chunk: Option<&'static [u8]>) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url =
            Url::parse(&format!("http://{}/", listener.local_addr().expect("an address"))).expect("a URL");
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0; 4096];
            let _ = socket.read(&mut request).await;
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            match chunk {
                Some(chunk) => {
                    let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                    while socket.write_all(&framed).await.is_ok() {}
                }
                // Nothing more: wait for the client to hang up.
                None => while socket.read(&mut request).await.is_ok_and(|read| read > 0) {},
            }
        });
        url
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused_and_read_no_further() {
        let client = ApiClient::new(
            "c",
            Arc::new(Metrics::new()),
            &TlsTrust::BundledRoots,
            Duration::from_secs(30),
        )
        .expect("a client")
        .with_max_response_bytes(4096);
        let endless = serve_forever(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Some(&[b' '; 1000]),
        )
        .await;
        let error = client
            .send("svc", client.request(Method::GET, endless))
            .await
            .expect_err("over the cap");
        assert_eq!(error.class(), crate::provider::ErrorClass::Permanent);
        assert!(
            error.to_string().contains(
                "GET: HTTP 200: the answer is larger than max_response_bytes (4096 bytes) and was not read further"
            ),
            "{error}"
        );
        // A length announced past the cap is refused before any of the body is read.
        let announced = serve_forever("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", None).await;
        let error = client
            .send("svc", client.request(Method::GET, announced))
            .await
            .expect_err("over the cap");
        assert!(error.to_string().contains("(4096 bytes)"), "{error}");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            parse_retry_after(&headers)
        };
        assert_eq!(header("7"), Some(Duration::from_secs(7)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let wait = header(&soon).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(
            header("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a past date: now"
        );
        assert_eq!(header("soon"), None);
    }
}
