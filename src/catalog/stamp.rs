//! Backup timestamps: `YYYYMMDD_HHMMSS`, UTC, shared by all databases of one
//! run (the restore command takes one timestamp for both databases).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use crate::error::Error;

const FORMAT: &str = "%Y%m%d_%H%M%S";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NaiveDateTime);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp::from_datetime(Utc::now())
    }

    pub fn from_datetime(t: DateTime<Utc>) -> Stamp {
        let t = t.naive_utc();
        Stamp(t - TimeDelta::nanoseconds(t.and_utc().timestamp_subsec_nanos() as i64))
    }

    pub fn parse(s: &str) -> Result<Stamp, Error> {
        let invalid = || Error::Invalid {
            what: "timestamp",
            value: s.to_string(),
            why: "expected YYYYMMDD_HHMMSS (UTC, as in the file names) or 'latest'",
        };
        if s.len() != 15 || s.as_bytes()[8] != b'_' {
            return Err(invalid());
        }
        NaiveDateTime::parse_from_str(s, FORMAT)
            .map(Stamp)
            .map_err(|_| invalid())
    }

    /// `latest` (or nothing) selects the newest backup; anything else must be
    /// a timestamp.
    pub fn parse_selector(s: Option<&str>) -> Result<Option<Stamp>, Error> {
        match s {
            None | Some("latest") => Ok(None),
            Some(s) => Stamp::parse(s).map(Some),
        }
    }

    pub fn to_utc(self) -> DateTime<Utc> {
        self.0.and_utc()
    }

    pub fn minus_days(self, days: u32) -> Stamp {
        Stamp(self.0 - TimeDelta::days(days as i64))
    }

    pub fn next_second(self) -> Stamp {
        Stamp(self.0 + TimeDelta::seconds(1))
    }

    /// Age relative to `now`, zero for stamps in the future.
    pub fn age(self, now: Stamp) -> std::time::Duration {
        (now.0 - self.0).to_std().unwrap_or_default()
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(FORMAT))
    }
}

impl serde::Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Stamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let s = Stamp::parse("20260129_020000").unwrap();
        assert_eq!(s.to_string(), "20260129_020000");
        assert!(Stamp::parse("20261399_020000").is_err());
        assert!(Stamp::parse("2026-01-29").is_err());
        assert!(Stamp::parse("../../etc/pass").is_err());
        assert_eq!(Stamp::parse_selector(Some("latest")).unwrap(), None);
        assert!(s.minus_days(1) < s);
    }
}
