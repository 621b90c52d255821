//! Retry as a wrapper, as rustic's `RetryBackend`: an operation that fails
//! in a way that may pass is tried again, a few times, with exponential
//! back-off and jitter (the `backon` crate); every other failure is returned
//! at once.
//!
//! Transient: [`Kind::Throttled`], [`Kind::Timeout`] and [`Kind::Offsite`],
//! what is left of a failed request to a remote store once a refused
//! credential, a missing object and throttling are told apart: a connection
//! or I/O failure on the way, a 5xx, a transfer damaged in transit. Never a
//! local [`Kind::Io`] (the file being sent, the file being written), a
//! refused credential, a missing object or an interrupt.
//!
//! Why two layers of retries. The Azure SDK retries each HTTP request
//! itself (connection errors, 408, 429, 5xx, honouring `Retry-After`),
//! bounded by `azure.max_retries` and `azure.retry_max_secs`
//! ([`crate::azure::retry_options`]). It cannot retry what is more than one
//! request: a download whose body breaks after its headers came, an upload
//! of many blocks and a commit, and it cannot tell a write that landed from
//! one that did not. This wrapper retries whole store operations, so it
//! keeps its attempts few ([`ATTEMPTS`]): a store that is down costs at most
//! that many times the SDK's own bound, not a stall.
//!
//! Idempotence. Listing, head, reads, tags and deletes are safe to repeat.
//! A read that streams is retried only while nothing reached its output
//! (the bytes cannot be taken back). A write-once is not blindly repeated:
//! a write that failed may have been accepted with its answer lost (and the
//! SDK's own retry of the commit then meets "already exists"). So after a
//! failed write the object is looked at: one that now exists with the
//! `sha256` metadata being written is the write, done; one that exists with
//! anything else is the failure it is, never retried over; only when there
//! is no object is a transient failure tried again.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use tracing::{info, warn};

use super::{Object, Store, WriteSpec, WriteStats};
use crate::error::{Error, Kind, Result};
use crate::ui::Bar;

/// Attempts of one operation in all: the first and two retries.
pub const ATTEMPTS: usize = 3;

pub struct Retry<S> {
    inner: S,
    backoff: ExponentialBuilder,
}

impl<S: Store> Retry<S> {
    /// Waits of about 0.5 s and 1 s (with jitter) between the attempts.
    pub fn new(inner: S) -> Retry<S> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(4))
            .with_jitter();
        Retry::with_backoff(inner, backoff)
    }

    /// With another back-off (the tests': no wait); at most [`ATTEMPTS`].
    pub fn with_backoff(inner: S, backoff: ExponentialBuilder) -> Retry<S> {
        Retry {
            inner,
            backoff: backoff.with_max_times(ATTEMPTS - 1),
        }
    }

    /// `op`, retried while it fails transiently (and `cancel` is not set).
    fn call<T>(&self, what: &str, cancel: &AtomicBool, op: impl FnMut() -> Result<T>) -> Result<T> {
        op.retry(self.backoff)
            .when(|e| transient(e) && !cancel.load(Ordering::Relaxed))
            .notify(|e, wait| warn!("{what}: {e}; trying again in {wait:.1?}"))
            .call()
    }

    /// A write-once `op` of object `name`, settled as the module says;
    /// `landed` is its result when the object turns out to be written.
    fn write<T>(
        &self,
        name: &str,
        spec: &WriteSpec,
        cancel: &AtomicBool,
        landed: impl Fn(&Object) -> T,
        mut op: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let attempt = || op().or_else(|e| self.settle(name, spec, e).map(|o| landed(&o)));
        attempt
            .retry(self.backoff)
            .when(|f: &Failed| f.again && !cancel.load(Ordering::Relaxed))
            .notify(|f, wait| warn!("{name}: {}; trying again in {wait:.1?}", f.error))
            .call()
            .map_err(|f| f.error)
    }

    /// After write `e` of `name` failed: the object, when it is the one
    /// being written; else whether to try again.
    fn settle(&self, name: &str, spec: &WriteSpec, e: Error) -> Result<Object, Failed> {
        let may_have_landed = transient(&e) || e.kind() == Kind::Refused;
        if !may_have_landed {
            return Err(Failed::final_(e));
        }
        match self.inner.head(name) {
            Ok(Some(o)) if holds(&o, spec) => {
                info!("{name}: written after all ({e})");
                Ok(o)
            }
            // Another object by that name: a write-once can never succeed.
            Ok(Some(_)) => Err(Failed::final_(e)),
            _ => Err(Failed {
                again: transient(&e),
                error: e,
            }),
        }
    }
}

/// A failed write attempt, and whether another may succeed.
struct Failed {
    again: bool,
    error: Error,
}

impl Failed {
    fn final_(error: Error) -> Failed {
        Failed {
            again: false,
            error,
        }
    }
}

/// Whether failure `e` may pass if the operation is tried again.
pub fn transient(e: &Error) -> bool {
    matches!(e.kind(), Kind::Throttled | Kind::Timeout | Kind::Offsite)
}

/// Whether `o` carries the `sha256` metadata the write gives it.
fn holds(o: &Object, spec: &WriteSpec) -> bool {
    let Some(want) = spec.metadata.get("sha256") else {
        return false;
    };
    o.metadata_sha256()
        .is_ok_and(|got| got.eq_ignore_ascii_case(want))
}

/// Passes bytes to `out`, counting them in `written`.
struct Counting<'a> {
    out: &'a mut dyn Write,
    written: &'a Cell<u64>,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written.set(self.written.get() + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<S: Store> Store for Retry<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn prepare(&self) -> Result<()> {
        self.call("preparing the store", &AtomicBool::new(false), || {
            self.inner.prepare()
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        let what = format!("listing {prefix}");
        self.call(&what, &AtomicBool::new(false), || self.inner.list(prefix))
    }

    fn head(&self, name: &str) -> Result<Option<Object>> {
        self.call(name, &AtomicBool::new(false), || self.inner.head(name))
    }

    fn read(&self, name: &str, out: &mut dyn Write, cancel: &AtomicBool, bar: &Bar) -> Result<u64> {
        let written = Cell::new(0);
        let mut out = Counting {
            out,
            written: &written,
        };
        (|| self.inner.read(name, &mut out, cancel, bar))
            .retry(self.backoff)
            .when(|e| transient(e) && written.get() == 0 && !cancel.load(Ordering::Relaxed))
            .notify(|e, wait| warn!("{name}: {e}; trying again in {wait:.1?}"))
            .call()
    }

    fn read_small(&self, name: &str, cancel: &AtomicBool) -> Result<Vec<u8>> {
        self.call(name, cancel, || self.inner.read_small(name, cancel))
    }

    fn write_file(
        &self,
        path: &Path,
        name: &str,
        spec: &WriteSpec,
        cancel: &AtomicBool,
        bar: &Bar,
    ) -> Result<WriteStats> {
        let landed = |o: &Object| WriteStats {
            bytes: o.size,
            blocks: 0,
            resumed_blocks: 0,
        };
        self.write(name, spec, cancel, landed, || {
            self.inner.write_file(path, name, spec, cancel, bar)
        })
    }

    fn write_bytes(&self, name: &str, bytes: &[u8], spec: &WriteSpec) -> Result<()> {
        let no = AtomicBool::new(false);
        self.write(
            name,
            spec,
            &no,
            |_| (),
            || self.inner.write_bytes(name, bytes, spec),
        )
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.call(name, &AtomicBool::new(false), || self.inner.delete(name))
    }

    fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        self.call(name, &AtomicBool::new(false), || {
            self.inner.set_tags(name, tags)
        })
    }

    fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()> {
        self.call(name, &AtomicBool::new(false), || {
            self.inner.set_legal_hold(name, hold)
        })
    }

    fn set_policy(&self, name: &str, policy: &crate::storage::Policy) -> Result<()> {
        self.call(name, &AtomicBool::new(false), || {
            self.inner.set_policy(name, policy)
        })
    }

    fn previous_versions(&self, prefix: &str) -> Result<Vec<Object>> {
        let what = format!("listing the previous versions under {prefix}");
        self.call(&what, &AtomicBool::new(false), || {
            self.inner.previous_versions(prefix)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;
    use std::sync::Mutex;

    /// An operation, how many of its calls fail, and with what.
    type Fault = (&'static str, usize, fn() -> Error);

    /// A store that fails some calls of one operation before (or after)
    /// passing them on, counting every call.
    struct Faulty {
        inner: MemoryStore,
        fault: Mutex<Option<Fault>>,
        /// A write that fails lands first (accepted, its answer lost), with
        /// this `sha256` metadata.
        lands: Option<String>,
        calls: Mutex<BTreeMap<&'static str, usize>>,
    }

    impl Faulty {
        fn new(op: &'static str, times: usize, err: fn() -> Error) -> Faulty {
            Faulty {
                inner: MemoryStore::new(),
                fault: Mutex::new(Some((op, times, err))),
                lands: None,
                calls: Mutex::default(),
            }
        }

        fn calls(&self, op: &str) -> usize {
            self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
        }

        /// Counts a call of `op`; its injected failure, if any is left.
        fn hit(&self, op: &'static str) -> Option<Error> {
            *self.calls.lock().unwrap().entry(op).or_default() += 1;
            let mut fault = self.fault.lock().unwrap();
            match fault.as_mut() {
                Some((o, n, err)) if *o == op && *n > 0 => {
                    *n -= 1;
                    Some(err())
                }
                _ => None,
            }
        }
    }

    impl Store for Faulty {
        fn describe(&self) -> String {
            "faulty".into()
        }
        fn prepare(&self) -> Result<()> {
            Ok(())
        }
        fn list(&self, prefix: &str) -> Result<Vec<Object>> {
            self.hit("list")
                .map_or_else(|| self.inner.list(prefix), Err)
        }
        fn head(&self, name: &str) -> Result<Option<Object>> {
            self.hit("head").map_or_else(|| self.inner.head(name), Err)
        }
        fn read(&self, name: &str, out: &mut dyn Write, c: &AtomicBool, bar: &Bar) -> Result<u64> {
            match self.hit("read") {
                // Half the content went out before the connection broke.
                Some(e) => {
                    out.write_all(b"ab").unwrap();
                    Err(e)
                }
                None => self.inner.read(name, out, c, bar),
            }
        }
        fn read_small(&self, name: &str, cancel: &AtomicBool) -> Result<Vec<u8>> {
            self.hit("read_small")
                .map_or_else(|| self.inner.read_small(name, cancel), Err)
        }
        fn write_bytes(&self, name: &str, bytes: &[u8], spec: &WriteSpec) -> Result<()> {
            match self.hit("write") {
                Some(e) if self.lands.is_some() => {
                    let landed = WriteSpec {
                        metadata: spec_of(self.lands.as_deref().unwrap()).metadata,
                        ..spec.clone()
                    };
                    self.inner.write_bytes(name, bytes, &landed).and(Err(e))
                }
                Some(e) => Err(e),
                None => self.inner.write_bytes(name, bytes, spec),
            }
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.hit("delete")
                .map_or_else(|| self.inner.delete(name), Err)
        }
        fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
            self.hit("set_tags")
                .map_or_else(|| self.inner.set_tags(name, tags), Err)
        }
        fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()> {
            self.hit("set_legal_hold")
                .map_or_else(|| self.inner.set_legal_hold(name, hold), Err)
        }
        fn set_policy(&self, name: &str, policy: &crate::storage::Policy) -> Result<()> {
            self.hit("set_policy")
                .map_or_else(|| self.inner.set_policy(name, policy), Err)
        }
    }

    fn retry(s: Faulty) -> Retry<Faulty> {
        Retry::with_backoff(
            s,
            ExponentialBuilder::default().with_min_delay(Duration::ZERO),
        )
    }

    fn throttled() -> Error {
        Error::Throttled("listing x: HTTP 429 TooManyRequests".into())
    }
    fn dropped() -> Error {
        Error::Offsite("x: cannot reach the storage service: connection reset".into())
    }
    fn refused() -> Error {
        Error::Authentication("x: HTTP 403 AuthorizationPermissionMismatch".into())
    }

    fn spec_of(sha: &str) -> WriteSpec {
        WriteSpec {
            metadata: BTreeMap::from([("sha256".to_string(), sha.to_string())]),
            ..Default::default()
        }
    }

    #[test]
    fn a_throttled_list_succeeds_on_retry() {
        let s = retry(Faulty::new("list", 2, throttled));
        assert!(s.list("").unwrap().is_empty());
        assert_eq!(s.inner.calls("list"), 3);
        let s = retry(Faulty::new("list", ATTEMPTS, throttled));
        assert_eq!(s.list("").unwrap_err().kind(), Kind::Throttled);
        assert_eq!(s.inner.calls("list"), ATTEMPTS, "a few attempts, no more");
    }

    #[test]
    fn a_failure_that_cannot_pass_is_not_retried() {
        for op in ["list", "head", "read_small", "delete", "set_tags"] {
            let s = retry(Faulty::new(op, 1, refused));
            let no = AtomicBool::new(false);
            let e = match op {
                "list" => s.list("").map(drop),
                "head" => s.head("a").map(drop),
                "read_small" => s.read_small("a", &no).map(drop),
                "delete" => s.delete("a"),
                _ => s.set_tags("a", &BTreeMap::new()),
            };
            assert_eq!(e.unwrap_err().kind(), Kind::Authentication, "{op}");
            assert_eq!(s.inner.calls(op), 1, "{op}");
        }
        let s = retry(Faulty::new("write", 1, refused));
        let e = s.write_bytes("a", b"x", &spec_of("0")).unwrap_err();
        assert_eq!(
            (e.kind(), s.inner.calls("write")),
            (Kind::Authentication, 1)
        );
        assert_eq!(s.inner.calls("head"), 0, "no look for a refused write");
    }

    #[test]
    fn a_read_is_retried_only_while_nothing_went_out() {
        let s = retry(Faulty::new("read_small", 1, dropped));
        s.inner
            .inner
            .write_bytes("a", b"abcd", &spec_of("0"))
            .unwrap();
        let no = AtomicBool::new(false);
        assert_eq!(s.read_small("a", &no).unwrap(), b"abcd");
        let s = retry(Faulty::new("read", 1, dropped));
        s.inner
            .inner
            .write_bytes("a", b"abcd", &spec_of("0"))
            .unwrap();
        let mut out = Vec::new();
        let e = s.read("a", &mut out, &no, &Bar::hidden()).unwrap_err();
        assert_eq!((e.kind(), s.inner.calls("read")), (Kind::Offsite, 1));
        assert_eq!(out, b"ab", "never the same bytes twice");
    }

    #[test]
    fn a_write_accepted_then_dropped_is_done_when_the_hash_matches() {
        let (ours, theirs) = ("a".repeat(64), "b".repeat(64));
        let mut f = Faulty::new("write", 1, dropped);
        f.lands = Some(ours.clone());
        let s = retry(f);
        s.write_bytes("a", b"dump", &spec_of(&ours)).unwrap();
        assert_eq!(s.inner.inner.names(), ["a"]);
        assert_eq!(
            s.inner.calls("write"),
            1,
            "settled by a look, not a rewrite"
        );
        // What landed under the name is another object: the failure stands,
        // and nothing is written over it.
        let mut f = Faulty::new("write", 1, dropped);
        f.lands = Some(theirs.clone());
        let s = retry(f);
        let e = s.write_bytes("a", b"dump", &spec_of(&ours)).unwrap_err();
        assert_eq!((e.kind(), s.inner.calls("write")), (Kind::Offsite, 1));
        assert_eq!(s.inner.inner.get("a").unwrap().metadata["sha256"], theirs);
    }

    #[test]
    fn an_immutable_write_whose_answer_was_lost_is_settled_with_its_policy() {
        let ours = "a".repeat(64);
        let mut f = Faulty::new("write", 1, dropped);
        f.lands = Some(ours.clone());
        let s = retry(f);
        let until = chrono::Utc::now() + chrono::Duration::days(31);
        let spec = WriteSpec {
            policy: Some(crate::storage::Policy {
                until,
                mode: crate::config::ImmutabilityMode::Locked,
            }),
            ..spec_of(&ours)
        };
        s.write_bytes("a", b"dump", &spec).unwrap();
        assert_eq!(
            s.inner.calls("write"),
            1,
            "settled by a look, not a rewrite"
        );
        let landed = s.inner.inner.get("a").unwrap();
        assert_eq!(landed.protection.policy.map(|p| p.until), Some(until));
        // A protected object is never deleted by a retried write either.
        assert_eq!(s.delete("a").unwrap_err().kind(), Kind::Immutable);
        assert_eq!(
            s.inner.calls("delete"),
            1,
            "an immutable refusal is not retried"
        );
    }

    #[test]
    fn a_write_is_retried_only_while_no_object_has_the_name() {
        let ours = "a".repeat(64);
        // Dropped without landing: tried again, and written.
        let s = retry(Faulty::new("write", 1, dropped));
        s.write_bytes("a", b"dump", &spec_of(&ours)).unwrap();
        assert_eq!(s.inner.calls("write"), 2);
        // An object already there: "exists" is the error it is.
        let s = retry(Faulty::new("write", 0, dropped));
        s.inner
            .inner
            .write_bytes("a", b"x", &spec_of(&"c".repeat(64)))
            .unwrap();
        let e = s.write_bytes("a", b"dump", &spec_of(&ours)).unwrap_err();
        assert_eq!((e.kind(), s.inner.calls("write")), (Kind::Refused, 1));
    }
}
