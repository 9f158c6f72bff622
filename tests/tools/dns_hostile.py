"""Sends hostile or broken DNS input to a server and reports what came back.

Usage: python3 dns_hostile.py GATEWAY MODE

Modes (one line of output per probe, "NAME: RESULT"):
  udp        every malformed datagram below over UDP; RESULT is the rcode
             of the answer ("rcode=1"), or "no-answer" after 1 s
  tcp        the same messages over TCP, each on its own connection; RESULT
             is the rcode, "closed" (the server closed or reset), or
             "no-answer" after 2 s
  tcp-abuse  length prefix 0, length prefix 65535, a length prefix then a
             reset, a half query then silence, and an idle connection:
             RESULT says how the server ended each ("closed after 5.0s")
  tcp-fair   one idle connection stays open while another asks a real
             query; RESULT is "answered in 0.01s" for the second one
Only the gateway is ever contacted. The bytes are built by hand on purpose:
they are what no DNS library would produce.
"""
import socket
import struct
import sys
import time

GW = sys.argv[1]
MODE = sys.argv[2]


def header(qd=1, an=0, ns=0, ar=0, flags=0x0100, ident=0x1234):
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def qname(name):
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name="es", qtype=1):
    return header() + qname(name) + struct.pack("!HH", qtype, 1)


GOOD = query()

CASES = [
    ("pointer-to-itself", header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1)),
    ("pointer-loop", header() + b"\xc0\x0e\xc0\x0c" + struct.pack("!HH", 1, 1)),
    ("pointer-forward", header() + b"\xc0\x20" + struct.pack("!HH", 1, 1) + b"\0" * 20),
    ("truncated-header", GOOD[:7]),
    ("truncated-question", GOOD[:15]),
    ("truncated-type", GOOD[:-3]),
    ("label-64", header() + bytes([64]) + b"a" * 64 + b"\0" + struct.pack("!HH", 1, 1)),
    ("name-over-255", header() + (bytes([63]) + b"a" * 63) * 5 + b"\0" + struct.pack("!HH", 1, 1)),
    ("qdcount-0", header(qd=0)),
    ("qdcount-2", header(qd=2) + qname("es") + struct.pack("!HH", 1, 1) * 2),
    ("qdcount-65535", header(qd=65535) + qname("es") + struct.pack("!HH", 1, 1)),
    ("arcount-65535", header(ar=65535) + qname("es") + struct.pack("!HH", 1, 1)),
    ("oversize", GOOD + b"\0" * 8000),
    ("response-bit", header(flags=0x8180) + qname("es") + struct.pack("!HH", 1, 1)),
    ("opcode-update", header(flags=0x2800) + qname("es") + struct.pack("!HH", 1, 1)),
    ("reserved-label-type", header() + b"\x80es\0" + struct.pack("!HH", 1, 1)),
    ("empty", b""),
]


def rcode_of(data):
    if len(data) < 4:
        return "short-answer"
    return "rcode=%d" % (data[3] & 0x0F)


def udp_probe(payload):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(payload, (GW, 53))
        data, _ = s.recvfrom(65535)
        return rcode_of(data)
    except socket.timeout:
        return "no-answer"
    except OSError as e:
        return "error %s" % e
    finally:
        s.close()


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def tcp_probe(payload):
    s = socket.create_connection((GW, 53), timeout=2.0)
    try:
        s.sendall(struct.pack("!H", len(payload) & 0xFFFF) + payload)
        prefix = recv_exact(s, 2)
        if prefix is None:
            return "closed"
        data = recv_exact(s, struct.unpack("!H", prefix)[0])
        if data is None:
            return "closed"
        return rcode_of(data)
    except socket.timeout:
        return "no-answer"
    except ConnectionResetError:
        return "closed"
    finally:
        s.close()


def wait_closed(s, limit=15.0):
    """Seconds until the server closes or resets `s` (reading all it sends)."""
    start = time.monotonic()
    s.settimeout(limit)
    try:
        while True:
            if not s.recv(4096):
                break
    except ConnectionResetError:
        pass
    except socket.timeout:
        return "still open after %.1fs" % limit
    return "closed after %.1fs" % (time.monotonic() - start)


def tcp_abuse():
    s = socket.create_connection((GW, 53), timeout=5)
    s.sendall(b"\0\0")
    print("length-0: " + wait_closed(s), flush=True)
    s.close()

    s = socket.create_connection((GW, 53), timeout=5)
    s.sendall(b"\xff\xff" + b"a" * 100)
    print("length-65535: " + wait_closed(s), flush=True)
    s.close()

    s = socket.create_connection((GW, 53), timeout=5)
    s.sendall(b"\0\x28")
    time.sleep(0.2)
    # SO_LINGER 0: close sends a reset.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("prefix-then-reset: sent", flush=True)

    s = socket.create_connection((GW, 53), timeout=5)
    s.sendall(struct.pack("!H", len(GOOD)) + GOOD[:10])
    print("half-query: " + wait_closed(s), flush=True)
    s.close()

    s = socket.create_connection((GW, 53), timeout=5)
    print("idle: " + wait_closed(s), flush=True)
    s.close()


def tcp_fair():
    idle = [socket.create_connection((GW, 53), timeout=5) for _ in range(3)]
    idle[1].sendall(b"\0")  # half a length prefix
    time.sleep(0.3)
    start = time.monotonic()
    result = tcp_probe(GOOD)
    took = time.monotonic() - start
    print("second-connection: %s in %.2fs" % (result, took), flush=True)
    for s in idle:
        s.close()


if MODE == "udp":
    for name, payload in CASES:
        print("%s: %s" % (name, udp_probe(payload)), flush=True)
elif MODE == "tcp":
    for name, payload in CASES:
        if len(payload) > 65535:
            continue
        print("%s: %s" % (name, tcp_probe(payload)), flush=True)
elif MODE == "tcp-abuse":
    tcp_abuse()
elif MODE == "tcp-fair":
    tcp_fair()
else:
    sys.exit("unknown mode " + MODE)
