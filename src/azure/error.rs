//! `azure_core` errors as the library's: one redacted line, of a kind the
//! caller can branch on.

use super::redact;
use crate::error::{Error, Kind};

/// The service's error codes that say more than their HTTP status: the kind
/// of failure each is and what to tell the user.
const CODES: &[(&str, Kind, &str)] = &[
    ("AuthenticationFailed", Kind::Authentication, AUTH_HINT),
    ("AuthorizationFailure", Kind::Authentication, AUTH_HINT),
    (
        "AuthorizationPermissionMismatch",
        Kind::Authentication,
        "the credential lacks a permission",
    ),
    (
        "ContainerNotFound",
        Kind::NotFound,
        "the container does not exist",
    ),
    (
        "BlobAlreadyExists",
        Kind::Offsite,
        "a blob of that name exists",
    ),
    (
        "ConditionNotMet",
        Kind::Offsite,
        "a blob of that name exists",
    ),
    (
        "Md5Mismatch",
        Kind::Offsite,
        "the data was damaged in transit",
    ),
    (
        "InvalidMd5",
        Kind::Offsite,
        "the data was damaged in transit",
    ),
    (
        "Crc64Mismatch",
        Kind::Offsite,
        "the data was damaged in transit",
    ),
    (
        "BlobImmutableDueToPolicy",
        Kind::Immutable,
        "the copy is under an immutability policy until its retention ends",
    ),
    (
        "BlobImmutableDueToLegalHold",
        Kind::Immutable,
        "the copy is under a legal hold: `valerix-backup hold clear` lifts it",
    ),
];

const AUTH_HINT: &str = Kind::Authentication.info().hint;

/// The kind of a refused request without a known code, by its status.
pub fn kind_of_status(status: u16) -> Kind {
    match status {
        401 | 403 => Kind::Authentication,
        404 => Kind::NotFound,
        408 | 504 => Kind::Timeout,
        429 => Kind::Throttled,
        _ => Kind::Offsite,
    }
}

/// One line naming the cause: the HTTP status and the service's error code
/// for a refused request, the innermost cause for a transport failure.
/// Secrets are redacted. The error's kind says which failure it is
/// (authentication, not found, throttled, timeout, or any other).
pub fn az_error(context: &str, e: azure_core::Error) -> Error {
    use azure_core::error::ErrorKind;
    let (kind, detail) = match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let status = u16::from(*status);
            let code = error_code.clone().unwrap_or_default();
            let (kind, hint) = CODES
                .iter()
                .find(|(c, ..)| *c == code)
                .map_or((kind_of_status(status), String::new()), |(_, k, h)| {
                    (*k, format!(" ({h})"))
                });
            (kind, format!("HTTP {status} {code}{hint}"))
        }
        ErrorKind::Io | ErrorKind::Connection => {
            let cause = innermost(&e);
            let detail = format!(
                "cannot reach the storage service: {cause}{}",
                tls_hint(&cause)
            );
            (Kind::Offsite, detail)
        }
        ErrorKind::Credential => (Kind::Authentication, login_failure(&e)),
        _ => (Kind::Offsite, innermost(&e)),
    };
    of_kind(
        kind,
        redact(&format!("{context}: {detail}")).replace('\n', " "),
    )
}

/// The library's error of an Azure failure of `kind`.
pub fn of_kind(kind: Kind, msg: String) -> Error {
    match kind {
        Kind::NotFound => Error::NotFound(msg),
        Kind::Authentication => Error::Authentication(msg),
        Kind::Throttled => Error::Throttled(msg),
        Kind::Timeout => Error::Timeout(msg),
        Kind::Immutable => Error::Immutable(msg),
        _ => Error::Offsite(msg),
    }
}

/// The login failed. azure_identity's own error, the innermost of this kind
/// (the pipeline wraps it: "non-transport error occurred which will not be
/// retried"), reads "ClientSecretCredential authentication failed. <Entra's
/// description or the transport error>\nTo troubleshoot, visit <link>": its
/// first line names the credential, the innermost cause says what went wrong.
fn login_failure(e: &azure_core::Error) -> String {
    use azure_core::error::ErrorKind;
    let mut login = e.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(ae) = x.downcast_ref::<azure_core::Error>()
            && matches!(ae.kind(), ErrorKind::Credential)
        {
            login = ae.to_string();
        }
        cur = x.source();
    }
    let first = login.lines().next().unwrap_or_default().trim();
    let cause = innermost(e);
    let head = if first.contains(&cause) {
        first.to_string()
    } else {
        let name = first.split_once(". ").map_or(first, |(h, _)| h);
        format!("{}: {cause}", name.trim_end_matches('.'))
    };
    head + tls_hint(&cause)
}

/// rustls' "invalid peer certificate: UnknownIssuer": say where the trusted
/// CAs come from.
fn tls_hint(cause: &str) -> &'static str {
    if cause.contains("UnknownIssuer") {
        " (the server's TLS certificate is not trusted: its CA must be in the \
         system's trust store, or in the PEM file SSL_CERT_FILE names)"
    } else {
        ""
    }
}

/// The innermost cause of an error chain: what actually went wrong.
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::error::ErrorKind;
    use azure_core::http::StatusCode;

    fn refused(status: u16, code: Option<&str>) -> Error {
        let kind = ErrorKind::HttpResponse {
            status: StatusCode::from(status),
            error_code: code.map(str::to_string),
            raw_response: None,
        };
        az_error(
            "listing x",
            azure_core::Error::with_message(kind, "refused"),
        )
    }

    #[test]
    fn azure_failures_have_their_kinds_and_hints() {
        let e = refused(403, Some("AuthenticationFailed"));
        assert_eq!(e.kind(), Kind::Authentication);
        assert_eq!(
            e.to_string(),
            "listing x: HTTP 403 AuthenticationFailed (the credential was refused: check the \
             key, SAS or its expiry)"
        );
        assert_eq!(
            refused(404, Some("ContainerNotFound")).kind(),
            Kind::NotFound
        );
        assert_eq!(refused(404, None).kind(), Kind::NotFound);
        assert_eq!(
            refused(429, Some("TooManyRequests")).kind(),
            Kind::Throttled
        );
        assert_eq!(refused(503, Some("ServerBusy")).kind(), Kind::Offsite);
        let e = refused(409, Some("BlobAlreadyExists"));
        assert_eq!(
            e.to_string(),
            "listing x: HTTP 409 BlobAlreadyExists (a blob of that name exists)"
        );
        let e = refused(409, Some("BlobImmutableDueToLegalHold"));
        assert_eq!(e.kind(), Kind::Immutable);
        assert!(e.to_string().contains("legal hold"), "{e}");
        let down = azure_core::Error::with_message(ErrorKind::Connection, "refused?sig=secret");
        let e = az_error("GET c", down);
        assert_eq!(e.kind(), Kind::Offsite);
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
