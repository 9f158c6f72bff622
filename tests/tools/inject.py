"""Injects hostile frames on eth0 with an AF_PACKET socket.

Usage: python3 inject.py VICTIM_IP GATEWAY_IP
Sends, each several times: a 14-byte frame with an unknown ethertype, a
frame with a spoofed source MAC, an IPv4 packet with a spoofed source
address (the victim's), an ARP reply claiming the victim's address with our
MAC, an IPv4 header cut short (malformed), and tries a runt (the kernel may
refuse to send frames shorter than an Ethernet header). Prints one line per
kind: "KIND sent N" or "KIND refused: ERROR".
"""
import socket
import sys

import frames as frames_lib

victim = socket.inet_aton(sys.argv[1])
gateway = socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = s.getsockname()[4]
bcast = b"\xff" * 6


def ipv4(src, dst, payload=b"hello"):
    return frames_lib.ipv4(src, dst, 17, payload)


def arp_reply(sender_mac, sender_ip, target_ip):
    return frames_lib.arp(2, sender_mac, sender_ip, bcast, target_ip)


frames = {
    "unknown_ethertype": bcast + mac + b"\x88\xb5",
    "spoofed_mac": bcast + b"\x02\x00\xde\xad\xbe\xef" + b"\x08\x06" + arp_reply(b"\x02\x00\xde\xad\xbe\xef", victim, gateway),
    "spoofed_ip": bcast + mac + b"\x08\x00" + ipv4(victim, gateway),
    "arp_spoof": bcast + mac + b"\x08\x06" + arp_reply(mac, victim, victim),
    "malformed_ipv4": bcast + mac + b"\x08\x00" + b"\x45\x00\x00",
}
for kind, frame in frames.items():
    sent = 0
    for _ in range(3):
        try:
            s.send(frame)
            sent += 1
        except OSError as e:
            print(f"{kind} refused: {e}")
            break
    print(f"{kind} sent {sent}")
try:
    s.send(b"\xff" * 10)
    print("runt sent 1")
except OSError as e:
    print(f"runt refused: {e}")
