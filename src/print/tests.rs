//! Snapshots of what every command prints, human and JSON, from fixed
//! reports (no clock, no database): a change to what users see shows in
//! review as a change to a `.snap` file. `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test`) accepts a deliberate one; CI fails on
//! any other.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use valerix_backup::arm::lro::Operation;
use valerix_backup::catalog::{BackupState, Manifest, Stamp};
use valerix_backup::offsite::Tier;
use valerix_backup::ops::anomaly::SizeAnomaly;
use valerix_backup::ops::audit::{AuditReport, DbInventory, Finding, FindingKind};
use valerix_backup::ops::backup::{BackupReport, BackupRun, DbBackup, UploadStep};
use valerix_backup::ops::check::{CheckItem, ConfigCheck};
use valerix_backup::ops::geo::azure_check::RecoveryPath;
use valerix_backup::ops::geo::failover::ReplicaInfo;
use valerix_backup::ops::geo::{self, CheckReport, GeoRestorePlan, GeoRestoreReport, ServerCheck};
use valerix_backup::ops::inspect::{DbStatus, ListEntry, StatusReport};
use valerix_backup::ops::restore::{DbRestore, RestoreReport};
use valerix_backup::ops::upload::{BlobUpload, UploadReport, UploadStatus};
use valerix_backup::ops::verify::{DbVerify, VerifyReport};
use valerix_backup::pg::archive::TableRows;

use super::*;

/// Snapshots `name_human` and `name_json` of one report.
fn both<T: Serialize + ?Sized>(name: &str, value: &T, human: impl Fn(&T) -> String) {
    insta::assert_snapshot!(format!("{name}_human"), render(false, value, &human));
    insta::assert_snapshot!(format!("{name}_json"), render(true, value, &human));
}

const SHA: &str = "3f2a9c0d41b7e8a65c1d2e3f4a5b6c7d8e9f00112233445566778899aabbccdd";
const SUB: &str = "/subscriptions/0000-1111/resourceGroups/valerix-dr/providers/\
                   Microsoft.DBforPostgreSQL/flexibleServers";

fn stamp(s: &str) -> Stamp {
    Stamp::parse(s).unwrap()
}

fn time(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn manifest(dbname: &str, size: u64) -> Manifest {
    Manifest {
        format_version: 1,
        tool_version: "valerix-backup 0.1.0".into(),
        database: dbname.trim_end_matches("_db").into(),
        dbname: dbname.into(),
        host: "db.internal".into(),
        port: 5432,
        timestamp: stamp("20261201_020000"),
        file: format!("{dbname}_20261201_020000.dump.gz"),
        sha256: SHA.into(),
        size_bytes: size,
        uncompressed_bytes: size * 4,
        compression: "gzip level 6 (3 members)".into(),
        pg_dump_version: "17.2".into(),
        server_version: "17.2".into(),
        archive_version: "1.16".into(),
        started_at: time("2026-12-01T02:00:00Z"),
        finished_at: time("2026-12-01T02:00:12Z"),
        duration_secs: 12.25,
        tables: vec![
            TableRows {
                schema: "public".into(),
                name: "orders".into(),
                rows: 1200,
            },
            TableRows {
                schema: "public".into(),
                name: "order_items".into(),
                rows: 3400,
            },
        ],
        encryption: None,
        config: None,
    }
}

fn backup_report() -> BackupReport {
    BackupReport {
        timestamp: stamp("20261201_020000"),
        results: vec![
            DbBackup {
                database: "order".into(),
                dbname: "order_db".into(),
                ok: true,
                error: None,
                manifest: Some(manifest("order_db", 52_428_800)),
            },
            DbBackup {
                database: "payment".into(),
                dbname: "payment_db".into(),
                ok: false,
                error: Some("pg_dump failed (exit status: 1): connection refused".into()),
                manifest: None,
            },
        ],
        pruned: vec!["order_db_20261101_020000.dump.gz".into()],
        retention_warnings: vec![
            "retention failed: removing order_db_20261031_020000.dump.gz: Is a directory".into(),
        ],
        size_anomalies: vec![SizeAnomaly {
            dbname: "order_db".into(),
            size_bytes: 52_428_800,
            median_bytes: 10_485_760,
            ratio: 5.0,
        }],
    }
}

fn upload_report() -> UploadReport {
    UploadReport {
        container: "valerix-backups".into(),
        results: vec![
            BlobUpload {
                database: "order_db".into(),
                file: "order_db_20261201_020000.dump.gz".into(),
                blob: "valerix/daily/order_db/order_db_20261201_020000.dump.gz".into(),
                tier: "daily".into(),
                status: UploadStatus::Uploaded,
                bytes: 52_428_800,
                resumed_blocks: 2,
                secs: 3.5,
                error: None,
            },
            BlobUpload {
                database: "payment_db".into(),
                file: "payment_db_20261201_020000.dump.gz".into(),
                blob: "valerix/daily/payment_db/payment_db_20261201_020000.dump.gz".into(),
                tier: "daily".into(),
                status: UploadStatus::Failed,
                bytes: 0,
                resumed_blocks: 0,
                secs: 0.4,
                error: Some("503 Server Busy".into()),
            },
        ],
        reports: vec!["valerix/reports/20261201_021500-restore.md".into()],
    }
}

#[test]
fn backup_alone() {
    let run = BackupRun {
        backup: backup_report(),
        upload: None,
    };
    both("backup", &run, backup);
}

#[test]
fn backup_clean_run_has_no_anomaly_field() {
    let mut report = backup_report();
    report.results.truncate(1);
    report.pruned.clear();
    report.retention_warnings.clear();
    report.size_anomalies.clear();
    let run = BackupRun {
        backup: report,
        upload: None,
    };
    both("backup_clean", &run, backup);
}

#[test]
fn backup_with_upload() {
    let run = BackupRun {
        backup: backup_report(),
        upload: Some(UploadStep::Done(upload_report())),
    };
    both("backup_upload", &run, backup);
}

#[test]
fn backup_whose_upload_failed() {
    let run = BackupRun {
        backup: backup_report(),
        upload: Some(UploadStep::Failed(valerix_backup::Error::Setup(
            "no [azure] section".into(),
        ))),
    };
    both("backup_upload_failed", &run, backup);
}

#[test]
fn upload_report_alone() {
    both("upload", &upload_report(), upload);
}

#[test]
fn verify_report() {
    let r = VerifyReport {
        results: vec![
            DbVerify {
                database: "order_db".into(),
                timestamp: Some(stamp("20261201_020000")),
                file: Some("order_db_20261201_020000.dump.gz".into()),
                ok: true,
                has_manifest: true,
                sha256: Some(SHA.into()),
                tables: 2,
                rows: 4600,
                read_secs: 1.5,
                restore_secs: Some(8.25),
                ..Default::default()
            },
            DbVerify {
                database: "payment_db".into(),
                error: Some("no backup of payment_db".into()),
                ..Default::default()
            },
        ],
    };
    both("verify", &r, verify);
}

#[test]
fn restore_report() {
    let r = RestoreReport {
        results: vec![
            DbRestore {
                database: "order_db".into(),
                file: "order_db_20261201_020000.dump.gz".into(),
                target: "order_db".into(),
                ok: true,
                verify_secs: 1.5,
                restore_secs: 9.0,
                swap_secs: 0.12,
                total_secs: 10.75,
                tables: 2,
                rows: 4600,
                kept_old: Some("order_db_old_20261201_030000".into()),
                swapped: true,
                ..Default::default()
            },
            DbRestore {
                database: "payment_db".into(),
                file: "payment_db_20261201_020000.dump.gz".into(),
                target: "payment_db".into(),
                error: Some("row count of public.payments: 10 restored, 12 in the manifest".into()),
                ..Default::default()
            },
        ],
    };
    both("restore", &r, restore);
}

fn list_entry(dbname: &str, state: BackupState, offsite: Option<Vec<Tier>>) -> ListEntry {
    let sound = state == BackupState::Ok;
    ListEntry {
        timestamp: stamp("20261201_020000"),
        database: dbname.trim_end_matches("_db").into(),
        dbname: dbname.into(),
        file: format!("{dbname}_20261201_020000.dump.gz"),
        size_bytes: 52_428_800,
        state,
        sha256: sound.then(|| SHA.into()),
        tables: sound.then_some(2),
        rows: sound.then_some(4600),
        offsite,
        encrypted_to: None,
        protected: Vec::new(),
    }
}

#[test]
fn list_local_and_offsite() {
    let local = vec![
        list_entry("order_db", BackupState::Ok, None),
        list_entry("payment_db", BackupState::SizeMismatch, None),
    ];
    both("list_local", &local, |e| list(e));
    let offsite = vec![
        list_entry(
            "order_db",
            BackupState::Ok,
            Some(vec![Tier::Daily, Tier::Weekly]),
        ),
        list_entry(
            "payment_db",
            BackupState::OffsiteOnly,
            Some(vec![Tier::Daily]),
        ),
        list_entry("payment_db", BackupState::NoManifest, Some(vec![])),
    ];
    both("list_offsite", &offsite, |e| list(e));
    both("list_empty", &Vec::<ListEntry>::new(), |e| list(e));
    let mut sealed = list_entry("order_db", BackupState::Ok, Some(vec![Tier::Daily]));
    sealed.file = "order_db_20261201_020000.dump.gz.age".into();
    sealed.encrypted_to = Some(vec![
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into(),
        "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg".into(),
    ]);
    let plain = list_entry("inventory_db", BackupState::Ok, Some(vec![]));
    both("list_encrypted", &vec![sealed, plain], |e| list(e));
}

#[test]
fn verify_of_an_encrypted_backup_without_its_key() {
    let r = VerifyReport {
        results: vec![DbVerify {
            database: "order_db".into(),
            timestamp: Some(stamp("20261201_020000")),
            file: Some("order_db_20261201_020000.dump.gz.age".into()),
            ok: true,
            has_manifest: true,
            sha256: Some(SHA.into()),
            tables: 2,
            rows: 4600,
            read_secs: 0.5,
            unchecked: Some(
                "encrypted, and no identity is configured: its SHA-256 as stored was checked, \
                 not the dump inside (set VALERIX_BACKUP_IDENTITY_FILE or [encryption] \
                 identity_file)"
                    .into(),
            ),
            ..Default::default()
        }],
    };
    both("verify_encrypted", &r, verify);
}

#[test]
fn status_report() {
    let db = |dbname: &str, problem: Option<&str>, refuses: bool| DbStatus {
        database: dbname.trim_end_matches("_db").into(),
        dbname: dbname.into(),
        ok: problem.is_none(),
        newest: Some(stamp("20261201_020000")),
        age_secs: Some(3600),
        backups: 7,
        problem: problem.map(String::from),
        refuses_connections: refuses,
    };
    let ok = StatusReport {
        ok: true,
        max_age_secs: 26 * 3600,
        databases: vec![db("order_db", None, false), db("payment_db", None, false)],
        interrupted: vec![],
    };
    both("status_ok", &ok, status);
    let bad = StatusReport {
        ok: false,
        max_age_secs: 26 * 3600,
        databases: vec![
            db(
                "order_db",
                Some("newest backup is 2days 3h old, limit 1day 2h"),
                false,
            ),
            db(
                "payment_db",
                Some(
                    "refuses connections (ALLOW_CONNECTIONS false, as an interrupted restore leaves it): run `valerix-backup backup` to settle it",
                ),
                true,
            ),
        ],
        interrupted: vec!["/var/backups/valerix/.journal-restore-order_db.json".into()],
    };
    both("status_problems", &bad, status);
    insta::assert_snapshot!("status_problems_error", bad.outcome().unwrap_err());
}

#[test]
fn prune_lists() {
    let files = vec![
        "order_db_20261101_020000.dump.gz".to_string(),
        "order_db_20261101_020000.manifest.json".to_string(),
    ];
    both("prune_dry_run", &files, |r| prune(r, true));
    both("prune", &files, |r| prune(r, false));
    both("prune_nothing", &Vec::<String>::new(), |r| prune(r, false));
}

fn inventory() -> Vec<DbInventory> {
    vec![DbInventory {
        dbname: "order_db".into(),
        daily: 30,
        weekly: 12,
        bytes: 2_147_483_648,
        newest_daily: Some(stamp("20261201_020000")),
        newest_weekly: Some(stamp("20261129_020000")),
        oldest: Some(stamp("20260901_020000")),
        immutability: Default::default(),
    }]
}

#[test]
fn audit_reports() {
    let clean = AuditReport {
        container: "valerix-backups".into(),
        audited_at: time("2026-12-01T06:00:00Z"),
        blobs_listed: 84,
        deep_checked: 3,
        deep_skipped: 39,
        databases: inventory(),
        servers: None,
        findings: vec![],
    };
    both("audit_clean", &clean, audit);
    let found = AuditReport {
        deep_checked: 0,
        deep_skipped: 0,
        findings: vec![
            Finding {
                kind: FindingKind::MissingDaily,
                database: "payment_db".into(),
                blob: None,
                detail: "no daily copy of 20261130".into(),
            },
            Finding {
                kind: FindingKind::HashMismatch,
                database: "order_db".into(),
                blob: Some("valerix/daily/order_db/order_db_20261201_020000.dump.gz".into()),
                detail: "content sha256 differs from the manifest's".into(),
            },
        ],
        ..clean
    };
    both("audit_findings", &found, audit);
}

fn server_check(found: bool) -> ServerCheck {
    ServerCheck {
        name: "valerix-pg".into(),
        id: format!("{SUB}/valerix-pg"),
        found,
        state: found.then(|| "Ready".into()),
        location: found.then(|| "westeurope".into()),
        paired_region: found.then(|| "northeurope".into()),
        backup_retention_days: found.then_some(7),
        geo_redundant_backup: Some(found),
        earliest_restore_date: found.then(|| "2026-11-24T02:00:00Z".into()),
        problems: if found {
            vec![]
        } else {
            vec!["server not found".into()]
        },
        warnings: if found {
            vec!["backup retention 7 days, the plan asks for 14".into()]
        } else {
            vec![]
        },
        replicas: if found { vec![replica_info()] } else { vec![] },
        cross_region_replica: found.then_some(true),
        replicas_unread: None,
        recovery_paths: if found {
            vec![
                RecoveryPath {
                    path: "geo-restore".into(),
                    available: true,
                    rpo: geo::azure_check::GEO_RESTORE_RPO.into(),
                },
                RecoveryPath {
                    path: "failover (replica promotion)".into(),
                    available: true,
                    rpo: geo::azure_check::PROMOTION_RPO.into(),
                },
            ]
        } else {
            vec![]
        },
    }
}

fn replica_info() -> ReplicaInfo {
    ReplicaInfo {
        name: "valerix-pg-west".into(),
        id: format!("{SUB}/valerix-pg-west"),
        role: Some("GeoAsyncReplica".into()),
        location: Some("northeurope".into()),
        state: Some("Ready".into()),
        replication_state: Some("Active".into()),
        replication_lag: geo::failover::LAG_NOT_REPORTED.into(),
        fqdn: Some("valerix-pg-west.postgres.database.azure.com".into()),
        source_server_id: Some(format!("{SUB}/valerix-pg")),
    }
}

#[test]
fn failover_plan_and_report() {
    use valerix_backup::ops::geo::{FailoverPlan, FailoverReport, PromoteMode, PromoteOption};
    let plan = FailoverPlan {
        primary_id: format!("{SUB}/valerix-pg"),
        primary_location: Some("westeurope".into()),
        replicas: vec![replica_info()],
        replica: replica_info(),
        mode: PromoteMode::Standalone,
        option: PromoteOption::Forced,
        method: "PATCH",
        url: format!("https://management.example/{SUB}/valerix-pg-west?api-version=2025-08-01"),
        body: geo::failover::promote_body(PromoteMode::Standalone, PromoteOption::Forced),
        virtual_endpoints: vec![],
        writer_endpoint: None,
        databases: vec!["order".into()],
    };
    both("failover_plan", &plan, failover_plan);
    let fqdn = "valerix-pg-west.postgres.database.azure.com";
    let report = FailoverReport {
        replica_id: plan.replica.id.clone(),
        primary_id: plan.primary_id.clone(),
        mode: Some(PromoteMode::Standalone),
        option: Some(PromoteOption::Forced),
        accepted_secs: 0.4,
        waited: geo::Waited {
            state: Some("Ready".into()),
            role: Some("Primary".into()),
            fqdn: Some(fqdn.into()),
            operation_secs: 95.2,
            ready_secs: 1.1,
            total_secs: 96.9,
            resume: None,
        },
        repoint: Some(format!(
            "the promoted server answers at {fqdn}: the services must move to it"
        )),
        k8s_commands: vec![geo::k8s_commands(&["order".into()], fqdn, "valerix").remove(0)],
        ..Default::default()
    };
    both("failover_report", &report, failover_report);
}

#[test]
fn azure_check_report() {
    let r = CheckReport {
        ok: false,
        servers: vec![server_check(true), server_check(false)],
        storage: None,
    };
    both("azure_check", &r, azure_check);
}

#[test]
fn geo_restore_plan_and_reports() {
    let plan = GeoRestorePlan {
        method: "PUT",
        url: format!("https://management.example/{SUB}/valerix-pg-dr?api-version=2024-08-01"),
        body: json!({
            "location": "northeurope",
            "properties": {"createMode": "GeoRestore", "sourceServerResourceId": format!("{SUB}/valerix-pg")}
        }),
        source_id: format!("{SUB}/valerix-pg"),
        source_location: Some("westeurope".into()),
        target_id: format!("{SUB}/valerix-pg-dr"),
        location: "northeurope".into(),
        databases: vec!["order_db".into(), "payment_db".into()],
        request: "20261201T030000Z-4242".into(),
    };
    both("geo_plan", &plan, geo_plan);
    let ready = GeoRestoreReport {
        target_id: format!("{SUB}/valerix-pg-dr"),
        state: Some("Ready".into()),
        fqdn: Some("valerix-pg-dr.postgres.database.azure.com".into()),
        accepted_secs: 1.5,
        operation_secs: 600.0,
        ready_secs: 30.0,
        total_secs: 631.5,
        k8s_commands: vec![vec![
            "kubectl".into(),
            "set".into(),
            "env".into(),
            "deployment/order-service".into(),
            "DB_HOST=valerix-pg-dr.postgres.database.azure.com".into(),
            "-n".into(),
            "valerix".into(),
        ]],
        ..Default::default()
    };
    both("geo_ready", &ready, geo_report);
    let applied = GeoRestoreReport {
        k8s_applied: true,
        ..ready.clone()
    };
    both("geo_ready_applied", &applied, geo_report);
    let not_waiting = GeoRestoreReport {
        target_id: format!("{SUB}/valerix-pg-dr"),
        operation: Some(Operation {
            async_operation: Some("https://management.example/operations/op-1".into()),
            location: None,
        }),
        accepted_secs: 1.5,
        total_secs: 1.5,
        ..Default::default()
    };
    both("geo_not_waiting", &not_waiting, geo_report);
}

#[test]
fn config_check_report() {
    let r = ConfigCheck {
        config: "/etc/valerix-backup/valerix-backup.toml".into(),
        items: vec![
            CheckItem {
                what: "backup directory /var/backups/valerix".into(),
                ok: true,
                detail: "writable, 120.0 GiB free".into(),
            },
            CheckItem {
                what: "database payment".into(),
                ok: false,
                detail: "connection refused".into(),
            },
        ],
    };
    both("config_check", &r, config_check);
}

#[test]
fn drill_region_reports() {
    use valerix_backup::ops::geo::drill::{DrillReport, DrillSteps, LeftBehind, TableCheck};
    let table = |table: &str, expected, found| TableCheck {
        database: "order_db".into(),
        table: table.into(),
        expected,
        found,
    };
    let steps = DrillSteps {
        preflight: Some(0.5),
        accepted: Some(1.5),
        operation: Some(1260.0),
        ready: Some(45.5),
        connect: Some(0.5),
        smoke: Some(3.0),
        delete: Some(310.0),
        total: 1621.0,
    };
    let ok = DrillReport {
        source_id: format!("{SUB}/valerix-pg"),
        target_id: format!("{SUB}/valerix-pg-drill-20261201"),
        location: "northeurope".into(),
        fqdn: Some("valerix-pg-drill-20261201.postgres.database.azure.com".into()),
        backups: [(
            "order_db".to_string(),
            "order_db_20261201_020000.dump.gz".to_string(),
        )]
        .into_iter()
        .collect(),
        tables: vec![
            table("public.orders", 120, Some(121)),
            table("public.customers", 40, Some(40)),
        ],
        smoke_query: Some(true),
        left_behind: vec![LeftBehind {
            name: "valerix-pg-drill-20260901".into(),
            secs: 290.0,
        }],
        deleted: true,
        rto_secs: steps.rto(),
        steps: steps.clone(),
        ..Default::default()
    };
    both("drill_region_ok", &ok, drill_region);
    let failed = DrillReport {
        tables: vec![table("public.orders", 120, Some(60)), table("public.invoices", 9, None)],
        smoke_query: None,
        left_behind: Vec::new(),
        error: Some(
            "smoke check of valerix-pg-drill-20261201.postgres.database.azure.com failed: order_db: \
             table public.orders has 60 rows, the backup had 120; order_db: table public.invoices is missing"
                .into(),
        ),
        ..ok
    };
    both("drill_region_failed", &failed, drill_region);
}
