//! The agent's HTTP endpoint: `/healthz` (200 while the scheduler turns),
//! `/readyz` (200 once the schedule is loaded) and `/metrics` (Prometheus /
//! OpenMetrics text). Plain HTTP on the configured address, one thread.

use std::sync::Arc;

use tiny_http::{Header, Response, Server};
use tracing::info;

use crate::agent::Shared;
use crate::error::{Error, Result};

pub fn serve(addr: &str, shared: Arc<Shared>) -> Result<()> {
    let server = Server::http(addr)
        .map_err(|e| Error::Setup(format!("agent.listen {addr}: cannot listen: {e}")))?;
    info!("serving /healthz, /readyz and /metrics on http://{addr}");
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let response = answer(req.url(), &shared);
                let _ = req.respond(response);
            }
        })
        .map_err(|e| Error::io("spawning the HTTP thread", e))?;
    Ok(())
}

fn answer(url: &str, shared: &Shared) -> Response<std::io::Cursor<Vec<u8>>> {
    let text = |code: u16, body: &str| Response::from_string(body).with_status_code(code);
    match url.split('?').next().unwrap_or_default() {
        "/healthz" if shared.healthy() => text(200, "ok\n"),
        "/healthz" => text(503, "scheduler stalled\n"),
        "/readyz" if shared.ready() => text(200, "ready\n"),
        "/readyz" => text(503, "starting\n"),
        "/metrics" => Response::from_string(shared.metrics.render()).with_header(
            Header::from_bytes(
                "Content-Type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .expect("static header"),
        ),
        _ => text(404, "not found: try /healthz, /readyz or /metrics\n"),
    }
}
