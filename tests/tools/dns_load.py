"""DNS load from inside a sandbox: a hostile flood, or a neighbour's probe.

Usage:
  python3 dns_load.py flood GATEWAY RATE SECONDS SUFFIX
      Sends A queries for unique names `f<N>.SUFFIX` over UDP at RATE per
      second (0: as fast as the socket takes them) for SECONDS, from 16
      sockets in turn, reading whatever answers come back without waiting
      for them; then waits 5 s more for late answers. Prints one line:
      "flood: sent=N answered=N servfail=N other=N" (answered counts every
      answer, servfail those with rcode 2).
  python3 dns_load.py probe GATEWAY COUNT SUFFIX
      Asks COUNT A queries for `p<N>.SUFFIX` one after another (10 ms
      apart), each waiting up to 3 s for its answer. Prints one line per
      query, "q<N>: RESULT MS" with RESULT "rcode=0 ADDR" (the first A
      record's address), "rcode=K" or "no-answer", and MS the time to the
      answer in milliseconds.
Only the gateway is ever contacted; the bytes are built by hand.
"""
import random
import select
import socket
import struct
import sys
import time

MODE = sys.argv[1]
GW = sys.argv[2]


def query(name, ident):
    out = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0" + struct.pack("!HH", 1, 1)


def first_a(data):
    """The address of the first A record of an answer, or None."""
    if len(data) < 12:
        return None
    qd, an = struct.unpack("!HH", data[4:8])
    pos = 12
    for _ in range(qd):
        while pos < len(data) and data[pos] != 0:
            if data[pos] & 0xC0:
                pos += 1
                break
            pos += data[pos] + 1
        pos += 5
    for _ in range(an):
        if pos < len(data) and data[pos] & 0xC0:
            pos += 2
        else:
            while pos < len(data) and data[pos] != 0:
                pos += data[pos] + 1
            pos += 1
        if pos + 10 > len(data):
            return None
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            return socket.inet_ntoa(data[pos : pos + 4])
        pos += rdlen
    return None


def flood(rate, seconds, suffix):
    socks = []
    for _ in range(16):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((GW, 53))
        socks.append(s)
    sent = answered = servfail = other = 0
    tag = "%06x" % random.getrandbits(24)

    def drain():
        nonlocal answered, servfail, other
        for s in socks:
            while True:
                try:
                    data = s.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                answered += 1
                if len(data) >= 4 and data[3] & 0x0F == 2:
                    servfail += 1
                else:
                    other += 1

    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate) + 1 if rate > 0 else sent + 64
        while sent < due:
            s = socks[sent % len(socks)]
            try:
                s.send(query("f%d-%s.%s" % (sent, tag, suffix), sent & 0xFFFF))
            except BlockingIOError:
                break
            sent += 1
        drain()
        if rate > 0:
            time.sleep(min(0.005, max(0.0, end - time.monotonic())))
        else:
            select.select([], socks, [], 0.005)
    late = time.monotonic() + 5
    while time.monotonic() < late:
        select.select(socks, [], [], 0.1)
        drain()
    print("flood: sent=%d answered=%d servfail=%d other=%d" % (sent, answered, servfail, other), flush=True)


def probe(count, suffix):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((GW, 53))
    for i in range(count):
        ident = (i * 7919 + 1) & 0xFFFF
        start = time.monotonic()
        s.send(query("p%d.%s" % (i, suffix), ident))
        result = "no-answer"
        deadline = start + 3.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                break
            try:
                data = s.recv(4096)
            except ConnectionRefusedError:
                result = "refused"
                break
            if len(data) < 4 or struct.unpack("!H", data[:2])[0] != ident:
                continue
            rcode = data[3] & 0x0F
            result = "rcode=%d" % rcode
            if rcode == 0:
                result += " %s" % first_a(data)
            break
        took = (time.monotonic() - start) * 1000
        print("q%d: %s %.2f" % (i, result, took), flush=True)
        time.sleep(0.01)


if MODE == "flood":
    flood(float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
elif MODE == "probe":
    probe(int(sys.argv[3]), sys.argv[4])
else:
    sys.exit("unknown mode " + MODE)
