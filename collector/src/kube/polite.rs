//! Client-side politeness towards the API server, as one tower layer under the
//! collector's `kube::Client`: a token bucket (QPS and burst), a hard cap on the
//! response bytes of the whole collection, and bounded retries of
//! `429 Too Many Requests` that honour `Retry-After` but never wait past the
//! deadline. The [`ApiMeter`] it shares with the caller counts requests, bytes,
//! throttles and waits for the manifest.
//!
//! Why a layer: the byte count must see the bodies and `Retry-After` is an HTTP
//! header, neither of which reaches the caller through `kube::Error`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use kube::client::{Body, DynBody};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest backoff before retrying a `429` that carries no `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The limits of one collection's API client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoliteLimits {
    /// Requests per second once the burst is spent (0 = no limit).
    pub qps: f64,
    /// Requests allowed back to back.
    pub burst: u32,
    /// Hard cap on response body bytes for the whole collection.
    pub max_bytes: u64,
    /// Most `429` retries for the whole collection.
    pub max_retries: u32,
}

/// Why the layer refused or cut a request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoliteError {
    /// The byte cap was reached: the response was cut, later requests are refused.
    #[error("the API byte cap of {0} bytes was reached (--api-max-bytes)")]
    ByteCap(u64),
    /// Waiting for the client-side rate limit would pass the deadline.
    #[error("the client-side rate limit (--api-qps) would delay the request past the deadline")]
    RateLimitDeadline,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Counters and limits shared by the layer and the code issuing requests.
#[derive(Debug)]
pub struct ApiMeter {
    limits: PoliteLimits,
    run_deadline: Instant,
    request_deadline: Mutex<Option<Instant>>,
    bucket: tokio::sync::Mutex<Bucket>,
    requests: AtomicU64,
    bytes: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU32,
    retry_wait_ms: AtomicU64,
    rate_wait_ms: AtomicU64,
    cap_hit: AtomicBool,
    last_refusal: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterReading {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Response body bytes received.
    pub bytes: u64,
    /// `429` answers received.
    pub throttled: u64,
    /// Milliseconds waited before retries.
    pub retry_wait_ms: u64,
    /// Milliseconds waited for the rate limit.
    pub rate_wait_ms: u64,
}

impl ApiMeter {
    /// A meter whose waits never pass `run_deadline`.
    pub fn new(limits: PoliteLimits, run_deadline: Instant) -> Arc<Self> {
        Arc::new(ApiMeter {
            limits,
            run_deadline,
            request_deadline: Mutex::new(None),
            bucket: tokio::sync::Mutex::new(Bucket {
                tokens: f64::from(limits.burst.max(1)),
                last: Instant::now(),
            }),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retries: AtomicU32::new(0),
            retry_wait_ms: AtomicU64::new(0),
            rate_wait_ms: AtomicU64::new(0),
            cap_hit: AtomicBool::new(false),
            last_refusal: Mutex::new(None),
        })
    }

    /// The limits.
    pub fn limits(&self) -> PoliteLimits {
        self.limits
    }

    /// Narrows the deadline of the requests that follow (the caller's own timeout
    /// of one list), so a wait never outlives the caller.
    pub fn set_request_deadline(&self, at: Option<Instant>) {
        if let Ok(mut g) = self.request_deadline.lock() {
            *g = at;
        }
        if let Ok(mut g) = self.last_refusal.lock() {
            *g = None;
        }
    }

    fn deadline(&self) -> Instant {
        let req = self.request_deadline.lock().ok().and_then(|g| *g);
        req.map_or(self.run_deadline, |r| r.min(self.run_deadline))
    }

    /// The counters now.
    pub fn reading(&self) -> MeterReading {
        MeterReading {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retry_wait_ms: self.retry_wait_ms.load(Ordering::Relaxed),
            rate_wait_ms: self.rate_wait_ms.load(Ordering::Relaxed),
        }
    }

    /// True once the byte cap cut a response.
    pub fn cap_hit(&self) -> bool {
        self.cap_hit.load(Ordering::Relaxed)
    }

    /// Why the last `429` since [`ApiMeter::set_request_deadline`] was not retried.
    pub fn last_refusal(&self) -> Option<String> {
        self.last_refusal.lock().ok().and_then(|g| g.clone())
    }

    fn refuse(&self, why: String) {
        if let Ok(mut g) = self.last_refusal.lock() {
            *g = Some(why);
        }
    }

    /// Takes one token, waiting for it when the burst is spent.
    async fn acquire(&self) -> Result<(), PoliteError> {
        let qps = self.limits.qps;
        if !(qps.is_finite() && qps > 0.0) {
            return Ok(());
        }
        let burst = f64::from(self.limits.burst.max(1));
        let wait = {
            let mut b = self.bucket.lock().await;
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * qps).min(burst);
            b.last = now;
            let wait = if b.tokens >= 1.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64((1.0 - b.tokens) / qps)
            };
            if now + wait > self.deadline() {
                return Err(PoliteError::RateLimitDeadline);
            }
            // Reserving (the balance may go negative) keeps callers in lock order.
            b.tokens -= 1.0;
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            self.rate_wait_ms
                .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn count_bytes(&self, n: usize) -> Result<(), PoliteError> {
        let total = self.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limits.max_bytes {
            self.cap_hit.store(true, Ordering::Relaxed);
            return Err(PoliteError::ByteCap(self.limits.max_bytes));
        }
        Ok(())
    }

    /// Decides whether a `429` is retried, and after how long.
    fn retry_after_429(&self, headers: &http::HeaderMap, attempt: u32) -> Option<Duration> {
        let wait = retry_after(headers).unwrap_or_else(|| backoff(attempt));
        let used = self.retries.load(Ordering::Relaxed);
        if used >= self.limits.max_retries {
            self.refuse(format!(
                "not retried: the collection's {} retries after 429 are spent (--api-max-retries)",
                self.limits.max_retries
            ));
            return None;
        }
        if Instant::now() + wait >= self.deadline() {
            self.refuse(format!(
                "not retried: waiting {:.1}s (Retry-After) would pass the deadline",
                wait.as_secs_f64()
            ));
            return None;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        Some(wait)
    }
}

/// `Retry-After` in seconds (the form the API server sends); HTTP dates are not honoured.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn backoff(attempt: u32) -> Duration {
    (Duration::from_millis(500) * 2u32.saturating_pow(attempt.min(8))).min(MAX_BACKOFF)
}

/// The layer: wrap the client's service stack with it (`ClientBuilder::with_layer`).
#[derive(Debug, Clone)]
pub struct PoliteLayer {
    meter: Arc<ApiMeter>,
}

impl PoliteLayer {
    /// A layer counting into `meter`.
    pub fn new(meter: Arc<ApiMeter>) -> Self {
        PoliteLayer { meter }
    }
}

impl<S> tower::Layer<S> for PoliteLayer {
    type Service = Polite<S>;

    fn layer(&self, inner: S) -> Polite<S> {
        Polite {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            meter: self.meter.clone(),
        }
    }
}

/// The service [`PoliteLayer`] produces.
pub struct Polite<S> {
    inner: Arc<tokio::sync::Mutex<S>>,
    meter: Arc<ApiMeter>,
}

impl<S> Clone for Polite<S> {
    fn clone(&self) -> Self {
        Polite {
            inner: self.inner.clone(),
            meter: self.meter.clone(),
        }
    }
}

type Resp = http::Response<Box<DynBody>>;

fn rebuild(parts: &http::request::Parts, body: Body) -> http::Request<Body> {
    let mut req = http::Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

impl<S> tower::Service<http::Request<Body>> for Polite<S>
where
    S: tower::Service<http::Request<Body>, Response = Resp, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness of the inner stack is awaited per call, under its lock.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let meter = self.meter.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let mut body = Some(body);
            let mut attempt = 0u32;
            loop {
                if meter.cap_hit() {
                    return Err(PoliteError::ByteCap(meter.limits.max_bytes).into());
                }
                meter.acquire().await?;
                // GET bodies are empty and clonable; anything else is sent once.
                let (this_body, can_retry) = match body.as_ref().and_then(Body::try_clone) {
                    Some(b) => (b, true),
                    None => (body.take().unwrap_or_else(Body::empty), false),
                };
                let fut = {
                    let mut svc = inner.lock().await;
                    futures::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                    svc.call(rebuild(&parts, this_body))
                };
                meter.requests.fetch_add(1, Ordering::Relaxed);
                let resp = fut.await?;
                if resp.status() == http::StatusCode::TOO_MANY_REQUESTS {
                    meter.throttled.fetch_add(1, Ordering::Relaxed);
                    if can_retry && let Some(wait) = meter.retry_after_429(resp.headers(), attempt)
                    {
                        drain(resp.into_body(), &meter).await;
                        tracing::info!(
                            wait_ms = wait.as_millis() as u64,
                            "API server answered 429; retrying after Retry-After"
                        );
                        tokio::time::sleep(wait).await;
                        meter
                            .retry_wait_ms
                            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                        attempt += 1;
                        continue;
                    }
                }
                let meter = meter.clone();
                return Ok(
                    resp.map(move |b| Box::new(CountingBody { inner: b, meter }) as Box<DynBody>)
                );
            }
        })
    }
}

/// Reads and counts a body that is thrown away (a `429`'s `Status`), so the
/// connection can be reused.
async fn drain(mut body: Box<DynBody>, meter: &ApiMeter) {
    loop {
        let frame = futures::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref()
                    && meter.count_bytes(d.len()).is_err()
                {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// A response body that counts its bytes into the meter and fails once the cap is passed.
struct CountingBody {
    inner: Box<DynBody>,
    meter: Arc<ApiMeter>,
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut *this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref()
                    && let Err(e) = this.meter.count_bytes(d.len())
                {
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(qps: f64, burst: u32) -> PoliteLimits {
        PoliteLimits {
            qps,
            burst,
            max_bytes: 100,
            max_retries: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_spaces_requests_after_the_burst() {
        let m = ApiMeter::new(limits(2.0, 3), Instant::now() + Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            m.acquire().await.unwrap();
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..4 {
            m.acquire().await.unwrap();
        }
        // Four more at 2 per second: 2 s of virtual time.
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1990) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
        assert!(m.reading().rate_wait_ms >= 1900);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_refuses_to_wait_past_the_deadline() {
        let m = ApiMeter::new(limits(0.1, 1), Instant::now() + Duration::from_secs(5));
        m.acquire().await.unwrap();
        assert_eq!(m.acquire().await, Err(PoliteError::RateLimitDeadline));
    }

    #[test]
    fn byte_cap_trips_once_passed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let m = rt.block_on(async {
            ApiMeter::new(limits(0.0, 1), Instant::now() + Duration::from_secs(5))
        });
        assert!(m.count_bytes(60).is_ok());
        assert!(!m.cap_hit());
        assert_eq!(m.count_bytes(41), Err(PoliteError::ByteCap(100)));
        assert!(m.cap_hit());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_budgeted_and_bounded_by_the_deadline() {
        let m = ApiMeter::new(limits(0.0, 1), Instant::now() + Duration::from_secs(10));
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(m.retry_after_429(&h, 0), Some(Duration::from_secs(3)));
        h.insert(http::header::RETRY_AFTER, "30".parse().unwrap());
        assert_eq!(m.retry_after_429(&h, 1), None);
        assert!(
            m.last_refusal()
                .unwrap()
                .contains("would pass the deadline")
        );
        h.insert(http::header::RETRY_AFTER, "1".parse().unwrap());
        assert_eq!(m.retry_after_429(&h, 1), Some(Duration::from_secs(1)));
        // Budget of 2 spent.
        assert_eq!(m.retry_after_429(&h, 2), None);
        assert!(
            m.last_refusal()
                .unwrap()
                .contains("retries after 429 are spent")
        );
        // No header: exponential backoff.
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(10), MAX_BACKOFF);
    }
}
