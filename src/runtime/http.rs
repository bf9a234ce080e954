//! The one HTTP port: `/metrics`, `/healthz`, `/readyz`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body::Frame;

use super::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Caches have their first list and leadership is known.
    pub ready: Arc<AtomicBool>,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        Body::new(MetricsText {
            metrics: h.metrics,
            next_part: 0,
            ready: VecDeque::new(),
        }),
    )
}

/// The metrics' text, encoded a part at a time as the connection takes it
/// (see `Metrics::encode_part`): a scrape at 20,000 pools holds ~1.5 MB,
/// not the whole ~5 MB. The length is not known ahead, so HTTP/1.1
/// replies are chunked.
struct MetricsText {
    metrics: Arc<Metrics>,
    next_part: usize,
    ready: VecDeque<Bytes>,
}

impl http_body::Body for MetricsText {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            let Some(part) = self.metrics.encode_part(self.next_part) else {
                return Poll::Ready(None);
            };
            self.next_part += 1;
            self.ready = part.into();
        }
    }
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if h.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for caches or leader election",
        )
    }
}

/// Binds the port now (so a bad address fails at start-up) and returns the
/// serving future and the bound address.
pub async fn bind(
    addr: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let serve = axum::serve(listener, router(health)).with_graceful_shutdown(shutdown);
    Ok((local, async move { serve.await }))
}
