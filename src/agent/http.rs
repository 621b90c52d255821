//! The agent's HTTP endpoint: `/healthz` (200 while the scheduler turns),
//! `/readyz` (200 once the schedule is loaded) and `/metrics` (Prometheus /
//! OpenMetrics text). Plain HTTP/1 on the configured address, served by
//! hyper on a single-threaded tokio runtime of its own thread, so that
//! neither clients nor jobs can hold the other up.
//!
//! The address is often reachable by more than the probes (`0.0.0.0` in a
//! container), so nothing a client does can exhaust the agent: at most
//! [`MAX_CONNECTIONS`] are open at once (a new one closes the oldest that
//! has not sent a request yet: an idle or slow client, never a probe being
//! answered), a client has [`HEAD_TIMEOUT`] to send its request head and
//! [`CONNECTION_TIMEOUT`] for the whole exchange, and one request is served
//! per connection.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tracing::{info, warn};

use crate::agent::Shared;
use crate::error::{Error, Result};

/// Connections open at once: probes, a scraper or two and a person.
pub const MAX_CONNECTIONS: usize = 64;
/// Time to send the request line and headers (slowloris).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the whole exchange, the answer included (a client that does
/// not read).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffer for a request head; hyper's smallest allowed.
const MAX_HEAD_BYTES: usize = 8192;

pub fn serve(addr: &str, shared: Arc<Shared>) -> Result<()> {
    let cannot =
        |e: std::io::Error| Error::Setup(format!("agent.listen {addr}: cannot listen: {e}"));
    let std_listener = std::net::TcpListener::bind(addr).map_err(cannot)?;
    std_listener.set_nonblocking(true).map_err(cannot)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the HTTP runtime", e))?;
    let listener = {
        let _in_runtime = rt.enter();
        TcpListener::from_std(std_listener).map_err(cannot)?
    };
    info!("serving /healthz, /readyz and /metrics on http://{addr}");
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || rt.block_on(accept(listener, shared)))
        .map_err(|e| Error::io("spawning the HTTP thread", e))?;
    Ok(())
}

/// An open connection: its task, and whether its request has come.
struct Open {
    task: AbortHandle,
    asked: Arc<AtomicBool>,
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut open: VecDeque<Open> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                warn!("agent HTTP endpoint: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        open.retain(|c| !c.task.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            let silent = open.iter().position(|c| !c.asked.load(Ordering::Relaxed));
            if let Some(oldest) = open.remove(silent.unwrap_or(0)) {
                oldest.task.abort();
            }
        }
        let asked = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(serve_one(stream, shared.clone(), asked.clone()));
        open.push_back(Open {
            task: task.abort_handle(),
            asked,
        });
    }
}

async fn serve_one(stream: TcpStream, shared: Arc<Shared>, asked: Arc<AtomicBool>) {
    let service = service_fn(move |req: Request<Incoming>| {
        asked.store(true, Ordering::Relaxed);
        std::future::ready(Ok::<_, Infallible>(answer(req.uri().path(), &shared)))
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // Errors (a client gone, a head too slow or too large) concern only
    // that client.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
}

fn answer(path: &str, shared: &Shared) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = code;
        r
    };
    match path {
        "/healthz" if shared.healthy() => text(StatusCode::OK, "ok\n"),
        "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, "scheduler stalled\n"),
        "/readyz" if shared.ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n",
        ),
    }
}
