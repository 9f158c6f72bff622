"""Building blocks for hand-made frames, shared by the frame injectors
(inject.py, hostile_frames.py) and fuzz/make_corpus.py. Addresses are raw
bytes (4 for IPv4, 6 for MACs).
"""
import struct


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
