//! The TOML configuration: where backups live, how long they are kept, and
//! which databases to back up.
//!
//! Loading resolves the file (`--config`, `$VALERIX_BACKUP_CONFIG`,
//! `./valerix-backup.toml`), rejects unknown keys (a typo must not silently
//! fall back to a default) and validates every name that later becomes part of
//! a file name or an SQL identifier. Passwords are never stored here: a
//! database names the environment variable that holds its password.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::schedule::{Job, Schedule};

pub const ENV_CONFIG: &str = "VALERIX_BACKUP_CONFIG";
pub const DEFAULT_CONFIG: &str = "valerix-backup.toml";
/// The environment variable naming the file of the identity (private key)
/// that opens encrypted backups; it overrides `[encryption] identity_file`.
pub const ENV_IDENTITY_FILE: &str = "VALERIX_BACKUP_IDENTITY_FILE";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the local backups; relative paths are taken from the
    /// directory of the config file, so cron's working directory does not
    /// matter.
    pub backup_dir: PathBuf,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Directory holding pg_dump, pg_restore and psql; PATH when absent.
    /// Relative to the config file's directory, as `backup_dir`.
    #[serde(default)]
    pub pg_bin_dir: Option<PathBuf>,
    /// gzip level 1-9 of the backup files.
    #[serde(default = "default_level")]
    pub compression_level: u32,
    /// Compression threads (0 = one per core).
    #[serde(default)]
    pub compression_threads: usize,
    /// `pg_restore --jobs` (0 = one per core).
    #[serde(default)]
    pub restore_jobs: usize,
    /// Database used to create, rename and drop the others.
    #[serde(default = "default_maintenance_db")]
    pub maintenance_db: String,
    #[serde(rename = "database", default)]
    pub databases: Vec<Database>,
    /// Offsite copies in Azure Blob Storage; absent = local only.
    #[serde(default)]
    pub azure: Option<Azure>,
    /// `valerix-backup agent`: schedule, HTTP endpoint, logs.
    #[serde(default)]
    pub agent: AgentConfig,
    /// `[[alert.webhook]]`: where the agent sends alerts.
    #[serde(default)]
    pub alert: AlertConfig,
    /// `[encryption]`: new backups are age-encrypted to these recipients.
    #[serde(default)]
    pub encryption: Option<Encryption>,
    /// `[drill]`: `drill region`, the geo-restore drill.
    #[serde(default)]
    pub drill: Option<DrillConfig>,
    /// `[config_backup]`: application configuration archived by each backup.
    #[serde(default)]
    pub config_backup: Option<ConfigBackup>,
    /// Where the config was read from (not part of the TOML).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The TARGET word on the command line (`order`, `inventory`).
    pub name: String,
    /// The PostgreSQL database name; also the backup file name prefix.
    pub dbname: String,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// Environment variable holding the password; libpq's own PGPASSWORD or
    /// ~/.pgpass apply when absent.
    #[serde(default)]
    pub password_env: Option<String>,
    /// What the set holds: a PostgreSQL database, or the configuration
    /// archive of `[config_backup]` (not part of the TOML).
    #[serde(skip)]
    pub kind: SetKind,
}

/// `[encryption]`: client-side encryption of new backups (see
/// `pipeline::encryption`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// age public keys (`age1...`); every new backup is encrypted to all
    /// of them, so any one identity opens it (keep one offline, in escrow).
    pub recipients: Vec<String>,
    /// The file holding the identity (private key) that opens backups, for
    /// `verify --deep` and `restore`; `$VALERIX_BACKUP_IDENTITY_FILE`
    /// overrides it. Relative to the config file's directory.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// The parsed recipients (not part of the TOML).
    #[serde(skip)]
    pub keys: Vec<age::x25519::Recipient>,
}

/// An age public key from the configuration, checked; the reason is one
/// line naming what is wrong (never the value of something that might be a
/// private key).
fn parse_recipient(s: &str) -> std::result::Result<age::x25519::Recipient, String> {
    if s.starts_with("AGE-SECRET-KEY-") {
        return Err("is a private key (AGE-SECRET-KEY-...), not a public one: \
                    put only public keys (age1...) in recipients, and remove this one \
                    from the file now"
            .into());
    }
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an age public key (age1..., see age-keygen -y)"))
}

impl Encryption {
    fn resolve(&mut self, base: &Path) -> std::result::Result<(), String> {
        if self.recipients.is_empty() {
            return Err(
                "encryption.recipients is empty: list at least one age public key \
                        (age1...), or remove [encryption] to write unencrypted backups"
                    .into(),
            );
        }
        self.keys = (self.recipients.iter().enumerate())
            .map(|(i, r)| {
                parse_recipient(r).map_err(|why| format!("encryption.recipients[{i}] {why}"))
            })
            .collect::<std::result::Result<_, _>>()?;
        self.identity_file = self.identity_file.take().map(|p| base.join(p));
        Ok(())
    }
}

/// `[azure]`: where offsite copies go, how they are kept, how we log in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Azure {
    pub container: String,
    /// Prepended to every blob name (`prod/` gives `prod/daily/...`).
    #[serde(default)]
    pub prefix: String,
    /// Environment variable holding a connection string (Azurite's works).
    /// Used when `account_url` is absent.
    #[serde(default = "default_connection_string_env")]
    pub connection_string_env: String,
    /// `https://<account>.blob.core.windows.net`, with `auth`.
    #[serde(default)]
    pub account_url: Option<String>,
    #[serde(default)]
    pub auth: Option<AzureAuth>,
    /// With `auth = "sas"`: the variable holding the SAS token.
    #[serde(default = "default_sas_env")]
    pub sas_env: String,
    #[serde(default = "default_daily_days")]
    pub daily_retention_days: u32,
    #[serde(default = "default_weekly_days")]
    pub weekly_retention_days: u32,
    /// The UTC weekday the weeks start on (00:00): each week's first backup
    /// offsite is its weekly copy (see `Tier::for_backup`).
    #[serde(default = "default_weekly_day")]
    pub weekly_day: WeekdayName,
    #[serde(default = "default_daily_tier")]
    pub daily_access_tier: AccessTierName,
    #[serde(default = "default_weekly_tier")]
    pub weekly_access_tier: AccessTierName,
    /// Size of each staged block, MiB.
    #[serde(default = "default_block_mib")]
    pub block_size_mib: u32,
    /// Blocks in flight at once (memory: block_size_mib x (this + 1)).
    #[serde(default = "default_upload_concurrency")]
    pub upload_concurrency: usize,
    /// Retries of one request (connection errors, 5xx, 429) before giving up.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Longest total time spent retrying one request, seconds.
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    /// Audit: a copy more than this factor off the median size of its
    /// database's recent copies is an anomaly.
    #[serde(default = "default_size_factor")]
    pub size_anomaly_factor: f64,
    /// Audit: local backups younger than this many days must have an
    /// offsite copy.
    #[serde(default = "default_offsite_lag_days")]
    pub require_offsite_days: u32,
    /// Audit: the newest offsite copy of a database may be this many hours
    /// old (the daily cadence plus a grace) before uploads count as stopped.
    #[serde(default = "default_max_offsite_age_hours")]
    pub max_offsite_age_hours: u32,
    /// Tiers whose copies (dump and manifest) are uploaded under a
    /// time-based immutability policy (Azure version-level WORM) until
    /// their retention ends: `["weekly"]`, `["daily", "weekly"]`; none by
    /// default. The container needs version-level immutability support.
    #[serde(default)]
    pub immutable: Vec<String>,
    /// `unlocked` (default: the policy can still be shortened or removed by
    /// an identity with that right) or `locked` (it can only be extended,
    /// by anyone, ever: SEC 17a-4 style).
    #[serde(default)]
    pub immutability_mode: ImmutabilityMode,
    /// Days the policy lasts past the tier's retention, so the lifecycle
    /// policy, which runs about once a day, never meets a copy still locked.
    #[serde(default = "default_immutability_margin")]
    pub immutability_margin_days: i64,
    /// `[azure.resource_manager]`: geo-restore, preflight, lifecycle policy.
    #[serde(default)]
    pub resource_manager: Option<ResourceManager>,
    /// `[[azure.postgres_server]]`: the flexible servers holding the databases.
    #[serde(default, rename = "postgres_server")]
    pub postgres_servers: Vec<PostgresServer>,
}

/// Where Azure Resource Manager is and how we log in to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceManager {
    pub subscription_id: String,
    pub resource_group: String,
    /// `https://management.azure.com`; other clouds and tests override it.
    #[serde(default = "default_arm_endpoint")]
    pub endpoint: String,
    /// The audience the token is asked for (scope `{audience}/.default`).
    /// Default: `https://management.azure.com`, or the known sovereign
    /// cloud's; never taken from `endpoint` (Resource Manager checks `aud`
    /// against its own fixed audiences).
    #[serde(default)]
    pub audience: Option<String>,
    /// The token scope, resolved at load from `audience` or `endpoint`
    /// ([`ResourceManager::resolve`]); not part of the TOML.
    #[serde(skip)]
    pub scope: String,
    /// When absent, chosen from the `AZURE_*` variables present.
    #[serde(default)]
    pub auth: Option<AzureAuth>,
    /// api-version of Microsoft.DBforPostgreSQL requests.
    #[serde(default = "default_pg_api_version")]
    pub api_version: String,
    /// The storage account of `[azure]`, for `lifecycle-policy --apply`
    /// (default: the account name in account_url or the connection string).
    #[serde(default)]
    pub storage_account: Option<String>,
    /// Seconds between polls when the service gives no Retry-After.
    #[serde(default = "default_poll_secs")]
    pub poll_interval_secs: u64,
    /// Longest wait for a geo-restore to finish, minutes.
    #[serde(default = "default_geo_timeout")]
    pub timeout_minutes: u64,
    /// Namespace of the services in the printed `kubectl` commands.
    #[serde(default = "default_k8s_namespace")]
    pub k8s_namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresServer {
    pub name: String,
    /// Default: resource_manager.resource_group.
    #[serde(default)]
    pub resource_group: Option<String>,
    /// Config names of the databases it holds; each is served by the
    /// Kubernetes deployment `<name>-service` (the seed's order-service).
    #[serde(default)]
    pub databases: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureAuth {
    ManagedIdentity,
    WorkloadIdentity,
    ClientSecret,
    AzureCli,
    Sas,
}

impl AzureAuth {
    /// The config's spelling (`managed-identity`).
    pub fn as_str(self) -> &'static str {
        match self {
            AzureAuth::ManagedIdentity => "managed-identity",
            AzureAuth::WorkloadIdentity => "workload-identity",
            AzureAuth::ClientSecret => "client-secret",
            AzureAuth::AzureCli => "azure-cli",
            AzureAuth::Sas => "sas",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WeekdayName {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl WeekdayName {
    pub fn to_chrono(self) -> chrono::Weekday {
        use chrono::Weekday::*;
        match self {
            WeekdayName::Monday => Mon,
            WeekdayName::Tuesday => Tue,
            WeekdayName::Wednesday => Wed,
            WeekdayName::Thursday => Thu,
            WeekdayName::Friday => Fri,
            WeekdayName::Saturday => Sat,
            WeekdayName::Sunday => Sun,
        }
    }
}

/// The mode of a time-based immutability policy (Azure's
/// `x-ms-immutability-policy-mode`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImmutabilityMode {
    /// May be shortened, extended or deleted (by an identity allowed to).
    #[default]
    Unlocked,
    /// May only be extended; cannot be deleted before it ends.
    Locked,
}

impl ImmutabilityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImmutabilityMode::Unlocked => "unlocked",
            ImmutabilityMode::Locked => "locked",
        }
    }
}

/// The tiers `azure.immutable` may name.
pub const IMMUTABLE_TIERS: [&str; 2] = ["daily", "weekly"];

/// Azure's longest time-based retention: 146,000 days (400 years).
pub const MAX_IMMUTABILITY_DAYS: i64 = 146_000;

/// Blob access tiers a backup may be stored in (Archive is excluded: a
/// restore at 2 a.m. cannot wait hours for rehydration).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessTierName {
    Hot,
    Cool,
    Cold,
}

impl AccessTierName {
    /// The service's spelling (`Cool`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTierName::Hot => "Hot",
            AccessTierName::Cool => "Cool",
            AccessTierName::Cold => "Cold",
        }
    }

    /// Early-deletion minimum of the tier, days.
    pub fn minimum_days(self) -> u32 {
        match self {
            AccessTierName::Hot => 0,
            AccessTierName::Cool => 30,
            AccessTierName::Cold => 90,
        }
    }
}

/// `[agent]`, resolved: the schedule is parsed at load, so a wrong
/// expression or time zone is a config error before any command runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "AgentToml")]
pub struct AgentConfig {
    /// `127.0.0.1:9187`: /healthz, /readyz, /metrics. Absent: no HTTP.
    pub listen: Option<String>,
    /// A slot missed while the agent was down runs once at start-up when it
    /// is younger than this (`6h`).
    pub catch_up_grace: std::time::Duration,
    /// Alert when a database's newest backup is older than this (`25h`).
    pub max_backup_age: std::time::Duration,
    /// `text` (default) or `json` lines on stderr, for log shipping.
    pub log_format: LogFormat,
    /// `[agent.schedule]` read in `agent.timezone` (UTC by default).
    pub schedule: Schedule,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentToml::default()
            .try_into()
            .expect("the default schedule parses")
    }
}

/// `[agent]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentToml {
    /// IANA zone the schedule is read in (`Europe/Berlin`).
    #[serde(default = "default_timezone")]
    timezone: String,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default = "default_grace", with = "humantime_serde_lite")]
    catch_up_grace: std::time::Duration,
    #[serde(default = "default_max_age", with = "humantime_serde_lite")]
    max_backup_age: std::time::Duration,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    schedule: ScheduleToml,
}

impl Default for AgentToml {
    fn default() -> Self {
        AgentToml {
            timezone: default_timezone(),
            listen: None,
            catch_up_grace: default_grace(),
            max_backup_age: default_max_age(),
            log_format: LogFormat::Text,
            schedule: ScheduleToml::default(),
        }
    }
}

impl TryFrom<AgentToml> for AgentConfig {
    type Error = String;

    fn try_from(t: AgentToml) -> std::result::Result<Self, String> {
        let s = &t.schedule;
        let schedule = Schedule::parse(
            &t.timezone,
            [
                (Job::Backup, s.backup.as_str()),
                (Job::Verify, &s.verify),
                (Job::WeeklyUpload, &s.weekly_upload),
                (Job::Audit, &s.audit),
                (Job::Drill, &s.drill),
            ]
            .into_iter()
            // Off unless configured: a region drill costs a server's hours.
            .chain(s.drill_region.as_deref().map(|e| (Job::DrillRegion, e))),
        )?;
        Ok(AgentConfig {
            listen: t.listen,
            catch_up_grace: t.catch_up_grace,
            max_backup_age: t.max_backup_age,
            log_format: t.log_format,
            schedule,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[agent.schedule]`: cron expressions (5 fields, or 6 with seconds
/// first); `SUN#1` is the first Sunday of the month.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleToml {
    #[serde(default = "default_backup_cron")]
    backup: String,
    #[serde(default = "default_verify_cron")]
    verify: String,
    #[serde(default = "default_weekly_cron")]
    weekly_upload: String,
    #[serde(default = "default_audit_cron")]
    audit: String,
    #[serde(default = "default_drill_cron")]
    drill: String,
    /// `drill region` (a geo-restore into a throwaway server); absent:
    /// never (it costs money; the seed says quarterly, `0 3 1 */3 *`).
    #[serde(default)]
    drill_region: Option<String>,
}

impl Default for ScheduleToml {
    fn default() -> Self {
        ScheduleToml {
            backup: default_backup_cron(),
            verify: default_verify_cron(),
            weekly_upload: default_weekly_cron(),
            audit: default_audit_cron(),
            drill: default_drill_cron(),
            drill_region: None,
        }
    }
}

/// `[alert]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    #[serde(default)]
    pub webhook: Vec<Webhook>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The URL itself; or, better for URLs that are secrets (Slack's),
    /// `url_env`: the environment variable that holds it.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub kind: WebhookKind,
}

impl Webhook {
    /// The URL, from the config or its environment variable.
    pub fn resolve(&self) -> std::result::Result<String, String> {
        match (&self.url, &self.url_env) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(u),
                Ok(_) => Err(format!(
                    "{var} (alert.webhook url_env) is not an http(s) URL"
                )),
                Err(_) => Err(format!("{var} (alert.webhook url_env) is not set")),
            },
            (None, None) => Err("alert.webhook has no url".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// `{"text": "..."}`, as Slack, Teams workflows and Mattermost take.
    Slack,
    /// The alert as a JSON object.
    #[default]
    Json,
}

/// `"25h"`-style durations in the TOML file.
mod humantime_serde_lite {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_grace() -> std::time::Duration {
    std::time::Duration::from_secs(6 * 3600)
}
fn default_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(25 * 3600)
}
fn default_backup_cron() -> String {
    "0 2 * * *".into()
}
fn default_verify_cron() -> String {
    "0 3 * * *".into()
}
fn default_weekly_cron() -> String {
    "0 1 * * SUN".into()
}
fn default_audit_cron() -> String {
    "30 3 * * *".into()
}
fn default_drill_cron() -> String {
    "0 4 * * SUN#1".into()
}

fn default_arm_endpoint() -> String {
    "https://management.azure.com".into()
}
fn default_pg_api_version() -> String {
    "2025-08-01".into()
}
fn default_poll_secs() -> u64 {
    10
}
fn default_geo_timeout() -> u64 {
    240
}
fn default_k8s_namespace() -> String {
    "valerix".into()
}
fn default_connection_string_env() -> String {
    "AZURE_STORAGE_CONNECTION_STRING".into()
}
fn default_sas_env() -> String {
    "AZURE_STORAGE_SAS_TOKEN".into()
}
fn default_daily_days() -> u32 {
    30
}
fn default_weekly_days() -> u32 {
    90
}
fn default_weekly_day() -> WeekdayName {
    WeekdayName::Sunday
}
fn default_daily_tier() -> AccessTierName {
    AccessTierName::Cool
}
fn default_weekly_tier() -> AccessTierName {
    AccessTierName::Cold
}
fn default_block_mib() -> u32 {
    4
}
fn default_upload_concurrency() -> usize {
    8
}
fn default_max_retries() -> u32 {
    6
}
fn default_retry_max_secs() -> u64 {
    120
}
fn default_size_factor() -> f64 {
    3.0
}
fn default_max_offsite_age_hours() -> u32 {
    36
}

fn default_immutability_margin() -> i64 {
    1
}

fn default_offsite_lag_days() -> u32 {
    7
}

fn default_retention_days() -> u32 {
    7
}
fn default_level() -> u32 {
    6
}
fn default_maintenance_db() -> String {
    "postgres".into()
}
fn default_host() -> String {
    "localhost".into()
}
fn default_port() -> u16 {
    5432
}

impl Config {
    /// The config path chosen by `--config`, then the environment, then the
    /// working directory.
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        if let Some(p) = explicit {
            return p.to_path_buf();
        }
        match std::env::var_os(ENV_CONFIG) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_CONFIG),
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            msg: match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "not found (pass --config FILE or set {ENV_CONFIG}; \
                     valerix-backup.example.toml is a template)"
                ),
                _ => e.to_string(),
            },
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let bad = |msg: String| Error::Config {
            path: path.to_path_buf(),
            msg,
        };
        let mut cfg: Config = toml::from_str(text).map_err(|e| bad(one_line_toml_error(&e)))?;
        cfg.path = path.to_path_buf();
        // Relative paths are the config file's, so cron's working directory
        // does not matter.
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.backup_dir = base.join(&cfg.backup_dir);
        cfg.pg_bin_dir = cfg.pg_bin_dir.map(|d| base.join(d));
        cfg.validate().map_err(bad)?;
        if let Some(enc) = &mut cfg.encryption {
            enc.resolve(base).map_err(bad)?;
        }
        if let Some(az) = &mut cfg.azure {
            az.resolve().map_err(bad)?;
        }
        if let Some(cb) = &mut cfg.config_backup {
            cb.resolve(base, &cfg.databases).map_err(bad)?;
        }
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.databases.is_empty() {
            return Err("no [[database]] configured".into());
        }
        if !(1..=9).contains(&self.compression_level) {
            return Err(format!(
                "compression_level {} is out of range 1-9",
                self.compression_level
            ));
        }
        if self.retention_days == 0 {
            return Err("retention_days must be at least 1".into());
        }
        for w in &self.alert.webhook {
            match (&w.url, &w.url_env) {
                (Some(u), None) if u.starts_with("https://") || u.starts_with("http://") => {}
                (Some(_), None) => return Err("alert.webhook url must be http(s)".into()),
                (None, Some(_)) => {}
                _ => return Err("alert.webhook needs one of url or url_env".into()),
            }
        }
        for (i, db) in self.databases.iter().enumerate() {
            check_word("database name", &db.name)?;
            check_word("dbname", &db.dbname)?;
            if db.name == "both" || db.name == "all" {
                return Err(format!("database name '{}' is reserved", db.name));
            }
            if db.user.is_empty() {
                return Err(format!("database '{}': user is empty", db.name));
            }
            for other in &self.databases[..i] {
                if other.name == db.name || other.dbname == db.dbname {
                    return Err(format!(
                        "databases '{}' and '{}' share a name or dbname",
                        other.name, db.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The recipients new backups are encrypted to (none: unencrypted).
    pub fn recipients(&self) -> &[age::x25519::Recipient] {
        self.encryption.as_ref().map_or(&[], |e| &e.keys)
    }

    /// The identity file the environment (which wins: a restore on another
    /// machine, with the escrow key) or `[encryption] identity_file` names.
    pub fn identity_path(&self) -> Option<PathBuf> {
        match std::env::var_os(ENV_IDENTITY_FILE) {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => self.encryption.as_ref()?.identity_file.clone(),
        }
    }

    pub fn compression_threads(&self) -> usize {
        nonzero_or_cores(self.compression_threads)
    }

    pub fn restore_jobs(&self) -> usize {
        nonzero_or_cores(self.restore_jobs)
    }

    /// Resolves command-line targets: none, `both` or `all` select every
    /// database; otherwise each word must be a configured `name` or `dbname`.
    pub fn select(&self, targets: &[String]) -> Result<Vec<&Database>> {
        if targets.is_empty() || targets.iter().any(|t| t == "both" || t == "all") {
            return Ok(self.databases.iter().collect());
        }
        let mut out: Vec<&Database> = Vec::new();
        for t in targets {
            check_word("target", t).map_err(|_| Error::Invalid {
                what: "target",
                value: t.clone(),
                why: "a target is a database name from the config, not a path",
            })?;
            if t == CONFIG_SET && self.config_set().is_some() {
                return Err(Error::Refused(format!(
                    "'{CONFIG_SET}' is the configuration archive ([config_backup]), not a \
                     database: restore it with `valerix-backup restore-config`"
                )));
            }
            let db = self
                .databases
                .iter()
                .find(|d| &d.name == t || &d.dbname == t)
                .ok_or_else(|| Error::UnknownTarget {
                    target: t.clone(),
                    known: self.known_targets(),
                })?;
            if !out.iter().any(|d| d.name == db.name) {
                out.push(db);
            }
        }
        Ok(out)
    }

    pub fn known_targets(&self) -> String {
        let names: Vec<&str> = self.databases.iter().map(|d| d.name.as_str()).collect();
        format!("{}, both", names.join(", "))
    }
}

impl Azure {
    fn resolve(&mut self) -> std::result::Result<(), String> {
        self.validate()?;
        if let Some(rm) = &mut self.resource_manager {
            rm.resolve()?;
        }
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let c = &self.container;
        let ok = (3..=63).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
            && !c.contains("--");
        if !ok {
            return Err(format!(
                "azure.container '{c}' must be 3-63 lowercase letters, digits and single '-'"
            ));
        }
        if !self.prefix.is_empty()
            && (self.prefix.starts_with('/')
                || self.prefix.contains("..")
                || !self.prefix.ends_with('/'))
        {
            return Err(format!(
                "azure.prefix '{}' must be relative and end with '/' (e.g. \"prod/\")",
                self.prefix
            ));
        }
        if self.daily_retention_days == 0 || self.weekly_retention_days == 0 {
            return Err("azure retention days must be at least 1".into());
        }
        if !(1..=4000).contains(&self.block_size_mib) {
            return Err(format!(
                "azure.block_size_mib {} is out of range 1-4000",
                self.block_size_mib
            ));
        }
        if !(1..=64).contains(&self.upload_concurrency) {
            return Err(format!(
                "azure.upload_concurrency {} is out of range 1-64",
                self.upload_concurrency
            ));
        }
        for s in &self.postgres_servers {
            check_arm_name("azure.postgres_server name", &s.name)?;
        }
        if self.size_anomaly_factor <= 1.0 {
            return Err("azure.size_anomaly_factor must be above 1".into());
        }
        self.validate_immutability()?;
        match (&self.account_url, self.auth) {
            (Some(url), Some(_)) if !url.starts_with("https://") && !url.starts_with("http://") => {
                Err(format!("azure.account_url '{url}' must be an http(s) URL"))
            }
            (Some(_), None) => Err("azure.account_url needs azure.auth (managed-identity, \
                 workload-identity, client-secret, azure-cli or sas)"
                .into()),
            (None, Some(_)) => Err("azure.auth needs azure.account_url".into()),
            _ => Ok(()),
        }
    }
}

impl Azure {
    /// The retention days of tier `daily` or `weekly`.
    pub fn tier_retention_days(&self, tier: &str) -> u32 {
        match tier {
            "daily" => self.daily_retention_days,
            _ => self.weekly_retention_days,
        }
    }

    /// Whether copies of tier `tier` are uploaded immutable.
    pub fn is_immutable(&self, tier: &str) -> bool {
        self.immutable.iter().any(|t| t == tier)
    }

    /// Days a copy of `tier` stays immutable: its retention plus the margin.
    pub fn immutability_days(&self, tier: &str) -> i64 {
        self.tier_retention_days(tier) as i64 + self.immutability_margin_days
    }

    /// Known tiers only, and a policy that lasts at least the retention: a
    /// copy that may be deleted before its retention ends is not a
    /// protected copy.
    fn validate_immutability(&self) -> std::result::Result<(), String> {
        for (i, t) in self.immutable.iter().enumerate() {
            if !IMMUTABLE_TIERS.contains(&t.as_str()) {
                return Err(format!(
                    "azure.immutable: unknown tier '{t}' (known: daily, weekly)"
                ));
            }
            if self.immutable[..i].contains(t) {
                return Err(format!("azure.immutable names tier '{t}' twice"));
            }
            let (days, keep) = (self.immutability_days(t), self.tier_retention_days(t));
            if days < keep as i64 {
                return Err(format!(
                    "azure.immutability_margin_days = {} makes the {t} tier's immutability period \
                     ({days} days) shorter than its retention ({keep} days, \
                     azure.{t}_retention_days): a copy could be deleted or overwritten before \
                     its retention ends; use a margin of 0 or more",
                    self.immutability_margin_days
                ));
            }
            if days > MAX_IMMUTABILITY_DAYS {
                return Err(format!(
                    "the {t} tier's immutability period ({days} days) exceeds Azure's maximum \
                     of {MAX_IMMUTABILITY_DAYS} days"
                ));
            }
        }
        Ok(())
    }
}

/// The public cloud's Resource Manager audience: what a token must be for,
/// whatever URL the requests go to (a proxy, a stand-in).
pub const PUBLIC_AUDIENCE: &str = "https://management.azure.com";

/// Sovereign clouds' Resource Manager endpoints (hosts) and audiences, as
/// the Azure SDKs' cloud configurations pair them.
const SOVEREIGN_AUDIENCES: &[(&str, &str)] = &[
    (
        "management.chinacloudapi.cn",
        "https://management.chinacloudapi.cn",
    ),
    (
        "management.usgovcloudapi.net",
        "https://management.usgovcloudapi.net",
    ),
];

impl ResourceManager {
    /// Validates the section and resolves its token scope: `audience` when
    /// configured, else the known cloud's audience by endpoint host, else
    /// the public one; never the endpoint URL (Resource Manager refuses a
    /// token for any other audience).
    pub(crate) fn resolve(&mut self) -> std::result::Result<(), String> {
        self.validate()?;
        let audience = self.audience.clone().unwrap_or_else(|| {
            let host = url::Url::parse(&self.endpoint)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
            SOVEREIGN_AUDIENCES
                .iter()
                .find(|(h, _)| host.as_deref() == Some(*h))
                .map_or(PUBLIC_AUDIENCE, |(_, a)| *a)
                .to_string()
        });
        self.scope = format!("{}/.default", audience.trim_end_matches('/'));
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        check_arm_name(
            "azure.resource_manager.subscription_id",
            &self.subscription_id,
        )?;
        check_arm_name(
            "azure.resource_manager.resource_group",
            &self.resource_group,
        )?;
        if !self.endpoint.starts_with("https://") {
            return Err(format!(
                "azure.resource_manager.endpoint '{}' must be https",
                self.endpoint
            ));
        }
        if let Some(a) = &self.audience
            && (a.trim().is_empty() || a.contains(char::is_whitespace))
        {
            return Err(format!(
                "azure.resource_manager.audience '{a}' must be one URI without spaces"
            ));
        }
        if self.auth == Some(AzureAuth::Sas) {
            return Err("azure.resource_manager.auth cannot be sas".into());
        }
        if self.poll_interval_secs == 0 {
            return Err("azure.resource_manager.poll_interval_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// Names that become part of a Resource Manager URL path.
fn check_arm_name(what: &str, s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 90
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.()".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{s}' must be 1-90 letters, digits, '-', '_', '.', '(' or ')'"
        ))
    }
}

impl Database {
    /// The password from `password_env`, if configured. A configured but unset
    /// variable is an error: falling back to another password would hide it.
    pub fn password(&self) -> Result<Option<String>> {
        let Some(var) = &self.password_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(Error::Missing(format!(
                "environment variable {var} (password_env of database '{}') is not set",
                self.name
            ))),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({}@{}:{})",
            self.dbname, self.user, self.host, self.port
        )
    }
}

/// Names that end up in file names and identifiers: letters, digits, `_`, `-`.
fn check_word(what: &str, s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{s}' must be 1-63 letters, digits, '_' or '-'"
        ))
    }
}

fn nonzero_or_cores(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// toml's errors span several lines with a source excerpt; keep the first
/// line plus the location so the message stays on one line.
fn one_line_toml_error(e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
backup_dir = "./backups"
[[database]]
name = "order"
dbname = "order_db"
user = "order_user"
password_env = "ORDER_DB_PASSWORD"
[[database]]
name = "inventory"
dbname = "inventory_db"
port = 5433
user = "inventory_user"
"#;

    #[test]
    fn immutable_tiers_must_be_known_and_last_their_retention() {
        let parse = |extra: &str| {
            let text = format!("{GOOD}[azure]\ncontainer = \"backups\"\n{extra}\n");
            Config::parse(&text, Path::new("x.toml")).map(|c| c.azure.unwrap())
        };
        let az = parse("").unwrap();
        assert!(az.immutable.is_empty() && az.immutability_mode == ImmutabilityMode::Unlocked);
        let az = parse("immutable = [\"weekly\"]\nimmutability_mode = \"locked\"").unwrap();
        assert!(az.is_immutable("weekly") && !az.is_immutable("daily"));
        assert_eq!(az.immutability_days("weekly"), 91);
        let bad = |extra: &str| parse(extra).unwrap_err().to_string();
        assert!(bad("immutable = [\"monthly\"]").contains("unknown tier 'monthly'"));
        let short = bad("immutable = [\"daily\"]\nimmutability_margin_days = -3");
        assert!(
            short.contains(
                "daily tier's immutability period (27 days) shorter than its retention (30 days"
            ),
            "{short}"
        );
        assert!(bad("immutability_mode = \"forever\"").contains("forever"));
        assert!(
            bad("immutable = [\"weekly\"]\nweekly_retention_days = 146000").contains("maximum")
        );
    }

    #[test]
    fn the_example_config_parses_and_carries_the_seeds_schedule() {
        let c = Config::parse(
            include_str!("../valerix-backup.example.toml"),
            Path::new("valerix-backup.example.toml"),
        )
        .unwrap();
        assert_eq!(c.databases.len(), 2);
        let s = &c.agent.schedule;
        assert_eq!(
            Job::ALL.map(|j| s.expr(j)),
            [
                Some("0 2 * * *"),
                Some("0 3 * * *"),
                Some("0 1 * * SUN"),
                Some("30 3 * * *"),
                Some("0 4 * * SUN#1"),
                // The region drill costs money: off unless configured.
                None,
            ]
        );
    }

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse(GOOD, Path::new("/etc/vx/valerix-backup.toml")).unwrap();
        assert_eq!(c.retention_days, 7);
        assert_eq!(c.backup_dir, Path::new("/etc/vx/./backups"));
        assert_eq!(c.databases[1].port, 5433);
        assert_eq!(c.databases[0].host, "localhost");
    }

    #[test]
    fn schedules_and_paths_are_resolved_at_load() {
        let text = format!("pg_bin_dir = \"bin\"\n{GOOD}");
        let c = Config::parse(&text, Path::new("/etc/vx/valerix-backup.toml")).unwrap();
        assert_eq!(c.pg_bin_dir.as_deref(), Some(Path::new("/etc/vx/bin")));
        assert_eq!(c.agent.schedule.expr(Job::Backup), Some("0 2 * * *"));
        assert_eq!(c.agent.schedule.tz, chrono_tz::UTC);
        let bad = format!("{GOOD}[agent.schedule]\nverify = \"61 3 * * *\"\n");
        let e = Config::parse(&bad, Path::new("c")).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains("agent.schedule.verify '61 3 * * *'"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let bad = format!("{GOOD}[agent]\ntimezone = \"Mars/Olympus\"\n");
        let e = Config::parse(&bad, Path::new("c")).unwrap_err().to_string();
        assert!(e.contains("agent.timezone 'Mars/Olympus'"), "{e}");
    }

    #[test]
    fn selects_targets() {
        let c = Config::parse(GOOD, Path::new("x.toml")).unwrap();
        assert_eq!(c.select(&[]).unwrap().len(), 2);
        assert_eq!(c.select(&["both".into()]).unwrap().len(), 2);
        let one = c.select(&["inventory_db".into()]).unwrap();
        assert_eq!(one[0].name, "inventory");
        let e = c.select(&["payments".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown target 'payments'"), "{e}");
        let e = c.select(&["../x".into()]).unwrap_err().to_string();
        assert!(e.contains("not a path"), "{e}");
    }

    #[test]
    fn rejects_typos_and_bad_names() {
        let e = Config::parse(&GOOD.replace("retention_days", "x"), Path::new("c"));
        assert!(e.is_ok());
        let e = Config::parse(&format!("retension_days = 3\n{GOOD}"), Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("retension_days"), "{e}");
        let e = Config::parse(&GOOD.replace("order_db", "../etc"), Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dbname '../etc'"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn recipients_are_public_keys_and_a_private_key_is_never_echoed() {
        let id = age::x25519::Identity::generate();
        assert!(parse_recipient(&id.to_public().to_string()).is_ok());
        let e = parse_recipient("age1notakey").unwrap_err();
        assert!(e.contains("not an age public key"), "{e}");
        use age::secrecy::ExposeSecret;
        let secret = id.to_string().expose_secret().to_string();
        let e = parse_recipient(&secret).unwrap_err();
        assert!(e.contains("private key") && !e.contains(&secret), "{e}");
    }
}

/// `[drill]`: how `drill region` reaches and checks its throwaway server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// The `[[azure.postgres_server]]` to drill (default: the first one).
    #[serde(default)]
    pub source: Option<String>,
    /// The role the smoke check connects as (default: each database's
    /// `user`); its password is the database's `password_env`, else
    /// PGPASSWORD or ~/.pgpass, never the config.
    #[serde(default)]
    pub user: Option<String>,
    /// libpq `sslmode` of the smoke check (`require`; Azure refuses
    /// unencrypted connections).
    #[serde(default = "default_drill_sslmode")]
    pub sslmode: String,
    /// `{ "<fqdn>" = "IP:PORT" }`, as curl's `--resolve`: the server's
    /// name stays the host (what sslmode verify-full checks) while libpq connects to the
    /// address (`hostaddr`). For tests and split-horizon DNS.
    #[serde(default)]
    pub resolve: std::collections::BTreeMap<String, String>,
    /// SQL that must return true on the drill server (`select count(*) >
    /// 0 from orders where created_at > now() - interval '2 days'`).
    #[serde(default)]
    pub smoke_query: Option<String>,
    /// The database (config name) `smoke_query` runs in (default: the
    /// first of the server's).
    #[serde(default)]
    pub smoke_database: Option<String>,
    /// Resource group of the drill servers (default:
    /// azure.resource_manager.resource_group); the recovery group in the
    /// paired region is the one to rehearse.
    #[serde(default)]
    pub resource_group: Option<String>,
}

fn default_drill_sslmode() -> String {
    "require".into()
}

impl DrillConfig {
    /// The `hostaddr` and port `resolve` maps `fqdn` to, if any; a value
    /// that is not `IP:PORT` is an error naming the key.
    pub fn resolved(&self, fqdn: &str) -> Result<Option<std::net::SocketAddr>> {
        let Some((_, v)) = self
            .resolve
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(fqdn))
        else {
            return Ok(None);
        };
        v.parse().map(Some).map_err(|_| {
            Error::Setup(format!(
                "drill.resolve \"{fqdn}\" = \"{v}\": expected IP:PORT (e.g. 127.0.0.1:5432)"
            ))
        })
    }
}

/// What a backup set holds. The catalog, retention, upload, audit and
/// `verify` treat every set alike; the steps that only make sense for a
/// database (pg_dump, pg_restore, row counts) ask this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetKind {
    #[default]
    Postgres,
    /// The application configuration archive (`<name>_<stamp>.tar.gz`).
    Config,
}

/// The name of the configuration archive's set: its TARGET word and the
/// prefix of its files (`config_<stamp>.tar.gz`).
pub const CONFIG_SET: &str = "config";

/// `[config_backup]`: files, directories and globs, and the output of
/// commands, archived by every backup run beside the dumps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigBackup {
    /// Files, directories (recursively) and glob patterns; relative ones
    /// are the config file's directory's.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Commands whose standard output is saved as `commands/<n>-<slug>.out`:
    /// each an argument list, run without a shell.
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
    /// Archive files that look like secrets (`.env`, keys) even without
    /// `[encryption]`.
    #[serde(default)]
    pub include_secrets: bool,
    /// Seconds a command may run before it is killed and recorded as failed.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// The directory relative paths are taken from (not part of the TOML).
    #[serde(skip)]
    pub base: PathBuf,
    /// The set the catalog knows the archive by (not part of the TOML).
    #[serde(skip)]
    pub set: Option<Database>,
}

fn default_command_timeout() -> u64 {
    120
}

impl ConfigBackup {
    fn resolve(&mut self, base: &Path, dbs: &[Database]) -> std::result::Result<(), String> {
        if self.paths.is_empty() && self.commands.is_empty() {
            return Err("[config_backup] lists no paths and no commands".into());
        }
        if let Some(c) = self
            .commands
            .iter()
            .find(|c| c.first().is_none_or(String::is_empty))
        {
            return Err(format!(
                "[config_backup] command {c:?} is empty: a command is a list, program first"
            ));
        }
        for p in self.paths.iter().filter(|p| p.contains(['*', '?', '['])) {
            glob::Pattern::new(p)
                .map_err(|e| format!("[config_backup] paths: {p:?} is not a glob pattern: {e}"))?;
        }
        if let Some(db) = dbs
            .iter()
            .find(|d| d.name == CONFIG_SET || d.dbname == CONFIG_SET)
        {
            return Err(format!(
                "database '{}': the name '{CONFIG_SET}' is the configuration archive's \
                 when [config_backup] is set",
                db.name
            ));
        }
        self.base = base.to_path_buf();
        self.set = Some(Database {
            name: CONFIG_SET.into(),
            dbname: CONFIG_SET.into(),
            host: String::new(),
            port: 0,
            user: String::new(),
            password_env: None,
            kind: SetKind::Config,
        });
        Ok(())
    }
}

impl Config {
    /// The configuration archive's set, when `[config_backup]` is set.
    pub fn config_set(&self) -> Option<&Database> {
        self.config_backup.as_ref()?.set.as_ref()
    }

    /// [`Config::select`] plus the configuration archive: every set for no
    /// target or `all`/`both`, and `config` names it alone. For the
    /// commands that treat every backup set alike (backup, list, verify,
    /// upload, audit).
    pub fn select_sets(&self, targets: &[String]) -> Result<Vec<&Database>> {
        let Some(set) = self.config_set() else {
            return self.select(targets);
        };
        let (named, dbs): (Vec<String>, Vec<String>) =
            targets.iter().cloned().partition(|t| t == CONFIG_SET);
        if !named.is_empty() && dbs.is_empty() {
            return Ok(vec![set]);
        }
        let every = targets.is_empty() || dbs.iter().any(|t| t == "both" || t == "all");
        let mut out = self.select(&dbs)?;
        if every || !named.is_empty() {
            out.push(set);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod config_backup_tests {
    use super::*;

    /// The example with its `[config_backup]` block uncommented.
    fn example_with_config_backup() -> String {
        let text = include_str!("../valerix-backup.example.toml");
        let start = text.find("# [config_backup]").unwrap();
        let (head, block) = text.split_at(start);
        let block: Vec<&str> = block
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect();
        format!("{head}{}\n", block.join("\n"))
    }

    #[test]
    fn the_example_config_backup_parses_and_is_a_set_of_its_own() {
        let c = Config::parse(&example_with_config_backup(), Path::new("/etc/v/x.toml")).unwrap();
        let cb = c.config_backup.as_ref().unwrap();
        assert_eq!(cb.paths.len(), 3);
        assert_eq!(cb.commands[0][0], "kubectl");
        assert_eq!((cb.include_secrets, cb.command_timeout_secs), (false, 120));
        assert_eq!(cb.base, Path::new("/etc/v"));
        let names = |t: &[&str]| -> Vec<String> {
            let t: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            let sets = c.select_sets(&t).unwrap();
            sets.iter().map(|d| d.name.clone()).collect()
        };
        assert_eq!(names(&[]), ["order", "inventory", "config"]);
        assert_eq!(names(&["config"]), ["config"]);
        assert_eq!(names(&["order", "config"]), ["order", "config"]);
        assert_eq!(names(&["order"]), ["order"]);
        // The databases' own commands never see it.
        assert_eq!(c.select(&[]).unwrap().len(), 2);
        let e = c.select(&["config".into()]).unwrap_err().to_string();
        assert!(e.contains("restore-config"), "{e}");
    }

    #[test]
    fn a_database_named_config_or_an_empty_section_is_refused() {
        let base =
            "backup_dir = \"b\"\n[[database]]\nname = \"config\"\ndbname = \"c\"\nuser = \"u\"\n";
        let e = Config::parse(
            &format!("{base}[config_backup]\npaths = [\"x\"]\n"),
            Path::new("x.toml"),
        );
        assert!(e.unwrap_err().to_string().contains("configuration archive"));
        let base = base.replace("name = \"config\"", "name = \"o\"");
        let e = Config::parse(&format!("{base}[config_backup]\n"), Path::new("x.toml"));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("no paths and no commands")
        );
        let e = Config::parse(
            &format!("{base}[config_backup]\ncommands = [[]]\n"),
            Path::new("x.toml"),
        );
        assert!(e.unwrap_err().to_string().contains("is empty"));
        let e = Config::parse(
            &format!("{base}[config_backup]\npaths = [\"k8s/[a-\"]\n"),
            Path::new("x.toml"),
        );
        assert!(e.unwrap_err().to_string().contains("not a glob pattern"));
    }
}
