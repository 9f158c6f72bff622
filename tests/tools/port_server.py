"""A server that tells each client the address it sees, for published-port
tests.

Usage: python3 port_server.py tcp|udp [ADDR:]PORT[,[ADDR:]PORT...] [BIND]
  tcp: for each connection, prints "peer IP:PORT" (flushed), sends
       "you are IP:PORT\\n" and closes. Sequential per port: short
       connections only.
  udp: answers each datagram with "IP:PORT " + the datagram.
Several ports are served by one process (a thread each), so killing it
leaves nothing behind. Each port listens on its ADDR, else on BIND, which
defaults to 0.0.0.0. Serves forever (the test kills it).
"""
import socket
import sys
import threading

kind = sys.argv[1]
default_bind = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
ports = [
    (p.rpartition(":")[0] or default_bind, int(p.rpartition(":")[2]))
    for p in sys.argv[2].split(",")
]


def tcp(bind, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(128)
    while True:
        conn, peer = srv.accept()
        with conn:
            print("peer %s:%d" % peer, flush=True)
            try:
                conn.sendall(b"you are %s:%d\n" % (peer[0].encode(), peer[1]))
            except OSError:
                pass


def udp(bind, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((bind, port))
    while True:
        data, peer = srv.recvfrom(65535)
        srv.sendto(b"%s:%d " % (peer[0].encode(), peer[1]) + data, peer)


serve = tcp if kind == "tcp" else udp
for p in ports[1:]:
    threading.Thread(target=serve, args=p, daemon=True).start()
serve(*ports[0])
