//! The Kubernetes client, with a hard cap on its connections.
//!
//! kube's client speaks HTTP/1.1 through hyper's pool, which opens a new
//! connection whenever no idle one is at hand — including the moment after
//! a request finished and before its connection went back to the pool. So
//! bounding the requests in flight (`--max-api-writes`) bounds the
//! connections only roughly: a burst of writes against a slow API server
//! opened a few more than the writes allowed. Here every connection holds
//! one of `cap` slots for as long as it is open; when all are taken a new
//! connection waits, and the request usually gets a pooled one first
//! (hyper races the pool against the connect).
//!
//! The stack is kube's own default (base URI, retries of 5xx, auth, extra
//! headers, connect/read/write timeouts) minus its tracing spans. Behind a
//! proxy, or with exec credentials (whose client certificate can expire,
//! which kube's builder tracks), kube's builder is used as it is and the
//! cap does not apply.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::ConfigExt;
use kube::{Client, Config};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::retry::RetryLayer;
use tower::{BoxError, Service, ServiceBuilder};

/// Connections the operator may hold besides its writes: the four
/// watches, the Lease, and one for reads (Secrets, pods, `/scale`).
pub const CONNECTIONS_BESIDES_WRITES: usize = 6;

/// A client of at most `cap` connections to the API server (see the
/// module notes for when the cap cannot apply).
pub fn capped(config: Config, cap: usize) -> kube::Result<Client> {
    if config.proxy_url.is_some() || exec_credentials(&config) {
        return Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut timed = hyper_timeout::TimeoutConnector::new(https);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    timed.set_reset_reader_on_write(config.reset_reader_on_write);
    let connector = CappedConnector {
        inner: timed,
        slots: Arc::new(Semaphore::new(cap.max(1))),
    };
    let hyper = hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

fn exec_credentials(config: &Config) -> bool {
    config.auth_info.exec.is_some()
}

/// A connector whose connections each hold a slot until dropped.
#[derive(Clone)]
struct CappedConnector<C> {
    inner: C,
    slots: Arc<Semaphore>,
}

impl<C> Service<Uri> for CappedConnector<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = Capped<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The instance polled ready makes the call; a fresh clone stays.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let slots = self.slots.clone();
        Box::pin(async move {
            let slot = slots.acquire_owned().await?;
            let io = inner.call(uri).await.map_err(Into::into)?;
            Ok(Capped { io, _slot: slot })
        })
    }
}

/// A connection and the slot it holds.
struct Capped<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: Connection> Connection for Capped<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Unpin> Read for Capped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Capped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
