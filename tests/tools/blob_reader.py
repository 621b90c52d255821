"""An independent look at a blob container: Microsoft's own Python SDK
(azure-storage-blob, pinned by scripts/setup.sh into .tools/py), not our Rust
client, so the tests check what valerix-backup really stored in Azure Blob
(Azurite in the tests) and can damage it behind the program's back.

Connection string from $AZURE_STORAGE_CONNECTION_STRING
(scripts/azurite.sh conn PORT prints Azurite's). Run with .tools/py/bin/python.
Retries a failed request $BLOB_READER_RETRIES times (default 2, 0.5 s apart).

  blob_reader.py create CONTAINER            create it (no error if it exists)
  blob_reader.py list CONTAINER [PREFIX]     JSON list: name, size, metadata,
                      tags, access_tier, content_md5 (base64 or null),
                      creation_time, last_modified (ISO 8601), blob_type
  blob_reader.py list-count CONTAINER [PREFIX]
                      list with metadata and tags, print only the count
  blob_reader.py sha256 CONTAINER BLOB       hex SHA-256 of the content
  blob_reader.py tamper CONTAINER BLOB [--offset N | --all]
                      rewrite the content with one byte inverted (the middle
                      one, or at N; --all: every byte), same size, keeping
                      metadata, tags, content settings and tier; prints JSON
  blob_reader.py delete CONTAINER BLOB
  blob_reader.py set-tier CONTAINER BLOB Hot|Cool|Cold|Archive
  blob_reader.py set-metadata CONTAINER BLOB [K=V]...
                      replace the blob's metadata with these pairs (none:
                      strip it all); content, tags and tier stay
  blob_reader.py set-tags CONTAINER BLOB [K=V]...
                      replace the blob's index tags (none: remove them all)
  blob_reader.py sas PERMISSIONS [--resource-types sco] [--hours H]
                      an account SAS (negative H: already expired)
  blob_reader.py blocks CONTAINER BLOB       JSON: committed and uncommitted block counts
  blob_reader.py upload CONTAINER BLOB FILE [--concurrency N] [--block-size-mib M]
                      upload_blob(max_concurrency=N); prints JSON with bytes
                      and seconds (the benchmark's reference)
  blob_reader.py put-many CONTAINER PREFIX N [--concurrency C]
                      [--metadata K=V]... [--tag K=V]...
                      N tiny blobs PREFIX000000.. in parallel; prints JSON

Immutability (version-level WORM; the SDK's own API for these headers, so
it checks what tests/tools/worm_proxy.py and valerix-backup send and read):
  blob_reader.py worm CONTAINER [PREFIX]  JSON list with include=versions,
                      immutabilitypolicy, legalhold: name, version_id,
                      is_current_version, size, until (ISO 8601 or null),
                      mode, legal_hold
  blob_reader.py props CONTAINER BLOB     JSON: until, mode, legal_hold,
                      version_id (Get Blob Properties)
  blob_reader.py try-delete CONTAINER BLOB [--version-id V]
                      JSON: {"deleted": true} or {"deleted": false, "status",
                      "code"}
  blob_reader.py try-overwrite CONTAINER BLOB
                      upload_blob(overwrite=True) of other bytes; JSON as
                      try-delete, "written" for "deleted"
  blob_reader.py set-policy CONTAINER BLOB SECONDS [--mode Unlocked|Locked]
                      Set Blob Immutability Policy until now + SECONDS
  blob_reader.py set-hold CONTAINER BLOB true|false
"""

import argparse
import base64
import concurrent.futures
import hashlib
import json
import os
import sys
import time

import requests
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContentSettings, LinearRetry, StandardBlobTier

# Azurite 3.37 accepts x-ms-version up to this one; the SDK's default is newer
# and Azurite refuses it.
API_VERSION = "2026-06-06"


def service(pool=10, block_size=None):
    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if not conn:
        sys.exit("blob_reader.py: AZURE_STORAGE_CONNECTION_STRING is not set")
    # One connection per worker thread (requests' default pool keeps 10).
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(pool, 10))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    kw = {}
    if block_size:
        kw = {"max_block_size": block_size, "max_single_put_size": block_size}
    # A test tool fails fast: the SDK's default retries an unreachable
    # endpoint for about a minute (backoff 15 s, 18 s, 24 s).
    retry = LinearRetry(
        backoff=0.5, random_jitter_range=0.2, retry_total=int(os.environ.get("BLOB_READER_RETRIES", "2"))
    )
    return BlobServiceClient.from_connection_string(
        conn,
        api_version=API_VERSION,
        transport=RequestsTransport(session=session, session_owner=False),
        retry_policy=retry,
        **kw,
    )


def iso(t):
    return t.isoformat() if t is not None else None


def key_values(pairs):
    out = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep:
            sys.exit(f"blob_reader.py: {p!r} is not KEY=VALUE")
        out[k] = v
    return out


def cmd_create(a):
    try:
        service().create_container(a.container)
    except ResourceExistsError:
        pass


def cmd_list(a):
    cc = service().get_container_client(a.container)
    out = []
    for b in cc.list_blobs(name_starts_with=a.prefix, include=["metadata", "tags"]):
        md5 = b.content_settings.content_md5 if b.content_settings else None
        out.append(
            {
                "name": b.name,
                "size": b.size,
                "metadata": dict(b.metadata or {}),
                "tags": dict(b.tags or {}),
                "access_tier": b.blob_tier,
                "content_md5": base64.b64encode(md5).decode() if md5 else None,
                "creation_time": iso(b.creation_time),
                "last_modified": iso(b.last_modified),
                "blob_type": str(b.blob_type.value if hasattr(b.blob_type, "value") else b.blob_type),
            }
        )
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


def cmd_list_count(a):
    cc = service().get_container_client(a.container)
    n = sum(1 for _ in cc.list_blobs(name_starts_with=a.prefix, include=["metadata", "tags"]))
    print(n)


def cmd_sha256(a):
    bc = service().get_blob_client(a.container, a.blob)
    h = hashlib.sha256()
    for chunk in bc.download_blob().chunks():
        h.update(chunk)
    print(h.hexdigest())


def cmd_tamper(a):
    bc = service().get_blob_client(a.container, a.blob)
    props = bc.get_blob_properties()
    tags = bc.get_blob_tags()
    data = bytearray(bc.download_blob().readall())
    if not data:
        sys.exit(f"blob_reader.py: {a.blob} is empty, nothing to tamper with")
    if a.all:
        for i in range(len(data)):
            data[i] ^= 0xFF
        where = "all"
    else:
        off = len(data) // 2 if a.offset is None else a.offset
        if not 0 <= off < len(data):
            sys.exit(f"blob_reader.py: offset {off} outside 0..{len(data) - 1}")
        data[off] ^= 0xFF
        where = off
    cs = props.content_settings
    # The stored Content-MD5 is the service's: the new content gets its own,
    # as it would if anyone re-uploaded the blob.
    settings = ContentSettings(
        content_type=cs.content_type,
        content_encoding=cs.content_encoding,
        content_language=cs.content_language,
        content_disposition=cs.content_disposition,
        cache_control=cs.cache_control,
    )
    kw = {}
    if props.blob_tier and not props.blob_tier_inferred:
        kw["standard_blob_tier"] = StandardBlobTier(props.blob_tier)
    bc.upload_blob(
        bytes(data),
        overwrite=True,
        metadata=dict(props.metadata or {}),
        tags=dict(tags or {}) or None,
        content_settings=settings,
        **kw,
    )
    print(json.dumps({"blob": a.blob, "size": len(data), "flipped": where}))


def cmd_delete(a):
    service().get_blob_client(a.container, a.blob).delete_blob(delete_snapshots="include")


def cmd_upload(a):
    bs = a.block_size_mib * 1024 * 1024 if a.block_size_mib else None
    bc = service(pool=a.concurrency, block_size=bs).get_blob_client(a.container, a.blob)
    size = os.path.getsize(a.file)
    t = time.monotonic()
    with open(a.file, "rb") as f:
        bc.upload_blob(f, length=size, overwrite=True, max_concurrency=a.concurrency)
    secs = time.monotonic() - t
    print(json.dumps({"bytes": size, "seconds": round(secs, 3), "concurrency": a.concurrency}))


def cmd_put_many(a):
    cc = service(pool=a.concurrency).get_container_client(a.container)
    meta = key_values(a.metadata) or None
    tags = key_values(a.tag) or None
    width = max(6, len(str(a.n - 1)))

    def put(i):
        name = f"{a.prefix}{i:0{width}d}"
        cc.upload_blob(name, f"{name}\n".encode(), overwrite=True, metadata=meta, tags=tags)

    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.concurrency) as ex:
        for f in [ex.submit(put, i) for i in range(a.n)]:
            f.result()
    secs = time.monotonic() - t
    print(json.dumps({"blobs": a.n, "seconds": round(secs, 3)}))


def cmd_set_tier(a):
    service().get_blob_client(a.container, a.blob).set_standard_blob_tier(StandardBlobTier(a.tier))


def cmd_set_metadata(a):
    service().get_blob_client(a.container, a.blob).set_blob_metadata(key_values(a.pairs))


def cmd_set_tags(a):
    service().get_blob_client(a.container, a.blob).set_blob_tags(key_values(a.pairs))


def cmd_blocks(a):
    """Counts of committed and uncommitted blocks (an interrupted upload)."""
    committed, uncommitted = service().get_blob_client(a.container, a.blob).get_block_list("all")
    print(json.dumps({"committed": len(committed), "uncommitted": len(uncommitted)}))


def cmd_sas(a):
    """An account SAS for the blob service, to test SAS connection strings."""
    import datetime
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    conn = dict(p.split("=", 1) for p in os.environ["AZURE_STORAGE_CONNECTION_STRING"].split(";") if p)
    now = datetime.datetime.now(datetime.timezone.utc)
    print(generate_account_sas(
        conn["AccountName"], conn["AccountKey"],
        resource_types=ResourceTypes.from_string(a.resource_types),
        permission=AccountSasPermissions.from_string(a.permissions),
        start=now - datetime.timedelta(hours=2),
        expiry=now + datetime.timedelta(hours=a.hours),
    ))


def error_of(e):
    """(status, code) of a refused request; the code from the body when the
    SDK's error map did not set it."""
    import re
    code = getattr(getattr(e, "error_code", None), "value", None) or getattr(e, "error_code", None)
    if not code:
        m = re.search(r"<Code>([^<]+)</Code>", str(e))
        code = m.group(1) if m else None
    return getattr(e, "status_code", None), code


def policy_json(p):
    return {"until": iso(p.expiry_time) if p else None, "mode": p.policy_mode if p else None}


def cmd_worm(a):
    cc = service().get_container_client(a.container)
    out = []
    for b in cc.list_blobs(name_starts_with=a.prefix, include=["versions", "immutabilitypolicy", "legalhold"]):
        out.append({"name": b.name, "version_id": b.version_id, "is_current_version": bool(b.is_current_version),
                    "size": b.size, "legal_hold": bool(b.has_legal_hold), **policy_json(b.immutability_policy)})
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


def cmd_props(a):
    p = service().get_blob_client(a.container, a.blob).get_blob_properties()
    print(json.dumps({"legal_hold": bool(p.has_legal_hold), "version_id": p.version_id,
                      **policy_json(p.immutability_policy)}))


def cmd_try_delete(a):
    try:
        service().get_blob_client(a.container, a.blob).delete_blob(version_id=a.version_id)
        print(json.dumps({"deleted": True}))
    except AzureError as e:
        status, code = error_of(e)
        print(json.dumps({"deleted": False, "status": status, "code": code}))


def cmd_try_overwrite(a):
    try:
        service().get_blob_client(a.container, a.blob).upload_blob(b"overwritten by blob_reader.py\n", overwrite=True)
        print(json.dumps({"written": True}))
    except AzureError as e:
        status, code = error_of(e)
        print(json.dumps({"written": False, "status": status, "code": code}))


def cmd_set_policy(a):
    import datetime
    from azure.storage.blob import ImmutabilityPolicy
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=a.seconds)
    service().get_blob_client(a.container, a.blob).set_immutability_policy(
        ImmutabilityPolicy(expiry_time=until, policy_mode=a.mode))


def cmd_set_hold(a):
    service().get_blob_client(a.container, a.blob).set_legal_hold(a.hold == "true")


def main():
    p = argparse.ArgumentParser(prog="blob_reader.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("create")
    s.add_argument("container")
    s.set_defaults(fn=cmd_create)
    for name, fn in (("list", cmd_list), ("list-count", cmd_list_count)):
        s = sub.add_parser(name)
        s.add_argument("container")
        s.add_argument("prefix", nargs="?")
        s.set_defaults(fn=fn)
    for name, fn in (("sha256", cmd_sha256), ("delete", cmd_delete), ("tamper", cmd_tamper)):
        s = sub.add_parser(name)
        s.add_argument("container")
        s.add_argument("blob")
        s.set_defaults(fn=fn)
        if name == "tamper":
            g = s.add_mutually_exclusive_group()
            g.add_argument("--offset", type=int)
            g.add_argument("--all", action="store_true")
    s = sub.add_parser("set-tier")
    s.add_argument("container")
    s.add_argument("blob")
    s.add_argument("tier", choices=["Hot", "Cool", "Cold", "Archive"])
    s.set_defaults(fn=cmd_set_tier)
    for name, fn in (("set-metadata", cmd_set_metadata), ("set-tags", cmd_set_tags)):
        s = sub.add_parser(name)
        s.add_argument("container")
        s.add_argument("blob")
        s.add_argument("pairs", nargs="*", metavar="K=V")
        s.set_defaults(fn=fn)
    s = sub.add_parser("sas")
    s.add_argument("permissions")
    s.add_argument("--resource-types", default="sco")
    s.add_argument("--hours", type=float, default=1)
    s.set_defaults(fn=cmd_sas)
    s = sub.add_parser("blocks")
    s.add_argument("container")
    s.add_argument("blob")
    s.set_defaults(fn=cmd_blocks)
    s = sub.add_parser("upload")
    s.add_argument("container")
    s.add_argument("blob")
    s.add_argument("file")
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--block-size-mib", type=int)
    s.set_defaults(fn=cmd_upload)
    s = sub.add_parser("put-many")
    s.add_argument("container")
    s.add_argument("prefix")
    s.add_argument("n", type=int)
    s.add_argument("--concurrency", type=int, default=16)
    s.add_argument("--metadata", action="append", metavar="K=V")
    s.add_argument("--tag", action="append", metavar="K=V")
    s.set_defaults(fn=cmd_put_many)
    s = sub.add_parser("worm")
    s.add_argument("container")
    s.add_argument("prefix", nargs="?")
    s.set_defaults(fn=cmd_worm)
    for name, fn in (("props", cmd_props), ("try-delete", cmd_try_delete), ("try-overwrite", cmd_try_overwrite),
                     ("set-policy", cmd_set_policy), ("set-hold", cmd_set_hold)):
        s = sub.add_parser(name)
        s.add_argument("container")
        s.add_argument("blob")
        s.set_defaults(fn=fn)
        if name == "try-delete":
            s.add_argument("--version-id")
        if name == "set-policy":
            s.add_argument("seconds", type=float)
            s.add_argument("--mode", default="Unlocked", choices=["Unlocked", "Locked"])
        if name == "set-hold":
            s.add_argument("hold", choices=["true", "false"])
    a = p.parse_args()
    try:
        a.fn(a)
    except AzureError as e:
        code = getattr(getattr(e, "error_code", None), "value", None) or getattr(e, "error_code", None)
        msg = str(getattr(e, "message", None) or e).splitlines()[0]
        sys.exit(f"blob_reader.py {a.cmd}: {type(e).__name__}" + (f" {code}" if code else "") + f": {msg}")


if __name__ == "__main__":
    main()
