//! Azure Resource Manager: a small JSON client on `azure_core`'s pipeline
//! (retry policy, bearer-token policy), Resource Manager's long-running
//! operations, and the few resources valerix-backup manages: PostgreSQL
//! flexible servers (geo-restore, preflight), subscription locations (paired
//! regions) and the storage account's lifecycle management policy.
//!
//! No management crate is needed for so few calls; the URLs and bodies are
//! those of the published REST contract (Microsoft.DBforPostgreSQL
//! 2025-08-01, Microsoft.Storage 2023-05-01).

pub mod lro;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, Url,
};
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::config::{Azure, AzureAuth, ResourceManager};
use crate::error::{Error, IoContext, Result};
use crate::offsite::auth::credential;
use crate::offsite::redact;
use crate::offsite::store::{az_error, retry_options};

pub const LOCATIONS_API: &str = "2022-12-01";
pub const STORAGE_API: &str = "2023-05-01";

/// One answer of Resource Manager, whatever its status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub async_operation: Option<String>,
    pub location: Option<String>,
    /// Seconds, from `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `HTTP 409 ServerAlreadyExists: <message>`: the error body Resource
    /// Manager sends, on one line.
    pub fn error_text(&self) -> String {
        let e = self.body.get("error").unwrap_or(&self.body);
        let code = e.get("code").and_then(Value::as_str).unwrap_or("");
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
        redact(&format!("HTTP {} {code}: {msg}", self.status).replace('\n', " "))
    }
}

pub struct Arm {
    rt: Runtime,
    pipeline: Pipeline,
    endpoint: String,
    pub cfg: ResourceManager,
}

impl Arm {
    pub fn connect(az: &Azure) -> Result<Arm> {
        let cfg = az.resource_manager.clone().ok_or_else(|| {
            Error::Setup(
                "no [azure.resource_manager] section: geo-restore, azure-check and \
                 lifecycle-policy --apply need subscription_id and resource_group"
                    .into(),
            )
        })?;
        let auth = cfg.auth.unwrap_or_else(auth_from_env);
        let cred: Arc<dyn TokenCredential> = credential(auth, retry_options(az))?;
        let endpoint = cfg.endpoint.trim_end_matches('/').to_string();
        let scope = format!("{endpoint}/.default");
        let policy = Arc::new(BearerTokenAuthorizationPolicy::new(cred, vec![scope]));
        let options = ClientOptions {
            retry: retry_options(az),
            ..Default::default()
        };
        let pipeline = Pipeline::new(
            Some("valerix-backup"),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            vec![policy],
            None,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ctx(|| "starting the async runtime".into())?;
        Ok(Arm {
            rt,
            pipeline,
            endpoint,
            cfg,
        })
    }

    /// `{endpoint}{path}?api-version={api}`.
    pub fn url(&self, path: &str, api: &str) -> String {
        format!("{}{path}?api-version={api}", self.endpoint)
    }

    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.cfg.subscription_id)
    }

    pub fn get(&self, url: &str) -> Result<Answer> {
        self.send(Method::Get, url, None)
    }

    pub fn put(&self, url: &str, body: &Value) -> Result<Answer> {
        self.send(Method::Put, url, Some(body))
    }

    fn send(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Answer> {
        let parsed = Url::parse(url)
            .map_err(|e| Error::Check(format!("bad Resource Manager URL {url}: {e}")))?;
        let mut req = Request::new(parsed, method);
        req.insert_header("accept", "application/json");
        if let Some(b) = body {
            req.insert_header("content-type", "application/json");
            req.set_body(serde_json::to_vec(b).expect("JSON values serialize"));
        }
        let what = format!("{} {}", method_name(method), path_of(url));
        self.rt.block_on(async {
            let opts = PipelineSendOptions {
                skip_checks: true,
                ..Default::default()
            };
            let resp = self
                .pipeline
                .send(&Context::new(), &mut req, Some(opts))
                .await
                .map_err(|e| az_error(&what, e))?;
            let status = u16::from(resp.status());
            let header = |name: &'static str| {
                resp.headers()
                    .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
                    .map(str::to_string)
            };
            let async_operation = header("azure-asyncoperation");
            let location = header("location");
            let retry_after = header("retry-after").and_then(|s| s.trim().parse().ok());
            let bytes = resp.into_body();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            Ok(Answer {
                status,
                body,
                async_operation,
                location,
                retry_after,
            })
        })
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        _ => "GET",
    }
}

/// The path of a URL, for messages (no host, no query).
fn path_of(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_string(), |u| u.path().to_string())
}

/// `auth` absent: the credential the `AZURE_*` variables point at, as the
/// Azure CLI and SDKs choose (workload identity in AKS, a client secret in
/// CI, managed identity on a VM, else the developer's `az login`).
pub fn auth_from_env() -> AzureAuth {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    if set("AZURE_FEDERATED_TOKEN_FILE") {
        AzureAuth::WorkloadIdentity
    } else if set("AZURE_CLIENT_SECRET") {
        AzureAuth::ClientSecret
    } else if set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") {
        AzureAuth::ManagedIdentity
    } else {
        AzureAuth::AzureCli
    }
}
