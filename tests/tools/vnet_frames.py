"""Sends frames whose virtio-net header lies, from eth0 with an AF_PACKET
socket that passes its own header (PACKET_VNET_HDR), as a root process in
a sandbox can.

Usage: python3 vnet_frames.py PEER_IP PEER_MAC
Sends UDP datagrams to the peer, each three times, with a partial checksum
the kernel accepts but that is not the UDP checksum field: one inside the
IP header (csum_start 20, csum_offset 4: the IPv4 header checksum), one at
the TCP checksum's offset of a UDP datagram (csum_start 34, csum_offset
16). Prints "KIND sent N" per kind; then one honest datagram ("good").
"""
import socket
import struct
import sys

import frames as frames_lib

NEEDS_CSUM = 1

peer_ip = socket.inet_aton(sys.argv[1])
peer_mac = frames_lib.mac(sys.argv[2])
s, me, my_ip = frames_lib.eth0(sys.argv[1], vnet_hdr=True)


def vnet(flags=0, start=0, offset=0):
    # struct virtio_net_hdr, native byte order: flags, gso_type, hdr_len,
    # gso_size, csum_start, csum_offset.
    return struct.pack("=BBHHHH", flags, 0, 0, 0, start, offset)


def udp_frame(payload):
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    ip = frames_lib.ipv4(my_ip, peer_ip, 17, udp)
    return peer_mac + me + struct.pack("!H", 0x0800) + ip


frame = udp_frame(b"L" * 64)
kinds = {
    "csum_in_ip_header": vnet(NEEDS_CSUM, 20, 4),
    "csum_at_tcp_offset": vnet(NEEDS_CSUM, 34, 16),
}
for kind, hdr in kinds.items():
    sent = 0
    for _ in range(3):
        try:
            s.send(hdr + frame)
            sent += 1
        except OSError as e:
            print(f"{kind} refused: {e}")
    print(f"{kind} sent {sent}")
s.send(vnet() + udp_frame(b"good"))
print("good sent 1")
