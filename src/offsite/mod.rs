//! Offsite copies in Azure Blob Storage: blob names, the daily and weekly
//! tiers, and the lifecycle policy that deletes old copies. The blob client
//! and its login are the storage layer's Azure driver
//! ([`crate::storage::azure`]); nothing here speaks to the container.
//!
//! Layout in the container (`<prefix>` is optional, e.g. `prod/`):
//! ```text
//! <prefix>daily/order_db/order_db_20261124_020000.dump.gz        kept 30 days, Cool
//! <prefix>daily/order_db/order_db_20261124_020000.manifest.json  its manifest
//! <prefix>weekly/order_db/order_db_20261122_020000.dump.gz       one a week, kept 90 days, Cold
//! ```
//! Each dump blob carries metadata `sha256` (of the whole file, as in the
//! local manifest), database, timestamp, tier, source host and tool version,
//! and index tags `tier`, `database` and `date`, so the inventory can be
//! queried by tag. The manifest travels beside the dump so that a machine
//! with an empty backup directory can still check a restore.
//!
//! A copy (dump and manifest) also carries the index tag
//! [`SUPERSEDED_TAG`]` = true` once a newer sound copy of the same database
//! exists in its tier. The lifecycle policy deletes only tagged blobs, so the
//! newest sound copy of each database and tier is never deleted by age,
//! however long uploads stop. `upload` tags the copies it supersedes; `audit`
//! and `prune --offsite` repair tags that are missing or wrong.
//!
//! Everything read from the service (metadata, manifest blobs) is untrusted:
//! [`parse_sha256`] checks a hash before it is used, and manifests are read
//! with a size limit ([`MAX_MANIFEST_BYTES`]).
//!
//! Nothing here knows about the local catalog. Copies as backup sets (which
//! are sound, superseded or expired) are [`crate::catalog::copies`], over
//! the [`crate::storage::Store`] seam.

pub mod policy;

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};

use crate::config::Azure;
use crate::error::{Error, Result};

/// The index tag that marks a copy the lifecycle policy may delete: set only
/// once a newer sound copy of the same database and tier exists.
pub const SUPERSEDED_TAG: &str = "superseded";
pub const SUPERSEDED_VALUE: &str = "true";

/// The folder under the prefix that holds the post-mortem records
/// (`<prefix>reports/`), beside the tiers' folders.
pub const REPORTS_DIR: &str = "reports";

/// A manifest is a few KiB; anything larger than this is not one of ours
/// and is not read into memory.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

pub use crate::pipeline::hash::{check_sha256, preview, short};

/// A SHA-256 from the service (`what` in `blob`): 64 hex digits, returned
/// in lower case. Anything else is an error naming the blob, with a short,
/// escaped preview of the value (never the whole of a huge one).
pub fn parse_sha256(blob: &str, what: &str, value: &str) -> Result<String> {
    check_sha256(what, value).map_err(|reason| Error::Corrupt {
        file: blob.to_string(),
        reason,
    })
}

/// At most 200 characters of `s` on one line, for values in messages.
pub fn preview_long(s: &str) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Daily,
    Weekly,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Daily, Tier::Weekly];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Daily => "daily",
            Tier::Weekly => "weekly",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "daily" => Some(Tier::Daily),
            "weekly" => Some(Tier::Weekly),
            _ => None,
        }
    }

    /// The tier `upload --tier auto` gives a backup taken at `taken`: the
    /// weekly rule, one weekly copy per database per week. The week that
    /// starts on `[azure] weekly_day` D (00:00 UTC, see [`week_of`]) gets as
    /// its weekly copy the first sound backup taken in D..D+7 days that is
    /// uploaded: normally D's own, the next day's when D's failed. `weekly`
    /// holds when the sound weekly copies of the backup's database that the
    /// store holds were taken. The backup is weekly when its week has none
    /// of them, or when it is one of them (a rerun finds it present); it is
    /// daily when the week already has its weekly copy.
    pub fn for_backup(taken: DateTime<Utc>, weekly: &[DateTime<Utc>], az: &Azure) -> Tier {
        let day = az.weekly_day.to_chrono();
        let week = week_of(taken, day);
        let week_held = weekly.iter().any(|w| week_of(*w, day) == week);
        if !week_held || weekly.contains(&taken) {
            Tier::Weekly
        } else {
            Tier::Daily
        }
    }

    pub fn retention_days(self, az: &Azure) -> u32 {
        match self {
            Tier::Daily => az.daily_retention_days,
            Tier::Weekly => az.weekly_retention_days,
        }
    }

    pub fn access_tier(self, az: &Azure) -> crate::config::AccessTierName {
        match self {
            Tier::Daily => az.daily_access_tier,
            Tier::Weekly => az.weekly_access_tier,
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The week `t` falls in, by the day it starts on: the latest `weekly_day`
/// at or before `t`'s UTC date (the week runs from that day 00:00 UTC for
/// seven days). The weekly rule ([`Tier::for_backup`]) and the audit's
/// weekly gaps both count weeks by it.
///
/// Weeks are anchored to the weekly day rather than being "the 7 days before
/// this backup": with an unanchored window, a weekly-day backup that fails
/// makes the next day's the weekly copy, the next one is then due 7 days
/// after that, and each failure moves the weekly copy a day later for good
/// (and the audit could not say when a week's copy was due).
pub fn week_of(t: DateTime<Utc>, weekly_day: Weekday) -> NaiveDate {
    let date = t.date_naive();
    let back = (7 + date.weekday().num_days_from_monday() - weekly_day.num_days_from_monday()) % 7;
    date - chrono::Days::new(back.into())
}

/// `<prefix><tier>/<dbname>/<file>`.
pub fn blob_name(az: &Azure, tier: Tier, dbname: &str, file: &str) -> String {
    format!("{}{}/{dbname}/{file}", az.prefix, tier.as_str())
}

/// The parts of one of our blob names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPath {
    pub tier: Tier,
    pub dbname: String,
    pub file: String,
}

impl BlobPath {
    /// Splits a blob name under `az.prefix`; `None` for anything that is not
    /// `<tier>/<dbname>/<file>`.
    pub fn parse(az: &Azure, name: &str) -> Option<BlobPath> {
        let rest = name.strip_prefix(az.prefix.as_str())?;
        let mut parts = rest.splitn(3, '/');
        let tier = Tier::parse(parts.next()?)?;
        let dbname = parts.next()?.to_string();
        let file = parts.next()?.to_string();
        (!dbname.is_empty() && !file.is_empty() && !file.contains('/')).then_some(BlobPath {
            tier,
            dbname,
            file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn az(extra: &str) -> Azure {
        let text = format!(
            "backup_dir = \"b\"\n[[database]]\nname = \"order\"\ndbname = \"order_db\"\n\
             user = \"u\"\n[azure]\ncontainer = \"database-backups\"\n{extra}"
        );
        crate::Config::parse(&text, Path::new("x.toml"))
            .unwrap()
            .azure
            .unwrap()
    }

    #[test]
    fn names_round_trip_and_tiers_follow_the_weekday() {
        let a = az("prefix = \"prod/\"");
        let n = blob_name(
            &a,
            Tier::Weekly,
            "order_db",
            "order_db_20261122_020000.dump.gz",
        );
        assert_eq!(n, "prod/weekly/order_db/order_db_20261122_020000.dump.gz");
        let p = BlobPath::parse(&a, &n).unwrap();
        assert_eq!((p.tier, p.dbname.as_str()), (Tier::Weekly, "order_db"));
        assert!(BlobPath::parse(&a, "weekly/order_db/x").is_none());
        assert!(BlobPath::parse(&a, "prod/monthly/order_db/x").is_none());
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let sunday = at("2026-11-22T02:00:00Z");
        let monday = at("2026-11-23T02:00:00Z");
        assert_eq!(Tier::for_backup(sunday, &[], &a), Tier::Weekly);
        assert_eq!(Tier::for_backup(monday, &[sunday], &a), Tier::Daily);
        assert_eq!(
            Tier::for_backup(monday, &[sunday], &az("weekly_day = \"monday\"")),
            Tier::Weekly
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    // The weekly rule, over plain data: Sunday 2026-11-22 is the weekly day
    // (the default); the week before starts on the 15th.

    /// The tier of a backup taken at `taken` when weekly copies taken at
    /// `held` are in the store (times on 2026-11-DD, as `DDTHH:MM:SS`).
    fn rule(a: &Azure, taken: &str, held: &[&str]) -> Tier {
        let t = |s: &str| at(&format!("2026-11-{s}Z"));
        let held: Vec<DateTime<Utc>> = held.iter().map(|h| t(h)).collect();
        Tier::for_backup(t(taken), &held, a)
    }

    #[test]
    fn the_weekly_day_backup_is_the_weeks_weekly_copy() {
        let a = az("");
        assert_eq!(rule(&a, "22T02:00:00", &[]), Tier::Weekly);
        assert_eq!(rule(&a, "22T02:00:00", &["15T02:00:00"]), Tier::Weekly);
        // Uploaded again (a rerun, the catch-up job): it is the week's copy.
        let both = ["15T02:00:00", "22T02:00:00"];
        assert_eq!(rule(&a, "22T02:00:00", &both), Tier::Weekly);
    }

    #[test]
    fn a_failed_weekly_day_makes_the_next_days_backup_the_weekly_copy() {
        let a = az("");
        // Sunday's backup failed: the week holds nothing yet on Monday.
        assert_eq!(rule(&a, "23T02:00:00", &["15T02:00:00"]), Tier::Weekly);
        let monday = ["15T02:00:00", "23T02:00:00"];
        assert_eq!(rule(&a, "24T02:00:00", &monday), Tier::Daily);
        // And the next week's copy is due on Sunday again, not a day later.
        assert_eq!(rule(&a, "29T02:00:00", &monday), Tier::Weekly);
    }

    #[test]
    fn a_week_that_holds_a_weekly_copy_gets_no_other() {
        let a = az("");
        for later in ["22T14:00:00", "25T02:00:00", "28T02:00:00"] {
            assert_eq!(rule(&a, later, &["22T02:00:00"]), Tier::Daily, "{later}");
        }
        // Whichever day the week's copy was taken on: Sunday's own backup,
        // uploaded after Tuesday's became the weekly copy, goes daily.
        assert_eq!(rule(&a, "22T02:00:00", &["24T02:00:00"]), Tier::Daily);
    }

    #[test]
    fn a_week_starts_at_the_weekly_day_00_00_utc_exactly() {
        let a = az("");
        let start = at("2026-11-22T00:00:00Z");
        let before = at("2026-11-21T23:59:59Z");
        assert_eq!(week_of(start, Weekday::Sun), date("2026-11-22"));
        assert_eq!(week_of(before, Weekday::Sun), date("2026-11-15"));
        assert_eq!(rule(&a, "22T00:00:00", &["21T23:59:59"]), Tier::Weekly);
        assert_eq!(rule(&a, "28T23:59:59", &["22T00:00:00"]), Tier::Daily);
        let week = ["22T00:00:00", "28T23:59:59"];
        assert_eq!(rule(&a, "29T00:00:00", &week), Tier::Weekly);
    }

    #[test]
    fn weeks_follow_a_weekly_day_that_is_not_sunday() {
        let a = az("weekly_day = \"wednesday\"");
        assert_eq!(rule(&a, "24T02:00:00", &["18T02:00:00"]), Tier::Daily);
        let held = ["18T02:00:00", "24T02:00:00"];
        assert_eq!(rule(&a, "25T02:00:00", &held), Tier::Weekly);
        // Sunday, in the middle of a Wednesday week, is an ordinary day.
        assert_eq!(rule(&a, "22T02:00:00", &["18T02:00:00"]), Tier::Daily);
        // Every weekday as the weekly day: each day falls in the week that
        // starts on the latest such day at or before it.
        for wd in (0..7).map(|i| Weekday::try_from(i).unwrap()) {
            for d in 0..14 {
                let day = date("2026-11-16") + chrono::Days::new(d);
                let t = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
                let start = week_of(t, wd);
                assert_eq!(start.weekday(), wd);
                assert!(start <= day && day - start < chrono::Duration::days(7));
            }
        }
    }

    #[test]
    fn hashes_from_the_service_are_checked_not_sliced() {
        let good = "A".repeat(64);
        assert_eq!(parse_sha256("b", "x", &good).unwrap(), "a".repeat(64));
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65), &"é".repeat(32)] {
            let e = parse_sha256("daily/o/o.dump.gz", "metadata sha256", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("daily/o/o.dump.gz: metadata sha256 is not"),
                "{e}"
            );
            assert!(!e.contains('\n') && e.len() < 200, "{e}");
        }
        assert_eq!(short("é".repeat(20).as_str()), "é".repeat(12));
        assert_eq!(short("ab"), "ab");
        assert!(preview(&"x".repeat(5000)).ends_with("(5000 bytes)"));
        assert_eq!(preview("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn rejects_bad_azure_settings() {
        let bad = |extra: &str| {
            let text = format!(
                "backup_dir = \"b\"\n[[database]]\nname = \"o\"\ndbname = \"o\"\nuser = \"u\"\n\
                 [azure]\n{extra}"
            );
            crate::Config::parse(&text, Path::new("x.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("container = \"Bad_Name\"").contains("azure.container"));
        assert!(bad("container = \"ok-name\"\nprefix = \"/abs\"").contains("prefix"));
        assert!(
            bad("container = \"ok-name\"\ndaily_access_tier = \"archive\"").contains("archive")
        );
        assert!(bad("container = \"ok-name\"\naccount_url = \"https://a\"").contains("auth"));
    }
}
