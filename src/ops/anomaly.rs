//! The size-anomaly rule: a backup far bigger or smaller than the usual
//! ones of its database is worth a look (a table emptied, a runaway log),
//! although nothing failed.

use serde::Serialize;

use crate::catalog::Catalog;
use crate::config::{Config, Database};

/// Fewer earlier backups than this say nothing about what is usual.
const MIN_EARLIER: usize = 3;

/// Without an `[azure]` section (whose `size_anomaly_factor` sets it).
const DEFAULT_FACTOR: f64 = 3.0;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SizeAnomaly {
    pub dbname: String,
    pub size_bytes: u64,
    /// The median size of the database's earlier sound backups.
    pub median_bytes: u64,
    /// `size_bytes / median_bytes`.
    pub ratio: f64,
}

impl std::fmt::Display for SizeAnomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup of {} is {} bytes, {:.2} x the median {} of its earlier backups",
            self.dbname, self.size_bytes, self.ratio, self.median_bytes
        )
    }
}

/// The median of `sizes`, when there are enough of them to judge by.
pub fn median(sizes: &[u64]) -> Option<u64> {
    if sizes.len() < MIN_EARLIER {
        return None;
    }
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    Some(sorted[sorted.len() / 2])
}

/// More than `factor` times bigger or smaller than `median`.
pub fn off_median(size: u64, median: u64, factor: f64) -> bool {
    let (s, m) = (size as f64, median as f64);
    s > m * factor || s * factor < m
}

/// The anomaly, if any, of a backup of `size` bytes against `earlier` sizes.
pub fn judge(dbname: &str, size: u64, earlier: &[u64], factor: f64) -> Option<SizeAnomaly> {
    let median = median(earlier)?;
    off_median(size, median, factor).then(|| SizeAnomaly {
        dbname: dbname.to_string(),
        size_bytes: size,
        median_bytes: median,
        ratio: size as f64 / (median as f64).max(1.0),
    })
}

/// The new backup of `db` (the newest sound one in the backup directory)
/// against the database's earlier sound backups. Unreadable directories
/// say nothing: this is advice, never a failure.
pub fn check_newest(cfg: &Config, catalog: &Catalog, db: &Database) -> Option<SizeAnomaly> {
    let factor = cfg
        .azure
        .as_ref()
        .map_or(DEFAULT_FACTOR, |a| a.size_anomaly_factor);
    let mut sizes: Vec<u64> = catalog
        .list(&[db])
        .ok()?
        .iter()
        .filter(|b| b.is_sound())
        .map(|b| b.size)
        .collect();
    let newest = sizes.pop()?;
    judge(&db.dbname, newest, &sizes, factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_three_earlier_backups() {
        assert_eq!(judge("d", 1_000_000, &[10, 10], 3.0), None);
        assert!(judge("d", 1_000_000, &[10, 10, 10], 3.0).is_some());
    }

    #[test]
    fn flags_both_directions_past_the_factor_only() {
        let earlier = [100, 110, 90, 105];
        assert_eq!(judge("d", 300, &earlier, 3.0), None);
        assert_eq!(judge("d", 40, &earlier, 3.0), None);
        let big = judge("d", 400, &earlier, 3.0).unwrap();
        assert_eq!(big.median_bytes, 105);
        assert!((big.ratio - 400.0 / 105.0).abs() < 1e-9);
        assert!(judge("d", 30, &earlier, 3.0).is_some());
    }

    #[test]
    fn says_what_and_how_far() {
        let a = judge("order_db", 3000, &[100, 100, 100], 3.0).unwrap();
        assert_eq!(
            a.to_string(),
            "backup of order_db is 3000 bytes, 30.00 x the median 100 of its earlier backups"
        );
    }
}
