//! What the agent knows, in Prometheus text format: per job and database,
//! when it last succeeded and failed and how long it took; backup sizes;
//! bytes uploaded; when each database was last verified and restore-drilled
//! and how long the drill's restore took (the measured RTO); audit findings
//! by kind.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;
type G = Family<Labels, Gauge<f64, AtomicU64>>;

pub struct Metrics {
    registry: Registry,
    pub last_success: G,
    pub last_failure: G,
    pub duration: G,
    pub running: G,
    pub backup_size: G,
    pub backup_written: G,
    pub uploaded: G,
    pub last_verified: G,
    pub last_deep_verified: G,
    pub drill_restore: G,
    pub audit_findings: G,
    pub newest_backup_age: G,
    /// `drill region`'s steps (preflight ... delete, total), the last run.
    pub drill_region: G,
}

fn gauge(r: &mut Registry, name: &str, help: &str) -> G {
    let g = G::default();
    r.register(name, help, g.clone());
    g
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("valerix_backup");
        Metrics {
            last_success: gauge(
                &mut r,
                "last_success_timestamp_seconds",
                "Unix time of the last success, per job and database",
            ),
            last_failure: gauge(
                &mut r,
                "last_failure_timestamp_seconds",
                "Unix time of the last failure, per job and database",
            ),
            duration: gauge(
                &mut r,
                "job_duration_seconds",
                "Duration of the last run of a job",
            ),
            running: gauge(&mut r, "job_running", "1 while the job runs"),
            backup_size: gauge(
                &mut r,
                "backup_size_bytes",
                "Size of the newest backup file",
            ),
            backup_written: gauge(
                &mut r,
                "backup_uncompressed_bytes",
                "pg_dump stream size of the newest backup",
            ),
            uploaded: gauge(
                &mut r,
                "uploaded_bytes",
                "Bytes sent offsite by the last upload, per database and tier",
            ),
            last_verified: gauge(
                &mut r,
                "last_verified_timestamp_seconds",
                "Unix time of the last successful verification",
            ),
            last_deep_verified: gauge(
                &mut r,
                "last_deep_verified_timestamp_seconds",
                "Unix time of the last successful restore drill",
            ),
            drill_restore: gauge(
                &mut r,
                "restore_drill_duration_seconds",
                "Restore time measured by the last drill (RTO evidence)",
            ),
            audit_findings: gauge(
                &mut r,
                "audit_findings",
                "Findings of the last offsite audit, by kind",
            ),
            newest_backup_age: gauge(
                &mut r,
                "newest_backup_age_seconds",
                "Age of the newest sound local backup",
            ),
            drill_region: gauge(
                &mut r,
                "drill_region_seconds",
                "Seconds of each step of the last region drill (step=\"rto\": preflight to a checked server, the measured RTO; step=\"total\" includes deleting it)",
            ),
            registry: r,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Label sets: `labels(&[("job", "backup"), ("database", "order_db")])`.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.last_success
            .get_or_create(&labels(&[("job", "backup"), ("database", "order_db")]))
            .set(1.7e9);
        let text = m.render();
        assert!(
            text.contains("# TYPE valerix_backup_last_success_timestamp_seconds gauge"),
            "{text}"
        );
        assert!(
            text.contains("valerix_backup_last_success_timestamp_seconds{job=\"backup\",database=\"order_db\"} 1700000000.0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
