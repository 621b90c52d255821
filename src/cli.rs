//! Command-line syntax only: clap structures and help texts. Nothing here
//! does work; `main.rs` turns these into library calls.

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Args, Parser, Subcommand};
use valerix_backup::agent::schedule::Job;
use valerix_backup::offsite::policy::PolicyFormat;

/// What `--version` prints: the package version and, when the build was given
/// one (the container image's Dockerfile passes `VALERIX_BACKUP_COMMIT`), the
/// commit it was built from, so an image answers which source it runs.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let version = env!("CARGO_PKG_VERSION");
    match option_env!("VALERIX_BACKUP_COMMIT").filter(|c| !c.is_empty()) {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version.to_string(),
    }
});

const AFTER_HELP: &str = "\
Examples:
  valerix-backup backup --upload             back up every database, then copy offsite
  valerix-backup verify latest --deep        prove the newest backups restore (and time it)
  valerix-backup restore latest order        replace order_db with its newest backup
  valerix-backup restore 20260129_020000 inventory --into inventory_check
  valerix-backup restore latest both --from-azure --yes    the machine is gone
  valerix-backup audit --deep                prove every offsite copy
  valerix-backup geo-restore --source-server valerix-postgres --target-name pg-west --dry-run
  valerix-backup drill region --yes          rehearse a region failure (geo-restore, check, delete)
  valerix-backup agent                       run the whole schedule (backups, drills, alerts)
  valerix-backup status --max-age 25h        exit 1 when a backup is missing or stale

Exit status: 0 ok, 1 failure, 2 bad usage or config, 3 some databases failed (or
retention failed after good backups), 11 another run holds the lock, 130 interrupted.
Configuration: --config FILE, else $VALERIX_BACKUP_CONFIG, else ./valerix-backup.toml
(see valerix-backup.example.toml). Logs go to stderr (RUST_LOG=debug for more).";

#[derive(Debug, Parser)]
#[command(
    name = "valerix-backup",
    version = VERSION.as_str(),
    about = "Daily, verified, restorable backups of the Valerix PostgreSQL databases",
    long_about = "Daily, verified, restorable backups of the Valerix PostgreSQL databases.\n\n\
        Backups are pg_dump custom-format archives, gzipped in one streaming pass with a \
        SHA-256 and per-table row counts recorded in a manifest beside each file. \
        Restores load a fresh database while they check the file, and swap it in only when \
        every check passed and every table's row count matches, so the live database is never \
        left half-restored.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Configuration file [default: $VALERIX_BACKUP_CONFIG, else ./valerix-backup.toml]
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only warnings and errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Never draw progress bars (they are drawn only on a terminal anyway)
    #[arg(long, global = true)]
    pub no_progress: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up databases: pg_dump, gzip and SHA-256 in one pass, then retention
    #[command(
        after_help = "Writes <backup_dir>/<dbname>_<YYYYMMDD_HHMMSS>.dump.gz (UTC, one timestamp per run)\n\
        and <dbname>_<timestamp>.manifest.json. A failing database does not stop the others;\n\
        the exit status is 3 when some failed. Then deletes this tool's backups older than\n\
        retention_days, never the newest one of a database, and nothing while a backup is dated\n\
        after the clock or the clock differs from the database server's. A retention failure is\n\
        a warning (exit status 3); the upload still runs.\n\n\
        With [encryption] recipients, the file is <dbname>_<timestamp>.dump.gz.age: the same gzip,\n\
        age-encrypted to every listed public key in the same pass (no private key needed here)."
    )]
    #[command(display_order = 1)]
    Backup {
        /// Databases to back up by config name or dbname; all when none
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        /// Skip local retention after the backup
        #[arg(long)]
        no_prune: bool,
        /// Then upload the new backups to Azure ([azure] in the config)
        #[arg(long)]
        upload: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Copy local backups to Azure Blob Storage (daily or weekly tier)
    #[command(after_help = "\
Blob names: <prefix><tier>/<dbname>/<file>, with the manifest beside the dump. Each dump
blob carries metadata sha256 (as in the manifest), database, timestamp, tier, source_host,
tool_version; index tags tier, database and date; the tier's access tier (default daily
Cool, weekly Cold). Blocks are staged in parallel, each with a CRC-64 the service
checks. The file is hashed on the way and committed only if the SHA-256 equals the
manifest's. A blob already holding the same SHA-256 is skipped; another SHA-256 under the
same name is an error, never an overwrite. An interrupted upload leaves no blob; the next
run reuses its staged blocks.

--tier auto keeps one weekly copy per database per week. Weeks start on weekly_day
(sunday) at 00:00 UTC; a backup goes to the weekly tier when the weekly tier holds no sound
copy of its database from the same week (read from <prefix>weekly/<dbname>/), so the
weekly_day backup is the weekly copy, or the next day's when that one failed; every other
backup goes to the daily tier.

Examples:
  valerix-backup upload                       newest backup of each database, tier auto
  valerix-backup upload all                   every local backup missing offsite
  valerix-backup upload 20261122_020000 --tier weekly")]
    #[command(display_order = 9)]
    Upload {
        /// TIMESTAMP (YYYYMMDD_HHMMSS), 'latest' (default) or 'all'
        #[arg(value_name = "TIMESTAMP|latest|all")]
        selection: Option<String>,
        /// Databases by config name or dbname; all when none
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        /// auto: a week's (from weekly_day 00:00 UTC) first backup offsite goes to weekly, the
        /// others to daily
        #[arg(long, value_enum, default_value_t = TierArg::Auto)]
        tier: TierArg,
        #[command(flatten)]
        out: Output,
    },
    /// Audit the offsite copies: gaps, hashes, retention, sizes, access tiers
    #[command(after_help = "\
Lists the container once (metadata and tags) and reports per database: copies per tier,
the newest daily and weekly copy, no copy at all, a newest copy older than
max_offsite_age_hours (36), days of the last 30 without a copy, weeks (from weekly_day
00:00 UTC) of the last 12 without a sound weekly copy on any of their days, local backups
younger than require_offsite_days without a copy, copies past retention (is the lifecycle policy applied?), copies without a
sha256 or whose local manifest disagrees, size anomalies, wrong access tiers and missing
manifests; with azure.immutable, copies of an immutable tier without a policy or whose policy
ends before their retention, and per database the copies protected now, the held ones, and
what previous versions (blob versioning) still cost. --deep downloads and re-hashes each dump blob not yet proven by an earlier deep
audit (remembered in <backup_dir>/.offsite-deep-checks.json) and reads its manifest;
--recheck re-reads them all. Repairs the superseded index tags the lifecycle policy deletes
by. Exit status 0 only when nothing is wrong.")]
    #[command(display_order = 10)]
    Audit {
        /// Download and re-hash the blobs (those not proven before)
        #[arg(long)]
        deep: bool,
        /// With --deep: re-hash every blob, even those proven before
        #[arg(long, requires = "deep")]
        recheck: bool,
        /// Audit only this database (repeatable); all when none
        #[arg(long = "db", value_name = "NAME")]
        dbs: Vec<String>,
        /// Judge gaps and retention as of this instant (RFC 3339), e.g. to plan ahead
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        out: Output,
    },
    /// Set or clear a legal hold on the offsite copies of one backup (incident, investigation)
    #[command(after_help = "\
Sets (or clears) Azure's legal hold on both blobs of the backup's copy (dump and manifest) in
every tier that holds it: while held, no identity can delete or change them, whatever their
immutability policy; clearing the hold leaves the policy as it is. The container needs
version-level immutability support, and the identity the immutability right
(.../blobs/immutableStorage/runAsSuperUser/action: the blob agent role of infra/ has it; a
SAS needs `i`). `list` and `audit` show holds.

Examples:
  valerix-backup hold set latest order          hold order_db's newest offsite copy
  valerix-backup hold set 20261124_020000       that backup of every database
  valerix-backup hold clear 20261124_020000 order --json")]
    #[command(display_order = 11)]
    Hold {
        #[arg(value_enum)]
        action: HoldAction,
        /// TIMESTAMP (YYYYMMDD_HHMMSS) or 'latest' (each database's newest copy offsite)
        #[arg(value_name = "TIMESTAMP|latest")]
        timestamp: String,
        /// Databases by config name or dbname; all when none
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Region failure: geo-restore the PostgreSQL flexible server into its paired region
    #[command(after_help = "\
Steps, each logged with its duration: preflight (GET the source server: refuses unless
geo-redundant backup is enabled; the target region defaults to the source's paired region),
PUT the new server (createMode GeoRestore; sent once: after a lost answer, a 5xx or a 409
the target is read, and a geo-restore of the same source being created is followed), follow
the long-running operation
(Azure-AsyncOperation, else Location, honouring Retry-After), GET the new server until it
is Ready, then print its FQDN and the kubectl commands that point the services at it
(--update-k8s runs them). Ctrl-C while waiting prints how to resume with --watch; the
restore goes on in Azure. Credentials come from the environment (see README).

Examples:
  valerix-backup geo-restore --source-server valerix-postgres --target-name valerix-pg-west --dry-run
  valerix-backup geo-restore --source-server valerix-postgres --target-name valerix-pg-west \\
      --target-resource-group valerix-rg-secondary --update-k8s valerix --yes
  valerix-backup geo-restore --watch 'https://management.azure.com/...' --target-name valerix-pg-west")]
    #[command(display_order = 14)]
    GeoRestore {
        /// ARM resource id, or a server name in azure.resource_manager.resource_group
        #[arg(long, value_name = "ID|NAME", required_unless_present = "watch")]
        source_server: Option<String>,
        /// Name of the new server (3-63 lowercase letters, digits, '-')
        #[arg(long, value_name = "NAME")]
        target_name: String,
        /// Resource group of the new server [default: azure.resource_manager.resource_group]
        #[arg(long, value_name = "RG")]
        target_resource_group: Option<String>,
        /// Region of the new server [default: the source region's pair]
        #[arg(long, value_name = "REGION")]
        location: Option<String>,
        /// Point in time to restore (RFC 3339) [default: now, the latest geo-backup]
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        restore_time: Option<chrono::DateTime<chrono::Utc>>,
        /// Subscription [default: azure.resource_manager.subscription_id]
        #[arg(long, value_name = "ID")]
        subscription: Option<String>,
        /// Delegated subnet resource id (private access)
        #[arg(long, value_name = "ID")]
        subnet: Option<String>,
        /// Private DNS zone resource id (private access)
        #[arg(long, value_name = "ID")]
        private_dns_zone: Option<String>,
        /// Send the request and exit; watch later with --watch
        #[arg(long)]
        no_wait: bool,
        /// Print the request (method, URL, body) and exit without sending it
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
        /// Then run the kubectl commands in this namespace
        #[arg(long, value_name = "NAMESPACE")]
        update_k8s: Option<String>,
        /// Resume watching: an operation URL (on the configured endpoint only), or nothing to
        /// watch the target server only
        #[arg(long, value_name = "OPERATION_URL", num_args = 0..=1, default_missing_value = "")]
        watch: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Disaster drills: rehearse a recovery for real and time it
    #[command(display_order = 16)]
    Drill {
        #[command(subcommand)]
        action: DrillAction,
    },
    /// Region failure: promote a cross-region read replica of the flexible server
    #[command(after_help = "\
The faster way out of a region failure, when the server has a read replica in another region
(infra/ can create one): no restore, the replica becomes a read-write server in minutes.
Steps, each logged with its duration: preflight (GET the primary and its replicas: role,
region, state, replication state, replication lag where Resource Manager reports it; refuses a
server that is not a replica of this primary or not Ready), PATCH the replica with
properties.replica.promoteMode / promoteOption (sent once), follow the long-running operation
(Retry-After honoured), GET the replica until it is a Ready primary, then print the kubectl
commands that point the services at it (--update-k8s runs them).

--mode (what the replica becomes):
  standalone   it leaves the replication set and is a server of its own, under its own host
               name: the services must be repointed. The old primary, when its region returns,
               is an independent (stale) server.
  switchover   it swaps roles with the primary, which becomes its replica. Needs a pair of
               virtual endpoints: the writer endpoint (<name>.writer.postgres.database.azure.com)
               follows the new primary, so services that use it need no change.
--option (how the data is synchronised, and so the recovery point):
  planned      waits until the replica has every write of the primary: RPO 0, but the
               primary must answer (a planned failover, a drill, a region still half up).
  forced       promotes at once: the writes not yet replicated are lost (RPO = the replication
               lag, typically seconds). The only choice when the primary's region is down.
               Refused without --yes.
A geo-restore instead loses up to about an hour (the geo-backup's delay) and takes far longer.

Examples:
  valerix-backup failover --dry-run                       list the replicas, show the request
  valerix-backup failover --replica valerix-pg-west --option forced --yes --update-k8s valerix
  valerix-backup failover --mode switchover --yes         planned switchover (writer endpoint)")]
    #[command(display_order = 15)]
    Failover {
        /// The primary: ARM resource id or a name [default: the only [[azure.postgres_server]]]
        #[arg(long, value_name = "ID|NAME")]
        server: Option<String>,
        /// The replica to promote: id or name [default: the primary's only (cross-region)
        /// replica]
        #[arg(long, value_name = "ID|NAME")]
        replica: Option<String>,
        /// What the replica becomes
        #[arg(long, value_enum, default_value_t = PromoteModeArg::Standalone)]
        mode: PromoteModeArg,
        /// How the data is synchronised first
        #[arg(long, value_enum, default_value_t = PromoteOptionArg::Planned)]
        option: PromoteOptionArg,
        /// Do not ask for confirmation; required for --option forced (possible data loss)
        #[arg(short, long)]
        yes: bool,
        /// Run the preflight, print the replicas and the request, send nothing
        #[arg(long)]
        dry_run: bool,
        /// Send the request and exit; it prints the `az` command that shows the promotion's state
        #[arg(long)]
        no_wait: bool,
        /// Then run the kubectl commands in this namespace
        #[arg(long, value_name = "NAMESPACE")]
        update_k8s: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Run the whole schedule: backups, uploads, verification, audit, restore drills
    #[command(after_help = "\
The schedule is [agent.schedule] in the config (cron, in agent.timezone, UTC by default):
  backup         0 2 * * *      backup of every database, then the upload of the new backups
  verify         0 3 * * *      verification of the newest backups
  weekly_upload  0 1 * * SUN    catch-up: the newest backups with --tier auto, so a week still
                                without a weekly copy gets one (else nothing new goes weekly)
  audit          30 3 * * *     audit of the offsite copies
  drill          0 4 * * SUN#1  restore drill (verify --deep) on the first Sunday of the month
  drill_region   (unset)        region drill (drill region: a billed throwaway server), off unless
                                set; the seed's quarterly is `0 3 1 */3 *`
Classic cron ORs day-of-month and day-of-week: `0 4 1-7 * SUN` would run on days 1-7 and on
every Sunday; `SUN#1` is the first Sunday. A sixth, leading field gives seconds.
A job still running at its next slot is not started twice; a slot missed while the agent
was down runs once at start-up when younger than agent.catch_up_grace (6h). With
agent.listen, /healthz, /readyz and /metrics (Prometheus) are served. Failures, missing
backups, size anomalies, failed verifications or audits and recoveries are sent to
[[alert.webhook]]. SIGTERM or Ctrl-C cancels the job in flight cleanly and exits.

--once JOB runs one job now and exits (what a Kubernetes CronJob or a systemd timer calls).")]
    #[command(display_order = 17)]
    Agent {
        /// Run this job once and exit: backup, verify, weekly-upload, audit, drill, drill-region
        #[arg(long, value_name = "JOB", value_parser = parse_job)]
        once: Option<Job>,
    },
    /// Check the configuration and what it depends on
    #[command(display_order = 18)]
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    #[command(display_order = 19)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    #[command(display_order = 20)]
    Man,
    /// Preflight: can the configured flexible servers be geo-restored?
    #[command(after_help = "\
For each [[azure.postgres_server]]: backup retention days (the plan wants 30), whether
geo-redundant backup is enabled (it can only be enabled at creation), the earliest
restore point, and the paired region; then its read replicas (a cross-region one makes
`failover` possible) and the recovery point of each path (geo-restore: up to 1 hour;
replica promotion: seconds, the replication lag). Exit status 1 when a geo-restore would not be
possible. `valerix-backup audit` includes this check when servers are configured.")]
    #[command(display_order = 13)]
    AzureCheck {
        #[command(flatten)]
        out: Output,
    },
    /// Print the Azure Storage lifecycle policy for the configured tiers
    #[command(after_help = "\
Daily copies are deleted daysAfterCreationGreaterThan daily_retention_days (30), weekly ones
after weekly_retention_days (90), but only copies tagged superseded = true: valerix-backup
tags a copy once a newer sound copy of its database and tier exists, so the newest is never
deleted. Apply with --apply (merges with the account's other rules), or the JSON with
  az storage account management-policy create -g RG --account-name ACCOUNT --policy @policy.json
or paste the Bicep / Terraform into your infrastructure (infra/ holds the defaults).")]
    #[command(display_order = 12)]
    LifecyclePolicy {
        #[arg(long, value_enum, default_value_t = PolicyFormat::Json)]
        format: PolicyFormat,
        /// Merge it into the storage account's managementPolicies/default through Resource
        /// Manager: our rules added or replaced, every other rule kept; shows the changes and
        /// asks first
        #[arg(long, conflicts_with = "format")]
        apply: bool,
        /// With --apply: do not ask for confirmation
        #[arg(long, requires = "apply")]
        yes: bool,
    },
    /// Check backups: SHA-256 against the manifest, full gzip decode, dump structure
    #[command(
        after_help = "Without --deep, reads each file once: SHA-256, every gzip member's CRC, the\n\
        completeness of the pg_dump archive inside, and `pg_restore --list`. With --deep, also\n\
        restores into a scratch database (the checks run beside the load, as in a restore),\n\
        compares every table's row count with the manifest, drops the scratch database and\n\
        reports the restore time (the measured RTO).\n\n\
        An encrypted backup (.dump.gz.age) is decrypted with the identity file named by\n\
        $VALERIX_BACKUP_IDENTITY_FILE or [encryption] identity_file. Without one, verify checks\n\
        the file's SHA-256 as stored and says the dump inside was not read; --deep needs it."
    )]
    #[command(display_order = 2)]
    Verify {
        /// TIMESTAMP (YYYYMMDD_HHMMSS) or 'latest', then optional TARGETs
        #[arg(value_name = "TIMESTAMP|latest|TARGET")]
        args: Vec<String>,
        /// Also restore into a scratch database and compare row counts
        #[arg(long)]
        deep: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Restore a backup: load a fresh database while verifying the file, then swap it in
    #[command(
        after_help = "TARGET is a config name (order, inventory), a dbname, or 'both' (the default).\n\
        The live database is replaced only after the new one is fully loaded, the file's\n\
        checks (run beside the load) passed and its row counts match the dump; on any failure\n\
        it is left untouched. Asks for confirmation on a terminal; elsewhere --yes is required.\n\
        An encrypted backup (.dump.gz.age) needs its identity: the file named by\n\
        $VALERIX_BACKUP_IDENTITY_FILE or [encryption] identity_file (never the command line).\n\n\
        Scenario 3 of the runbook (recover a few rows):\n\
        \x20 valerix-backup restore 20260129_020000 order --into order_recovered --table orders"
    )]
    #[command(display_order = 3)]
    Restore {
        /// YYYYMMDD_HHMMSS as in the file names, or 'latest'
        #[arg(value_name = "TIMESTAMP|latest")]
        timestamp: String,
        /// order, inventory, both (default) or a dbname
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        /// Restore into this new database beside the live one instead of replacing it
        #[arg(long, value_name = "DBNAME")]
        into: Option<String>,
        /// Restore only this table (repeatable; needs --into)
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
        /// Keep the replaced database as <dbname>__old_<UTC time of this restore>
        #[arg(long)]
        keep_old: bool,
        /// Fetch the backup from Azure (verified by SHA-256) into the backup directory first
        #[arg(long)]
        from_azure: bool,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
        #[command(flatten)]
        out: Output,
    },
    /// List backups: local ones with size and state, and their offsite copies
    #[command(display_order = 5)]
    List {
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        /// Do not look up offsite copies
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Exit non-zero when a database has no backup younger than --max-age
    #[command(display_order = 6)]
    Status {
        /// Maximum age of the newest backup, e.g. 25h, 90m, 2d
        #[arg(long, default_value = "25h", value_parser = humantime::parse_duration)]
        max_age: std::time::Duration,
        #[command(flatten)]
        out: Output,
    },
    /// Apply local retention now (backup does this after each run)
    #[command(display_order = 7)]
    Prune {
        /// Only print what would be deleted
        #[arg(long)]
        dry_run: bool,
        /// Delete offsite copies past their tier's retention instead (for accounts
        /// without the lifecycle policy), only superseded ones: the newest sound copy of each
        /// database and tier is always kept, and a copy under an immutability policy or a
        /// legal hold too (one `kept:` line each)
        #[arg(long)]
        offsite: bool,
        /// With --offsite: judge retention as of this instant (RFC 3339)
        #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "offsite")]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        out: Output,
    },
    /// Extract a configuration archive ([config_backup]) into a new directory
    #[command(after_help = "\
Each backup run archives the [config_backup] paths and the output of its commands into
<backup_dir>/config_<YYYYMMDD_HHMMSS>.tar.gz (.tar.gz.age with [encryption]), with a
manifest listing every file, its size and mode. This extracts one into DIR, which must not
exist or be empty: files are written into a hidden directory beside DIR and renamed to DIR
only when the whole archive read and its SHA-256 matched the manifest, so no file is ever
overwritten in place and DIR never holds half an archive. Members that are absolute, hold
`..` or are not plain files or directories are refused. Modes are restored. Files are under
DIR/files/<original absolute path>, command output under DIR/commands/<n>-<slug>.out;
compare, then copy back what you need.

Examples:
  valerix-backup restore-config latest --into /root/config-restore
  valerix-backup restore-config 20261201_020000 --into ./cfg-20261201
  valerix-backup restore-config latest --into /tmp/cfg --from-azure    the machine is gone
  diff -r /tmp/cfg/files/srv/valerix /srv/valerix")]
    #[command(display_order = 4)]
    RestoreConfig {
        /// YYYYMMDD_HHMMSS as in the file names, or 'latest'
        #[arg(value_name = "TIMESTAMP|latest")]
        timestamp: String,
        /// The new (or empty) directory to extract into
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
        /// Fetch the archive from Azure (verified by SHA-256) into the backup directory first
        #[arg(long)]
        from_azure: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Post-mortem records: what each restore, geo-restore, failover and drill did
    #[command(after_help = "\
Every restore (local, --from-azure, --into), geo-restore, failover and drill writes a record
beside the backups, in BACKUP_DIR/reports/<stamp>-<kind>.json and .md (0600): what was restored
from which copy (file or blob, tier, SHA-256, backup time), into what, who ran it and where, every
step with its time, what was kept and how to undo it. The .md is written for the post-mortem
document; the .json is what --json prints. With [azure], the next upload copies the records to
<prefix>reports/ in the container, kept as long as the weekly copies.

Examples:
  valerix-backup report list
  valerix-backup report show latest               the newest record, as Markdown
  valerix-backup report show latest-restore       the newest of one kind (restore, geo-restore,
                                                  failover, drill)
  valerix-backup report show 20261201_021500-restore --json")]
    #[command(display_order = 8)]
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportAction {
    /// The records, oldest first: when, kind, outcome, seconds, into what, by whom
    List {
        #[command(flatten)]
        out: Output,
    },
    /// One record: Markdown, or the JSON record with --json
    Show {
        /// A record's name (as `report list` prints it), `latest`, or `latest-KIND`
        #[arg(value_name = "NAME|latest|latest-KIND", default_value = "latest")]
        name: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum DrillAction {
    /// Region failure drill: geo-restore into a throwaway server, smoke-check it, delete it
    #[command(after_help = "\
Steps, each timed (together: the measured RTO of a region failure):
  preflight  GET the source server (geo-redundant backup on) and its paired region
  accepted   PUT the throwaway server, createMode GeoRestore, tagged
             valerix-backup-drill-of = <source id>
  operation  follow the long-running operation (Retry-After honoured)
  ready      GET the server until it is Ready
  connect    psql to it ([drill] sslmode, default require)
  smoke      every table of the newest local backup's manifest exists and holds at least
             its row count; then [drill] smoke_query, if set, must return true
  delete     DELETE the server and follow the operation until it is gone
The server is deleted even when a step failed or the run was interrupted (Ctrl-C), unless
--keep. A run first deletes the drill servers an earlier, killed run left behind; it
never deletes a server it did not name <source>-drill-<YYYYMMDD> and tag (one line,
exit 2). The password for the smoke check comes from each database's password_env (else
PGPASSWORD, ~/.pgpass), never the command line. A drill costs the server's hours (its
restore time plus minutes); the agent runs it only when agent.schedule.drill_region is
set (quarterly: \"0 3 1 */3 *\").

Examples:
  valerix-backup drill region --yes                      drill the first configured server
  valerix-backup drill region --source valerix-postgres --json --yes
  valerix-backup drill region --keep --yes               leave it running to look around")]
    Region {
        /// The [[azure.postgres_server]] to drill [default: [drill] source, else the first]
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Name of the throwaway server [default: <source>-drill-<YYYYMMDD>, UTC]
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// Do not delete the drill server at the end (it costs money until deleted)
        #[arg(long)]
        keep: bool,
        /// Do not ask for confirmation (creating a server costs money)
        #[arg(short, long)]
        yes: bool,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate the config and its environment: PostgreSQL tools and their versions,
    /// database reachability, the Azure container, the schedule, webhook URLs
    Check {
        #[command(flatten)]
        out: Output,
    },
}

fn parse_job(s: &str) -> Result<Job, String> {
    Job::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Job::ALL.iter().map(|j| j.as_str()).collect();
        format!("unknown job (one of {})", names.join(", "))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HoldAction {
    /// Put the copies under a legal hold
    Set,
    /// Lift the legal hold
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TierArg {
    Auto,
    Daily,
    Weekly,
}

impl From<TierArg> for valerix_backup::ops::upload::TierChoice {
    fn from(t: TierArg) -> Self {
        use valerix_backup::ops::upload::TierChoice;
        match t {
            TierArg::Auto => TierChoice::Auto,
            TierArg::Daily => TierChoice::Daily,
            TierArg::Weekly => TierChoice::Weekly,
        }
    }
}

#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-12-31T02:00:00Z)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromoteModeArg {
    Standalone,
    Switchover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromoteOptionArg {
    Planned,
    Forced,
}

impl From<PromoteModeArg> for valerix_backup::ops::geo::PromoteMode {
    fn from(m: PromoteModeArg) -> Self {
        match m {
            PromoteModeArg::Standalone => Self::Standalone,
            PromoteModeArg::Switchover => Self::Switchover,
        }
    }
}

impl From<PromoteOptionArg> for valerix_backup::ops::geo::PromoteOption {
    fn from(o: PromoteOptionArg) -> Self {
        match o {
            PromoteOptionArg::Planned => Self::Planned,
            PromoteOptionArg::Forced => Self::Forced,
        }
    }
}
