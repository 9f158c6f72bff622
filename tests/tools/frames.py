"""Building blocks for hand-made frames, shared by the frame injectors
(inject.py, hostile_frames.py, vnet_frames.py) and fuzz/make_corpus.py.
Addresses are raw bytes (4 for IPv4, 6 for MACs).
"""
import socket
import struct

SOL_PACKET = 263
PACKET_VNET_HDR = 15


def mac(text):
    """A MAC address as "aa:bb:cc:dd:ee:ff", as raw bytes."""
    return bytes(int(x, 16) for x in text.split(":"))


def eth0(toward, vnet_hdr=False):
    """An AF_PACKET socket bound to eth0 (passing its own virtio-net header
    with `vnet_hdr`), with this end's MAC and the IPv4 source the kernel
    would use towards the address `toward`: (socket, mac, ip)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    if vnet_hdr:
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind(("eth0", 0))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((toward, 9))
    ip = socket.inet_aton(probe.getsockname()[0])
    probe.close()
    return s, s.getsockname()[4], ip


def csum(b):
    """The Internet checksum of `b`."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ihl=5, total=None, frag=0, ident=1, good_sum=True):
    """An IPv4 packet; `ihl`, `total` and `good_sum` can be made to lie."""
    total = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ident, frag, 64, proto, 0, src, dst)
    check = struct.pack("!H", csum(h)) if good_sum else b"\xde\xad"
    return h[:10] + check + h[12:] + payload


def arp(op, sender_mac, sender_ip, target_mac, target_ip):
    """An Ethernet/IPv4 ARP message (op 1 request, 2 reply)."""
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender_mac, sender_ip, target_mac, target_ip)
