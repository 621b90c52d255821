"""A WORM proxy in front of Azurite: implements what Azurite stubs
(Azure/Azurite#2648: its Set Blob Immutability Policy, Delete Blob
Immutability Policy and Set Blob Legal Hold handlers throw
APINotImplemented, and it ignores the policy headers of Put Blob and Put
Block List), after Azure's published contract, and forwards everything else
as it is. Python standard library only, plain HTTP (Azurite is HTTP).

  worm_proxy.py --upstream PORT [--port P] [--log FILE] [--no-version-level-worm]

Prints `listening on PORT` once it accepts connections; serves until SIGTERM.

Authentication: every request is forwarded with its method, path, query,
headers and body untouched, so Azurite checks the SharedKey signature or
the SAS exactly as it would; the proxy never signs anything. The operations
Azurite stubs are forwarded too: with SharedKey, Azurite answers 501
APINotImplemented only after the signature passed, and then the proxy
carries them out. Azurite cannot judge a SAS for them (its account-SAS
table has no entry for them: a 500), so for a SAS the proxy sends a Get
Blob Properties with the same SAS query (the signature covers the SAS
fields, not the operation) and goes on only when Azurite accepts it; the
SAS must also grant `i`, "Set Immutability Policy", which the contract
requires for these operations ("anyone with a Shared Access Signature that
has permission to immutability policy, the `i` SAS permission"), and which
the proxy also requires of a Put Blob / Put Block List carrying a policy or
a hold: 403 AuthorizationPermissionMismatch otherwise. A refusal by the
proxy (409 below) is answered without forwarding, since it changes
nothing; Azure would check the credential first.

Contract followed (cited):
- Set Blob Immutability Policy (PUT ?comp=immutabilityPolicies) and its
  DELETE, https://learn.microsoft.com/rest/api/storageservices/
  set-blob-immutability-policy: x-ms-immutability-policy-until-date is
  required, RFC 1123, "Past times are not valid" (400 InvalidHeaderValue);
  mode Unlocked (default) or Locked; "When immutability policy in unlocked
  mode, user can update the retention until date. When immutability policy
  in locked mode, user can only extend the retention until date. ... mode
  can be set from unlocked to locked, but not the reverse"; only an unlocked
  policy can be deleted; "For blob level immutability policy,
  PutBlockList/PutBlob/CopyBlob operations are allowed, because these
  operations will generate a new version."
- Set Blob Legal Hold (PUT ?comp=legalhold, x-ms-legal-hold: true|false).
- Put Blob / Put Block List accept x-ms-immutability-policy-until-date,
  x-ms-immutability-policy-mode and x-ms-legal-hold (version 2020-06-12+).
- Get Blob Properties / Get Blob return x-ms-immutability-policy-until-date,
  x-ms-immutability-policy-mode (lower case: unlocked, locked) and
  x-ms-legal-hold; List Blobs with include=immutabilitypolicy,legalhold
  returns ImmutabilityPolicyUntilDate, ImmutabilityPolicyMode, LegalHold in
  each blob's Properties; include=versions adds VersionId and
  IsCurrentVersion, and the previous versions.
- Blob service error codes (https://learn.microsoft.com/rest/api/
  storageservices/blob-service-error-codes): 409 BlobImmutableDueToPolicy
  "This operation is not permitted as the blob is immutable due to a
  policy."; 409 BlobImmutableDueToLegalHold "This operation is not permitted
  as the blob is immutable due to one or more legal holds.". Refused on a
  protected version: Delete Blob, Set Blob Metadata; on a version whose
  policy has expired, still Set Blob Metadata ("Version-level WORM policies
  for immutable blob data", Scenarios: prohibited operations "Delete Blob,
  Set Blob Metadata, and Put Page"; expired: "Set Blob Metadata and Put
  Page"; "Blob versions are always immutable for content").
- What stays allowed on an immutable blob (immutable-storage-overview:
  "objects can be created and read, but not modified or deleted"; "All blob
  access tiers support immutable storage. You can change the access tier of
  a blob with the Set Blob Tier operation"; index tags are not blob data, and
  Set Blob Tags is allowed): reads, Set Blob Tags, Set Blob Tier pass through.
  An overwrite (Put Blob / Put Block List onto an existing name) is allowed
  by the contract above: it makes a new current version and keeps the
  protected one, still protected, as a previous version.
- An expired policy no longer protects: the version can be deleted
  ("After the retention interval has expired, blobs can be deleted").

Not in the published error-code list, so chosen here and named in the docs
(the program never depends on them): a policy or hold on a container without
version-level immutability (--no-version-level-worm) is refused with 409
ImmutableStorageWithVersioningNotEnabled; shortening, unlocking or deleting a
Locked policy with 409 ImmutabilityPolicyLocked.

Versioning, emulated as far as the audit needs: every blob written through
the proxy has a version id (x-ms-version-id); deleting or overwriting it
keeps it as a previous version (name, version id, size, creation time, its
policy and hold) that List Blobs include=versions shows. The content of a
previous version is not kept (Azurite has no versions): reading one is 501.
Delete Blob ?versionid= of a previous version is done by the proxy (refused
409 while protected) without Azurite, so its credential is not checked.
The size of a committed block list is the sum of the sizes of its blocks as
staged through the proxy.

With --log, each request is one JSON line: method, path, status, code.
"""

import argparse
import datetime
import email.utils
import http.client
import http.server
import json
import re
import sys
import threading
import urllib.parse
import uuid
from xml.sax.saxutils import escape

POLICY = "x-ms-immutability-policy-until-date"
MODE = "x-ms-immutability-policy-mode"
HOLD = "x-ms-legal-hold"
MESSAGES = {
    "BlobImmutableDueToPolicy": "This operation is not permitted as the blob is immutable due to a policy.",
    "BlobImmutableDueToLegalHold": "This operation is not permitted as the blob is immutable due to one or more legal holds.",
    "ImmutableStorageWithVersioningNotEnabled": "This operation is not permitted because the container does not have version-level immutability enabled.",
    "ImmutabilityPolicyLocked": "This operation is not permitted as the immutability policy is locked: it can only be extended.",
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "MissingRequiredHeader": "An HTTP header that's mandatory for this request is not specified.",
    "BlobNotFound": "The specified blob does not exist.",
    "APINotImplemented": "Reading a previous version is not emulated by worm_proxy.py.",
    "AuthorizationPermissionMismatch": "This request is not authorized to perform this operation using this permission.",
}
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc1123(t):
    return email.utils.format_datetime(t, usegmt=True)


def version_id():
    t = now()
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}0Z"


class Version:
    def __init__(self, size, vid=None):
        self.size = size
        self.created = now()
        self.vid = vid or version_id()
        self.until = None
        self.mode = None
        self.hold = False

    def protection(self):
        """The error code that refuses a change, or None."""
        if self.hold:
            return "BlobImmutableDueToLegalHold"
        if self.until is not None and self.until > now():
            return "BlobImmutableDueToPolicy"
        return None


class State:
    def __init__(self, vlw):
        self.lock = threading.Lock()
        self.vlw = vlw
        self.current = {}  # (container, blob) -> Version
        self.previous = {}  # (container, blob) -> [Version]
        self.staged = {}  # (container, blob) -> {block id: size}


STATE = None
UPSTREAM = None
LOG = None


class Refusal(Exception):
    def __init__(self, status, code):
        super().__init__(code)
        self.status = status
        self.code = code


def parse_policy(headers, required=False):
    """(until, mode, hold) from request headers; 400s as Azure's."""
    until = headers.get(POLICY)
    mode = headers.get(MODE)
    hold = headers.get(HOLD)
    if required and until is None:
        raise Refusal(400, "MissingRequiredHeader")
    if until is not None:
        try:
            until = email.utils.parsedate_to_datetime(until)
        except (TypeError, ValueError):
            raise Refusal(400, "InvalidHeaderValue")
        if until.tzinfo is None or until <= now():
            raise Refusal(400, "InvalidHeaderValue")
    if mode is not None:
        if mode.lower() not in ("unlocked", "locked"):
            raise Refusal(400, "InvalidHeaderValue")
        mode = mode.lower()
    if hold is not None:
        if hold.lower() not in ("true", "false"):
            raise Refusal(400, "InvalidHeaderValue")
        hold = hold.lower() == "true"
    return until, mode, hold


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.handle_request()

    do_PUT = do_DELETE = do_HEAD = do_POST = do_OPTIONS = do_GET

    # -- plumbing ---------------------------------------------------------

    def handle_request(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        self.query = {k.lower(): v for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True)}
        parts = url.path.lstrip("/").split("/", 2)
        self.container = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        self.blob = urllib.parse.unquote(parts[2]) if len(parts) > 2 else ""
        self.key = (self.container, self.blob)
        self.code = None
        try:
            self.route()
        except Refusal as r:
            self.refuse(r.status, r.code)
        except (BrokenPipeError, ConnectionResetError):
            return
        if LOG:
            with STATE.lock, open(LOG, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "status": self.status, "code": self.code}) + "\n")

    def forward(self):
        """The request sent to Azurite as it came: (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
        conn.request(self.command, self.path, body=self.body or None, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, resp.getheaders(), body

    def reply(self, status, headers, body, extra=None):
        self.status = status
        self.send_response(status)
        extra = extra or {}
        drop = {k.lower() for k in extra} | HOP | {POLICY, MODE, HOLD}
        for k, v in headers:
            if k.lower() not in drop:
                self.send_header(k, v)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Date", rfc1123(now()))
        self.send_header("Content-Length", str(len(body)) if self.command != "HEAD" else
                         dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def refuse(self, status, code):
        self.code = code
        rid = str(uuid.uuid4())
        msg = f"{MESSAGES.get(code, code)}\nRequestId:{rid}\nTime:{now().strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                f"<Message>{escape(msg)}</Message></Error>").encode()
        headers = [("Content-Type", "application/xml"), ("x-ms-error-code", code),
                   ("x-ms-request-id", rid), ("x-ms-version", self.headers.get("x-ms-version", "2021-06-08"))]
        self.reply(status, headers, body)

    def ok(self, status, extra):
        rid = str(uuid.uuid4())
        headers = [("x-ms-request-id", rid), ("x-ms-version", self.headers.get("x-ms-version", "2021-06-08"))]
        self.reply(status, headers, b"", extra)

    def passthrough(self, extra=None):
        status, headers, body = self.forward()
        self.code = dict((k.lower(), v) for k, v in headers).get("x-ms-error-code")
        self.reply(status, headers, body, extra)
        return status

    # -- routing ----------------------------------------------------------

    def route(self):
        comp = self.query.get("comp", "").lower()
        m = self.command
        if not self.blob:
            if m == "GET" and comp == "list" and self.query.get("restype") == "container":
                return self.list_blobs()
            return self.passthrough()
        if comp == "immutabilitypolicies" and m in ("PUT", "DELETE"):
            return self.stubbed(self.set_policy if m == "PUT" else self.delete_policy)
        if comp == "legalhold" and m == "PUT":
            return self.stubbed(self.set_hold)
        if m == "PUT" and comp in ("", "blocklist"):
            return self.put_blob(comp == "blocklist")
        if m == "PUT" and comp == "block":
            return self.put_block()
        if m == "PUT" and comp == "metadata":
            return self.metadata(self.current())
        if m == "DELETE" and comp == "":
            return self.delete_blob()
        if m in ("GET", "HEAD") and comp == "":
            return self.read_blob()
        return self.passthrough()

    def current(self):
        with STATE.lock:
            return STATE.current.get(self.key)

    def sas_lacks_immutability(self):
        """Whether the request is a SAS one without the `i` permission."""
        return "sig" in self.query and "i" not in self.query.get("sp", "")

    def check_sas(self):
        """A SAS request Azurite cannot judge: its SAS checked by a Get Blob
        Properties with the same query. None when it passed, else the
        refusal to send back."""
        if self.sas_lacks_immutability():
            raise Refusal(403, "AuthorizationPermissionMismatch")
        url = urllib.parse.urlsplit(self.path)
        keep = [(k, v) for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True)
                if k.lower() not in ("comp", "versionid")]
        path = url.path + "?" + urllib.parse.urlencode(keep)
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("x-ms-version", "x-ms-date", "x-ms-client-request-id", "host")}
        conn.request("HEAD", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status in (200, 404):
            return None
        return resp.status, resp.getheaders(), b""

    def metadata(self, v):
        """Set Blob Metadata: refused on a held version and on one with a
        policy, even an expired one (version-level WORM, "Scenarios": an
        expired policy still prohibits Set Blob Metadata and Put Page)."""
        if v is not None and (v.hold or v.until is not None):
            raise Refusal(409, v.protection() or "BlobImmutableDueToPolicy")
        return self.passthrough()

    def stubbed(self, apply):
        """An operation Azurite stubs: forwarded for Azurite to check the
        credential; its 501 APINotImplemented means it passed."""
        if not STATE.vlw:
            raise Refusal(409, "ImmutableStorageWithVersioningNotEnabled")
        if "sig" in self.query:
            refused = self.check_sas()
            if refused:
                self.code = dict((k.lower(), v) for k, v in refused[1]).get("x-ms-error-code")
                return self.reply(*refused)
            with STATE.lock:
                v = self.target()
                if v is None:
                    raise Refusal(404, "BlobNotFound")
                extra = apply(v)
            return self.ok(200, extra)
        status, headers, body = self.forward()
        code = dict((k.lower(), v) for k, v in headers).get("x-ms-error-code")
        if not (status == 501 or code == "APINotImplemented"):
            self.code = code
            return self.reply(status, headers, body)
        with STATE.lock:
            v = self.target()
            if v is None:
                raise Refusal(404, "BlobNotFound")
            extra = apply(v)
        self.ok(200, extra)

    def target(self):
        """The version a request names (?versionid=), or the current one."""
        vid = self.query.get("versionid")
        cur = STATE.current.get(self.key)
        if not vid or (cur and cur.vid == vid):
            return cur
        return next((p for p in STATE.previous.get(self.key, []) if p.vid == vid), None)

    # -- the operations ---------------------------------------------------

    def set_policy(self, v):
        until, mode, _ = parse_policy(self.headers, required=True)
        mode = mode or "unlocked"
        if v.mode == "locked" and (mode != "locked" or (v.until and until < v.until)):
            raise Refusal(409, "ImmutabilityPolicyLocked")
        v.until, v.mode = until, mode
        return {POLICY: rfc1123(until), MODE: mode}

    def delete_policy(self, v):
        if v.mode == "locked" and v.until and v.until > now():
            raise Refusal(409, "ImmutabilityPolicyLocked")
        v.until, v.mode = None, None
        return {}

    def set_hold(self, v):
        hold = self.headers.get(HOLD)
        if hold is None:
            raise Refusal(400, "MissingRequiredHeader")
        if hold.lower() not in ("true", "false"):
            raise Refusal(400, "InvalidHeaderValue")
        v.hold = hold.lower() == "true"
        return {HOLD: "true" if v.hold else "false"}

    def put_block(self):
        status = self.passthrough()
        if 200 <= status < 300:
            with STATE.lock:
                STATE.staged.setdefault(self.key, {})[self.query.get("blockid", "")] = len(self.body)

    def put_blob(self, block_list):
        until, mode, hold = parse_policy(self.headers)
        if (until is not None or hold) and not STATE.vlw:
            raise Refusal(409, "ImmutableStorageWithVersioningNotEnabled")
        if (until is not None or hold) and self.sas_lacks_immutability():
            raise Refusal(403, "AuthorizationPermissionMismatch")
        status, headers, body = self.forward()
        self.code = dict((k.lower(), v) for k, v in headers).get("x-ms-error-code")
        extra = {}
        if 200 <= status < 300:
            with STATE.lock:
                size = self.committed_size() if block_list else len(self.body)
                v = Version(size)
                v.until, v.mode, v.hold = until, (mode or "unlocked") if until else None, bool(hold)
                old = STATE.current.get(self.key)
                if old is not None:
                    STATE.previous.setdefault(self.key, []).append(old)
                STATE.current[self.key] = v
                STATE.staged.pop(self.key, None)
                extra = {"x-ms-version-id": v.vid}
        self.reply(status, headers, body, extra)

    def committed_size(self):
        staged = STATE.staged.get(self.key, {})
        ids = re.findall(rb"<(?:Latest|Uncommitted|Committed)>([^<]*)<", self.body)
        sizes = [staged.get(i.decode()) for i in ids]
        return None if any(s is None for s in sizes) else sum(sizes)

    def delete_blob(self):
        vid = self.query.get("versionid")
        with STATE.lock:
            cur = STATE.current.get(self.key)
            if vid and not (cur and cur.vid == vid):
                prev = STATE.previous.get(self.key, [])
                v = next((p for p in prev if p.vid == vid), None)
                if v is None:
                    raise Refusal(404, "BlobNotFound")
                if v.protection():
                    raise Refusal(409, v.protection())
                prev.remove(v)
                return self.ok(202, {"x-ms-delete-type-permanent": "true"})
        if cur is not None and cur.protection():
            raise Refusal(409, cur.protection())
        status = self.passthrough()
        if 200 <= status < 300 and cur is not None:
            with STATE.lock:
                # With versioning, the deleted current version stays as a
                # previous version.
                STATE.previous.setdefault(self.key, []).append(STATE.current.pop(self.key))

    def read_blob(self):
        vid = self.query.get("versionid")
        cur = self.current()
        if vid and not (cur and cur.vid == vid):
            raise Refusal(501, "APINotImplemented")
        extra = {}
        if cur is not None:
            extra = {HOLD: "true" if cur.hold else "false", "x-ms-version-id": cur.vid,
                     "x-ms-is-current-version": "true"}
            if cur.until is not None:
                extra[POLICY] = rfc1123(cur.until)
                extra[MODE] = cur.mode
        self.passthrough(extra)

    def list_blobs(self):
        status, headers, body = self.forward()
        if status != 200:
            self.code = dict((k.lower(), v) for k, v in headers).get("x-ms-error-code")
            return self.reply(status, headers, body)
        include = {i.strip().lower() for i in self.query.get("include", "").split(",") if i.strip()}
        text = body.decode("utf-8")
        with STATE.lock:
            text = self.annotate(text, include)
        self.reply(status, headers, text.encode("utf-8"))

    def annotate(self, text, include):
        """Adds the policy, hold and version elements Azurite leaves out,
        and the previous versions when include=versions."""
        policy, hold, versions = "immutabilitypolicy" in include, "legalhold" in include, "versions" in include
        container = self.container
        prefix = self.query.get("prefix", "")

        def props(v):
            out = ""
            if policy and v.until is not None:
                out += f"<ImmutabilityPolicyUntilDate>{rfc1123(v.until)}</ImmutabilityPolicyUntilDate>"
                out += f"<ImmutabilityPolicyMode>{v.mode}</ImmutabilityPolicyMode>"
            if hold:
                out += f"<LegalHold>{'true' if v.hold else 'false'}</LegalHold>"
            return out

        def one(m):
            blob = m.group(0)
            name = re.search(r"<Name>([^<]*)</Name>", blob)
            if not name:
                return blob
            key = (container, unescape(name.group(1)))
            v = STATE.current.get(key)
            if v is None:
                return blob
            if versions:
                blob = blob.replace("</Name>", f"</Name><VersionId>{v.vid}</VersionId>"
                                    "<IsCurrentVersion>true</IsCurrentVersion>", 1)
            return blob.replace("</Properties>", props(v) + "</Properties>", 1)

        text = re.sub(r"<Blob>.*?</Blob>", one, text, flags=re.S)
        last_page = re.search(r"<NextMarker>[^<]+</NextMarker>", text) is None
        if versions and last_page:
            extra = ""
            for (c, name), prev in sorted(STATE.previous.items()):
                if c != container or not name.startswith(prefix):
                    continue
                for v in prev:
                    size = "" if v.size is None else f"<Content-Length>{v.size}</Content-Length>"
                    extra += (f"<Blob><Name>{escape(name)}</Name><VersionId>{v.vid}</VersionId>"
                              f"<Properties><Creation-Time>{rfc1123(v.created)}</Creation-Time>"
                              f"<Last-Modified>{rfc1123(v.created)}</Last-Modified>"
                              f"<Etag>0x{uuid.uuid4().hex[:15].upper()}</Etag>{size}"
                              f"<BlobType>BlockBlob</BlobType>{props(v)}</Properties></Blob>")
            if "<Blobs />" in text:
                text = text.replace("<Blobs />", f"<Blobs>{extra}</Blobs>")
            elif "<Blobs/>" in text:
                text = text.replace("<Blobs/>", f"<Blobs>{extra}</Blobs>")
            else:
                text = text.replace("</Blobs>", extra + "</Blobs>")
        return text


def unescape(s):
    return s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")


def main():
    global STATE, UPSTREAM, LOG
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", type=int, required=True, help="Azurite's port on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--no-version-level-worm", action="store_true",
                    help="the container lacks version-level immutability: policies and holds are refused")
    a = ap.parse_args()
    STATE, UPSTREAM, LOG = State(not a.no_version_level_worm), a.upstream, a.log
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    import signal
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
