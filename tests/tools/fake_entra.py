"""A stand-in for Microsoft Entra ID's token endpoint, for the end-to-end test
of valerix-backup's `auth = "client-secret"` path (tests/entra.rs): the real
azure_identity::ClientSecretCredential, pointed here by AZURE_AUTHORITY_HOST,
asks for a token, and the real Azurite (over HTTPS, --oauth basic) takes it.

Only the one request ClientSecretCredential makes is served:

  POST /{tenant}/oauth2/v2.0/token
  Content-Type: application/x-www-form-urlencoded
  client_id=..&client_secret=..&grant_type=client_credentials&scope=..

It is checked as Entra ID would: the tenant, grant_type=client_credentials,
client_id, client_secret, and scope https://storage.azure.com/.default. The
answer is Entra's JSON: 200 with a Bearer access token, or Entra's error
body (error, error_description starting with the AADSTS code, error_codes,
timestamp, trace_id, correlation_id, error_uri) with its status, e.g. 401
invalid_client / AADSTS7000215 for a wrong secret.

The access token is an unsigned JWT (alg "none") with the claims of a v1.0
token Entra issues for Azure Storage: aud https://storage.azure.com, iss
https://sts.windows.net/{tenant}/, iat/nbf/exp, tid, appid, oid, sub.
Azurite's basic OAuth checks those and not the signature.

Python standard library only (http.server + ssl); TLS with the certificate
and key scripts/test-ca.sh makes.

  fake_entra.py --cert SERVER.pem --key SERVER.key --tenant T --client-id C
                [--port P] [--log FILE] [--token-lifetime SECS]

The client secret is read from $FAKE_ENTRA_CLIENT_SECRET (not the command
line). Port 0 (the default) takes a free one. Prints one line
`listening on PORT` on stdout once it accepts connections, then serves until
SIGTERM or SIGINT. With --log, each request is appended to FILE as one JSON
line: method, path (the full request target, query included), headers, body
(the raw form), form (parsed), status, error (the AADSTS code, if refused),
so a test can check where the secret travelled; a connection that failed
before a request (a client that refused the certificate) is one line with
event "connection failed" and the error.
"""

import argparse
import base64
import datetime
import http.server
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_AUDIENCE = "https://storage.azure.com"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_jwt(claims):
    header = {"typ": "JWT", "alg": "none"}
    return "{}.{}.".format(
        b64url(json.dumps(header, separators=(",", ":")).encode()),
        b64url(json.dumps(claims, separators=(",", ":")).encode()),
    )


def access_token(tenant, client_id, lifetime):
    now = int(time.time())
    # As Entra does: valid from five minutes ago (clock skew).
    return unsigned_jwt(
        {
            "aud": STORAGE_AUDIENCE,
            "iss": "https://sts.windows.net/{}/".format(tenant),
            "iat": now - 300,
            "nbf": now - 300,
            "exp": now + lifetime,
            "aio": "fake",
            "appid": client_id,
            "appidacr": "1",
            "idp": "https://sts.windows.net/{}/".format(tenant),
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, "oid:" + client_id)),
            "rh": "fake",
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, "oid:" + client_id)),
            "tid": tenant,
            "uti": b64url(os.urandom(16)),
            "ver": "1.0",
        }
    )


def entra_error(status, error, code, text):
    """Entra ID's error body for `status`: `error` (OAuth 2 code), AADSTS `code`."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return status, {
        "error": error,
        "error_description": "AADSTS{}: {} Trace ID: {} Correlation ID: {} Timestamp: {}".format(
            code, text, trace, corr, stamp
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": "https://login.microsoftonline.com/error?code={}".format(code),
    }


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "fake-entra/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def do_GET(self):
        self.answer_and_log(b"", *entra_error(405, "invalid_request", 900561, "The endpoint only accepts POST requests."))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.answer_and_log(body, *self.token(body))

    def token(self, body):
        cfg = self.server.cfg
        path = urllib.parse.urlsplit(self.path).path
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            return 404, {"error": "not_found", "error_description": "no such endpoint: " + path}
        if parts[0] != cfg.tenant:
            return entra_error(
                400,
                "invalid_request",
                90002,
                "Tenant '{}' not found. Check to make sure you have the correct tenant ID.".format(parts[0]),
            )
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            form = {}
        one = lambda k: (form.get(k) or [None])[0]  # noqa: E731
        if one("grant_type") != "client_credentials":
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type '{}'.".format(one("grant_type")),
            )
        if one("client_id") != cfg.client_id:
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                "Application with identifier '{}' was not found in the directory '{}'.".format(
                    one("client_id"), cfg.tenant
                ),
            )
        if one("client_secret") is None:
            return entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if one("client_secret") != cfg.secret:
            return entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                "secret value, not the client secret ID, for a secret added to app '{}'.".format(cfg.client_id),
            )
        if one("scope") != STORAGE_SCOPE:
            return entra_error(
                400,
                "invalid_scope",
                1002012,
                "The provided value for scope {} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).".format(
                    one("scope")
                ),
            )
        return 200, {
            "token_type": "Bearer",
            "expires_in": cfg.lifetime,
            "ext_expires_in": cfg.lifetime,
            "access_token": access_token(cfg.tenant, cfg.client_id, cfg.lifetime),
        }

    def answer_and_log(self, body, status, answer):
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store, no-cache")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        cfg = self.server.cfg
        if cfg.log:
            text = body.decode("utf-8", "replace")
            entry = {
                "time": time.time(),
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": text,
                "form": {k: v for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()},
                "status": status,
                "error": (answer.get("error_codes") or [None])[0] if status != 200 else None,
            }
            with self.server.log_lock, open(cfg.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that gave up during the TLS handshake (it does not trust
        # the CA) is logged as such, not as a traceback.
        err = sys.exc_info()[1]
        if self.cfg.log:
            entry = {"time": time.time(), "event": "connection failed", "error": repr(err)}
            with self.log_lock, open(self.cfg.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")


def serve_tls(httpd, cert, key):
    """Serves `httpd` over TLS until SIGTERM or SIGINT, after printing
    `listening on PORT` (fake_arm.py serves the same way)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    # Handshakes happen in the handler threads (a client that never finishes
    # one cannot stall the others).
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("listening on {}".format(httpd.server_address[1]), flush=True)
    httpd.serve_forever()
    httpd.server_close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--token-lifetime", type=int, default=3600)
    args = ap.parse_args()
    secret = os.environ.get("FAKE_ENTRA_CLIENT_SECRET")
    if not secret:
        sys.exit("fake_entra.py: FAKE_ENTRA_CLIENT_SECRET is not set")

    class Cfg:
        tenant = args.tenant
        client_id = args.client_id
        lifetime = args.token_lifetime
        log = args.log

    Cfg.secret = secret

    httpd = Server(("127.0.0.1", args.port), Handler)
    httpd.cfg = Cfg
    httpd.log_lock = threading.Lock()
    serve_tls(httpd, args.cert, args.key)


if __name__ == "__main__":
    main()
