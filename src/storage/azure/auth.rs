//! How the blob client logs in: a connection string (an account key, from
//! which a short-lived account SAS is signed locally, as the 1.x SDK has no
//! shared-key auth; or a SAS it carries), a SAS token, or an Entra ID
//! credential from `azure_identity`.
//!
//! Secrets stay in memory: they are read from environment variables, never
//! from the command line, and every URL we print goes through
//! [`crate::azure::redact`].

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{Duration, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::azure::{credential, redact, retry_options};
use crate::config::{Azure, AzureAuth};
use crate::error::{Error, Result};

/// Signed version of the SAS we sign; Azurite 3.37 and Azure accept it.
const SAS_VERSION: &str = "2025-01-05";

/// Where the container is and how requests are authorized.
pub struct Access {
    /// Blob service endpoint without a query, e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    /// A SAS query string (without `?`) appended to every URL, or empty.
    pub sas: String,
    pub credential: Option<Arc<dyn TokenCredential>>,
    /// How we logged in, for messages (`account key (signed SAS)`).
    pub method: String,
}

pub fn access(az: &Azure) -> Result<Access> {
    match (&az.account_url, az.auth) {
        (Some(url), Some(auth)) => entra_or_sas(az, url, auth),
        _ => from_connection_string(az),
    }
}

fn config_error(msg: String) -> Error {
    Error::Setup(msg)
}

fn from_connection_string(az: &Azure) -> Result<Access> {
    let var = &az.connection_string_env;
    let text = std::env::var(var).map_err(|_| {
        config_error(format!(
            "environment variable {var} (azure.connection_string_env) is not set; \
             it must hold the storage account's connection string"
        ))
    })?;
    let cs = ConnectionString::parse(&text)
        .map_err(|why| config_error(format!("the connection string in {var} is invalid: {why}")))?;
    let endpoint = cs.blob_endpoint()?;
    let transport = sas_transport(&endpoint, &format!("the BlobEndpoint of {var}"))?;
    if let Some(sas) = cs.get("SharedAccessSignature") {
        return Ok(Access {
            endpoint,
            sas: sas.trim_start_matches('?').to_string(),
            credential: None,
            method: "connection string (SAS)".into(),
        });
    }
    let (Some(account), Some(key)) = (cs.get("AccountName"), cs.get("AccountKey")) else {
        return Err(config_error(format!(
            "the connection string in {var} has neither AccountName+AccountKey nor SharedAccessSignature"
        )));
    };
    Ok(Access {
        endpoint,
        sas: sign_account_sas(account, key, Utc::now(), transport)?,
        credential: None,
        method: "account key (locally signed SAS)".into(),
    })
}

fn entra_or_sas(az: &Azure, url: &str, auth: AzureAuth) -> Result<Access> {
    let endpoint = url.trim_end_matches('/').to_string();
    let method = auth.as_str().to_string();
    if auth == AzureAuth::Sas {
        sas_transport(&endpoint, "azure.account_url")?;
        let var = &az.sas_env;
        let sas = std::env::var(var).map_err(|_| {
            config_error(format!(
                "environment variable {var} (azure.sas_env) is not set; it must hold a SAS token"
            ))
        })?;
        return Ok(Access {
            endpoint,
            sas: sas.trim_start_matches('?').to_string(),
            credential: None,
            method: "SAS token".into(),
        });
    }
    if !endpoint.starts_with("https://") {
        return Err(config_error(format!(
            "azure.account_url must be https with auth = {}",
            auth.as_str()
        )));
    }
    Ok(Access {
        endpoint,
        sas: String::new(),
        credential: Some(credential(auth, retry_options(az))?),
        method,
    })
}

/// `Key=Value;Key=Value` as the Azure portal prints it.
struct ConnectionString(HashMap<String, String>);

impl ConnectionString {
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut map = HashMap::new();
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| "expected Key=Value pairs separated by ';'".to_string())?;
            map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if map.is_empty() {
            return Err("it is empty".into());
        }
        Ok(ConnectionString(map))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(&key.to_ascii_lowercase())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn blob_endpoint(&self) -> Result<String> {
        if let Some(e) = self.get("BlobEndpoint") {
            return Ok(e.trim_end_matches('/').to_string());
        }
        let account = self.get("AccountName").ok_or_else(|| {
            config_error("the connection string has no AccountName or BlobEndpoint".into())
        })?;
        let proto = self.get("DefaultEndpointsProtocol").unwrap_or("https");
        let suffix = self.get("EndpointSuffix").unwrap_or("core.windows.net");
        Ok(format!("{proto}://{account}.blob.{suffix}"))
    }
}

/// Which protocols a SAS may travel over: `Https` for every real endpoint;
/// `HttpsOrHttp` only for plain http to a loopback address (Azurite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasTransport {
    Https,
    HttpsOrHttp,
}

impl SasTransport {
    /// The signed protocol field (`spr`).
    fn spr(self) -> &'static str {
        match self {
            SasTransport::Https => "https",
            SasTransport::HttpsOrHttp => "https,http",
        }
    }
}

/// A SAS is a bearer secret: it may go only over https, or over plain http
/// to this machine (Azurite). `what` names the setting the endpoint came from.
pub fn sas_transport(endpoint: &str, what: &str) -> Result<SasTransport> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| config_error(redact(&format!("{what} is not a URL ({endpoint}): {e}"))))?;
    match url.scheme() {
        "https" => Ok(SasTransport::Https),
        "http" if is_loopback(&url) => Ok(SasTransport::HttpsOrHttp),
        scheme => Err(config_error(redact(&format!(
            "{what} is {scheme}://{}: a SAS (also the one signed from an account key) is \
             sent only over https (plain http only to a loopback address, such as Azurite \
             on 127.0.0.1)",
            url.host_str().unwrap_or("")
        )))),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An account SAS for the blob service (containers and objects), valid from
/// 15 minutes ago (clock skew) for 24 hours: longer than any one command;
/// over https only unless `transport` allows Azurite's plain http.
pub fn sign_account_sas(
    account: &str,
    key_b64: &str,
    now: chrono::DateTime<Utc>,
    transport: SasTransport,
) -> Result<String> {
    let key = B64.decode(key_b64.trim()).map_err(|_| {
        config_error("the connection string's AccountKey is not valid base64".into())
    })?;
    let st = (now - Duration::minutes(15)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let se = (now + Duration::hours(24)).to_rfc3339_opts(SecondsFormat::Secs, true);
    // `i`: set immutability policies and legal holds (azure.immutable,
    // `hold`); the rest as before.
    let (sp, ss, srt, spr) = ("racwdlti", "b", "sco", transport.spr());
    // Version 2020-12-06 and later: account, sp, ss, srt, st, se, sip, spr,
    // sv, ses, each followed by a newline.
    let to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| config_error("the AccountKey cannot key an HMAC".into()))?;
    mac.update(to_sign.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Ok(format!(
        "sv={SAS_VERSION}&ss={ss}&srt={srt}&sp={sp}&st={}&se={}&spr={}&sig={}",
        enc(&st),
        enc(&se),
        enc(spr),
        enc(&sig)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_azurites_connection_string() {
        let cs = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        )
        .unwrap();
        assert_eq!(
            cs.blob_endpoint().unwrap(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        let cs = ConnectionString::parse("AccountName=vx;AccountKey=a2V5").unwrap();
        assert_eq!(
            cs.blob_endpoint().unwrap(),
            "https://vx.blob.core.windows.net"
        );
        assert!(ConnectionString::parse("nonsense").is_err());
    }

    #[test]
    fn signs_a_stable_sas() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let sign = |t| sign_account_sas("devstoreaccount1", "a2V5", now, t).unwrap();
        let sas = sign(SasTransport::Https);
        assert!(
            sas.starts_with("sv=2025-01-05&ss=b&srt=sco&sp=racwdlti&st=2026-11-25T01%3A45%3A00Z")
        );
        assert!(sas.contains("&spr=https&sig="), "{sas}");
        assert!(sas.contains("&sig="));
        assert_eq!(sas, sign(SasTransport::Https));
        assert!(sign(SasTransport::HttpsOrHttp).contains("&spr=https%2Chttp&"));
        assert!(sign_account_sas("a", "not base64!", now, SasTransport::Https).is_err());
    }

    #[test]
    fn a_sas_goes_over_http_only_to_loopback() {
        let t = |e: &str| sas_transport(e, "x");
        assert_eq!(
            t("https://vx.blob.core.windows.net").unwrap(),
            SasTransport::Https
        );
        assert_eq!(t("https://127.0.0.1:1/a").unwrap(), SasTransport::Https);
        for local in [
            "http://127.0.0.1:10000/a",
            "http://127.9.0.1",
            "http://[::1]:1",
            "http://LOCALHOST:1",
        ] {
            assert_eq!(t(local).unwrap(), SasTransport::HttpsOrHttp, "{local}");
        }
        for remote in [
            "http://vx.blob.core.windows.net",
            "http://10.0.0.5:10000/a",
            "http://azurite:10000",
            "ftp://127.0.0.1",
        ] {
            let e = t(remote).unwrap_err().to_string();
            assert!(e.contains("only over https"), "{remote}: {e}");
        }
    }
}
