//! The seed's schedule table as cron expressions, read in the configured
//! time zone. Below `config`, which parses it at load (an invalid expression
//! is a config error naming its key); the agent runs it and `config check`
//! reports it.
//!
//! Cron semantics (croner, POSIX/Vixie): when both day-of-month and
//! day-of-week are restricted, a day matching either fires (`0 4 1-7 * SUN`
//! fires on days 1-7 *and* every Sunday). The first Sunday of the month is
//! `SUN#1`. A sixth, leading field gives seconds (tests use it to run a day
//! in seconds).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// Backup of every database, then the upload of the new backups.
    Backup,
    /// Verification of the newest backups.
    Verify,
    /// Catch-up of the weekly rule: the newest backups with `--tier auto`.
    WeeklyUpload,
    /// Audit of the offsite inventory.
    Audit,
    /// Restore drill: `verify --deep`, the measured RTO.
    Drill,
    /// Region drill: `drill region` (geo-restore, smoke check, delete);
    /// scheduled only when `agent.schedule.drill_region` is set.
    DrillRegion,
}

impl Job {
    pub const ALL: [Job; 6] = [
        Job::Backup,
        Job::Verify,
        Job::WeeklyUpload,
        Job::Audit,
        Job::Drill,
        Job::DrillRegion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::Verify => "verify",
            Job::WeeklyUpload => "weekly-upload",
            Job::Audit => "audit",
            Job::Drill => "drill",
            Job::DrillRegion => "drill-region",
        }
    }

    pub fn parse(s: &str) -> Option<Job> {
        Job::ALL
            .into_iter()
            .find(|j| j.as_str() == s || j.as_str().replace('-', "_") == s)
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One job's cron expression, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub job: Job,
    pub expr: String,
    cron: Cron,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub tz: Tz,
    pub entries: Vec<Entry>,
}

impl Schedule {
    /// Parses the time zone and every job's expression; the error names the
    /// key (`agent.schedule.verify`) that is wrong.
    pub fn parse<'a>(
        timezone: &str,
        exprs: impl IntoIterator<Item = (Job, &'a str)>,
    ) -> Result<Schedule, String> {
        let tz: Tz = timezone
            .parse()
            .map_err(|_| format!("agent.timezone '{timezone}' is not an IANA time zone"))?;
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let mut entries = Vec::new();
        for (job, expr) in exprs {
            let cron = parser.parse(expr).map_err(|e| {
                format!(
                    "agent.schedule.{} '{expr}': {e}",
                    job.as_str().replace('-', "_")
                )
            })?;
            entries.push(Entry {
                job,
                expr: expr.to_string(),
                cron,
            });
        }
        Ok(Schedule { tz, entries })
    }

    /// The expression of `job` as configured.
    pub fn expr(&self, job: Job) -> Option<&str> {
        let e = self.entries.iter().find(|e| e.job == job)?;
        Some(&e.expr)
    }

    /// The next slot of `job` strictly after `t`.
    pub fn next(&self, job: Job, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let e = self.entries.iter().find(|e| e.job == job)?;
        e.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest slot of `job` at or before `t`.
    pub fn previous(&self, job: Job, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let e = self.entries.iter().find(|e| e.job == job)?;
        e.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The seed's table (the config's defaults) in `tz`, `job` set to `expr`.
    fn seed(tz: &str, job: Job, expr: &str) -> Result<Schedule, String> {
        let table = [
            (Job::Backup, "0 2 * * *"),
            (Job::Verify, "0 3 * * *"),
            (Job::WeeklyUpload, "0 1 * * SUN"),
            (Job::Audit, "30 3 * * *"),
            (Job::Drill, "0 4 * * SUN#1"),
        ];
        Schedule::parse(tz, table.map(|(j, e)| (j, if j == job { expr } else { e })))
    }

    #[test]
    fn the_seeds_schedule() {
        let s = seed("UTC", Job::Backup, "0 2 * * *").unwrap();
        // Tuesday 2026-11-24 at noon.
        let t = at("2026-11-24T12:00:00Z");
        assert_eq!(s.next(Job::Backup, t), Some(at("2026-11-25T02:00:00Z")));
        assert_eq!(s.next(Job::Audit, t), Some(at("2026-11-25T03:30:00Z")));
        assert_eq!(
            s.next(Job::WeeklyUpload, t),
            Some(at("2026-11-29T01:00:00Z"))
        );
        // The first Sunday of December 2026 is the 6th, not every Sunday.
        assert_eq!(s.next(Job::Drill, t), Some(at("2026-12-06T04:00:00Z")));
        assert_eq!(
            s.next(Job::Drill, at("2026-12-06T05:00:00Z")),
            Some(at("2027-01-03T04:00:00Z"))
        );
        assert_eq!(s.previous(Job::Backup, t), Some(at("2026-11-24T02:00:00Z")));
    }

    #[test]
    fn time_zones_and_errors() {
        let s = seed("Europe/Berlin", Job::Backup, "0 2 * * *").unwrap();
        // 02:00 in Berlin is 01:00 UTC in winter.
        assert_eq!(
            s.next(Job::Backup, at("2026-11-24T12:00:00Z")),
            Some(at("2026-11-25T01:00:00Z"))
        );
        assert!(
            seed("Mars/Olympus", Job::Backup, "0 2 * * *")
                .unwrap_err()
                .contains("Mars/Olympus")
        );
        assert!(
            seed("UTC", Job::Verify, "61 3 * * *")
                .unwrap_err()
                .contains("agent.schedule.verify")
        );
        assert_eq!(Job::parse("weekly_upload"), Some(Job::WeeklyUpload));
    }
}
