//! The audit's and `prune --offsite`'s rules against the in-memory store:
//! every finding kind of the offsite inventory, the `superseded` tags and
//! keep-newest-sound retention, without Azurite. (`geo-restore` and
//! `server-backup` findings come from the flexible servers' preflight and
//! are tested against the fake Resource Manager in tests/geo_restore.rs.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::catalog::{Manifest, dump_name, manifest_name};
use crate::offsite::blob_name;
use crate::pipeline::hash::sha256_hex;
use crate::storage::memory::MemoryStore;
use crate::ui::Progress;

/// Wednesday 2026-11-25 10:00 UTC; the baseline has copies of the four days
/// before it, Sunday's in the weekly tier.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

const DAYS: [&str; 4] = ["21", "22", "23", "24"];

fn stamp(day: &str) -> Stamp {
    Stamp::parse(&format!("202611{day}_020000")).unwrap()
}

struct Fixture {
    ctx: Context,
    store: MemoryStore,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_azure("")
    }

    /// As [`Fixture::new`], `extra` added to `[azure]`.
    fn with_azure(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "backup_dir = {:?}\n[[database]]\nname = \"order\"\ndbname = \"order_db\"\n\
             user = \"u\"\n[azure]\ncontainer = \"database-backups\"\n{extra}\n",
            dir.path().join("backups")
        );
        let cfg = crate::Config::parse(&text, std::path::Path::new("x.toml")).unwrap();
        let ctx = Context::new(cfg, Progress::hidden(), Arc::new(AtomicBool::new(false)));
        Fixture {
            ctx,
            store: MemoryStore::new(),
            _dir: dir,
        }
    }

    /// The four healthy copies of the baseline.
    fn healthy() -> Fixture {
        let f = Fixture::new();
        for d in DAYS {
            f.copy(d);
        }
        f
    }

    fn az(&self) -> &Azure {
        self.ctx.cfg.azure.as_ref().unwrap()
    }

    /// The tier the weekly rule gives day `day`'s backup when the Sundays
    /// (the 15th, before the baseline, and the 22nd) are the weekly copies.
    fn tier(&self, day: &str) -> Tier {
        let sundays = ["15", "22"].map(|d| stamp(d).to_utc());
        Tier::for_backup(stamp(day).to_utc(), &sundays, self.az())
    }

    fn dump(&self, day: &str) -> String {
        self.dump_in(self.tier(day), day)
    }

    fn dump_in(&self, tier: Tier, day: &str) -> String {
        blob_name(
            self.az(),
            tier,
            "order_db",
            &dump_name("order_db", &stamp(day)),
        )
    }

    /// A sound copy of day `day` in its tier: dump and manifest blobs.
    fn copy(&self, day: &str) {
        self.copy_in(self.tier(day), day, b"dump".repeat(100));
    }

    fn copy_in(&self, tier: Tier, day: &str, content: Vec<u8>) {
        let name = self.dump_in(tier, day);
        let sha = sha256_hex(&content);
        let obj = object(
            &name,
            &sha,
            tier.access_tier(self.az()).as_str(),
            stamp(day),
        );
        self.store.put(obj, content.clone());
        let m = manifest(day, &sha, content.len() as u64);
        let text = serde_json::to_vec(&m).unwrap();
        let mname = manifest_of(&name);
        let own = sha256_hex(&text);
        self.store.put(
            object(
                &mname,
                &own,
                tier.access_tier(self.az()).as_str(),
                stamp(day),
            ),
            text,
        );
    }

    /// Changes the stored object `name` with `f`.
    fn edit(&self, name: &str, f: impl FnOnce(&mut Object)) {
        let mut obj = self.store.get(name).expect("object exists");
        f(&mut obj);
        let mut bytes = Vec::new();
        let no = AtomicBool::new(false);
        self.store
            .read(name, &mut bytes, &no, &crate::ui::Bar::hidden())
            .unwrap();
        self.store.put(obj, bytes);
    }

    /// A sound local backup of day `day` whose manifest says `sha256`.
    fn local(&self, day: &str, sha256: &str) {
        let dir = &self.ctx.cfg.backup_dir;
        std::fs::create_dir_all(dir).unwrap();
        let content = b"local".to_vec();
        std::fs::write(dir.join(dump_name("order_db", &stamp(day))), &content).unwrap();
        let m = manifest(day, sha256, content.len() as u64);
        let path = dir.join(manifest_name("order_db", &stamp(day)));
        std::fs::write(path, serde_json::to_vec(&m).unwrap()).unwrap();
    }

    fn audit(&self, deep: bool) -> AuditReport {
        let opts = AuditOptions {
            deep,
            as_of: Some(now()),
            ..Default::default()
        };
        audit_store(&self.ctx, &self.store, &opts, &Progress::hidden()).unwrap()
    }

    fn kinds(&self, deep: bool) -> Vec<FindingKind> {
        let mut k: Vec<FindingKind> = self.audit(deep).findings.iter().map(|f| f.kind).collect();
        k.dedup();
        k
    }
}

fn object(name: &str, sha: &str, tier: &str, at: Stamp) -> Object {
    Object {
        name: name.to_string(),
        size: 0,
        metadata: BTreeMap::from([("sha256".to_string(), sha.to_string())]),
        tags: BTreeMap::new(),
        access_tier: Some(tier.to_string()),
        created: Some(at.to_utc() + Duration::minutes(5)),
        etag: Some(format!("\"{name}\"")),
        protection: Default::default(),
    }
}

fn manifest(day: &str, sha256: &str, size: u64) -> Manifest {
    let t = stamp(day).to_utc();
    Manifest {
        format_version: 1,
        tool_version: "test".into(),
        database: "order".into(),
        dbname: "order_db".into(),
        host: "h".into(),
        port: 5432,
        timestamp: stamp(day),
        file: dump_name("order_db", &stamp(day)),
        sha256: sha256.into(),
        size_bytes: size,
        uncompressed_bytes: size,
        compression: "gzip".into(),
        pg_dump_version: "17".into(),
        server_version: "17".into(),
        archive_version: "1.16".into(),
        started_at: t,
        finished_at: t,
        duration_secs: 1.0,
        tables: Vec::new(),
        encryption: None,
        config: None,
    }
}

#[test]
fn a_healthy_inventory_has_no_finding_and_its_tags_are_repaired() {
    let f = Fixture::healthy();
    let r = f.audit(true);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!((r.blobs_listed, r.deep_checked), (8, 4));
    assert_eq!((r.databases[0].daily, r.databases[0].weekly), (3, 1));
    // Daily: the 21st and 23rd are superseded by the 24th; the weekly
    // tier's only copy is its newest.
    let tagged = |d: &str| f.store.get(&f.dump(d)).unwrap().is_superseded();
    assert_eq!(DAYS.map(tagged), [true, false, true, false]);
    let m = manifest_of(&f.dump("21"));
    assert!(f.store.get(&m).unwrap().is_superseded());
    // A second deep audit reads only what it has not proven.
    assert_eq!(f.audit(true).deep_skipped, 4);
}

#[test]
fn no_copy_at_all() {
    assert_eq!(Fixture::new().kinds(false), [FindingKind::NoOffsiteCopy]);
}

#[test]
fn uploads_stopped() {
    let f = Fixture::new();
    f.copy("21");
    f.copy("22");
    f.copy("23");
    let k = f.kinds(false);
    assert!(k.contains(&FindingKind::UploadsStopped), "{k:?}");
    assert!(k.contains(&FindingKind::MissingDaily), "{k:?}");
}

#[test]
fn missing_daily() {
    let f = Fixture::healthy();
    f.store.delete(&f.dump("23")).unwrap();
    f.store.delete(&manifest_of(&f.dump("23"))).unwrap();
    assert_eq!(f.kinds(false), [FindingKind::MissingDaily]);
}

#[test]
fn missing_weekly() {
    let f = Fixture::new();
    for d in ["21", "23", "24"] {
        f.copy(d);
    }
    f.copy_in(Tier::Daily, "22", b"dump".repeat(100));
    assert_eq!(f.kinds(false), [FindingKind::MissingWeekly]);
    let r = f.audit(false);
    assert!(
        r.findings[0].detail.contains("2026-11-22"),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_weeks_weekly_copy_may_be_taken_on_any_day_of_it() {
    // Sunday's backup failed: Monday's is the week's weekly copy, and the
    // only gap is Sunday's day.
    let f = Fixture::new();
    for d in ["21", "24"] {
        f.copy(d);
    }
    f.copy_in(Tier::Weekly, "23", b"dump".repeat(100));
    assert_eq!(f.kinds(false), [FindingKind::MissingDaily]);
    // Two weekly copies in one week (from an older version) are no error.
    let f = Fixture::healthy();
    f.copy_in(Tier::Weekly, "23", b"dump".repeat(100));
    let r = f.audit(false);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    // A weekly copy taken before the week's weekly day 00:00 is the last
    // week's: Saturday's does not fill the week of the 22nd.
    let f = Fixture::new();
    for d in ["22", "23", "24"] {
        f.copy_in(Tier::Daily, d, b"dump".repeat(100));
    }
    f.copy_in(Tier::Weekly, "21", b"dump".repeat(100));
    assert_eq!(f.kinds(false), [FindingKind::MissingWeekly]);
}

#[test]
fn a_broken_weekly_copy_leaves_its_week_without_one() {
    let f = Fixture::healthy();
    f.store.delete(&manifest_of(&f.dump("22"))).unwrap();
    assert_eq!(
        f.kinds(false),
        [FindingKind::MissingWeekly, FindingKind::MissingManifest]
    );
}

#[test]
fn not_offsite() {
    let f = Fixture::healthy();
    f.local("25", &"a".repeat(64));
    let r = f.audit(false);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].kind, FindingKind::NotOffsite);
    assert!(r.findings[0].detail.contains("20261125_020000"));
}

#[test]
fn past_retention() {
    let f = Fixture::healthy();
    let old = now() - Duration::days(40);
    f.edit(&f.dump("21"), |o| o.created = Some(old));
    assert_eq!(f.kinds(false), [FindingKind::PastRetention]);
}

#[test]
fn no_hash() {
    let f = Fixture::healthy();
    f.edit(&f.dump("23"), |o| o.metadata.clear());
    assert_eq!(f.kinds(false), [FindingKind::NoHash]);
    let f = Fixture::healthy();
    f.edit(&f.dump("23"), |o| {
        o.metadata.insert("sha256".into(), "not-a-hash".into());
    });
    assert_eq!(f.kinds(false), [FindingKind::NoHash]);
}

#[test]
fn hash_mismatch() {
    let f = Fixture::healthy();
    f.local("24", &"b".repeat(64));
    assert_eq!(f.kinds(false), [FindingKind::HashMismatch]);
}

#[test]
fn corrupt_content_is_found_by_a_deep_audit_and_not_trusted_after() {
    let f = Fixture::healthy();
    f.store.tamper(&f.dump("24"), b"changed".to_vec());
    assert!(f.kinds(false).is_empty());
    assert_eq!(f.kinds(true), [FindingKind::Corrupt]);
    // Remembered: the broken newest copy supersedes nothing, so the 23rd
    // is the daily tier's newest sound copy and loses its tag.
    assert!(!f.store.get(&f.dump("23")).unwrap().is_superseded());
    assert!(!f.store.get(&f.dump("24")).unwrap().is_superseded());
}

#[test]
fn size_anomaly() {
    let f = Fixture::new();
    for d in ["21", "22", "23"] {
        f.copy(d);
    }
    f.copy_in(Tier::Daily, "24", b"dump".repeat(10_000));
    assert_eq!(f.kinds(false), [FindingKind::SizeAnomaly]);
}

#[test]
fn wrong_tier() {
    let f = Fixture::healthy();
    f.edit(&f.dump("24"), |o| o.access_tier = Some("Hot".into()));
    assert_eq!(f.kinds(false), [FindingKind::WrongTier]);
}

#[test]
fn missing_manifest() {
    let f = Fixture::healthy();
    f.store.delete(&manifest_of(&f.dump("24"))).unwrap();
    assert_eq!(f.kinds(false), [FindingKind::MissingManifest]);
}

#[test]
fn bad_manifest() {
    let f = Fixture::healthy();
    let m = manifest_of(&f.dump("24"));
    let obj = f.store.get(&m).unwrap();
    f.store.put(obj, b"{ not json".to_vec());
    assert!(f.kinds(false).is_empty());
    assert_eq!(f.kinds(true), [FindingKind::BadManifest]);
}

#[test]
fn tag_repair() {
    let f = Fixture::healthy();
    f.store.fail("set_tags");
    let r = f.audit(false);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].kind, FindingKind::TagRepair);
    assert!(r.findings[0].detail.starts_with("4 blob(s) not tagged"));
}

#[test]
fn unknown_blob() {
    let f = Fixture::healthy();
    let name = format!("{}daily/order_db/notes.txt", f.az().prefix);
    f.store
        .put(object(&name, "", "Cool", stamp("24")), b"x".to_vec());
    assert_eq!(f.kinds(false), [FindingKind::UnknownBlob]);
}

/// Moves every copy's upload time back by `days`.
fn age(f: &Fixture, days: i64) {
    for name in f.store.names() {
        f.edit(&name, |o| {
            o.created = o.created.map(|c| c - Duration::days(days))
        });
    }
}

#[test]
fn prune_keeps_the_newest_sound_copy_of_each_tier_whatever_its_age() {
    let f = Fixture::healthy();
    age(&f, 200);
    let removed = prune_store(&f.ctx, &f.store, Some(now())).unwrap();
    assert_eq!(removed, [f.dump("21"), f.dump("23")]);
    let left = f.store.names();
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.contains(&f.dump("22")) && left.contains(&f.dump("24")));
}

#[test]
fn prune_keeps_the_newest_sound_copy_not_the_newest_name() {
    let f = Fixture::healthy();
    f.store.delete(&manifest_of(&f.dump("24"))).unwrap();
    age(&f, 200);
    let removed = prune_store(&f.ctx, &f.store, Some(now())).unwrap();
    // The 24th has no manifest: not sound, and newer than the 23rd, so
    // nothing supersedes either of them.
    assert_eq!(removed, [f.dump("21")]);
}

#[test]
fn prune_deletes_only_what_is_past_its_tier() {
    let f = Fixture::healthy();
    age(&f, 10);
    assert!(
        prune_store(&f.ctx, &f.store, Some(now()))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_dry_run_prune_names_the_same_copies_and_deletes_nothing() {
    let f = Fixture::healthy();
    age(&f, 200);
    let before = f.store.names();
    let dry = prune_store(&f.ctx, &DryRun(&f.store), Some(now())).unwrap();
    assert_eq!(f.store.names(), before);
    assert_eq!(dry, prune_store(&f.ctx, &f.store, Some(now())).unwrap());
}

// `restore --from-azure`'s fetch over the same fixture: the newest common
// timestamp, and a copy that does not verify is never written.

#[test]
fn fetch_takes_the_newest_copy_and_proves_it() {
    let f = Fixture::healthy();
    let got =
        crate::ops::fetch::fetch_from(&f.ctx, &f.store, &[], None, &Progress::hidden()).unwrap();
    assert_eq!(got.stamp, stamp("24"));
    assert_eq!(got.copies.len(), 1);
    assert_eq!(got.copies[0].blob, f.dump("24"));
    let db = f.ctx.cfg.select(&[]).unwrap();
    let local = Catalog::open_existing(&f.ctx.cfg).list(&db).unwrap();
    assert_eq!(local.len(), 1);
    assert!(local[0].is_sound() && local[0].stamp == got.stamp);
}

#[test]
fn fetch_writes_nothing_when_no_copy_verifies() {
    let f = Fixture::healthy();
    f.store.tamper(&f.dump("24"), b"changed".to_vec());
    let e = crate::ops::fetch::fetch_from(
        &f.ctx,
        &f.store,
        &[],
        Some(stamp("24")),
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no offsite copy verifies"), "{e}");
    let db = f.ctx.cfg.select(&[]).unwrap();
    assert!(
        Catalog::open_existing(&f.ctx.cfg)
            .list(&db)
            .unwrap()
            .is_empty()
    );
}

// Immutable copies: the audit's policy findings and counts, and a prune
// that never deletes a protected copy.

/// The healthy baseline with every tier immutable.
fn immutable() -> Fixture {
    let f = Fixture::with_azure("immutable = [\"daily\", \"weekly\"]");
    for d in DAYS {
        f.copy(d);
    }
    f
}

/// Puts both blobs of day `day`'s copy under a policy lasting `days`
/// after its upload.
fn lock_for(f: &Fixture, day: &str, days: i64) {
    for name in [f.dump(day), manifest_of(&f.dump(day))] {
        f.edit(&name, |o| {
            o.protection.policy = Some(crate::storage::Policy {
                until: o.created.unwrap() + Duration::days(days),
                mode: crate::config::ImmutabilityMode::Unlocked,
            })
        });
    }
}

#[test]
fn copies_of_an_immutable_tier_need_a_policy_as_long_as_their_retention() {
    let f = immutable();
    let r = f.audit(false);
    let none: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|x| x.kind == FindingKind::NotImmutable)
        .collect();
    assert_eq!(none.len(), 4, "{:?}", r.findings);
    assert!(
        none[0].detail.contains("no immutability policy"),
        "{}",
        none[0].detail
    );
    for d in DAYS {
        lock_for(&f, d, f.tier(d).retention_days(f.az()) as i64 + 1);
    }
    assert!(f.kinds(false).is_empty(), "{:?}", f.audit(false).findings);
    assert_eq!(f.audit(false).databases[0].immutability.protected, 4);
    // A policy shorter than the daily tier's 30 days, and one already
    // ended (as an expired one has): neither protects the copy for its
    // retention.
    lock_for(&f, "23", 10);
    lock_for(&f, "24", 0);
    let r = f.audit(false);
    let short: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|x| x.kind == FindingKind::PolicyTooShort)
        .collect();
    assert_eq!(short.len(), 2, "{:?}", r.findings);
    assert!(
        short[0]
            .detail
            .contains("protected for less than its retention"),
        "{}",
        short[0].detail
    );
    assert!(
        short[1].detail.contains("no longer protected"),
        "{}",
        short[1].detail
    );
    assert_eq!(r.databases[0].immutability.protected, 3);
}

#[test]
fn prune_never_deletes_a_held_or_locked_copy() {
    let f = Fixture::healthy();
    age(&f, 200);
    // The 21st is held, the 23rd under a policy that has not ended (by the
    // service's clock, whatever --as-of says).
    for name in [f.dump("21"), manifest_of(&f.dump("21"))] {
        f.store.set_legal_hold(&name, true).unwrap();
    }
    for name in [f.dump("23"), manifest_of(&f.dump("23"))] {
        f.edit(&name, |o| {
            o.protection.policy = Some(crate::storage::Policy {
                until: Utc::now() + Duration::days(1),
                mode: crate::config::ImmutabilityMode::Locked,
            })
        });
    }
    let before = f.store.names();
    let dry = prune_store(&f.ctx, &DryRun(&f.store), Some(now())).unwrap();
    assert!(dry.is_empty(), "{dry:?}");
    assert!(
        prune_store(&f.ctx, &f.store, Some(now()))
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.store.names(), before);
    let r = f.audit(false);
    assert_eq!(
        (
            r.databases[0].immutability.protected,
            r.databases[0].immutability.held
        ),
        (2, 1)
    );
    // Once the hold is cleared the 21st goes, as retention says.
    for name in [f.dump("21"), manifest_of(&f.dump("21"))] {
        f.store.set_legal_hold(&name, false).unwrap();
    }
    assert_eq!(
        prune_store(&f.ctx, &f.store, Some(now())).unwrap(),
        [f.dump("21")]
    );
}

#[test]
fn the_audit_counts_what_previous_versions_cost() {
    let f = Fixture::healthy();
    age(&f, 200);
    let removed = prune_store(&f.ctx, &f.store, Some(now())).unwrap();
    assert_eq!(removed.len(), 2);
    let i = &f.audit(false).databases[0].immutability;
    // Two copies deleted: dump and manifest each, kept as versions.
    assert_eq!(i.previous_versions, 4, "{i:?}");
    assert_eq!(
        i.previous_version_bytes,
        f.store
            .previous_versions("")
            .unwrap()
            .iter()
            .map(|o| o.size)
            .sum::<u64>()
    );
    assert!(i.previous_version_bytes >= 2 * 400, "{i:?}");
}

/// A store whose listing is older than a hold: it shows no protection, and
/// the delete meets the service's refusal (a hold set since the listing).
struct StaleListing<'a>(&'a MemoryStore);

impl Store for StaleListing<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn prepare(&self) -> Result<()> {
        self.0.prepare()
    }
    fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        let mut all = self.0.list(prefix)?;
        for o in &mut all {
            o.protection = Default::default();
        }
        Ok(all)
    }
    fn head(&self, name: &str) -> Result<Option<Object>> {
        self.0.head(name)
    }
    fn read(
        &self,
        name: &str,
        out: &mut dyn std::io::Write,
        cancel: &AtomicBool,
        bar: &crate::ui::Bar,
    ) -> Result<u64> {
        self.0.read(name, out, cancel, bar)
    }
    fn read_small(&self, name: &str, cancel: &AtomicBool) -> Result<Vec<u8>> {
        self.0.read_small(name, cancel)
    }
    fn write_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        spec: &crate::storage::WriteSpec,
    ) -> Result<()> {
        self.0.write_bytes(name, bytes, spec)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.0.delete(name)
    }
    fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        self.0.set_tags(name, tags)
    }
    fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()> {
        self.0.set_legal_hold(name, hold)
    }
    fn set_policy(&self, name: &str, policy: &crate::storage::Policy) -> Result<()> {
        self.0.set_policy(name, policy)
    }
}

#[test]
fn a_hold_met_only_at_the_delete_keeps_the_copy_and_the_prune_goes_on() {
    let f = Fixture::healthy();
    age(&f, 200);
    for name in [f.dump("21"), manifest_of(&f.dump("21"))] {
        f.store.set_legal_hold(&name, true).unwrap();
    }
    // The 21st is refused at its delete (BlobImmutableDueToLegalHold), the
    // 23rd goes, and the run succeeds.
    let removed = prune_store(&f.ctx, &StaleListing(&f.store), Some(now())).unwrap();
    assert_eq!(removed, [f.dump("23")]);
    assert!(f.store.get(&f.dump("21")).is_some());
    assert!(f.store.get(&manifest_of(&f.dump("21"))).is_some());
}
