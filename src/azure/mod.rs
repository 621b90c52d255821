//! What the blob client ([`crate::offsite`]) and the Resource Manager
//! client ([`crate::arm`]) share: the Entra ID credential, the retry
//! options, the translation of `azure_core` errors into the library's kinds,
//! and the redaction of secrets from any text that may hold a URL.

mod credential;
mod error;
mod redact;

pub use credential::credential;
pub use error::{az_error, innermost, kind_of_status, of_kind};
pub use redact::redact;

use azure_core::http::{ExponentialRetryOptions, RetryOptions};

use crate::config::Azure;

/// azure.max_retries and azure.retry_max_secs, for the blob requests and the
/// Entra ID token requests alike.
pub fn retry_options(az: &Azure) -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        max_retries: az.max_retries,
        max_total_elapsed: azure_core::time::Duration::seconds(az.retry_max_secs as i64),
        ..Default::default()
    })
}
