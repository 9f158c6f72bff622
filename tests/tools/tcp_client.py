"""Connects to HOST:PORT, sends MESSAGE (or N bytes), prints the reply.

Usage: python3 tcp_client.py HOST PORT MESSAGE [TIMEOUT]
       python3 tcp_client.py HOST PORT --bytes N [TIMEOUT]   (prints the byte count echoed)
Exits 1 on any failure (refused, timeout, short reply).
"""
import socket
import sys
import threading

host, port = sys.argv[1], int(sys.argv[2])
timeout = 3.0
if sys.argv[3] == "--bytes":
    payload = b"x" * int(sys.argv[4])
    if len(sys.argv) > 5:
        timeout = float(sys.argv[5])
    count_only = True
else:
    payload = sys.argv[3].encode()
    if len(sys.argv) > 4:
        timeout = float(sys.argv[4])
    count_only = False
try:
    s = socket.create_connection((host, port), timeout=timeout)

    def send():
        # Send while the main thread reads, so a large echo cannot deadlock.
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
except OSError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
if got != payload.upper():
    print(f"error: short or wrong reply ({len(got)} of {len(payload)} bytes)", file=sys.stderr)
    sys.exit(1)
print(len(got) if count_only else got.decode())
