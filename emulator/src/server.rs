//! The HTTP/1.1 server: accept loop (with outages), per-request fault
//! injection and logging, and `Reply` → HTTP response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::handler::{self, Reply};
use crate::requests::{RequestRecord, WriteRecord};
use crate::router::{self, Query};
use crate::state::{Outage, Shared};
use crate::status::ApiError;

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (the apiserver's limit is 3 MiB per object).
const MAX_BODY: usize = 16 * 1024 * 1024;

fn full(code: u16, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = full(
        e.code,
        serde_json::to_vec(&e.to_status()).unwrap_or_default(),
    );
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn reply_response(reply: Reply) -> Response<Body> {
    match reply {
        Reply::Json {
            code,
            body,
            warnings,
        } => {
            let mut resp = full(code, body);
            for w in warnings {
                let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
                if let Ok(v) = HeaderValue::from_str(&text) {
                    resp.headers_mut().append("Warning", v);
                }
            }
            resp
        }
        Reply::Watch(rx) => {
            let chunks = stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp.headers_mut().insert(
                "Cache-Control",
                HeaderValue::from_static("no-cache, private"),
            );
            resp
        }
    }
}

async fn serve(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let query = Query::parse(&raw_query);
    let route = router::route(&path);
    let verb = router::verb(&parts.method, &route, &query);
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header(CONTENT_TYPE);
    let user_agent = header(USER_AGENT);

    let agent = (!user_agent.is_empty()).then_some(user_agent.as_str());
    let delay = shared.faults.lock().delay_for(verb, &path, agent);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let forced = shared.faults.lock().take_forced_for(verb, &path, agent);
    let result = match forced {
        Some(e) => Err(e),
        None => match Limited::new(body, MAX_BODY).collect().await {
            Err(e) => Err(ApiError::bad_request(format!(
                "reading the request body: {e}"
            ))),
            Ok(collected) => {
                let req = handler::Request {
                    method: &parts.method,
                    route: &route,
                    query: &query,
                    content_type: &content_type,
                    accept: &header(ACCEPT),
                    user_agent: &user_agent,
                    host: &header(HOST),
                    body: collected.to_bytes(),
                };
                handler::handle(&shared, &req)
            }
        },
    };
    let response = match result {
        Ok(reply) => reply_response(reply),
        Err(e) => error_response(&e),
    };
    let code = response.status().as_u16();
    shared.log.lock().push(RequestRecord {
        at,
        method: parts.method.to_string(),
        verb,
        path: path.clone(),
        query: raw_query,
        content_type: (!content_type.is_empty()).then_some(content_type),
        user_agent: (!user_agent.is_empty()).then_some(user_agent),
        code,
        elapsed: at.elapsed(),
    });
    if let Some(v) = verb.filter(|v| v.is_write()) {
        let _ = shared.writes.send(WriteRecord {
            at,
            verb: v,
            path,
            code,
        });
    }
    Ok(response)
}

fn spawn_connection(
    shared: &Arc<Shared>,
    stream: tokio::net::TcpStream,
    shutdown: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut dropped = shared.drop_connections.subscribe();
    let shutdown = shutdown.clone();
    let shared = shared.clone();
    let counted = shared.connections.opened();
    tokio::spawn(async move {
        // Uncounted when this task ends, i.e. when the connection closes.
        let _counted = counted;
        let svc = service_fn(move |req| serve(shared.clone(), req));
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), svc);
        tokio::select! {
            _ = conn => {}
            _ = dropped.changed() => {}
            _ = shutdown.cancelled() => {}
        }
    });
}

async fn rebind(addr: SocketAddr, shutdown: &CancellationToken) -> Option<TcpListener> {
    for _ in 0..200 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => tracing::warn!("re-binding {addr}: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
    None
}

/// Serves until `shutdown`; an outage closes the listener and all
/// connections, waits, and listens again on the same address.
pub async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut outages: mpsc::UnboundedReceiver<Outage>,
    shutdown: CancellationToken,
) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut listener = listener;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => spawn_connection(&shared, stream, &shutdown),
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            outage = outages.recv() => {
                let Some(outage) = outage else { continue };
                drop(listener);
                shared.drop_connections.send_modify(|n| *n += 1);
                let _ = outage.closed.send(());
                tokio::select! {
                    _ = tokio::time::sleep(outage.duration) => {}
                    _ = shutdown.cancelled() => return,
                }
                match rebind(addr, &shutdown).await {
                    Some(l) => listener = l,
                    None => return,
                }
            }
        }
    }
}
