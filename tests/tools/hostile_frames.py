"""Sends hostile frames from eth0 with an AF_PACKET socket.

Usage: python3 hostile_frames.py GATEWAY_IP GATEWAY_MAC OUTSIDE_IP [KIND...]
Each kind (every kind unless some are named) is sent 3 times; prints
"KIND sent N" per kind. Kinds:
gratuitous ARP claiming the gateway's address; an IPv6 router
advertisement; IPv4 header lies (IHL past the end, IHL below 5, total
length past the frame, total length below the header, bad checksum);
overlapping fragments and an endless fragment train to the gateway; TCP to
the outside with port 0, SYN+FIN, and a data offset below 5; ICMP errors
quoting forged headers, to the gateway and to the outside. And one that
is not hostile, for after them: "honest_udp:PORT", one well-formed UDP
datagram ("honest") to OUTSIDE_IP:PORT from port 40100, sent once;
prints "honest_udp answered TEXT" with what came back to that port.
"""
import socket
import struct
import sys

import frames as frames_lib

gw_ip = socket.inet_aton(sys.argv[1])
gw_mac = frames_lib.mac(sys.argv[2])
outside = socket.inet_aton(sys.argv[3])
s, me, my_ip = frames_lib.eth0(sys.argv[1])
BC = b"\xff" * 6


def ipv4(dst, proto, payload, **lies):
    return frames_lib.ipv4(my_ip, dst, proto, payload, **lies)


def eth(dst, kind, payload):
    return dst + me + struct.pack("!H", kind) + payload


def tcp(sport, dport, flags, offset=5):
    """A TCP header to the outside with a correct checksum, so that what
    is wrong with it is only what it says."""
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset << 4, flags, 65535, 0, 0)
    pseudo = my_ip + outside + struct.pack("!BBH", 0, 6, len(seg))
    return seg[:16] + struct.pack("!H", frames_lib.csum(pseudo + seg)) + seg[18:]


def icmp_unreach(quoted):
    body = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    return body[:2] + struct.pack("!H", frames_lib.csum(body)) + body[4:]


frames = {}
frames["garp_gateway"] = [eth(BC, 0x0806, frames_lib.arp(2, me, gw_ip, BC, gw_ip))]
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
ip6 = struct.pack("!IHBB16s16s", 0x60000000, len(ra), 58, 255, b"\xfe\x80" + b"\0" * 13 + b"\x01", b"\xff\x02" + b"\0" * 13 + b"\x01")
frames["ipv6_router_advert"] = [eth(b"\x33\x33\x00\x00\x00\x01", 0x86DD, ip6 + ra)]
udp53 = struct.pack("!HHHH", 5353, 53, 8 + 12, 0) + b"\0" * 12
frames["ihl_past_end"] = [eth(gw_mac, 0x0800, ipv4(gw_ip, 17, udp53, ihl=15)[:30])]
frames["ihl_below_5"] = [eth(gw_mac, 0x0800, ipv4(gw_ip, 17, udp53, ihl=3))]
frames["total_past_frame"] = [eth(gw_mac, 0x0800, ipv4(gw_ip, 17, udp53, total=1500))]
frames["total_below_header"] = [eth(gw_mac, 0x0800, ipv4(gw_ip, 17, udp53, total=12))]
frames["bad_checksum"] = [eth(gw_mac, 0x0800, ipv4(gw_ip, 17, udp53, good_sum=False))]
chunk = b"A" * 64
frames["overlapping_fragments"] = [
    eth(gw_mac, 0x0800, ipv4(gw_ip, 17, udp53 + chunk, frag=0x2000, ident=77)),
    eth(gw_mac, 0x0800, ipv4(gw_ip, 17, chunk, frag=0x2000 | 2, ident=77)),
    eth(gw_mac, 0x0800, ipv4(gw_ip, 17, chunk, frag=1, ident=77)),
]
frames["endless_fragments"] = [
    eth(gw_mac, 0x0800, ipv4(gw_ip, 17, b"B" * 64, frag=0x2000 | (i * 8), ident=1000 + (i % 50)))
    for i in range(300)
]
frames["tcp_port_0"] = [eth(gw_mac, 0x0800, ipv4(outside, 6, tcp(40000, 0, 0x02)))]
frames["tcp_syn_fin"] = [eth(gw_mac, 0x0800, ipv4(outside, 6, tcp(40001, 80, 0x03)))]
frames["tcp_bad_offset"] = [eth(gw_mac, 0x0800, ipv4(outside, 6, tcp(40002, 80, 0x02, offset=2)))]
forged = ipv4(outside, 6, tcp(80, 40003, 0x12))[:28]
frames["icmp_error_to_gateway"] = [eth(gw_mac, 0x0800, ipv4(gw_ip, 1, icmp_unreach(forged)))]
frames["icmp_error_to_outside"] = [eth(gw_mac, 0x0800, ipv4(outside, 1, icmp_unreach(forged)))]

def udp(sport, dport, payload, src, dst):
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    head = struct.pack("!HHHH", sport, dport, length, 0)
    return head[:6] + struct.pack("!H", frames_lib.csum(pseudo + head + payload) or 0xFFFF) + payload


wanted = sys.argv[4:] or list(frames)
for kind in wanted:
    if kind.startswith("honest_udp:"):
        port = int(kind.split(":")[1])
        reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        reply.bind(("0.0.0.0", 40100))
        reply.settimeout(3)
        frame = eth(gw_mac, 0x0800, ipv4(outside, 17, udp(40100, port, b"honest", my_ip, outside)))
        s.send(frame)
        print(f"{kind} sent 1")
        try:
            print(f"honest_udp answered {reply.recv(100).decode()}")
        except socket.timeout:
            print("honest_udp unanswered")
        continue
    batch = frames[kind]
    sent = 0
    for _ in range(3):
        for frame in batch:
            try:
                s.send(frame)
                sent += 1
            except OSError as e:
                print(f"{kind} refused: {e}")
    print(f"{kind} sent {sent}")
