//! Progress display on a terminal: a byte counter with throughput for the
//! long streaming steps. Hidden when stderr is not a terminal or output is
//! JSON, where log lines tell the story instead.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress { enabled }
    }

    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    /// A spinner counting bytes, e.g. `order_db: dumping 120 MiB (60 MiB/s)`.
    pub fn bytes(&self, msg: String) -> Bar {
        if !self.enabled {
            return Bar(None);
        }
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}, {elapsed})")
                .expect("static template"),
        );
        pb.set_message(msg);
        pb.enable_steady_tick(Duration::from_millis(120));
        Bar(Some(pb))
    }

    /// A spinner with a message that changes (`operation InProgress (40 s)`).
    pub fn spinner(&self, msg: &str) -> Bar {
        if !self.enabled {
            return Bar(None);
        }
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("static template"),
        );
        pb.set_message(msg.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Bar(Some(pb))
    }
}

pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn hidden() -> Bar {
        Bar(None)
    }

    pub fn set(&self, msg: String) {
        if let Some(pb) = &self.0 {
            pb.set_message(msg);
        }
    }

    pub fn inc(&self, n: usize) {
        if let Some(pb) = &self.0 {
            pb.inc(n as u64);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
