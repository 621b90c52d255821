//! Alerts to webhooks: a generic JSON object, or Slack's `{"text": ...}`.
//!
//! Sending never blocks the schedule: alerts go through a channel to one
//! background thread, which retries each webhook with backoff (backon) and
//! logs, without the URL's path (Slack's holds a secret), what it could not
//! deliver.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::{Webhook, WebhookKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    JobFailed,
    BackupMissing,
    SizeAnomaly,
    VerifyFailed,
    AuditFailed,
    Recovered,
    /// `drill region` failed (its smoke check, the geo-restore, the delete).
    DrillFailed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// `critical`, `warning` or `ok`.
    pub severity: &'static str,
    pub job: String,
    /// The database concerned, when there is one.
    pub database: Option<String>,
    pub summary: String,
    pub host: String,
    pub time: String,
    pub source: &'static str,
}

impl Alert {
    pub fn new(kind: AlertKind, job: &str, database: Option<&str>, summary: String) -> Alert {
        let severity = match kind {
            AlertKind::Recovered => "ok",
            AlertKind::SizeAnomaly => "warning",
            _ => "critical",
        };
        Alert {
            kind,
            severity,
            job: job.to_string(),
            database: database.map(str::to_string),
            summary,
            host: crate::ops::upload::host_name(),
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            source: "valerix-backup",
        }
    }

    fn slack_text(&self) -> String {
        let icon = match self.severity {
            "ok" => ":white_check_mark:",
            "warning" => ":warning:",
            _ => ":rotating_light:",
        };
        format!("{icon} valerix-backup on {}: {}", self.host, self.summary)
    }
}

/// Hands alerts to the sender thread.
pub struct Alerter {
    tx: Mutex<Option<Sender<Alert>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Alerter {
    /// Starts the sender thread; with no webhooks, alerts are only logged.
    pub fn start(hooks: Vec<Webhook>) -> Alerter {
        if hooks.is_empty() {
            return Alerter {
                tx: Mutex::new(None),
                thread: Mutex::new(None),
            };
        }
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || deliver(rx, hooks))
            .expect("spawning the alert thread");
        Alerter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    pub fn send(&self, alert: Alert) {
        warn!("alert {:?}: {}", alert.kind, alert.summary);
        if let Some(tx) = self.tx.lock().expect("not poisoned").as_ref() {
            let _ = tx.send(alert);
        }
    }

    /// Stops taking alerts and waits, at most `limit`, for those queued to
    /// be delivered (before the process exits).
    pub fn finish(&self, limit: Duration) {
        self.tx.lock().expect("not poisoned").take();
        let Some(thread) = self.thread.lock().expect("not poisoned").take() else {
            return;
        };
        let start = std::time::Instant::now();
        while !thread.is_finished() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn deliver(rx: Receiver<Alert>, hooks: Vec<Webhook>) {
    let hooks: Vec<(WebhookKind, String)> = hooks
        .iter()
        .filter_map(|h| match h.resolve() {
            Ok(url) => Some((h.kind, url)),
            Err(e) => {
                warn!("alert webhook skipped: {e}");
                None
            }
        })
        .collect();
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(true)
        .build()
        .new_agent();
    for alert in rx {
        for (kind, url) in &hooks {
            let body = match kind {
                WebhookKind::Json => serde_json::to_value(&alert).expect("alerts serialize"),
                WebhookKind::Slack => serde_json::json!({ "text": alert.slack_text() }),
            };
            let bytes = serde_json::to_vec(&body).expect("JSON values serialize");
            let post = || {
                agent
                    .post(url)
                    .header("content-type", "application/json")
                    .send(&bytes[..])
                    .map(drop)
            };
            let sent = post
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(500))
                        .with_max_times(4),
                )
                .call();
            match sent {
                Ok(()) => info!("alert {:?} sent to {}", alert.kind, where_to(url)),
                Err(e) => warn!(
                    "alert {:?} not delivered to {}: {}",
                    alert.kind,
                    where_to(url),
                    e.to_string().replace(url.as_str(), "<url>")
                ),
            }
        }
    }
}

/// Scheme and host of a webhook URL: its path may be its secret.
fn where_to(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")))
        .unwrap_or_else(|_| "the webhook".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_the_path_and_words_slack_text() {
        assert_eq!(
            where_to("https://hooks.slack.com/services/T000/B000/secret"),
            "https://hooks.slack.com"
        );
        let a = Alert::new(
            AlertKind::JobFailed,
            "backup",
            Some("order_db"),
            "backup of order_db failed".into(),
        );
        assert!(a.slack_text().contains("backup of order_db failed"));
        assert_eq!(a.severity, "critical");
    }
}
