"""Puts N blobs into the container bench-audit for scripts/bench-offsite.sh:
a dump and its manifest per hourly stamp going back from yesterday, named as
valerix-backup names its copies, with the metadata and index tags its upload
gives them.

    populate-audit.py N      (AZURE_STORAGE_CONNECTION_STRING names Azurite)
"""
import concurrent.futures
import datetime
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "tools"))
import blob_reader as br  # noqa: E402


def put(cc, start, i):
    t = start - datetime.timedelta(hours=i // 2)
    stamp = t.strftime("%Y%m%d_%H%M%S")
    kind = "dump.gz" if i % 2 == 0 else "manifest.json"
    name = f"daily/order_db/order_db_{stamp}.{kind}"
    meta = {"sha256": hashlib.sha256(f"order_db_{stamp}".encode()).hexdigest(),
            "database": "order_db", "timestamp": stamp, "tier": "daily",
            "source_host": "bench", "tool_version": "0.1.0"}
    if kind == "manifest.json":
        meta["kind"] = "manifest"
    tags = {"tier": "daily", "database": "order_db", "date": t.strftime("%Y-%m-%d")}
    cc.upload_blob(name, f"{name}\n".encode(), overwrite=True, metadata=meta, tags=tags,
                   standard_blob_tier=br.StandardBlobTier.COOL)


def main():
    n = int(sys.argv[1])
    svc = br.service(pool=16)
    try:
        svc.create_container("bench-audit")
    except br.ResourceExistsError:
        pass
    cc = svc.get_container_client("bench-audit")
    start = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0) \
        - datetime.timedelta(days=1)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
        for f in [ex.submit(put, cc, start, i) for i in range(n)]:
            f.result()
    print(f"bench-offsite: {n} blobs put in {time.monotonic() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
