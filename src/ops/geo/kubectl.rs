//! After a geo-restore: point the services at the new server
//! (`kubectl set env`), or only say how to.

use tracing::info;

use super::GeoRestoreReport;
use crate::error::{Error, Result};

/// The last step of a geo-restore that reached a Ready server: fills the
/// report's `kubectl` commands (one per database the server held) and, with
/// `namespace` (`--update-k8s`), runs them; without, the configured
/// namespace is used and the commands are only shown.
pub fn point_services(
    report: &mut GeoRestoreReport,
    databases: &[String],
    namespace: Option<&str>,
    default_namespace: &str,
) -> Result<()> {
    let Some(fqdn) = report.ready_fqdn().map(str::to_string) else {
        return Ok(());
    };
    (report.k8s_commands, report.k8s_applied) =
        repoint(databases, &fqdn, namespace, default_namespace)?;
    Ok(())
}

/// The `kubectl` commands that point the services at `fqdn`, run when
/// `namespace` is given (else shown, with the configured namespace), and
/// whether they ran. Shared by `geo-restore` and `failover`.
pub fn repoint(
    databases: &[String],
    fqdn: &str,
    namespace: Option<&str>,
    default_namespace: &str,
) -> Result<(Vec<Vec<String>>, bool)> {
    let commands = k8s_commands(databases, fqdn, namespace.unwrap_or(default_namespace));
    if namespace.is_some() {
        apply_k8s(&commands)?;
    }
    Ok((commands, namespace.is_some()))
}

/// `kubectl set env deployment/<db>-service DB_HOST=<fqdn> -n <namespace>`,
/// one per database the server held (the seed's runbook).
pub fn k8s_commands(databases: &[String], fqdn: &str, namespace: &str) -> Vec<Vec<String>> {
    databases
        .iter()
        .map(|db| {
            vec![
                "kubectl".into(),
                "set".into(),
                "env".into(),
                format!("deployment/{db}-service"),
                format!("DB_HOST={fqdn}"),
                "-n".into(),
                namespace.into(),
            ]
        })
        .collect()
}

/// Runs the commands; the first failure stops and is named.
pub fn apply_k8s(commands: &[Vec<String>]) -> Result<()> {
    for c in commands {
        info!("running {}", c.join(" "));
        let out = std::process::Command::new(&c[0])
            .args(&c[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", c[0]), e))?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: c.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', " "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_per_database() {
        let cmds = k8s_commands(&["order".into()], "h.example", "valerix");
        assert_eq!(
            cmds[0].join(" "),
            "kubectl set env deployment/order-service DB_HOST=h.example -n valerix"
        );
    }

    #[test]
    fn nothing_to_point_at_before_the_server_is_ready() {
        let mut r = GeoRestoreReport {
            fqdn: Some("h.example".into()),
            state: Some("Provisioning".into()),
            ..Default::default()
        };
        point_services(&mut r, &["order".into()], None, "valerix").unwrap();
        assert!(r.k8s_commands.is_empty());
        r.state = Some("Ready".into());
        point_services(&mut r, &["order".into()], None, "valerix").unwrap();
        assert_eq!(r.k8s_commands.len(), 1);
        assert!(!r.k8s_applied);
    }
}
