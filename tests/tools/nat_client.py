"""Clients run inside sandboxes by the NAT tests. Each prints one line.

Usage: python3 nat_client.py http HOST PORT N      download N bytes and upload N bytes
       python3 nat_client.py connect HOST PORT TIMEOUT
              prints "connected", "refused", "timeout" or "error ERRNO-NAME", and the seconds taken
       python3 nat_client.py udp HOST PORT         echo round trips: 5 bytes, 0 bytes, 65507 bytes
       python3 nat_client.py udp-closed HOST PORT  prints "refused" when an ICMP port unreachable comes back
       python3 nat_client.py many HOST PORT N HOLD open N connections, hold HOLD seconds, close them
       python3 nat_client.py push HOST PORT        sends until a send blocks for a second; prints the bytes sent
       python3 nat_client.py push-many HOST PORT N HOLD
              opens N connections (small socket buffers), sends on each until every send blocks and
              reads nothing; prints "open O refused R other X pushed BYTES", holds HOLD seconds, closes
       python3 nat_client.py udp-big HOST PORT SIZE COUNT
              COUNT echo round trips of SIZE bytes (3 tries of 1 s each); prints "answered A of COUNT"
       python3 nat_client.py idle HOST PORT SECS   connects, reads nothing for SECS seconds
       python3 nat_client.py reset-from-host HOST PORT     prints how the server's reset arrived
       python3 nat_client.py reset-from-sandbox HOST PORT  resets a connection (SO_LINGER 0)
"""
import errno
import hashlib
import http.client
import resource
import socket
import sys
import time

mode = sys.argv[1]


def pattern(n):
    block = bytes((i * 7 + 3) % 251 for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


if mode == "http":
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    want = pattern(n)
    conn = http.client.HTTPConnection(host, port, timeout=20)
    conn.request("GET", f"/blob?n={n}")
    resp = conn.getresponse()
    got = resp.read()
    if got != want:
        sys.exit(f"download differs: {len(got)} bytes of {n}")
    conn.request("POST", "/upload", body=want, headers={"Content-Length": str(n)})
    digest = conn.getresponse().read().decode()
    if digest != hashlib.sha256(want).hexdigest():
        sys.exit(f"upload differs: server saw {digest}")
    print(f"ok {n}")
elif mode == "connect":
    host, port, timeout = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    start = time.monotonic()
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        outcome = "connected"
    except ConnectionRefusedError:
        outcome = "refused"
    except socket.timeout:
        outcome = "timeout"
    except OSError as e:
        outcome = "error " + errno.errorcode.get(e.errno, str(e.errno))
    print(f"{outcome} {time.monotonic() - start:.3f}")
elif mode == "udp":
    host, port = sys.argv[2], int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.settimeout(3)
    s.connect((host, port))
    results = []
    for payload in [b"hello", b"", pattern(65507)]:
        for attempt in range(3):
            s.send(payload)
            try:
                got = s.recv(65535)
            except socket.timeout:
                continue
            if got == payload:
                results.append(str(len(payload)))
                break
        else:
            sys.exit(f"no echo of {len(payload)} bytes (got {results})")
    print("echo " + " ".join(results))
elif mode == "udp-closed":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((sys.argv[2], int(sys.argv[3])))
    outcome = "timeout"
    for attempt in range(3):
        try:
            s.send(b"anyone?")
            s.recv(100)
            outcome = "answered"
            break
        except ConnectionRefusedError:
            outcome = "refused"
            break
        except socket.timeout:
            continue
    print(outcome)
elif mode == "many":
    host, port, n, hold = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, refused, other = [], 0, 0
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((host, port))
            socks.append(s)
        except ConnectionRefusedError:
            refused += 1
            s.close()
        except OSError:
            other += 1
            s.close()
    print(f"open {len(socks)} refused {refused} other {other}", flush=True)
    time.sleep(hold)
    for s in socks:
        s.close()
    print("closed", flush=True)
elif mode == "push-many":
    host, port, n, hold = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, refused, other = [], 0, 0
    for _ in range(n):
        s = socket.socket()
        # Small buffers in the sandbox: what stalls is the NAT's, not ours.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.settimeout(5)
        try:
            s.connect((host, port))
            s.setblocking(False)
            socks.append(s)
        except ConnectionRefusedError:
            refused += 1
            s.close()
        except OSError:
            other += 1
            s.close()
    chunk = b"m" * 65536
    pushed, quiet, deadline = 0, 0, time.monotonic() + 90
    while quiet < 5 and time.monotonic() < deadline:
        moved = 0
        for s in socks:
            try:
                while True:
                    moved += s.send(chunk)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pass
        pushed += moved
        quiet = quiet + 1 if moved == 0 else 0
        time.sleep(0.2)
    print(f"open {len(socks)} refused {refused} other {other} pushed {pushed}", flush=True)
    time.sleep(hold)
    for s in socks:
        s.close()
    print("closed", flush=True)
elif mode == "udp-big":
    host, port, size, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.settimeout(1)
    s.connect((host, port))
    answered = 0
    for i in range(count):
        payload = bytes([i]) + pattern(size - 1)
        for attempt in range(3):
            s.send(payload)
            try:
                while s.recv(65535) != payload:
                    pass
            except socket.timeout:
                continue
            answered += 1
            break
    print(f"answered {answered} of {count}")
elif mode == "push":
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
    s.settimeout(1.0)
    sent = 0
    chunk = b"p" * 65536
    try:
        while True:
            sent += s.send(chunk)
    except socket.timeout:
        pass
    print(sent)
elif mode == "idle":
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
    time.sleep(float(sys.argv[4]))
    print("done")
elif mode == "reset-from-host":
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
    s.sendall(b"rst-me")
    try:
        got = s.recv(100)
        print("eof" if not got else "data")
    except ConnectionResetError:
        print("reset")
elif mode == "reset-from-sandbox":
    import struct
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
    s.sendall(b"watch")
    time.sleep(0.3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("done")
else:
    sys.exit(f"unknown mode {mode}")
