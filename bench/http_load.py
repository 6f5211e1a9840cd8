"""HTTP load from a process of its own: N clients GET, PUT and PROPFIND in a loop.

Run by the mixed-load workload, so that the client threads do not share a GIL with the
SFTP client being measured. Prints the operations a second after ``--warmup``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
import time
from urllib.parse import urlsplit

MIB = 1 << 20


failures: list[str] = []


def client(url: str, auth: str, index: int, count: list[int]) -> None:
    """GET a 4 MiB file, PUT 2 MiB, PROPFIND the folder, over and over."""
    parts = urlsplit(url)
    base = parts.path.rstrip("/")
    body = os.urandom(2 * MIB)
    while True:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=60)
        try:
            for method, path, data, extra in (
                ("GET", f"{base}/f{index % 8}.bin", None, {}),
                ("PUT", f"{base}/up{index}.bin", body, {}),
                ("PROPFIND", f"{base}/", None, {"Depth": "1"}),
            ):
                conn.request(method, path, body=data, headers={"Authorization": auth, **extra})
                reply = conn.getresponse()
                reply.read()
                if reply.status >= 300:  # (only what was done counts: an error is fast)
                    raise http.client.HTTPException(f"{method} {path}: {reply.status}")
                count[0] += 1
        except (OSError, http.client.HTTPException) as exc:
            failures.append(str(exc))
            time.sleep(0.01)
        finally:
            conn.close()


def main() -> None:
    """Start the clients, wait ``--warmup``, count for ``--seconds``, print the rate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="the WebDAV folder holding f0.bin ... f7.bin")
    parser.add_argument("--auth", required=True, help="the Authorization header's value")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    count = [0]
    for index in range(args.clients):
        threading.Thread(
            target=client, args=(args.url, args.auth, index, count), daemon=True
        ).start()
    time.sleep(args.warmup)
    before, started = count[0], time.monotonic()
    print("started", flush=True)
    time.sleep(args.seconds)
    print((count[0] - before) / (time.monotonic() - started), flush=True)
    if failures:
        print(f"{len(failures)} failed, e.g. {failures[0]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
