"""Writes the seed corpora under fuzz/corpus/: real frames and messages
that each target's parser accepts, for the fuzzer to start from.

Usage: python3 fuzz/make_corpus.py   (from the repository root or fuzz/)
"""
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "tools"))
import frames  # noqa: E402  (the frame builders the test tools use too)


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


mac = frames.mac


A = mac("02:42:ac:11:00:02")
B = mac("02:42:ac:11:00:03")
GW = mac("02:42:ac:11:00:01")
GW18 = mac("02:42:ac:12:00:01")
BC = b"\xff" * 6


def ip(s):
    return bytes(int(x) for x in s.split("."))


def ipv4(src, dst, proto, payload):
    return frames.ipv4(ip(src), ip(dst), proto, payload)


def arp(op, smac, sip, tmac, tip):
    return frames.arp(op, smac, ip(sip), tmac, ip(tip))


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo():
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"warren"
    return body[:2] + struct.pack("!H", frames.csum(body)) + body[4:]


def dns_query(name, qtype=1, edns=False):
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", qtype, 1)
    if edns:
        q += b"\0" + struct.pack("!HHIH", 41, 4096, 0, 0)
    return q


# switch_ingress: frames from port A (172.17.0.2).
write("switch_ingress", "arp-request", BC + A + b"\x08\x06" + arp(1, A, "172.17.0.2", b"\0" * 6, "172.17.0.3"))
write("switch_ingress", "udp-unicast", B + A + b"\x08\x00" + ipv4("172.17.0.2", "172.17.0.3", 17, udp(1000, 2000, b"hi")))
write("switch_ingress", "ping-gateway", GW + A + b"\x08\x00" + ipv4("172.17.0.2", "172.17.0.1", 1, icmp_echo()))
write("switch_ingress", "spoofed-ip", BC + A + b"\x08\x00" + ipv4("172.17.0.9", "172.17.0.1", 17, udp(1, 2, b"")))
write("switch_ingress", "runt", b"\xff" * 10)
# With a virtio-net header first (the target reads every input both ways):
# a TCP segment whose checksum the sender left to the device, as a
# sandbox's kernel sends one (NEEDS_CSUM, csum_start at the TCP header).
tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
partial = struct.pack("=BBHHHH", 1, 0, 0, 0, 14 + 20, 16)
write("switch_ingress", "vnet-tcp-partial", partial + B + A + b"\x08\x00" + ipv4("172.17.0.2", "172.17.0.3", 6, tcp))
valid = struct.pack("=BBHHHH", 2, 0, 0, 0, 0, 0)
write("switch_ingress", "vnet-udp-valid", valid + B + A + b"\x08\x00" + ipv4("172.17.0.2", "172.17.0.3", 17, udp(1000, 2000, b"hi")))

# gateway_frames: a sandbox at 172.18.0.2 talking to the gateway 172.18.0.1;
# an input is frames, each after a big-endian u16 length (as nat_frames's,
# without the mode byte), so a frame may hold any byte: the ARP request is
# whole, broadcast destination and all.
S = mac("02:42:ac:12:00:02")


def gw_input(*frames_):
    return b"".join(struct.pack("!H", len(f)) + f for f in frames_)


arp_gw = BC + S + b"\x08\x06" + arp(1, S, "172.18.0.2", b"\0" * 6, "172.18.0.1")
ping_gw = GW18 + S + b"\x08\x00" + ipv4("172.18.0.2", "172.18.0.1", 1, icmp_echo())
dns_gw = GW18 + S + b"\x08\x00" + ipv4("172.18.0.2", "172.18.0.1", 17, udp(5353, 53, dns_query("es")))
write("gateway_frames", "arp-for-gateway", gw_input(arp_gw))
write("gateway_frames", "dns-udp", gw_input(dns_gw))
write("gateway_frames", "ping", gw_input(ping_gw))
write("gateway_frames", "arp-ping-dns", gw_input(arp_gw, ping_gw, dns_gw, dns_gw))
# A gratuitous ARP (broadcast, claiming the gateway's address) then a ping.
garp = BC + S + b"\x08\x06" + arp(2, S, "172.18.0.1", BC, "172.18.0.1")
write("gateway_frames", "garp-then-ping", gw_input(garp, ping_gw))

# nat_frames: a sandbox at 172.18.0.2 reaching outside addresses through
# the NAT. An input is a mode byte (see the target), then frames, each
# after a big-endian u16 length. 169.254.1.2 is the host's loopback there
# (the target's own namespace: a TCP listener on 80, a UDP echo on 53);
# the documentation addresses (192.0.2.0/24 and friends) have no route.
def l4_sum(src, dst, proto, seg):
    pseudo = ip(src) + ip(dst) + struct.pack("!BBH", 0, proto, len(seg))
    return seg[:16 if proto == 6 else 6] + struct.pack("!H", frames.csum(pseudo + seg)) + seg[18 if proto == 6 else 8:]


def tcp(src, dst, sport, dport, seq, ack, flags, payload=b""):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    return GW18 + S + b"\x08\x00" + ipv4(src, dst, 6, l4_sum(src, dst, 6, seg))


def udp_to(dst, dport, payload, src="172.18.0.2", sport=40000):
    seg = udp(sport, dport, payload)
    return GW18 + S + b"\x08\x00" + ipv4(src, dst, 17, l4_sum(src, dst, 17, seg))


def ping_to(dst):
    return GW18 + S + b"\x08\x00" + ipv4("172.18.0.2", dst, 1, icmp_echo())


def nat_input(mode, *frames_):
    return bytes([mode]) + b"".join(struct.pack("!H", len(f)) + f for f in frames_)


LO = "169.254.1.2"
# The target seeds smoltcp with a constant, so the first flow's SYN-ACK
# carries this sequence number (smoltcp 0.12): the seeds below complete the
# handshake and carry data both ways. Should it change, they still get the
# fuzzer started, and it learns the new one from the comparisons it watches.
ISN = 3700454066
syn = tcp("172.18.0.2", LO, 40000, 80, 1000, 0, 0x02)
ack = tcp("172.18.0.2", LO, 40000, 80, 1001, ISN + 1, 0x10)
get = tcp("172.18.0.2", LO, 40000, 80, 1001, ISN + 1, 0x18, b"GET / HTTP/1.0\r\n\r\n")
fin = tcp("172.18.0.2", LO, 40000, 80, 1019, ISN + 1, 0x11)
rst = tcp("172.18.0.2", LO, 40000, 80, 1020, 0, 0x04)
write("nat_frames", "tcp-loopback", nat_input(0, syn, ack, get, fin, rst))
write("nat_frames", "tcp-loopback-partial-close", nat_input(0x0c, syn, ack, get, fin))
# Mode 0x10: published ports. The host client 127.0.0.1:40080 appears to
# the sandbox as the gateway 172.18.0.1:40080, and its SYN to port 80
# carries the same first sequence number; the frames answer as the server.
GWIP = "172.18.0.1"
synack = tcp("172.18.0.2", GWIP, 80, 40080, 5000, ISN + 1, 0x12)
reply = tcp("172.18.0.2", GWIP, 80, 40080, 5001, ISN + 1, 0x18, b"HTTP/1.0 200 OK\r\n\r\n")
close = tcp("172.18.0.2", GWIP, 80, 40080, 5020, ISN + 1, 0x11)
answer = udp_to(GWIP, 40053, b"answer", sport=53)
write("nat_frames", "published", nat_input(0x10, synack, reply, answer, close))
write("nat_frames", "published-refused", nat_input(0x14, tcp("172.18.0.2", GWIP, 80, 40080, 0, ISN + 1, 0x14)))
write("nat_frames", "tcp-unreachable", nat_input(0, tcp("172.18.0.2", "192.0.2.10", 40001, 443, 5, 0, 0x02)))
write("nat_frames", "udp-dns-loopback", nat_input(0x02, udp_to(LO, 53, dns_query("example.org")), udp_to(LO, 53, b"again")))
write("nat_frames", "udp-unreachable", nat_input(0, udp_to("198.51.100.7", 9, b"discard")))
write("nat_frames", "udp-gateway-loopback", nat_input(0x01, udp_to("172.18.0.1", 53, dns_query("es")), udp_to("172.18.0.1", 5000, b"x")))
write("nat_frames", "ping", nat_input(0, ping_to(LO), ping_to("203.0.113.1")))
big = udp(40000, 53, b"f" * 3000)
first = GW18 + S + b"\x08\x00" + frames.ipv4(ip("172.18.0.2"), ip(LO), 17, big[:1480], frag=0x2000, ident=7)
second = GW18 + S + b"\x08\x00" + frames.ipv4(ip("172.18.0.2"), ip(LO), 17, big[1480:], frag=185, ident=7)
write("nat_frames", "udp-fragments", nat_input(0, first, second))

# dns_query: messages as they arrive.
write("dns_query", "a-es", dns_query("es"))
write("dns_query", "a-qualified", dns_query("es-2.dev"))
write("dns_query", "aaaa", dns_query("es", 28))
write("dns_query", "ptr", dns_query("2.0.18.172.in-addr.arpa", 12))
write("dns_query", "edns", dns_query("es", 1, edns=True))
write("dns_query", "external", dns_query("example.org"))

# api_requests: requests into the router, each a method byte (0 GET, 1 POST,
# 2 DELETE, 3 PUT), a path after a u8 length, a body after a u16 length;
# and port specs (the whole input is parsed as one too).
GET, POST, DELETE, PUT = 0, 1, 2, 3


def api(*reqs):
    out = b""
    for method, path, body in reqs:
        out += bytes([method, len(path)]) + path + struct.pack("!H", len(body)) + body
    return out


net = b'{"name":"dev","subnet":"10.66.0.0/16","gateway":"10.66.0.1","aux_addresses":{"p":"10.66.0.9"},"labels":{"a":"b"}}'
host_sandbox = b'{"pid":1,"name":"web","network_mode":"host"}'
write("api_requests", "network", api((POST, b"/v1/networks", net), (GET, b"/v1/networks/dev", b""), (GET, b"/v1/networks/dev/stats", b"")))
write("api_requests", "network-options", api((POST, b"/v1/networks", b'{"name":"lo","internal":true,"options":{"host-loopback":"true","dns-address":"172.30.0.3","mtu":"1500"},"subnet":"172.30.0.0/24"}'), (GET, b"/v1/networks", b"")))
write("api_requests", "network-rm-prune", api((POST, b"/v1/networks", net), (DELETE, b"/v1/networks/dev", b""), (POST, b"/v1/networks/prune", b"")))
write("api_requests", "sandbox", api((POST, b"/v1/networks", net), (POST, b"/v1/sandboxes", b'{"pid":1,"name":"web","networks":[{"network":"dev","aliases":["www"],"ip":"10.66.1.2"}]}')))
write("api_requests", "host-sandbox", api((POST, b"/v1/sandboxes", host_sandbox), (GET, b"/v1/sandboxes", b""), (GET, b"/v1/sandboxes/web", b""), (GET, b"/v1/sandboxes/web/ports", b""), (DELETE, b"/v1/sandboxes/web?force=true", b"")))
write("api_requests", "connect", api((POST, b"/v1/networks", net), (POST, b"/v1/sandboxes", host_sandbox), (POST, b"/v1/networks/dev/connect", b'{"sandbox":"web","ip":"10.66.1.3","aliases":["db"]}'), (POST, b"/v1/networks/dev/disconnect", b'{"sandbox":"web","force":false}')))
write("api_requests", "ports", api((POST, b"/v1/sandboxes", host_sandbox), (POST, b"/v1/sandboxes/web/ports", b'{"specs":["127.0.0.1:8000:80"]}'), (POST, b"/v1/sandboxes/web/ports/remove", b'{"specs":["80"]}')))
write("api_requests", "bad", api((POST, b"/v1/networks", b"{not json"), (GET, b"/v1/nothing-here", b""), (DELETE, b"/v1/sandboxes/x?force=maybe", b""), (PUT, b"/v1/ping", b"")))
write("api_requests", "port-spec", b"127.0.0.1:8000-8009:80-89/udp")
write("api_requests", "port-v6", b"[::1]:8080:80")

# slirp_api: slirp4netns API sessions, requests separated by 0xfe (which
# JSON text never contains).
def session(*requests):
    return b"\xfe".join(requests)


add = b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}'
add_udp = b'{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":5353,"guest_port":53}}'
lst = b'{"execute":"list_hostfwd"}'
rm1 = b'{"execute":"remove_hostfwd","arguments":{"id":1}}'
write("slirp_api", "add-list-remove", session(add, add_udp, lst, rm1, rm1, lst))
write("slirp_api", "conflict", session(add, add, lst))
write("slirp_api", "bad-requests", session(b"{bad", b"", b"[1]", b'{"execute":5}', b'{"execute":"foo"}', b'{"execute":"add_hostfwd","arguments":{"proto":"tcp"}}'))
write("slirp_api", "parson-grammar", session(b'\xef\xbb\xbf{"execute":"list_hostfwd"} x', b'{"execute":"list_hostfwd","n":1.}', b'{"a":1,"a":2}', b'{"s":"\\ud83d\\ude00\\u0041\\n"}'))
write("slirp_api", "numbers", session(b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080.9,"guest_port":-5}}', b'{"execute":"remove_hostfwd","arguments":{"id":1e30}}'))
write("slirp_api", "deep", b'{"execute":"list_hostfwd","x":' + b"[" * 300 + b"]" * 300 + b"}")

# vxlan_decap: a sender byte (1 = 10.249.0.11, the member of .2 and .3),
# then VXLAN (flags I, VNI 4097) around frames of the overlay's endpoints.
VX = b"\x08\x00\x00\x00" + (4097).to_bytes(3, "big") + b"\x00"
O2, O3, O9 = mac("02:42:0a:00:01:02"), mac("02:42:0a:00:01:03"), mac("02:42:0a:00:01:09")
write("vxlan_decap", "arp-request", b"\x01" + VX + BC + O2 + b"\x08\x06" + arp(1, O2, "10.0.1.2", b"\0" * 6, "10.0.1.9"))
write("vxlan_decap", "udp", b"\x01" + VX + O9 + O3 + b"\x08\x00" + ipv4("10.0.1.3", "10.0.1.9", 17, udp(1000, 2000, b"hi")))
write("vxlan_decap", "spoofed", b"\x01" + VX + O9 + O2 + b"\x08\x00" + ipv4("10.0.1.3", "10.0.1.9", 17, udp(1, 2, b"")))
write("vxlan_decap", "stranger", b"\x03" + VX + O9 + O2 + b"\x08\x00" + ipv4("10.0.1.2", "10.0.1.9", 1, icmp_echo()))

