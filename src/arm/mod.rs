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
pub mod resources;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions, Url,
};
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::azure::{
    az_error, credential, innermost, kind_of_status, of_kind, redact, retry_options,
};
use crate::config::{Azure, AzureAuth, ResourceManager};
use crate::error::{Error, IoContext, Result};

pub const LOCATIONS_API: &str = "2022-12-01";
pub const STORAGE_API: &str = "2023-05-01";
/// Microsoft.Storage blobServices and containers: the newest stable
/// api-version of the published spec (azure-rest-api-specs,
/// specification/storage/resource-manager/Microsoft.Storage/stable/2025-08-01).
pub const BLOB_API: &str = "2025-08-01";

/// Longest wait for the answer to the creating PUT. Resource Manager answers
/// a write within about a minute (else 504): past that, the answer is lost.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What a request that may have been carried out came to.
#[derive(Debug)]
pub enum Sent {
    Answered(Answer),
    /// Sent, but no answer came (reset connection, timeout, cut-off
    /// response): the service may or may not have carried it out.
    Lost(String),
}

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

    /// The error of a refused request: `{context}: {error_text}`, of the
    /// kind its status says (404 not found, 403 authentication, 429
    /// throttled, else offsite).
    pub fn refused(&self, context: &str) -> Error {
        of_kind(
            kind_of_status(self.status),
            format!("{context}: {}", self.error_text()),
        )
    }
}

pub struct Arm {
    rt: Runtime,
    /// With the SDK's retry policy: for reads, and writes safe to repeat.
    pipeline: Pipeline,
    /// Without retries: for the creating PUT, which must never be resent
    /// blindly.
    once: Pipeline,
    endpoint: String,
    /// The only origin the bearer token goes to.
    origin: url::Origin,
    pub cfg: ResourceManager,
    /// `[azure] max_retries`: how often a throttled (429) create is resent.
    pub max_retries: u32,
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
        let origin = Url::parse(&endpoint)
            .map_err(|e| Error::Setup(format!("azure.resource_manager.endpoint {endpoint}: {e}")))?
            .origin();
        // One policy (one token cache) for both pipelines.
        let policy: Arc<dyn azure_core::http::policies::Policy> = Arc::new(
            BearerTokenAuthorizationPolicy::new(cred, vec![cfg.scope.clone()]),
        );
        let pipeline_with = |retry| {
            Pipeline::new(
                Some("valerix-backup"),
                Some(env!("CARGO_PKG_VERSION")),
                ClientOptions {
                    retry,
                    ..Default::default()
                },
                Vec::new(),
                vec![policy.clone()],
                None,
            )
        };
        let pipeline = pipeline_with(retry_options(az));
        let once = pipeline_with(RetryOptions::none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ctx(|| "starting the async runtime".into())?;
        Ok(Arm {
            rt,
            pipeline,
            once,
            endpoint,
            origin,
            cfg,
            max_retries: az.max_retries,
        })
    }

    /// `url` parsed, if it is on the configured endpoint's origin (https,
    /// same host and port): the bearer token goes nowhere else.
    pub fn check_url(&self, url: &str) -> Result<Url> {
        let parsed = Url::parse(url)
            .map_err(|e| Error::Refused(format!("bad Resource Manager URL {url}: {e}")))?;
        if parsed.scheme() != "https" || parsed.origin() != self.origin {
            return Err(Error::Refused(format!(
                "refusing to send the Resource Manager token to {}: only the configured \
                 endpoint {} gets it",
                parsed.origin().ascii_serialization(),
                self.origin.ascii_serialization()
            )));
        }
        Ok(parsed)
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

    /// PUT without any retry, for a write that must not be repeated
    /// blindly. An error before the request could be sent (no token, no
    /// connection) is an `Err`; once sent, either the answer or `Lost`.
    pub fn put_once(&self, url: &str, body: &Value) -> Result<Sent> {
        self.send_once(Method::Put, url, body)
    }

    /// PATCH without any retry (a replica's promotion): as [`Arm::put_once`].
    pub fn patch_once(&self, url: &str, body: &Value) -> Result<Sent> {
        self.send_once(Method::Patch, url, body)
    }

    fn send_once(&self, method: Method, url: &str, body: &Value) -> Result<Sent> {
        let what = format!("{} {}", method_name(method), path_of(url));
        let sent = self.rt.block_on(async {
            let exchange = self.exchange(&self.once, method, url, Some(body));
            tokio::time::timeout(ANSWER_TIMEOUT, exchange).await
        });
        use azure_core::error::ErrorKind;
        match sent {
            Err(_) => Ok(Sent::Lost(format!(
                "no answer after {} s",
                ANSWER_TIMEOUT.as_secs()
            ))),
            Ok(Ok(a)) => Ok(Sent::Answered(unauthorized(a)?)),
            Ok(Err(Failure::Refused(e))) => Err(e),
            Ok(Err(Failure::Sdk(e)))
                if matches!(e.kind(), ErrorKind::Credential | ErrorKind::Connection) =>
            {
                Err(az_error(&what, e))
            }
            Ok(Err(Failure::Sdk(e))) => Ok(Sent::Lost(redact(&innermost(&e)).replace('\n', " "))),
        }
    }

    fn send(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Answer> {
        let what = format!("{} {}", method_name(method), path_of(url));
        let a = self
            .rt
            .block_on(self.exchange(&self.pipeline, method, url, body))
            .map_err(|f| match f {
                Failure::Refused(e) => e,
                Failure::Sdk(e) => az_error(&what, e),
            })?;
        unauthorized(a)
    }

    /// One request through `pipeline`, to the configured endpoint only.
    async fn exchange(
        &self,
        pipeline: &Pipeline,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> std::result::Result<Answer, Failure> {
        let parsed = self.check_url(url).map_err(Failure::Refused)?;
        let mut req = Request::new(parsed, method);
        req.insert_header("accept", "application/json");
        if let Some(b) = body {
            req.insert_header("content-type", "application/json");
            req.set_body(serde_json::to_vec(b).expect("JSON values serialize"));
        }
        let opts = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        let resp = pipeline
            .send(&Context::new(), &mut req, Some(opts))
            .await
            .map_err(Failure::Sdk)?;
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
    }
}

/// Why a request got no answer.
enum Failure {
    /// Not sent: the URL is not the configured endpoint's.
    Refused(Error),
    Sdk(azure_core::Error),
}

/// A 401 is never an answer a caller can act on: the token was refused
/// (wrong audience, expired, another tenant's). One line with the reason.
fn unauthorized(a: Answer) -> Result<Answer> {
    if a.status != 401 {
        return Ok(a);
    }
    let hint = if a
        .error_text()
        .contains("InvalidAuthenticationTokenAudience")
    {
        " (the token's audience comes from azure.resource_manager.audience, default \
         https://management.azure.com)"
    } else {
        ""
    };
    Err(Error::Authentication(format!(
        "Resource Manager refused the token: {}{hint}",
        a.error_text()
    )))
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Put => "PUT",
        Method::Patch => "PATCH",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The token scope of a section with `endpoint` and `audience`, as the
    /// config resolves it at load.
    fn scope(endpoint: &str, audience: Option<&str>) -> String {
        let text = format!(
            "subscription_id = \"s\"\nresource_group = \"rg\"\nendpoint = \"{endpoint}\"\n{}",
            audience.map_or(String::new(), |a| format!("audience = \"{a}\"\n"))
        );
        let mut rm: ResourceManager = toml::from_str(&text).unwrap();
        rm.resolve().unwrap();
        rm.scope
    }

    #[test]
    fn the_scope_is_the_clouds_audience_never_the_endpoint() {
        let public = "https://management.azure.com/.default";
        assert_eq!(scope("https://management.azure.com", None), public);
        assert_eq!(scope("https://127.0.0.1:8443", None), public);
        assert_eq!(scope("https://arm-proxy.corp.example/", None), public);
        assert_eq!(
            scope("https://management.chinacloudapi.cn/", None),
            "https://management.chinacloudapi.cn/.default"
        );
        assert_eq!(
            scope("https://Management.UsGovCloudApi.net", None),
            "https://management.usgovcloudapi.net/.default"
        );
        assert_eq!(
            scope(
                "https://management.local.azurestack.external",
                Some("https://management.azurestack.example/4f5b1c0e")
            ),
            "https://management.azurestack.example/4f5b1c0e/.default"
        );
        assert_eq!(
            scope(
                "https://127.0.0.1:1",
                Some("https://management.core.windows.net/")
            ),
            "https://management.core.windows.net/.default"
        );
    }
}
