//! The `valerix-backup` binary: parse arguments, call the library, print the
//! report, map the outcome to an exit status. No backup logic lives here.

mod cli;
mod print;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use valerix_backup::catalog::Stamp;
use valerix_backup::config::LogFormat;
use valerix_backup::offsite::policy::{self, PolicyFormat};
use valerix_backup::ops::config_backup;
use valerix_backup::ops::upload::Selection;
use valerix_backup::ops::{
    Context, audit, backup, check, geo, hold, inspect, report, restore, upload, verify,
};
use valerix_backup::ui::Progress;
use valerix_backup::{Config, Error, Result};

use cli::{Cli, Command, ConfigAction, DrillAction, HoldAction, ReportAction};

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("valerix-backup: error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<()> {
    if let Some(done) = without_config(&cli.command) {
        return done;
    }
    let loaded = Config::load(&Config::locate(cli.config.as_deref()));
    let format = loaded
        .as_ref()
        .map_or(LogFormat::Text, |c| c.agent.log_format);
    init_logging(&cli, format);
    let cfg = loaded?;
    let json = wants_json(&cli.command);
    let progress =
        Progress::new(!cli.no_progress && !json && !cli.quiet && std::io::stderr().is_terminal());
    let ctx = Context::new(cfg, progress, cancel_on_signals());
    dispatch(ctx, cli.command, json)
}

/// The commands that need no config: shell completions and the man page.
fn without_config(cmd: &Command) -> Option<Result<()>> {
    match cmd {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "valerix-backup", &mut std::io::stdout());
            Some(Ok(()))
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            Some(
                clap_mangen::Man::new(cmd)
                    .render(&mut std::io::stdout())
                    .map_err(|e| Error::io("writing the man page", e)),
            )
        }
        _ => None,
    }
}

/// Each command: its options, the library call, the report printed, and
/// the report's outcome as the exit status.
fn dispatch(ctx: Context, command: Command, json: bool) -> Result<()> {
    if let Command::Agent { once } = command {
        return match once {
            Some(job) => valerix_backup::agent::once(ctx.cfg, job, ctx.cancel),
            None => valerix_backup::agent::run(ctx.cfg, ctx.cancel),
        };
    }
    match command {
        Command::LifecyclePolicy { format, apply, yes } => {
            lifecycle_policy(&ctx, format, apply, yes)
        }
        Command::AzureCheck { .. } => {
            let report = geo::check(&ctx)?;
            print::emit(json, &report, print::azure_check)?;
            report.outcome()
        }
        cmd @ Command::GeoRestore { .. } => geo_restore(&ctx, cmd, json),
        Command::Drill {
            action:
                DrillAction::Region {
                    source,
                    target,
                    keep,
                    yes,
                    ..
                },
        } => drill_region(
            &ctx,
            geo::drill::DrillRequest {
                source,
                target,
                keep,
            },
            yes,
            json,
        ),
        cmd @ Command::Failover { .. } => failover(&ctx, cmd, json),
        Command::Config {
            action: ConfigAction::Check { .. },
        } => {
            let report = check::check(&ctx);
            print::emit(json, &report, print::config_check)?;
            report.outcome()
        }
        Command::Completions { .. } | Command::Man | Command::Agent { .. } => {
            unreachable!("handled before")
        }
        Command::Backup {
            targets,
            no_prune,
            upload,
            ..
        } => {
            let opts = backup::BackupOptions {
                targets,
                prune: !no_prune,
                upload,
            };
            let run = backup::backup(&ctx, &opts, &ctx.progress)?;
            print::emit(json, &run, print::backup)?;
            run.outcome()
        }
        Command::Upload {
            selection,
            targets,
            tier,
            ..
        } => {
            let sel = Selection::parse(selection.as_deref())?;
            let report = upload::upload(&ctx, sel, tier.into(), &targets, &ctx.progress)?;
            print::emit(json, &report, print::upload)?;
            report.outcome()
        }
        Command::Audit {
            deep,
            recheck,
            dbs,
            as_of,
            ..
        } => {
            let opts = audit::AuditOptions {
                deep,
                recheck,
                targets: dbs,
                as_of,
            };
            let report = audit::audit(&ctx, &opts, &ctx.progress)?;
            print::emit(json, &report, print::audit)?;
            report.outcome()
        }
        Command::Hold {
            action,
            timestamp,
            targets,
            ..
        } => {
            let stamp = Stamp::parse_selector(Some(&timestamp))?;
            let report = hold::hold(&ctx, action == HoldAction::Set, stamp, &targets)?;
            print::emit(json, &report, print::hold)
        }
        Command::Verify { args, deep, .. } => {
            let (stamp, targets) = split_selector(&args)?;
            let report = verify::verify(&ctx, stamp, &targets, deep, &ctx.progress)?;
            print::emit(json, &report, print::verify)?;
            report.outcome()
        }
        Command::Restore {
            timestamp,
            targets,
            into,
            tables,
            keep_old,
            from_azure,
            yes,
            ..
        } => {
            let mut stamp = Stamp::parse_selector(Some(&timestamp))?;
            let mut fetched = None;
            if from_azure {
                let got = restore::fetch(&ctx, &targets, stamp, &ctx.progress)?;
                stamp = Some(got.stamp);
                fetched = Some(got);
            }
            let req = restore::RestoreRequest {
                stamp,
                targets,
                into,
                tables,
                keep_old,
                fetched,
            };
            let plan = restore::plan(&ctx, &req)?;
            confirm(&plan, yes)?;
            let report = restore::execute(&ctx, &plan, &ctx.progress)?;
            print::emit(json, &report, print::restore)?;
            report.outcome()
        }
        Command::List { targets, local, .. } => {
            let entries = inspect::list(&ctx, &targets, !local)?;
            print::emit(json, &entries, |e| print::list(e))
        }
        Command::Status { max_age, .. } => {
            let report = inspect::status(&ctx, max_age)?;
            print::emit(json, &report, print::status)?;
            report.outcome()
        }
        Command::Report { action } => match action {
            ReportAction::List { .. } => {
                let all = report::list(&ctx.cfg)?;
                print::emit(json, &all, |a| print::reports(a))
            }
            ReportAction::Show { name, .. } => {
                let (rec, md) = report::show(&ctx.cfg, &name)?;
                print::emit(json, &rec, |_| md.clone())
            }
        },
        Command::Prune {
            dry_run,
            offsite,
            as_of,
            ..
        } => {
            let removed = if offsite {
                audit::prune_offsite(&ctx, dry_run, as_of)?
            } else {
                inspect::prune(&ctx, dry_run)?
            };
            print::emit(json, &removed, |r| print::prune(r, dry_run))
        }
        Command::RestoreConfig {
            timestamp,
            into,
            from_azure,
            ..
        } => {
            let stamp = Stamp::parse_selector(Some(&timestamp))?;
            let report = config_backup::restore(&ctx, stamp, &into, from_azure, &ctx.progress)?;
            print::emit(json, &report, print::restore_config)
        }
    }
}

/// Whether the command prints its report as JSON (`--json`).
fn wants_json(cmd: &Command) -> bool {
    match cmd {
        Command::Completions { .. } | Command::Man => false,
        Command::Agent { .. } | Command::LifecyclePolicy { .. } => false,
        Command::Config {
            action: ConfigAction::Check { out },
        } => out.json,
        Command::GeoRestore { out, .. } | Command::AzureCheck { out } => out.json,
        Command::Upload { out, .. } | Command::Audit { out, .. } => out.json,
        Command::Hold { out, .. } => out.json,
        Command::Drill {
            action: DrillAction::Region { out, .. },
        } => out.json,
        Command::Failover { out, .. } => out.json,
        Command::Report {
            action: ReportAction::List { out } | ReportAction::Show { out, .. },
        } => out.json,
        Command::Backup { out, .. }
        | Command::Verify { out, .. }
        | Command::Restore { out, .. }
        | Command::List { out, .. }
        | Command::Status { out, .. }
        | Command::Prune { out, .. } => out.json,
        Command::RestoreConfig { out, .. } => out.json,
    }
}

/// `lifecycle-policy`: the rules to paste, or with `--apply` merged into
/// the storage account's policy.
fn lifecycle_policy(ctx: &Context, format: PolicyFormat, apply: bool, yes: bool) -> Result<()> {
    let az = upload::azure_of(&ctx.cfg)?;
    for w in policy::warnings(az) {
        tracing::warn!("{w}");
    }
    if apply {
        apply_lifecycle_policy(az, yes)
    } else {
        print!("{}", policy::render(az, format));
        Ok(())
    }
}

/// `geo-restore`: preflight and plan, confirm, send and follow (or only
/// watch), then point the services at the new server. The run, whatever
/// its outcome, leaves a post-mortem record.
fn geo_restore(ctx: &Context, cmd: Command, json: bool) -> Result<()> {
    let Command::GeoRestore {
        source_server,
        target_name,
        target_resource_group,
        location,
        restore_time,
        subscription,
        subnet,
        private_dns_zone,
        no_wait,
        dry_run,
        yes,
        update_k8s,
        watch,
        ..
    } = cmd
    else {
        unreachable!("called for geo-restore only")
    };
    let az = upload::azure_of(&ctx.cfg)?;
    let arm = valerix_backup::arm::Arm::connect(az)?;
    let mut plan = None;
    let rec = report::Record::new(report::Kind::GeoRestore, "");
    let done = if let Some(url) = watch {
        let rg = target_resource_group.unwrap_or_else(|| arm.cfg.resource_group.clone());
        let sub = subscription.unwrap_or_else(|| arm.cfg.subscription_id.clone());
        let id = geo::server_id(&sub, &rg, &target_name);
        let url = (!url.is_empty()).then_some(url);
        geo::watch(ctx, &arm, &id, url.as_deref(), &ctx.progress)
    } else {
        let req = geo::GeoRestoreRequest {
            source: source_server.expect("clap requires it without --watch"),
            target: target_name,
            target_resource_group,
            location,
            restore_time,
            subscription,
            subnet,
            private_dns_zone,
        };
        let p = plan.insert(geo::plan(ctx, &arm, &req)?);
        if dry_run {
            return print::emit(json, p, print::geo_plan);
        }
        confirm_geo(p, yes)?;
        geo::execute(ctx, &arm, p, no_wait, &ctx.progress)
    };
    let databases = match &plan {
        Some(p) => p.databases.clone(),
        None => ctx.cfg.databases.iter().map(|d| d.name.clone()).collect(),
    };
    let done = done.and_then(|mut report| {
        if report.resume.is_none() {
            let ns = update_k8s.as_deref();
            geo::point_services(&mut report, &databases, ns, &arm.cfg.k8s_namespace)?;
        }
        Ok(report)
    });
    report::finish_run(ctx, rec, &done, |rec, r| {
        geo::record(rec, plan.as_ref(), r);
        r.outcome()
    });
    let report = done?;
    if let Some(resume) = &report.resume {
        eprintln!(
            "valerix-backup: interrupted; the geo-restore goes on in Azure. Resume \
             watching with:\n  {resume}"
        );
        return report.outcome();
    }
    print::emit(json, &report, print::geo_report)
}

/// `drill region`: confirm (it creates a server that costs money), run,
/// print the report (also when a step failed), then its outcome.
fn drill_region(ctx: &Context, req: geo::drill::DrillRequest, yes: bool, json: bool) -> Result<()> {
    let az = upload::azure_of(&ctx.cfg)?;
    let arm = valerix_backup::arm::Arm::connect(az)?;
    if !yes {
        ask(
            &[],
            "drill region creates a flexible server (billed until the drill deletes it)",
            "drill cancelled; nothing was sent",
        )?;
    }
    let report = geo::drill::drill(ctx, &arm, &req, &ctx.progress)?;
    print::emit(json, &report, print::drill_region)?;
    report.into_outcome()
}

/// `lifecycle-policy --apply`: show what merging our rules changes, ask
/// (unless `yes`), then PUT.
fn apply_lifecycle_policy(az: &valerix_backup::config::Azure, yes: bool) -> Result<()> {
    let plan = policy::plan_apply(az)?;
    for w in &plan.merge.warnings {
        tracing::warn!("{w}");
    }
    let account = &plan.account;
    if plan.merge.changes.is_empty() {
        println!("{account}: the lifecycle policy already has these rules; nothing to change");
        return Ok(());
    }
    println!("lifecycle policy of storage account {account}:");
    for c in &plan.merge.changes {
        println!("  {c}");
    }
    for k in &plan.merge.kept {
        println!("  keep rule {k} (not ours)");
    }
    if !yes {
        ask(
            &[],
            "lifecycle-policy --apply changes the storage account's policy",
            "lifecycle-policy --apply cancelled; nothing was sent",
        )?;
    }
    policy::apply(&plan)?;
    println!("applied to {}", plan.path);
    Ok(())
}

fn confirm_geo(plan: &geo::GeoRestorePlan, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let what = format!(
        "create server {} in {} from the geo-redundant backup of {}",
        plan.target_id, plan.location, plan.source_id
    );
    ask(
        std::slice::from_ref(&what),
        &format!("geo-restore would {what}"),
        "geo-restore cancelled; nothing was sent",
    )
}

/// Asks on the terminal whether to do each of `will`; without a terminal,
/// refuses (`what`: pass --yes).
fn ask(will: &[String], what: &str, cancelled: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Refused(format!(
            "{what}: pass --yes to confirm (stdin is not a terminal)"
        )));
    }
    let mut err = std::io::stderr();
    for w in will {
        let _ = writeln!(err, "  will {w}");
    }
    let _ = write!(err, "Proceed? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
        Ok(())
    } else {
        Err(Error::Refused(cancelled.into()))
    }
}

/// `verify [TIMESTAMP|latest] [TARGET...]`: the first word is a selector when
/// it looks like one.
fn split_selector(args: &[String]) -> Result<(Option<Stamp>, Vec<String>)> {
    match args.first().map(String::as_str) {
        Some("latest") => Ok((None, args[1..].to_vec())),
        Some(first) if first.starts_with(|c: char| c.is_ascii_digit()) => {
            Ok((Stamp::parse(first).map(Some)?, args[1..].to_vec()))
        }
        _ => Ok((None, args.to_vec())),
    }
}

fn confirm(plan: &restore::RestorePlan, yes: bool) -> Result<()> {
    let replaces = plan.items.iter().any(|i| i.replaces);
    if yes || !replaces {
        return Ok(());
    }
    let will: Vec<String> = plan.items.iter().map(|i| i.describe()).collect();
    ask(
        &will,
        "restore replaces live databases",
        "restore cancelled; nothing was changed",
    )
}

/// First SIGINT/SIGTERM asks the run to stop cleanly (temporary files and
/// databases removed); a second one ends the process at once.
fn cancel_on_signals() -> Arc<AtomicBool> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        let _ = flag::register_conditional_shutdown(sig, 130, Arc::clone(&cancel));
        let _ = flag::register(sig, Arc::clone(&cancel));
    }
    cancel
}

fn init_logging(cli: &Cli, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    };
    // The Azure SDK logs every failed response at INFO; our own error line
    // says what matters, so its lines show only with -v or RUST_LOG.
    let sdk_quiet = if cli.verbose == 0 {
        ",typespec_client_core=warn,azure_core=warn,azure_identity=warn,azure_storage_blob=warn"
    } else {
        ""
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default}{sdk_quiet}")));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// `failover`: preflight, confirm (a Forced promotion only with --yes),
/// promote and follow, then point the services at the promoted server.
/// Once the PATCH may have been sent, the run leaves a post-mortem record.
fn failover(ctx: &Context, cmd: Command, json: bool) -> Result<()> {
    let Command::Failover {
        server,
        replica,
        mode,
        option,
        yes,
        dry_run,
        no_wait,
        update_k8s,
        ..
    } = cmd
    else {
        unreachable!("called for failover only")
    };
    let az = upload::azure_of(&ctx.cfg)?;
    let arm = valerix_backup::arm::Arm::connect(az)?;
    let req = geo::FailoverRequest {
        server,
        replica,
        mode: mode.into(),
        option: option.into(),
    };
    let mut rec = report::Record::new(report::Kind::Failover, "");
    let plan = rec.timed("preflight", || geo::failover::plan(ctx, &arm, &req))?;
    if dry_run {
        return print::emit(json, &plan, print::failover_plan);
    }
    confirm_failover(&plan, yes)?;
    let done =
        geo::failover::execute(ctx, &arm, &plan, no_wait, &ctx.progress).and_then(|mut report| {
            if report.waited.resume.is_none() {
                let ns = update_k8s.as_deref();
                geo::failover::point_services(&mut report, &plan, ns, &arm.cfg.k8s_namespace)?;
            }
            Ok(report)
        });
    report::finish_run(ctx, rec, &done, |rec, r| {
        geo::failover::record(rec, &plan, r);
        r.outcome()
    });
    let report = done?;
    if let Some(resume) = &report.waited.resume {
        eprintln!(
            "valerix-backup: interrupted; the promotion goes on in Azure. Resume watching \
             with:\n  {resume}"
        );
        return report.outcome();
    }
    print::emit(json, &report, print::failover_report)
}

/// A Forced promotion may lose writes: never without --yes, even on a
/// terminal. A Planned one asks, as geo-restore does.
fn confirm_failover(plan: &geo::FailoverPlan, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if plan.option == geo::PromoteOption::Forced {
        return Err(Error::Refused(format!(
            "a Forced promotion of {} does not wait for the replica to catch up: the writes not \
             yet replicated (the replication lag) are lost; pass --yes to accept that; nothing \
             was sent",
            plan.replica.name
        )));
    }
    let what = format!(
        "promote {} ({:?}, {:?}) in place of {}",
        plan.replica.id, plan.mode, plan.option, plan.primary_id
    );
    ask(
        std::slice::from_ref(&what),
        &format!("failover would {what}"),
        "failover cancelled; nothing was sent",
    )
}
