"""Issue 16, item 7: TCP in fragments against a flow the NAT is opening.

Usage: python3 frag_rst.py GATEWAY_IP GATEWAY_MAC DEST PORT

Speaks TCP itself from eth0 (AF_PACKET, as root of the sandbox), after
removing eth0's IPv4 address so that the sandbox's own kernel neither
answers the NAT's SYN-ACKs with a RST nor sees them:

1. a SYN from port P1; the NAT's SYN-ACK comes once its host connect
   succeeded (the flow is in SYN-RECEIVED);
2. a RST for P1 in two fragments, then at once a SYN from port P2 in two
   fragments, to the same destination;
3. what comes back for P2; on a SYN-ACK, the handshake is completed and
   "hello" sent (unfragmented), and the echo awaited.

Prints "p1 synack" (or "p1 none"), "p2 synack" / "p2 rst" / "p2 none",
and "p2 echo TEXT" / "p2 echo none".
"""
import socket
import struct
import subprocess
import sys
import time

import frames

gw_mac = frames.mac(sys.argv[2])
dest = socket.inet_aton(sys.argv[3])
port = int(sys.argv[4])
s, me, my_ip = frames.eth0(sys.argv[1])
# frames.eth0's socket sends only (protocol 0); this one hears IPv4.
r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
r.bind(("eth0", 0x0800))
r.settimeout(0.1)
subprocess.run(["ip", "-4", "addr", "flush", "dev", "eth0"], check=True)
SYN, RST, PSH, ACK = 0x02, 0x04, 0x08, 0x10
P1, P2 = 41001, 41002


def segment(sport, seq, ack, flags, payload=b""):
    header = struct.pack("!HHIIBBHHH", sport, port, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = my_ip + dest + struct.pack("!BBH", 0, 6, len(header) + len(payload))
    check = frames.csum(pseudo + header + payload)
    return header[:16] + struct.pack("!H", check) + header[18:] + payload


def send(packet):
    s.send(gw_mac + me + b"\x08\x00" + packet)


def whole(seg, ident):
    send(frames.ipv4(my_ip, dest, 6, seg, ident=ident))


def fragmented(seg, ident):
    # 8 bytes (ports and sequence number), then the rest at offset 8.
    send(frames.ipv4(my_ip, dest, 6, seg[:8], frag=0x2000, ident=ident))
    send(frames.ipv4(my_ip, dest, 6, seg[8:], frag=1, ident=ident))


def wait(dport, secs, want=None):
    """The first segment from DEST:PORT to `dport` (with all flags in
    `want`, if given) within `secs`: (seq, ack, flags, data) or None."""
    until = time.monotonic() + secs
    while time.monotonic() < until:
        try:
            frame = r.recv(70000)
        except socket.timeout:
            continue
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6 or ip[12:16] != dest or ip[16:20] != my_ip:
            continue
        tcp = ip[ihl:total]
        sport, to, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
        if sport != port or to != dport:
            continue
        if want is not None and flags & want != want:
            continue
        return seq, ack, flags, tcp[(off >> 4) * 4:]
    return None


whole(segment(P1, 1000, 0, SYN), 1)
got = wait(P1, 5, SYN | ACK)
print("p1 synack" if got else "p1 none", flush=True)
if not got:
    sys.exit(0)
fragmented(segment(P1, 1001, 0, RST), 2)
fragmented(segment(P2, 5000, 0, SYN), 3)
got = wait(P2, 3)
if got is None:
    print("p2 none")
elif got[2] & (SYN | ACK) == SYN | ACK:
    print("p2 synack")
else:
    print("p2 rst" if got[2] & RST else f"p2 flags {got[2]:#x}")
echo = None
if got and got[2] & (SYN | ACK) == SYN | ACK:
    theirs = got[0] + 1
    whole(segment(P2, 5001, theirs, ACK), 4)
    whole(segment(P2, 5001, theirs, PSH | ACK, b"hello"), 5)
    until = time.monotonic() + 3
    while echo is None and time.monotonic() < until:
        reply = wait(P2, 0.5)
        if reply and reply[3]:
            echo = reply[3]
    whole(segment(P2, 5006, 0, RST), 6)
print("p2 echo " + (echo.decode(errors="replace") if echo else "none"), flush=True)
