"""A stand-in for Azure Resource Manager (the part valerix-backup drives: a
geo-restore of an Azure Database for PostgreSQL flexible server, the region
pairs, a storage account's lifecycle management policy) and for Microsoft
Entra ID's token endpoint, in one HTTPS process, for tests: the program's
real azure_identity::ClientSecretCredential (AZURE_AUTHORITY_HOST pointed
here) gets a token, and its real azure_core pipeline (bearer-token policy,
retry policy) sends it with every Resource Manager request (endpoint pointed
here). There is no emulator for Resource Manager; this follows the published
contract (azure-rest-api-specs, Microsoft.DBforPostgreSQL 2025-08-01,
Microsoft.Storage 2023-05-01, Microsoft.Resources 2022-12-01, ARM's
asynchronous-operation rules) and nothing more.

Python standard library only (http.server + ssl); TLS with the certificate
and key scripts/test-ca.sh makes.

  fake_arm.py --cert SERVER.pem --key SERVER.key --state STATE.json
              [--port P] [--log FILE]

The client secret is read from $FAKE_ARM_CLIENT_SECRET (not the command line
or the state file). Port 0 (the default) takes a free one. Prints one line
`listening on PORT` on stdout once it accepts connections, then serves until
SIGTERM or SIGINT.

Served (every ARM request needs `Authorization: Bearer <token from here>`
and `?api-version=`; path segments and names are case-insensitive, as in
ARM):

  POST /{tenant}/oauth2/v2.0/token
      form grant_type=client_credentials, client_id, client_secret, scope
      (one, ending in /.default). 200 {token_type, expires_in, ext_expires_in,
      access_token}; or Entra's error body: 400 AADSTS90002 (tenant),
      70003 (grant type), 700016 (client id), 1002012 (scope), 401
      invalid_client AADSTS7000218 (no secret) / AADSTS7000215 (wrong secret).
      400 invalid_resource AADSTS500011 for a resource the directory does
      not know (KNOWN_RESOURCES: the public cloud's Resource Manager, Storage,
      Key Vault, Graph, PostgreSQL's Entra resource; not this server's own
      URL, not a sovereign cloud's). The token is an unsigned JWT whose aud
      is the scope's resource; Resource Manager accepts exactly
      https://management.azure.com(/) and https://management.core.windows.net(/)
      and refuses any other aud with 401 InvalidAuthenticationTokenAudience,
      an expired token with 401 ExpiredAuthenticationToken, as Azure does.

  GET  /subscriptions/{sub}/locations?api-version=2022-12-01
  GET  /subscriptions/{sub}/resourceGroups/{rg}/providers/
           Microsoft.DBforPostgreSQL/flexibleServers/{name}?api-version=V
  PUT  (same URL)  {"location": L, "properties": {"createMode": "GeoRestore",
           "sourceServerResourceId": ID, "pointInTimeUTC": T, ...}}
           -> 202, empty body, Azure-AsyncOperation, Location, Retry-After;
           Content-Type application/json required (415 UnsupportedMediaType);
           tags checked as Resource Manager does (at most 50, names 1-512
           characters without < > % & \\ ? /, values at most 256) and shown
           by GET; createMode and sourceServerResourceId are never shown by
           GET (the spec returns the source only for read replicas)
  GET  /subscriptions/{sub}/providers/Microsoft.DBforPostgreSQL/locations/
           {loc}/azureAsyncOperation/{opid}?api-version=V
  GET  /subscriptions/{sub}/providers/Microsoft.DBforPostgreSQL/locations/
           {loc}/operationResults/{opid}?api-version=V
  PUT  /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/
           storageAccounts/{account}/managementPolicies/default
           ?api-version=2023-05-01   {"properties": {"policy": {"rules": []}}}
  GET  (same URL)  the last policy stored
  GET  /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/
           storageAccounts/{account}/blobServices/default?api-version=2025-08-01
           the blob service properties (isVersioningEnabled), as the spec's
           example BlobServicesGet.json; 404 ResourceNotFound for an account
           that does not exist, 404 for a blob service not named default
  GET  .../blobServices/default/containers/{container}?api-version=2025-08-01
           the container (properties.immutableStorageWithVersioning.enabled,
           as BlobContainersPutObjectLevelWorm.json shows it); 404
           ContainerNotFound "The specified container does not exist."

The scenario comes from the JSON state file (see load_state for every key
and its default). With --log, each request is appended to FILE as one JSON
line: seq, t (time.monotonic(), seconds), time (epoch), kind (token, arm,
other), method, path (the full request target), api_version, headers (all
but Authorization), auth (for ARM requests: "valid", "missing", "not-bearer",
"invalid", "expired", "wrong-audience"), auth_present, auth_valid, body (raw
text), json (parsed body, if JSON), form (the token request's parsed form,
as fake_entra.py logs it), status, error (the ARM error code or AADSTS
number, if refused), response_headers (Retry-After, Location,
Azure-AsyncOperation, WWW-Authenticate when sent), response (the JSON answer
of ARM requests; never an access token). A connection that failed before a
request (a client that refused the certificate) is one line with event
"connection failed". The client secret can only appear in the token
request's entry (its body and form), never elsewhere, unless a client sent
it elsewhere.
"""

import argparse
import copy
import datetime
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_entra import b64url, entra_error, serve_tls, unsigned_jwt  # noqa: E402

PG_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
POLICY_TYPE = "Microsoft.Storage/storageAccounts/managementPolicies"
# The audiences Resource Manager (public cloud) accepts in a token's aud,
# exactly: its two resource URIs with and without the trailing slash.
ARM_AUDIENCES = [
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
]
# The resources (application ID URIs) this directory issues tokens for: the
# public cloud's Resource Manager and a few other Microsoft APIs (whose
# tokens Resource Manager refuses). Sovereign clouds' resources are unknown
# here, as they are to the public cloud's Entra ID.
KNOWN_RESOURCES = [
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://storage.azure.com",
    "https://vault.azure.net",
    "https://graph.microsoft.com",
    "https://ossrdbms-aad.database.windows.net",
]
LOCATIONS_API_VERSIONS = ["2016-06-01", "2018-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01"]
API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-(preview|privatepreview|beta|alpha))?$")
SERVER_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$")

# name: (displayName, paired region, geography group, physical location)
REGIONS = {
    "eastus": ("East US", "westus", "US", "Virginia"),
    "westus": ("West US", "eastus", "US", "California"),
    "eastus2": ("East US 2", "centralus", "US", "Virginia"),
    "centralus": ("Central US", "eastus2", "US", "Iowa"),
    "westus2": ("West US 2", "westcentralus", "US", "Washington"),
    "westcentralus": ("West Central US", "westus2", "US", "Wyoming"),
    "northeurope": ("North Europe", "westeurope", "Europe", "Ireland"),
    "westeurope": ("West Europe", "northeurope", "Europe", "Netherlands"),
    "swedencentral": ("Sweden Central", "swedensouth", "Europe", "Gävle"),
    "swedensouth": ("Sweden South", "swedencentral", "Europe", "Malmo"),
    "uksouth": ("UK South", "ukwest", "Europe", "London"),
    "ukwest": ("UK West", "uksouth", "Europe", "Cardiff"),
    "germanywestcentral": ("Germany West Central", "germanynorth", "Europe", "Frankfurt"),
    "germanynorth": ("Germany North", "germanywestcentral", "Europe", "Berlin"),
}


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text):
    """An ISO 8601 date-time with a zone (Z or +hh:mm), or None."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    # fromisoformat (3.11) takes at most 6 fractional digits; .NET writes 7.
    t = re.sub(r"(\.\d{6})\d+", r"\1", t)
    try:
        dt = datetime.datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else None


def norm_location(loc):
    return loc.replace(" ", "").lower() if isinstance(loc, str) else None


def get_ci(obj, key):
    """obj[key] with the key matched case-insensitively (ARM's JSON is)."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    low = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def arm_error(status, code, message, headers=None):
    return status, {"error": {"code": code, "message": message}}, headers or {}


class Dropped(Exception):
    """Raised to close the connection without answering."""


class Reply(Exception):
    """Raised to answer at once: (status, body or None, extra headers)."""

    def __init__(self, status, body=None, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def fail(status, code, message, headers=None):
    raise Reply(*arm_error(status, code, message, headers))


# --------------------------------------------------------------------------
# State


def load_state(path):
    """The scenario. Keys (all but subscription, tenant and client_id
    optional):

      subscription, tenant, client_id   the one subscription, directory and
                                        app registration that exist
      api_version          str or list; flexibleServers api-versions accepted
                           (default "2025-08-01"; others: 400
                           NoRegisteredProviderFound)
      storage_api_version  str or list; managementPolicies api-versions
                           (default "2023-05-01")
      servers              {"rg/name": {location (required),
                           geoRedundantBackup ("Disabled"), backupRetentionDays
                           (7), earliestRestoreDate (now - retention),
                           version ("16"), state ("Ready"), sku, storage,
                           network, tags, administratorLogin,
                           availabilityZone}}
      resource_groups      list; if given, only these exist (others: 404
                           ResourceGroupNotFound); else every one does
      storage_accounts     list of "rg/account"; if given, only these exist
      polls                InProgress answers before the terminal one (3);
                           a GET of the server being created is a step too
      retry_after          Retry-After seconds on 202s and InProgress (1)
      ready_after          GETs of a restored server answered "Provisioning"
                           after its operation Succeeded, before "Ready" (2)
      fail_targets         ["rg/name" or "name"]: the operation ends Failed
      fail_error           {code, message} of that failure
                           (InternalServerError)
      fail_status          HTTP status of the Location URL for a failed
                           operation (500)
      throttle_targets     ["rg/name" or "name"]: the first throttle_count (1)
                           PUTs of it get 429, Retry-After throttle_retry_after
                           (1), body throttle_error ({code TooManyRequests})
      forbidden_resource_groups  writes (PUT) there get 403 AuthorizationFailed
      lose_answer          {"rg/name" or "name": "drop", "500" or "503"}: a PUT
                           that creates that server gets no answer (the
                           connection is closed after the server was created;
                           logged with status null and "dropped": true) or an
                           HTTP 500 InternalServerError, the server created
                           all the same; "503": the first PUT of it gets 503
                           ServiceUnavailable and creates nothing
      accept_status        202 (default, as 2025-08-01 documents) or 201 (as
                           older api-versions answered: with the new server's
                           body, and the same headers)
      async_operation_base, location_base  scheme://host:port the
                           Azure-AsyncOperation / Location URLs of a 202 point
                           at (default: this server), to stand in for a
                           misbehaving proxy
      token_lifetime       seconds (3600)
      regions              {"name": ["Display Name", "pairedname"]} added to /
                           replacing the built-in table
      management_policies  {"rg/account": {"rules": [...]}}: policies that
                           exist at start (see seed_policies)
      blob_api_version     str or list; blobServices and containers
                           api-versions (default "2025-08-01")
      blob_services        {"rg/account": {"isVersioningEnabled": bool}}
                           (an existing account not named here: versioning
                           off, as a new account is)
      containers           {"rg/account/container": {"immutableStorageWithVersioning":
                           bool}}: the containers that exist
      servers.*.replicaOf  "rg/name" of another server: this one is its read
                           replica (role GeoAsyncReplica in another region,
                           AsyncReplica in the same; replicationState from
                           servers.*.replicationState, "Active")
      down_servers         ["rg/name"]: every request about that server (and its
                           replicas, virtual endpoints) answers 503
                           ServiceUnavailable, as while its region is down
      virtual_endpoints    {"rg/primary": "base name"}: a pair of virtual
                           endpoints (writer -> the primary, reader -> its
                           first replica), <base>.writer/.reader.postgres...
    """
    with open(path, encoding="utf-8") as f:
        st = json.load(f)
    for k in ("subscription", "tenant", "client_id"):
        if not isinstance(st.get(k), str) or not st[k]:
            sys.exit("fake_arm.py: the state file needs {!r}".format(k))

    def as_list(v, default):
        if v is None:
            return list(default)
        return [v] if isinstance(v, str) else list(v)

    st["api_versions"] = as_list(st.get("api_version"), ["2025-08-01"])
    st["storage_api_versions"] = as_list(st.get("storage_api_version"), ["2023-05-01"])
    st["blob_api_versions"] = as_list(st.get("blob_api_version"), ["2025-08-01"])
    st["blob_services"] = {str(k).lower(): v for k, v in (st.get("blob_services") or {}).items()}
    st["containers"] = {str(k).lower(): v for k, v in (st.get("containers") or {}).items()}
    for k, d in (("polls", 3), ("retry_after", 1), ("ready_after", 2), ("token_lifetime", 3600),
                 ("throttle_count", 1), ("throttle_retry_after", 1), ("fail_status", 500)):
        st[k] = int(st.get(k, d))
    for k in ("fail_targets", "throttle_targets", "forbidden_resource_groups"):
        st[k] = [str(x).lower() for x in st.get(k) or []]
    st["accept_status"] = int(st.get("accept_status", 202))
    if st["accept_status"] not in (201, 202):
        sys.exit("fake_arm.py: accept_status is 201 or 202")
    st["lose_answer"] = {str(k).lower(): v for k, v in (st.get("lose_answer") or {}).items()}
    for v in st["lose_answer"].values():
        if v not in ("drop", "500", "503"):
            sys.exit("fake_arm.py: lose_answer values are \"drop\", \"500\" or \"503\", not {!r}".format(v))
    st["fail_error"] = st.get("fail_error") or {
        "code": "InternalServerError",
        "message": "An unexpected error occured while processing the request. Tracking ID: '{}'".format(
            uuid.uuid4()
        ),
    }
    st["throttle_error"] = st.get("throttle_error") or {
        "code": "TooManyRequests",
        "message": "The request is being throttled as the limit has been reached for operation type - "
        "Write_ObservationWindow_00:05:00. For more information, refer to - https://aka.ms/srpthrottlinglimits",
    }
    rgs = st.get("resource_groups")
    st["resource_groups"] = None if rgs is None else {str(r).lower() for r in rgs}
    accts = st.get("storage_accounts")
    st["storage_accounts"] = None if accts is None else {str(a).lower() for a in accts}
    regions = dict(REGIONS)
    for name, v in (st.get("regions") or {}).items():
        regions[name.lower()] = (v[0], v[1].lower(), "Other", v[0])
    st["regions"] = regions
    servers = {}
    for key, spec in (st.get("servers") or {}).items():
        rg, _, name = key.partition("/")
        if not rg or not name or not isinstance(spec, dict) or not spec.get("location"):
            sys.exit("fake_arm.py: servers: {!r} needs the form \"rg/name\": {{\"location\": ...}}".format(key))
        servers[(rg.lower(), name.lower())] = new_server(st, rg, name, spec)
    link_replicas(st, servers)
    st["servers"] = servers
    return st


def new_server(st, rg, name, spec):
    """A server record: what GET shows, plus the fake's bookkeeping."""
    retention = int(spec.get("backupRetentionDays", 7))
    created = now_utc() - datetime.timedelta(days=retention)
    earliest = spec.get("earliestRestoreDate") or iso(created + datetime.timedelta(minutes=5))
    network = copy.deepcopy(spec.get("network")) if isinstance(spec.get("network"), dict) else {}
    if "publicNetworkAccess" not in network:
        network["publicNetworkAccess"] = "Disabled" if network.get("delegatedSubnetResourceId") else "Enabled"
    return {
        "rg": rg,
        "name": name,
        "location": norm_location(spec["location"]),
        "tags": copy.deepcopy(spec.get("tags") or {}),
        "sku": copy.deepcopy(spec.get("sku") or {"name": "Standard_D2ds_v5", "tier": "GeneralPurpose"}),
        "createdAt": spec.get("createdAt") or iso(created),
        "properties": {
            "administratorLogin": spec.get("administratorLogin", "valerixadmin"),
            "authConfig": {"activeDirectoryAuth": "Disabled", "passwordAuth": "Enabled"},
            "availabilityZone": str(spec.get("availabilityZone", "1")),
            "backup": {
                "backupRetentionDays": retention,
                "geoRedundantBackup": spec.get("geoRedundantBackup", "Disabled"),
                "earliestRestoreDate": earliest,
            },
            "dataEncryption": {"type": "SystemManaged"},
            "fullyQualifiedDomainName": "{}.postgres.database.azure.com".format(name.lower()),
            "highAvailability": {"mode": "Disabled", "state": "NotEnabled"},
            "maintenanceWindow": {"customWindow": "Disabled", "dayOfWeek": 0, "startHour": 0, "startMinute": 0},
            "minorVersion": str(spec.get("minorVersion", "9")),
            "network": network,
            "privateEndpointConnections": [],
            "replica": {"capacity": 5, "role": "Primary"},
            "replicaCapacity": 5,
            "replicationRole": "Primary",
            "state": spec.get("state", "Ready"),
            "storage": copy.deepcopy(
                spec.get("storage")
                or {"autoGrow": "Disabled", "iops": 500, "storageSizeGB": 128, "tier": "P10", "type": ""}
            ),
            "version": str(spec.get("version", "16")),
        },
        # Bookkeeping (not shown): the operation creating it, GETs left
        # before Ready once that operation Succeeded.
        "op": None,
        "provisioning_gets": 0,
    }


def server_id(st, rg, name):
    return "/subscriptions/{}/resourceGroups/{}/providers/{}/{}".format(st["subscription"], rg, PG_TYPE, name)


def server_body(st, srv):
    return {
        "sku": srv["sku"],
        "systemData": {"createdAt": srv["createdAt"]},
        "properties": srv["properties"],
        "location": srv["location"],
        "tags": srv["tags"],
        "id": server_id(st, srv["rg"], srv["name"]),
        "name": srv["name"],
        "type": PG_TYPE,
    }


def append_line(path, entry):
    """One JSON line, in one write(2) on an O_APPEND file: a reader never
    sees half of it (bar a full disk)."""
    data = (json.dumps(entry) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def check_tags(tags):
    """Resource Manager's rules for a resource's tags."""
    if tags is None:
        return
    if not isinstance(tags, dict) or any(not isinstance(v, str) for v in tags.values()):
        fail(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "
             "'tags' must be an object of strings.")
    if len(tags) > 50:
        fail(400, "InvalidTagCount", "The number of tags on the resource exceeds the limit of 50.")
    for name, value in tags.items():
        if not name or len(name) > 512 or any(c in name for c in '<>%&\\?/') or any(ord(c) < 32 for c in name):
            fail(400, "InvalidTagNameCharacters", "The tag names '{}' have reserved characters '<,>,%,&,\\,?,/' "
                 "or control characters, or are empty or longer than 512 characters.".format(name))
        if name.lower().startswith(("azure", "microsoft", "windows")):
            fail(400, "InvalidTagName", "The tag name '{}' uses a prefix reserved by Azure ('azure', "
                 "'microsoft', 'windows').".format(name))
        if len(value) > 256:
            fail(400, "InvalidTagValueLength", "The tag value of '{}' is {} characters long; the limit is "
                 "256.".format(name, len(value)))


def matches(targets, rg, name):
    return "{}/{}".format(rg, name).lower() in targets or name.lower() in targets


# --------------------------------------------------------------------------
# Handler


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "fake-arm/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def do_GET(self):
        self.serve()

    def do_PUT(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def do_PATCH(self):
        self.serve()

    def do_DELETE(self):
        self.serve()

    # -- plumbing --

    def serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.entry = {"kind": "other", "auth": None}
        self.parsed_json = None
        try:
            status, body, headers = self.route(raw)
        except Reply as r:
            status, body, headers = r.status, r.body, r.headers
        except Dropped:
            # The request was carried out; its answer is lost: close the
            # connection without a byte of response.
            self.close_connection = True
            self.entry["dropped"] = True
            self.record(raw, None, None, {})
            return
        self.answer(raw, status, body, headers)

    def base_url(self):
        host = self.headers.get("Host") or "127.0.0.1:{}".format(self.server.server_address[1])
        return "https://" + host

    def answer(self, raw, status, body, headers):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store, no-cache" if self.entry["kind"] == "token" else "no-cache")
        self.send_header("Content-Length", str(len(data)))
        if self.entry["kind"] != "token":
            rid = str(uuid.uuid4())
            self.send_header("x-ms-request-id", rid)
            self.send_header(
                "x-ms-correlation-request-id",
                self.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()),
            )
            self.send_header("x-ms-routing-request-id", "SWEDENCENTRAL:{}:{}".format(
                time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), rid))
            if self.headers.get("x-ms-client-request-id"):
                self.send_header("x-ms-client-request-id", self.headers.get("x-ms-client-request-id"))
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)
        self.record(raw, status, body, headers)

    def record(self, raw, status, body, headers):
        cfg = self.server.cfg
        if not cfg.log:
            return
        text = raw.decode("utf-8", "replace")
        e = self.entry
        entry = {
            "seq": None,
            "t": time.monotonic(),
            "time": time.time(),
            "kind": e["kind"],
            "method": self.command,
            "path": self.path,
            "api_version": (urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("api-version")
                            or [None])[0],
            "headers": {k: v for k, v in self.headers.items() if k.lower() != "authorization"},
            "auth": e["auth"],
            "auth_present": self.headers.get("Authorization") is not None,
            "auth_valid": e["auth"] == "valid",
            "body": text,
            "json": self.parsed_json,
            "status": status,
            "error": None,
            "response_headers": {
                k: str(v) for k, v in headers.items()
                if k.lower() in ("retry-after", "location", "azure-asyncoperation", "www-authenticate")
            },
            "response": None,
        }
        if e.get("dropped"):
            entry["dropped"] = True
        if e["kind"] == "token":
            entry["form"] = urllib.parse.parse_qs(text, keep_blank_values=True)
            if status != 200 and isinstance(body, dict):
                entry["error"] = (body.get("error_codes") or [None])[0]
            elif isinstance(body, dict):
                entry["response"] = {k: v for k, v in body.items() if k != "access_token"}
        else:
            if isinstance(body, dict):
                entry["response"] = body
                if isinstance(body.get("error"), dict) and status >= 400:
                    entry["error"] = body["error"].get("code")
        with self.server.log_lock:
            self.server.seq += 1
            entry["seq"] = self.server.seq
            append_line(cfg.log, entry)

    # -- routing --

    def route(self, raw):
        split = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in split.path.strip("/").split("/")] if split.path.strip("/") else []
        low = [p.lower() for p in parts]
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if len(parts) == 4 and low[1:] == ["oauth2", "v2.0", "token"]:
            self.entry["kind"] = "token"
            if self.command != "POST":
                return (*entra_error(405, "invalid_request", 900561, "The endpoint only accepts POST requests."), {})
            status, body = self.token(parts[0], raw)
            return status, body, {}
        if not low or low[0] != "subscriptions":
            self.entry["kind"] = "other"
            return arm_error(404, "NotFound", "No HTTP resource was found that matches the request URI '{}'.".format(
                self.base_url() + self.path))
        self.entry["kind"] = "arm"
        return self.arm(parts, low, query, raw)

    # -- Entra ID --

    def token(self, tenant, body):
        st = self.server.state
        cfg = self.server.cfg
        if tenant != st["tenant"]:
            return entra_error(400, "invalid_request", 90002,
                               "Tenant '{}' not found. Check to make sure you have the correct tenant ID.".format(tenant))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return entra_error(400, "invalid_request", 900144,
                               "The request body must contain the following parameter: 'grant_type'.")
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            form = {}
        one = lambda k: (form.get(k) or [None])[0]  # noqa: E731
        if one("grant_type") != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003,
                               "The app requested an unsupported grant type '{}'.".format(one("grant_type")))
        if one("client_id") != st["client_id"]:
            return entra_error(400, "unauthorized_client", 700016,
                               "Application with identifier '{}' was not found in the directory '{}'.".format(
                                   one("client_id"), tenant))
        if one("client_secret") is None:
            return entra_error(401, "invalid_client", 7000218,
                               "The request body must contain the following parameter: 'client_assertion' or "
                               "'client_secret'.")
        if one("client_secret") != cfg.secret:
            return entra_error(401, "invalid_client", 7000215,
                               "Invalid client secret provided. Ensure the secret being sent in the request is the "
                               "client secret value, not the client secret ID, for a secret added to app '{}'.".format(
                                   st["client_id"]))
        scope = one("scope") or ""
        resource = scope[: -len("/.default")] if scope.endswith("/.default") else None
        if not resource or " " in scope or not resource.startswith(("https://", "http://")):
            return entra_error(400, "invalid_scope", 1002012,
                               "The provided value for scope {} is not valid. Client credential flows must have a "
                               "scope value with /.default suffixed to the resource identifier (application ID "
                               "URI).".format(scope))
        # Entra issues tokens only for resources (application ID URIs) it
        # knows: a Resource Manager endpoint's own URL is none of them.
        if resource not in KNOWN_RESOURCES and resource.rstrip("/") not in KNOWN_RESOURCES:
            return entra_error(400, "invalid_resource", 500011,
                               "The resource principal named {} was not found in the tenant named {}. This can "
                               "happen if the application has not been installed by the administrator of the "
                               "tenant or consented to by any user in the tenant. You might have sent your "
                               "authentication request to the wrong tenant.".format(resource, tenant))
        now = int(time.time())
        lifetime = st["token_lifetime"]
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, "oid:" + st["client_id"]))
        claims = {
            "aud": resource,
            "iss": "https://sts.windows.net/{}/".format(tenant),
            "iat": now - 300,
            "nbf": now - 300,
            "exp": now + lifetime,
            "aio": "fake",
            "appid": st["client_id"],
            "appidacr": "1",
            "idp": "https://sts.windows.net/{}/".format(tenant),
            "idtyp": "app",
            "oid": oid,
            "rh": "fake",
            "sub": oid,
            "tid": tenant,
            "uti": b64url(os.urandom(16)),
            "ver": "1.0",
        }
        token = unsigned_jwt(claims)
        with self.server.lock:
            self.server.tokens[token] = claims
        return 200, {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    # -- Resource Manager --

    def check_auth(self):
        """ARM's token check; raises the 401 it would answer."""
        st = self.server.state
        challenge = ('Bearer authorization_uri="https://login.microsoftonline.com/{}", error="invalid_token", '
                     'error_description="{}"')
        header = self.headers.get("Authorization")
        if header is None:
            self.entry["auth"] = "missing"
            fail(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                 {"WWW-Authenticate": challenge.format(
                     st["tenant"], "The authentication failed because of missing 'Authorization' header.")})
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.entry["auth"] = "not-bearer"
            fail(401, "AuthenticationFailed",
                 "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                 {"WWW-Authenticate": challenge.format(
                     st["tenant"], "The authentication failed because of an invalid 'Authorization' header.")})
        with self.server.lock:
            claims = self.server.tokens.get(token.strip())
        if claims is None:
            self.entry["auth"] = "invalid"
            fail(401, "InvalidAuthenticationToken", "The access token is invalid.",
                 {"WWW-Authenticate": challenge.format(st["tenant"], "The access token is invalid.")})
        now = int(time.time())
        if claims["exp"] <= now:
            self.entry["auth"] = "expired"
            fail(401, "ExpiredAuthenticationToken",
                 "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.".format(
                     time.strftime("%m/%d/%Y %I:%M:%S %p", time.gmtime(claims["exp"])),
                     time.strftime("%m/%d/%Y %I:%M:%S %p", time.gmtime(now))),
                 {"WWW-Authenticate": challenge.format(st["tenant"], "The access token has expired.")})
        if claims["nbf"] > now:
            self.entry["auth"] = "not-yet-valid"
            fail(401, "InvalidAuthenticationToken", "The access token is not yet valid.",
                 {"WWW-Authenticate": challenge.format(st["tenant"], "The access token is not yet valid.")})
        # Exactly one of the fixed audiences, whatever host was asked: Resource
        # Manager never accepts a token for its own URL or any other resource.
        if claims["aud"] not in ARM_AUDIENCES:
            self.entry["auth"] = "wrong-audience"
            message = ("The access token has been obtained for wrong audience or resource '{}'. It should exactly "
                       "match with one of the allowed audiences {}.".format(
                           claims["aud"], ",".join("'{}'".format(a) for a in ARM_AUDIENCES)))
            fail(401, "InvalidAuthenticationTokenAudience", message,
                 {"WWW-Authenticate": challenge.format(st["tenant"], message.replace('"', "'"))})
        self.entry["auth"] = "valid"
        return claims

    def api_version(self, query, accepted, kind, location=None):
        v = (query.get("api-version") or [None])[0]
        if not v:
            fail(400, "MissingApiVersionParameter",
                 "The api-version query parameter (?api-version=) is required for all requests.")
        if not API_VERSION_RE.match(v):
            fail(400, "InvalidApiVersionParameter", "The api-version '{}' is invalid. The supported versions are "
                 "'{}'.".format(v, ",".join(accepted)))
        if accepted is not None and v not in accepted:
            if kind is None:
                fail(400, "InvalidApiVersionParameter", "The api-version '{}' is invalid. The supported versions "
                     "are '{}'.".format(v, ",".join(accepted)))
            fail(400, "NoRegisteredProviderFound",
                 "No registered resource provider found for location '{}' and API version '{}' for type '{}'. "
                 "The supported api-versions are '{}'. The supported locations are '{}'.".format(
                     location or "eastus", v, kind, ", ".join(accepted),
                     ", ".join(d for d, *_ in self.server.state["regions"].values())))
        return v

    def read_json(self, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            fail(415, "UnsupportedMediaType", "The content media type '{}' is not supported. Only "
                 "'application/json' is supported.".format(ctype))
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            fail(400, "InvalidRequestContent",
                 "The request content was invalid and could not be deserialized: '{}'.".format(e))
        self.parsed_json = body
        if not isinstance(body, dict):
            fail(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "
                 "'Error converting value to type 'ResourceDefinition'. Path '', line 1.'.")
        return body

    def forbidden(self, claims, action, scope):
        fail(403, "AuthorizationFailed",
             "The client '{}' with object id '{}' does not have authorization to perform action '{}' over scope "
             "'{}' or the scope is invalid. If access was recently granted, please refresh your credentials.".format(
                 claims["appid"], claims["oid"], action, scope))

    def rg_exists(self, rg):
        rgs = self.server.state["resource_groups"]
        if rgs is not None and rg.lower() not in rgs:
            fail(404, "ResourceGroupNotFound", "Resource group '{}' could not be found.".format(rg))

    def arm(self, parts, low, query, raw):
        st = self.server.state
        # Body parsed for the log even when refused before it is read.
        if raw and "json" in (self.headers.get("Content-Type") or ""):
            try:
                self.parsed_json = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                pass
        claims = self.check_auth()
        if len(parts) < 2:
            fail(404, "NotFound", "No HTTP resource was found that matches the request URI.")
        if parts[1] != st["subscription"]:
            self.api_version(query, None, None)
            fail(404, "SubscriptionNotFound", "The subscription '{}' could not be found.".format(parts[1]))
        rest, lrest = parts[2:], low[2:]

        # /subscriptions/{sub}/locations
        if lrest == ["locations"]:
            self.method_is("GET")
            self.api_version(query, LOCATIONS_API_VERSIONS, None)
            return 200, self.locations(), {}

        # /subscriptions/{sub}/providers/Microsoft.DBforPostgreSQL/locations/{loc}/{kind}/{opid}
        if (len(lrest) == 6 and lrest[0] == "providers" and lrest[1] == "microsoft.dbforpostgresql"
                and lrest[2] == "locations" and lrest[4] in ("azureasyncoperation", "operationresults")):
            self.method_is("GET")
            self.api_version(query, st["api_versions"], "locations/" + rest[4], lrest[3])
            return self.poll(lrest[3], lrest[4], rest[5])

        # /subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/...]
        if len(lrest) >= 6 and lrest[0] == "resourcegroups" and lrest[2] == "providers":
            rg = rest[1]
            ns, typ = lrest[3], lrest[4]
            if (ns == "microsoft.dbforpostgresql" and typ == "flexibleservers" and len(lrest) in (6, 7)
                    and "{}/{}".format(rg, rest[5]).lower() in self.server.state.get("down_servers", [])):
                self.api_version(query, None, None)
                fail(503, "ServiceUnavailable", "The service is currently unavailable. Please try again later.")
            if (ns == "microsoft.dbforpostgresql" and typ == "flexibleservers" and len(lrest) == 6
                    and self.command == "PATCH"):
                return self.promote_replica(claims, query, rg, rest[5], raw)
            if (ns == "microsoft.dbforpostgresql" and typ == "flexibleservers" and len(lrest) == 7
                    and lrest[6] in ("replicas", "virtualendpoints")):
                return self.server_children(query, rg, rest[5], lrest[6])
            if ns == "microsoft.dbforpostgresql" and typ == "flexibleservers" and len(lrest) == 6:
                return self.flexible_server(claims, query, rg, rest[5], raw)
            if (ns == "microsoft.storage" and typ == "storageaccounts" and len(lrest) == 8
                    and lrest[6] == "managementpolicies"):
                return self.management_policy(claims, query, rg, rest[5], rest[7], raw)
            if (ns == "microsoft.storage" and typ == "storageaccounts" and len(lrest) in (8, 10)
                    and lrest[6] == "blobservices" and (len(lrest) == 8 or lrest[8] == "containers")):
                return self.blob_service(query, rg, rest[5], rest[7], rest[9] if len(rest) == 10 else None)
            self.api_version(query, None, None)
            self.rg_exists(rg)
            fail(404, "InvalidResourceType", "The resource type '{}' could not be found in the namespace '{}' for "
                 "api version '{}'.".format("/".join(rest[4:-1:2]) or rest[4], rest[3],
                                            (query.get("api-version") or [""])[0]))
        self.api_version(query, None, None)
        fail(404, "NotFound", "No HTTP resource was found that matches the request URI '{}'.".format(
            self.base_url() + self.path))

    def method_is(self, *methods):
        if self.command not in methods:
            fail(405, "MethodNotAllowed", "The requested resource does not support http method '{}'.".format(
                self.command))

    def locations(self):
        st = self.server.state
        sub = st["subscription"]
        value = []
        for name, (display, paired, group, physical) in st["regions"].items():
            value.append({
                "id": "/subscriptions/{}/locations/{}".format(sub, name),
                "name": name,
                "type": "Region",
                "displayName": display,
                "regionalDisplayName": "({}) {}".format(group, display),
                "metadata": {
                    "regionType": "Physical",
                    "regionCategory": "Recommended",
                    "geography": group,
                    "geographyGroup": group,
                    "longitude": "0",
                    "latitude": "0",
                    "physicalLocation": physical,
                    "pairedRegion": [{"name": paired, "id": "/subscriptions/{}/locations/{}".format(sub, paired)}],
                },
            })
        return {"value": value}

    # -- flexible servers --

    def flexible_server(self, claims, query, rg, name, raw):
        st = self.server.state
        self.method_is("GET", "PUT")
        key = (rg.lower(), name.lower())
        with self.server.lock:
            srv = st["servers"].get(key)
            known_loc = srv["location"] if srv else None
        body_loc = norm_location(get_ci(self.parsed_json, "location")) if self.command == "PUT" else None
        self.api_version(query, st["api_versions"], "flexibleServers", known_loc or body_loc)
        if self.command == "GET":
            self.rg_exists(rg)
            with self.server.lock:
                srv = st["servers"].get(key)
                if srv is None:
                    fail(404, "ResourceNotFound", "The Resource '{}/{}' under resource group '{}' was not found. "
                         "For more details please go to https://aka.ms/ARMResourceNotFoundFix".format(PG_TYPE, name, rg))
                op = self.server.ops.get(srv["op"]) if srv["op"] else None
                if op is not None and op["status"] == "InProgress":
                    self.advance(op)
                    if key not in st["servers"]:
                        fail(404, "ResourceNotFound", "The Resource '{}/{}' under resource group '{}' was not "
                             "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix".format(
                                 PG_TYPE, name, rg))
                elif op is not None and op["status"] == "Succeeded":
                    if srv["provisioning_gets"] > 0:
                        srv["provisioning_gets"] -= 1
                        srv["properties"]["state"] = "Provisioning"
                    else:
                        srv["properties"]["state"] = "Ready"
                return 200, server_body(st, srv), {}
        return self.create_server(claims, query, rg, name, raw)

    def lost_answer(self, rg, name):
        lose = self.server.state["lose_answer"]
        return lose.get("{}/{}".format(rg, name).lower()) or lose.get(name.lower())

    def create_server(self, claims, query, rg, name, raw):
        st = self.server.state
        api = query["api-version"][0]
        scope = server_id(st, rg, name)
        if rg.lower() in st["forbidden_resource_groups"]:
            self.forbidden(claims, PG_TYPE + "/write", scope)
        if matches(st["throttle_targets"], rg, name):
            with self.server.lock:
                n = self.server.throttled.get((rg.lower(), name.lower()), 0)
                self.server.throttled[(rg.lower(), name.lower())] = n + 1
            if n < st["throttle_count"]:
                err = st["throttle_error"]
                fail(429, err["code"], err["message"], {
                    "Retry-After": st["throttle_retry_after"],
                    "x-ms-ratelimit-remaining-subscription-writes": 0,
                })
        if self.lost_answer(rg, name) == "503":
            with self.server.lock:
                n = self.server.throttled.get(("503", rg.lower(), name.lower()), 0)
                self.server.throttled[("503", rg.lower(), name.lower())] = n + 1
            if n == 0:
                fail(503, "ServiceUnavailable", "The service is currently unavailable. Please try again later.")
        self.rg_exists(rg)
        body = self.read_json(raw)
        location = get_ci(body, "location")
        if not isinstance(location, str) or not location.strip():
            fail(400, "LocationRequired", "The location property is required for this definition.")
        location = norm_location(location)
        if location not in st["regions"]:
            fail(400, "LocationNotAvailableForResourceType",
                 "The provided location '{}' is not available for resource type '{}'. List of available regions "
                 "for the resource type is '{}'.".format(location, PG_TYPE, ",".join(st["regions"])))
        if not SERVER_NAME_RE.match(name):
            fail(400, "InvalidServerName", "Specified server name contains unsupported characters or is too long. "
                 "Server name must be no longer than 63 characters long, contain only lower-case characters or "
                 "digits, cannot contain '.' or '_' characters and can't start or end with '-' character.")
        check_tags(get_ci(body, "tags"))
        props = get_ci(body, "properties")
        if not isinstance(props, dict):
            fail(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "
                 "'properties' is required.")
        mode = get_ci(props, "createMode")
        if not isinstance(mode, str) or mode.lower() != "georestore":
            fail(400, "InvalidParameterValue", "Invalid value given for parameter createMode. Specify a valid "
                 "parameter value. (fake_arm.py serves createMode GeoRestore only, got {!r}.)".format(mode))
        source_id = get_ci(props, "sourceServerResourceId")
        m = re.match(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.DBforPostgreSQL/"
                     r"flexibleServers/([^/]+)$", source_id or "", re.IGNORECASE) if isinstance(source_id, str) else None
        if m is None:
            fail(400, "InvalidParameterValue", "Invalid value given for parameter sourceServerResourceId. Specify a "
                 "valid parameter value.")
        pit_text = get_ci(props, "pointInTimeUTC")
        pit = parse_time(pit_text)
        if pit is None:
            fail(400, "InvalidParameterValue", "Invalid value given for parameter pointInTimeUTC. Specify a valid "
                 "parameter value.")
        network = get_ci(props, "network")
        if network is not None and not isinstance(network, dict):
            fail(400, "InvalidParameterValue", "Invalid value given for parameter network. Specify a valid "
                 "parameter value.")
        with self.server.lock:
            if any(n == name.lower() for (_, n) in st["servers"]):
                fail(409, "ServerNameAlreadyExists", "Specified server name is already used.")
            src = None
            if m.group(1).lower() == st["subscription"].lower():
                src = st["servers"].get((m.group(2).lower(), m.group(3).lower()))
            if src is None:
                fail(400, "SourceServerNotFound", "The source server '{}' could not be found.".format(source_id))
            if src["op"] and self.server.ops[src["op"]]["status"] != "Succeeded":
                fail(409, "ServerIsBusy", "The source server '{}' is busy with another operation. Please try "
                     "again later.".format(src["name"]))
            if src["properties"]["backup"]["geoRedundantBackup"] != "Enabled":
                fail(400, "GeoRedundantBackupNotEnabled", "Geo-restore is not possible: server '{}' does not have "
                     "geo-redundant backup enabled.".format(src["name"]))
            paired = st["regions"].get(src["location"], (None, None))[1]
            if location != paired:
                fail(400, "GeoRestoreRegionNotPaired", "Geo-restore of server '{}' in region '{}' is only "
                     "supported to its paired region '{}', not to '{}'.".format(
                         src["name"], src["location"], paired, location))
            earliest = parse_time(src["properties"]["backup"]["earliestRestoreDate"])
            if (earliest is not None and pit < earliest) or pit > now_utc() + datetime.timedelta(minutes=5):
                fail(400, "InvalidParameterValue", "Invalid value given for parameter pointInTimeUTC. Specify a "
                     "valid parameter value. The point in time must lie between the earliest restore point '{}' and "
                     "now.".format(src["properties"]["backup"]["earliestRestoreDate"]))

            # Accepted: the new server exists (Provisioning) from now on.
            backup = get_ci(props, "backup") if isinstance(get_ci(props, "backup"), dict) else {}
            spec = {
                "location": location,
                "tags": get_ci(body, "tags") if isinstance(get_ci(body, "tags"), dict) else {},
                "sku": get_ci(body, "sku") if isinstance(get_ci(body, "sku"), dict) else src["sku"],
                "storage": src["properties"]["storage"],
                "network": network or {},
                "version": src["properties"]["version"],
                "minorVersion": src["properties"]["minorVersion"],
                "administratorLogin": src["properties"]["administratorLogin"],
                "backupRetentionDays": get_ci(backup, "backupRetentionDays")
                or src["properties"]["backup"]["backupRetentionDays"],
                "geoRedundantBackup": get_ci(backup, "geoRedundantBackup") or "Disabled",
                "state": "Provisioning",
                "createdAt": iso(now_utc()),
                "earliestRestoreDate": iso(now_utc()),
            }
            srv = new_server(st, rg, name, spec)
            opid = str(uuid.uuid4())
            srv["op"] = opid
            srv["provisioning_gets"] = st["ready_after"]
            st["servers"][(rg.lower(), name.lower())] = srv
            self.server.ops[opid] = {
                "id": opid,
                "key": (rg.lower(), name.lower()),
                "location": location,
                "polls": 0,
                "status": "InProgress",
                "startTime": iso(now_utc()),
                "endTime": None,
                "fail": matches(st["fail_targets"], rg, name),
                "api": api,
            }
        lost = self.lost_answer(rg, name)
        if lost == "drop":
            raise Dropped()
        if lost == "500":
            fail(500, "InternalServerError", "An unexpected error occured while processing the request. Tracking "
                 "ID: '{}'".format(uuid.uuid4()))
        path = "/subscriptions/{}/providers/Microsoft.DBforPostgreSQL/locations/{}".format(st["subscription"], location)
        async_base = st.get("async_operation_base") or self.base_url()
        location_base = st.get("location_base") or self.base_url()
        with self.server.lock:
            created = server_body(st, srv) if st["accept_status"] == 201 else None
        return st["accept_status"], created, {
            "Azure-AsyncOperation": "{}{}/azureAsyncOperation/{}?api-version={}".format(async_base, path, opid, api),
            "Location": "{}{}/operationResults/{}?api-version={}".format(location_base, path, opid, api),
            "Retry-After": st["retry_after"],
        }

    def advance(self, op):
        """One step of a running operation (under the lock): every poll, and
        every GET of the server it creates, is one; it runs whether or not
        anyone polls it, as in Azure."""
        st = self.server.state
        if op["status"] != "InProgress":
            return
        if op["polls"] < st["polls"]:
            op["polls"] += 1
            return
        op["endTime"] = iso(now_utc())
        srv = st["servers"].get(op["key"])
        if op["fail"]:
            op["status"] = "Failed"
            op["error"] = dict(st["fail_error"])
            st["servers"].pop(op["key"], None)
        else:
            op["status"] = "Succeeded"
            if srv is not None:
                srv["properties"]["state"] = "Provisioning" if srv["provisioning_gets"] else "Ready"
            if op.get("promote") and srv is not None:
                apply_promotion(st, srv, op["promote"])

    def poll(self, location, kind, opid):
        """One poll of an operation, through either URL; both count."""
        st = self.server.state
        with self.server.lock:
            op = self.server.ops.get(opid.lower())
            if op is None or op["location"] != location:
                fail(404, "OperationNotFound", "The operation '{}' could not be found.".format(opid))
            self.advance(op)
            op = dict(op)
            srv = st["servers"].get(op["key"])
            srv_body = server_body(st, srv) if srv else None
        running = op["status"] == "InProgress"
        retry = {"Retry-After": st["retry_after"]} if running else {}
        if kind == "azureasyncoperation":
            doc = {"name": op["id"], "status": op["status"], "startTime": op["startTime"]}
            if op["endTime"]:
                doc["endTime"] = op["endTime"]
            if op["status"] == "Failed":
                doc["error"] = op["error"]
            return 200, doc, retry
        # operationResults (the Location URL)
        if running:
            return 202, None, dict(retry, Location=self.base_url() + self.path)
        if op["status"] == "Failed":
            return st["fail_status"], {"error": op["error"]}, {}
        return 200, srv_body, {}

    # -- blob service and container properties (read only) --

    def storage_account_exists(self, rg, account):
        self.rg_exists(rg)
        accts = self.server.state["storage_accounts"]
        if accts is not None and "{}/{}".format(rg, account).lower() not in accts:
            fail(404, "ResourceNotFound", "The Resource 'Microsoft.Storage/storageAccounts/{}' under resource group "
                 "'{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix".format(
                     account, rg))

    def blob_service(self, query, rg, account, service, container):
        st = self.server.state
        self.method_is("GET")
        kind = "storageAccounts/blobServices" + ("/containers" if container else "")
        self.api_version(query, st["blob_api_versions"], kind)
        self.storage_account_exists(rg, account)
        if service.lower() != "default":
            fail(404, "HttpResourceNotFound", "The request url {} is not found.".format(self.base_url() + self.path))
        base = "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}/blobServices/" \
               "default".format(st["subscription"], rg, account)
        if container is None:
            props = st["blob_services"].get("{}/{}".format(rg, account).lower()) or {}
            return 200, {
                "id": base,
                "name": "default",
                "type": "Microsoft.Storage/storageAccounts/blobServices",
                "properties": {
                    "deleteRetentionPolicy": {"enabled": False},
                    "isVersioningEnabled": bool(props.get("isVersioningEnabled", False)),
                },
                "sku": {"name": "Standard_GRS", "tier": "Standard"},
            }, {}
        c = st["containers"].get("{}/{}/{}".format(rg, account, container).lower())
        if c is None:
            fail(404, "ContainerNotFound", "The specified container does not exist.")
        props = {
            "publicAccess": "None",
            "hasImmutabilityPolicy": False,
            "hasLegalHold": False,
            "deleted": False,
            "remainingRetentionDays": 0,
        }
        if c.get("immutableStorageWithVersioning"):
            props["immutableStorageWithVersioning"] = {"enabled": True}
        return 200, {
            "id": base + "/containers/" + container,
            "name": container,
            "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
            "etag": "\"0x8D589847D51C7DE\"",
            "properties": props,
        }, {}

    # -- storage lifecycle management policy --

    def management_policy(self, claims, query, rg, account, policy_name, raw):
        st = self.server.state
        self.method_is("GET", "PUT")
        self.api_version(query, st["storage_api_versions"], "storageAccounts/managementPolicies")
        pid = "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}/managementPolicies/" \
              "default".format(st["subscription"], rg, account)
        if self.command == "PUT" and rg.lower() in st["forbidden_resource_groups"]:
            self.forbidden(claims, POLICY_TYPE + "/write", pid)
        self.rg_exists(rg)
        accts = st["storage_accounts"]
        if accts is not None and "{}/{}".format(rg, account).lower() not in accts:
            fail(404, "ResourceNotFound", "The Resource 'Microsoft.Storage/storageAccounts/{}' under resource group "
                 "'{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix".format(
                     account, rg))
        if policy_name.lower() != "default":
            fail(404, "HttpResourceNotFound", "The request url {} is not found.".format(self.base_url() + self.path))
        key = (rg.lower(), account.lower())
        if self.command == "GET":
            with self.server.lock:
                stored = self.server.policies.get(key)
            if stored is None:
                fail(404, "ManagementPolicyNotFound", "No ManagementPolicy found for account {}".format(account))
            return 200, stored, {}
        body = self.read_json(raw)
        props = get_ci(body, "properties")
        policy = get_ci(props, "policy")
        rules = get_ci(policy, "rules")
        if not isinstance(rules, list) or not rules:
            fail(400, "InvalidManagementPolicyRules" if isinstance(policy, dict) else "InvalidRequestContent",
                 "ManagementPolicy rules are invalid. properties.policy.rules must be a non-empty list. For more "
                 "information, see - https://aka.ms/managementpolicyexamples")
        seen = set()
        for rule in rules:
            self.check_rule(rule, seen)
        stored = {
            "id": pid,
            "name": "DefaultManagementPolicy",
            "type": POLICY_TYPE,
            "properties": {"lastModifiedTime": iso(now_utc()), "policy": policy},
        }
        with self.server.lock:
            self.server.policies[key] = stored
        return 200, stored, {}

    def check_rule(self, rule, seen):
        def bad(name, what):
            fail(400, "InvalidManagementPolicyRule", "ManagementPolicy rule {} is invalid. Invalid value for "
                 "parameter : {} For more information, see - https://aka.ms/managementpolicyexamples".format(
                     name, what))

        if not isinstance(rule, dict):
            bad("", "rule must be an object")
        name = get_ci(rule, "name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9]{1,256}$", name):
            bad(name, "name must be 1 to 256 letters or digits")
        if name in seen:
            bad(name, "name must be unique within the policy")
        seen.add(name)
        if get_ci(rule, "type") != "Lifecycle":
            bad(name, "type must be Lifecycle")
        enabled = get_ci(rule, "enabled")
        if enabled is not None and not isinstance(enabled, bool):
            bad(name, "enabled must be a boolean")
        definition = get_ci(rule, "definition")
        if not isinstance(definition, dict):
            bad(name, "definition is required")
        filters = get_ci(definition, "filters")
        if not isinstance(filters, dict):
            bad(name, "filter is required")
        blob_types = get_ci(filters, "blobTypes")
        if not isinstance(blob_types, list) or not blob_types or any(
                t not in ("blockBlob", "appendBlob") for t in blob_types):
            bad(name, "filters.blobTypes must list blockBlob and/or appendBlob")
        prefixes = get_ci(filters, "prefixMatch")
        if prefixes is not None and (not isinstance(prefixes, list) or any(not isinstance(p, str) for p in prefixes)):
            bad(name, "filters.prefixMatch must be a list of strings")
        check_tag_filters(name, filters, bad)
        actions = get_ci(definition, "actions")
        if not isinstance(actions, dict) or not actions:
            bad(name, "actions is required")
        for target, acts in actions.items():
            if target not in ("baseBlob", "snapshot", "version"):
                bad(name, "unknown action target {}".format(target))
            if not isinstance(acts, dict) or not acts:
                bad(name, "{} needs at least one action".format(target))
            for act, cond in acts.items():
                if isinstance(cond, bool) and act == "enableAutoTierToHotFromCool":
                    continue
                if not isinstance(cond, dict) or not cond:
                    bad(name, "{}.{} needs a condition".format(target, act))
                for ck, cv in cond.items():
                    if not ck.startswith("days") or isinstance(cv, bool) or not isinstance(cv, (int, float)) \
                            or cv < 0 or cv != int(cv):
                        bad(name, "{}.{}.{} must be a whole number of days".format(target, act, ck))


    # -- read replicas: list, virtual endpoints, promotion --

    def not_found(self, rg, name):
        fail(404, "ResourceNotFound", "The Resource '{}/{}' under resource group '{}' was not found. For more "
             "details please go to https://aka.ms/ARMResourceNotFoundFix".format(PG_TYPE, name, rg))

    def server_children(self, query, rg, name, kind):
        """GET .../flexibleServers/{name}/replicas (a ServerList of the servers
        whose sourceServerResourceId is this one) or .../virtualendpoints (a
        VirtualEndpointsList of the pairs this server is a member of)."""
        st = self.server.state
        self.method_is("GET")
        key = (rg.lower(), name.lower())
        with self.server.lock:
            srv = st["servers"].get(key)
            loc = srv["location"] if srv else None
        self.api_version(query, st["api_versions"], "flexibleServers/" + kind, loc)
        self.rg_exists(rg)
        if srv is None:
            self.not_found(rg, name)
        with self.server.lock:
            if kind == "replicas":
                sid = server_id(st, srv["rg"], srv["name"]).lower()
                value = [server_body(st, s) for s in st["servers"].values()
                         if (s["properties"].get("sourceServerResourceId") or "").lower() == sid]
            else:
                value = [virtual_endpoint_body(st, rg, name, pair) for pair in st["virtual_endpoint_pairs"]
                         if key in pair["members"]]
        return 200, {"value": value}, {}

    def promote_replica(self, claims, query, rg, name, raw):
        """PATCH of a read replica with properties.replica.promoteMode and
        promoteOption (the only PATCH served): 202 and an operation, after
        which the replica is a primary."""
        st = self.server.state
        key = (rg.lower(), name.lower())
        with self.server.lock:
            srv = st["servers"].get(key)
            loc = srv["location"] if srv else None
        self.api_version(query, st["api_versions"], "flexibleServers", loc)
        if rg.lower() in st["forbidden_resource_groups"]:
            self.forbidden(claims, PG_TYPE + "/write", server_id(st, rg, name))
        self.rg_exists(rg)
        body = self.read_json(raw)
        if srv is None:
            self.not_found(rg, name)
        replica = get_ci(get_ci(body, "properties"), "replica")
        if not isinstance(replica, dict):
            fail(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "
                 "(fake_arm.py serves PATCH with properties.replica only).")
        mode = get_ci(replica, "promoteMode")
        option = get_ci(replica, "promoteOption")
        if not isinstance(mode, str) or mode.lower() not in PROMOTE_MODES:
            fail(400, "InvalidParameterValue", "Invalid value given for parameter promoteMode. Specify a valid "
                 "parameter value.")
        if option is not None and (not isinstance(option, str) or option.lower() not in PROMOTE_OPTIONS):
            fail(400, "InvalidParameterValue", "Invalid value given for parameter promoteOption. Specify a valid "
                 "parameter value.")
        mode = PROMOTE_MODES[mode.lower()]
        with self.server.lock:
            role = srv["properties"]["replica"].get("role")
            # The exact code Azure answers here is not published (spec and
            # docs name none): a 400 in the resource provider's usual form.
            if role not in ("AsyncReplica", "GeoAsyncReplica"):
                fail(400, "InvalidParameterValue", "Invalid value given for parameter promoteMode. Specify a "
                     "valid parameter value. The server '{}' is not a read replica (role {}).".format(name, role))
            if srv["op"] and self.server.ops[srv["op"]]["status"] == "InProgress":
                fail(409, "ServerIsBusy", "The server '{}' is busy with another operation. Please try again "
                     "later.".format(name))
            source = (srv["properties"].get("sourceServerResourceId") or "").lower()
            primary = next((k for k, s in st["servers"].items()
                            if server_id(st, s["rg"], s["name"]).lower() == source), None)
            # Microsoft: a switchover needs a virtual endpoint whose writer
            # is the primary (concepts-read-replicas-promote).
            if mode == "Switchover" and not any(primary in p["members"] for p in st["virtual_endpoint_pairs"]):
                fail(400, "InvalidParameterValue", "Invalid value given for parameter promoteMode. Specify a "
                     "valid parameter value. Switchover requires virtual endpoints on the primary server.")
            opid = str(uuid.uuid4())
            srv["op"] = opid
            srv["provisioning_gets"] = 0
            srv["properties"]["state"] = "Updating"
            srv["properties"]["replica"]["replicationState"] = "Updating"
            self.server.ops[opid] = {
                "id": opid, "key": key, "location": srv["location"], "polls": 0, "status": "InProgress",
                "startTime": iso(now_utc()), "endTime": None, "fail": False, "api": query["api-version"][0],
                "promote": {"mode": mode, "option": PROMOTE_OPTIONS[(option or "planned").lower()],
                            "primary": primary},
            }
        path = "/subscriptions/{}/providers/Microsoft.DBforPostgreSQL/locations/{}".format(
            st["subscription"], srv["location"])
        api = query["api-version"][0]
        return 202, None, {
            "Azure-AsyncOperation": "{}{}/azureAsyncOperation/{}?api-version={}".format(
                self.base_url(), path, opid, api),
            "Location": "{}{}/operationResults/{}?api-version={}".format(self.base_url(), path, opid, api),
            "Retry-After": st["retry_after"],
        }

def check_tag_filters(name, filters, bad):
    """filters.blobIndexMatch, as the 2023-05-01 TagFilter: at most 10 of
    {name: 1-128 characters, op: "==" (the only operator), value: 0-256
    characters}."""
    tags = get_ci(filters, "blobIndexMatch")
    if tags is None:
        return
    if not isinstance(tags, list) or len(tags) > 10:
        bad(name, "filters.blobIndexMatch must be a list of at most 10 tag filters")
    for t in tags:
        if not isinstance(t, dict):
            bad(name, "filters.blobIndexMatch entries must be objects")
        tname, op, value = get_ci(t, "name"), get_ci(t, "op"), get_ci(t, "value")
        if not isinstance(tname, str) or not 1 <= len(tname) <= 128:
            bad(name, "blobIndexMatch.name must be 1 to 128 characters")
        if op != "==":
            bad(name, "blobIndexMatch.op must be == (the only operator supported)")
        if not isinstance(value, str) or len(value) > 256:
            bad(name, "blobIndexMatch.value must be a string of at most 256 characters")


def seed_policies(st):
    """The management policies that exist before the test: state key
    management_policies {"rg/account": {"rules": [...]}} (someone else's
    rules, to be kept by a merge)."""
    out = {}
    for key, policy in (st.get("management_policies") or {}).items():
        rg, _, account = key.partition("/")
        out[(rg.lower(), account.lower())] = {
            "id": "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}/"
                  "managementPolicies/default".format(st["subscription"], rg, account),
            "name": "DefaultManagementPolicy",
            "type": POLICY_TYPE,
            "properties": {"lastModifiedTime": iso(now_utc()), "policy": policy},
        }
    return out


# --------------------------------------------------------------------------
# Read replicas and their promotion (Microsoft.DBforPostgreSQL 2025-08-01:
# the Replica definition, Replicas_ListByServer, VirtualEndpoints_ListByServer,
# Servers_Update with properties.replica.promoteMode / promoteOption, and
# the examples ServersPromoteReplicaAs{Planned,Forced}{StandaloneServer,
# Switchover}.json: 202 with Azure-AsyncOperation and Location).

PROMOTE_MODES = {"standalone": "Standalone", "switchover": "Switchover"}
PROMOTE_OPTIONS = {"planned": "Planned", "forced": "Forced"}


def link_replicas(st, servers):
    """servers.*.replicaOf: make each such server a read replica of the one
    it names (role GeoAsyncReplica across regions, AsyncReplica within one);
    virtual_endpoints: the pairs of virtual endpoints (members: the writer's
    target first, then the reader's)."""
    for key, spec in (st.get("servers") or {}).items():
        of = spec.get("replicaOf") if isinstance(spec, dict) else None
        if not of:
            continue
        rg, _, name = key.partition("/")
        prg, _, pname = str(of).partition("/")
        primary = servers.get((prg.lower(), pname.lower()))
        if primary is None:
            sys.exit("fake_arm.py: servers: {!r} is a replicaOf {!r}, which is not a server".format(key, of))
        srv = servers[(rg.lower(), name.lower())]
        role = "GeoAsyncReplica" if srv["location"] != primary["location"] else "AsyncReplica"
        make_replica(st, srv, primary, role, spec.get("replicationState", "Active"))
    pairs = []
    for key, base in (st.get("virtual_endpoints") or {}).items():
        rg, _, name = key.partition("/")
        primary = servers.get((rg.lower(), name.lower()))
        if primary is None:
            sys.exit("fake_arm.py: virtual_endpoints: {!r} is not a server".format(key))
        pid = server_id(st, primary["rg"], primary["name"]).lower()
        readers = [k for k, s in servers.items()
                   if (s["properties"].get("sourceServerResourceId") or "").lower() == pid]
        pairs.append({"name": base, "members": [(rg.lower(), name.lower())] + readers[:1]})
    st["virtual_endpoint_pairs"] = pairs


def make_replica(st, srv, primary, role, replication_state):
    p = srv["properties"]
    p["replica"] = {"capacity": p["replicaCapacity"], "role": role, "replicationState": replication_state}
    p["replicationRole"] = role
    p["sourceServerResourceId"] = server_id(st, primary["rg"], primary["name"])


def make_primary(srv):
    p = srv["properties"]
    p["replica"] = {"capacity": p["replicaCapacity"], "role": "Primary"}
    p["replicationRole"] = "Primary"
    p.pop("sourceServerResourceId", None)


def apply_promotion(st, srv, promote):
    """The promotion's effect once its operation Succeeded: Standalone, the
    replica leaves the replication set (and every virtual endpoint);
    Switchover, it and its primary swap roles, and the writer endpoint
    follows it."""
    key = (srv["rg"].lower(), srv["name"].lower())
    old = st["servers"].get(promote["primary"])
    make_primary(srv)
    srv["properties"]["state"] = "Ready"
    if promote["mode"] == "Standalone":
        for pair in st["virtual_endpoint_pairs"]:
            pair["members"] = [m for m in pair["members"] if m != key]
        return
    if old is not None:
        make_replica(st, old, srv, "GeoAsyncReplica" if old["location"] != srv["location"] else "AsyncReplica",
                     "Active")
    for pair in st["virtual_endpoint_pairs"]:
        if promote["primary"] in pair["members"]:
            pair["members"] = [key, promote["primary"]]


def virtual_endpoint_body(st, rg, name, pair):
    base = pair["name"]
    members = [st["servers"][m]["name"] for m in pair["members"] if m in st["servers"]]
    return {
        "id": "{}/virtualendpoints/{}".format(server_id(st, rg, name), base),
        "name": base,
        "type": PG_TYPE + "/virtualendpoints",
        "properties": {
            "endpointType": "ReadWrite",
            "members": members,
            "virtualEndpoints": ["{}.writer.postgres.database.azure.com".format(base),
                                 "{}.reader.postgres.database.azure.com".format(base)],
        },
    }


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that gave up during the TLS handshake (it does not trust
        # the CA) is logged as such, not as a traceback.
        err = sys.exc_info()[1]
        if self.cfg.log:
            with self.log_lock:
                self.seq += 1
                entry = {"seq": self.seq, "t": time.monotonic(), "time": time.time(),
                         "event": "connection failed", "error": repr(err)}
                append_line(self.cfg.log, entry)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    args = ap.parse_args()
    secret = os.environ.get("FAKE_ARM_CLIENT_SECRET")
    if not secret:
        sys.exit("fake_arm.py: FAKE_ARM_CLIENT_SECRET is not set")

    class Cfg:
        log = args.log

    Cfg.secret = secret

    httpd = Server(("127.0.0.1", args.port), Handler)
    httpd.cfg = Cfg
    httpd.state = load_state(args.state)
    httpd.lock = threading.Lock()
    httpd.log_lock = threading.Lock()
    httpd.seq = 0
    httpd.tokens = {}
    httpd.ops = {}
    httpd.throttled = {}
    httpd.policies = seed_policies(httpd.state)
    serve_tls(httpd, args.cert, args.key)


if __name__ == "__main__":
    main()
