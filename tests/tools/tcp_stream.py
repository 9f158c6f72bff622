"""Keeps one TCP connection busy: sends a numbered line every 50 ms and
checks that each comes back (upper-cased by tcp_echo.py) in order.

Usage: python3 tcp_stream.py HOST PORT SECONDS
Prints "connected" (flushed) once the first round trip is done, so a test
can act while the conversation runs, then at the end the number of round
trips; exits 1 if the connection breaks, a reply is wrong, or no reply
arrives within 20 s (TCP retransmits through a pause).
"""
import socket
import sys
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((host, port), timeout=5)
s.settimeout(20)
deadline = time.monotonic() + seconds
n = 0
buf = b""
try:
    while time.monotonic() < deadline:
        line = f"line-{n}\n".encode()
        s.sendall(line)
        while b"\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("connection closed")
            buf += chunk
        got, buf = buf.split(b"\n", 1)
        if got + b"\n" != line.upper():
            raise OSError(f"wrong reply {got!r} to {line!r}")
        n += 1
        if n == 1:
            print("connected", flush=True)
        time.sleep(0.05)
except OSError as e:
    print(f"error after {n} round trips: {e}", file=sys.stderr)
    sys.exit(1)
print(n)
