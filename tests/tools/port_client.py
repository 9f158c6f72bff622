"""A client of published ports, run by tests in namespaces they made.

Usage: python3 port_client.py tcp IP PORT
  connects, prints what the server sent and the client's own address as
  "GOT <reply> | ME IP:PORT"; exits 1 on failure (printing the error).
"""
import socket
import sys

kind, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    s = socket.create_connection((ip, port), timeout=5)
    me = "%s:%d" % s.getsockname()
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print("GOT %s | ME %s" % (data.decode().strip(), me))
except OSError as e:
    print("ERROR %s" % e)
    sys.exit(1)
