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
use http_body::{Frame, SizeHint};

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
    let chunks = h.metrics.encode_chunks();
    let length = chunks.iter().map(|c| c.len() as u64).sum();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        Body::new(ReadyChunks {
            chunks: chunks.into(),
            remaining: length,
        }),
    )
}

/// A body of chunks already in memory, with its exact length (the reply
/// carries a Content-Length, as a whole String's would) and without
/// joining them into one buffer.
struct ReadyChunks {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl http_body::Body for ReadyChunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
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
