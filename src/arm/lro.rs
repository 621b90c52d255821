//! Resource Manager's long-running operations: poll the
//! `Azure-AsyncOperation` URL (else `Location`), honouring `Retry-After`,
//! until the operation is `Succeeded`, `Failed` or `Canceled`.
//!
//! A failed operation is an HTTP 200 with `"status": "Failed"` and an
//! `error` object: the status is checked here, not by the pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::warn;

use crate::arm::{Answer, Arm};
use crate::error::{Error, Result};

/// Where to watch an accepted request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Operation {
    pub async_operation: Option<String>,
    pub location: Option<String>,
}

impl Operation {
    /// The operation an accepted request points at, keeping only URLs on
    /// the configured endpoint (the token goes nowhere else); a URL left
    /// out is named in a warning. `None` when none is left: the caller
    /// then watches the resource itself.
    pub fn from_answer(arm: &Arm, a: &Answer) -> Option<Operation> {
        let keep = |header: &str, url: &Option<String>| {
            let url = url.as_ref()?;
            match arm.check_url(url) {
                Ok(_) => Some(url.clone()),
                Err(e) => {
                    warn!("not following the {header} URL of the answer: {e}");
                    None
                }
            }
        };
        let op = Operation {
            async_operation: keep("Azure-AsyncOperation", &a.async_operation),
            location: keep("Location", &a.location),
        };
        (op.async_operation.is_some() || op.location.is_some()).then_some(op)
    }

    /// The URL a `--watch` resumes from.
    pub fn url(&self) -> &str {
        self.async_operation
            .as_deref()
            .or(self.location.as_deref())
            .unwrap_or_default()
    }
}

/// What a poll says.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Running(String),
    Succeeded,
    Failed(String),
}

/// Polls until the operation ends; `tick` hears every status. Returns the
/// number of polls. An interrupt returns `Interrupted` at once.
pub fn wait(
    arm: &Arm,
    op: &Operation,
    first_delay: Option<u64>,
    deadline: Duration,
    cancel: &AtomicBool,
    mut tick: impl FnMut(&str),
) -> Result<usize> {
    let start = Instant::now();
    let mut delay = first_delay;
    let mut polls = 0;
    loop {
        pause(arm, delay, cancel)?;
        if start.elapsed() > deadline {
            return Err(Error::Timeout(format!(
                "the operation has not finished after {} minutes",
                deadline.as_secs() / 60
            )));
        }
        let (status, retry_after) = poll(arm, op)?;
        polls += 1;
        match status {
            Status::Succeeded => return Ok(polls),
            Status::Failed(why) => {
                return Err(Error::OperationFailed(format!(
                    "the operation failed: {why}"
                )));
            }
            Status::Running(s) => tick(&s),
        }
        delay = retry_after;
    }
}

/// One poll: the async-operation status document, or the Location URL's
/// HTTP status (202 running, 200/201/204 done).
pub fn poll(arm: &Arm, op: &Operation) -> Result<(Status, Option<u64>)> {
    if let Some(url) = &op.async_operation {
        let a = arm.get(url)?;
        if !a.ok() {
            return Err(a.refused("polling the operation"));
        }
        return Ok((status_of(&a.body), a.retry_after));
    }
    let url = op.location.as_deref().unwrap_or_default();
    let a = arm.get(url)?;
    let status = match a.status {
        202 => Status::Running("Accepted".into()),
        200 | 201 | 204 => Status::Succeeded,
        _ => Status::Failed(a.error_text()),
    };
    Ok((status, a.retry_after))
}

fn status_of(body: &Value) -> Status {
    let s = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("InProgress");
    match s {
        "Succeeded" => Status::Succeeded,
        "Failed" | "Canceled" | "Cancelled" => {
            let e = body.get("error").cloned().unwrap_or(Value::Null);
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            Status::Failed(
                format!("{s} {code}: {msg}")
                    .trim_end_matches([' ', ':'])
                    .to_string(),
            )
        }
        other => Status::Running(other.to_string()),
    }
}

/// Sleeps `secs` (else the configured poll interval) in small steps, so an
/// interrupt is seen at once.
pub fn pause(arm: &Arm, secs: Option<u64>, cancel: &AtomicBool) -> Result<()> {
    let total = Duration::from_secs(secs.unwrap_or(arm.cfg.poll_interval_secs).min(300));
    let start = Instant::now();
    while start.elapsed() < total {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_operation_documents() {
        assert_eq!(
            status_of(&json!({"status": "InProgress"})),
            Status::Running("InProgress".into())
        );
        assert_eq!(
            status_of(&json!({"status": "Succeeded"})),
            Status::Succeeded
        );
        let failed = json!({"status": "Failed", "error": {"code": "InternalServerError", "message": "boom"}});
        assert_eq!(
            status_of(&failed),
            Status::Failed("Failed InternalServerError: boom".into())
        );
        assert_eq!(
            status_of(&json!({"status": "Canceled"})),
            Status::Failed("Canceled".into())
        );
    }
}
