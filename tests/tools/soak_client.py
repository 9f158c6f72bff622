"""Many short TCP connections, for the soak test (tests/soak.rs).

Usage: python3 soak_client.py HOST PORT N PARALLEL
  Makes N connections from PARALLEL threads; each connects, reads until EOF
  and wants a reply starting with "pong". Prints "ok OK failed FAILED SECS"
  and exits 1 if any failed (the first few errors go to stderr).
"""
import socket
import sys
import threading
import time

host, port, n, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()
counts = {"ok": 0, "failed": 0, "next": 0}


def one():
    s = socket.create_connection((host, port), timeout=10)
    try:
        s.settimeout(10)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if not data.startswith(b"pong"):
        raise OSError("unexpected reply %r" % data[:40])


def worker():
    while True:
        with lock:
            if counts["next"] >= n:
                return
            counts["next"] += 1
        try:
            one()
            with lock:
                counts["ok"] += 1
        except OSError as e:
            with lock:
                counts["failed"] += 1
                if counts["failed"] <= 5:
                    print("error: %s" % e, file=sys.stderr, flush=True)


start = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(parallel)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok %d failed %d %.1f" % (counts["ok"], counts["failed"], time.monotonic() - start))
sys.exit(1 if counts["failed"] else 0)
