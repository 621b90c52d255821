//! The Entra ID credential of both Azure clients.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};

use crate::config::AzureAuth;
use crate::error::{Error, Result};

/// An Entra ID credential from the standard `AZURE_*` variables. Its token
/// requests retry as the blob requests do (`retry`: azure.max_retries and
/// azure.retry_max_secs), not the SDK's default of 8 retries over 80 s.
pub fn credential(
    auth: AzureAuth,
    retry: azure_core::http::RetryOptions,
) -> Result<Arc<dyn TokenCredential>> {
    use azure_identity::*;
    let client_options = azure_core::http::ClientOptions {
        retry,
        ..Default::default()
    };
    let failed = |e: azure_core::Error| {
        Error::Setup(format!(
            "cannot set up the {} credential: {e}",
            auth.as_str()
        ))
    };
    let env = |name: &str| {
        std::env::var(name).map_err(|_| {
            Error::Setup(format!(
                "{name} is not set (needed by auth = {})",
                auth.as_str()
            ))
        })
    };
    Ok(match auth {
        AzureAuth::ManagedIdentity => {
            let mut opts = ManagedIdentityCredentialOptions::default();
            if let Ok(id) = std::env::var("AZURE_CLIENT_ID") {
                opts.user_assigned_id = Some(UserAssignedId::ClientId(id));
            }
            ManagedIdentityCredential::new(Some(opts)).map_err(failed)?
        }
        AzureAuth::WorkloadIdentity => {
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options },
                ..Default::default()
            }))
            .map_err(failed)?
        }
        AzureAuth::ClientSecret => ClientSecretCredential::new(
            &env("AZURE_TENANT_ID")?,
            env("AZURE_CLIENT_ID")?,
            Secret::new(env("AZURE_CLIENT_SECRET")?),
            Some(ClientSecretCredentialOptions { client_options }),
        )
        .map_err(failed)?,
        AzureAuth::AzureCli => AzureCliCredential::new(None).map_err(failed)?,
        AzureAuth::Sas => unreachable!("SAS is not an Entra ID credential"),
    })
}
