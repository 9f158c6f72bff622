"""A client of published ports and of servers in namespaces tests made.

Usage: python3 port_client.py tcp IP PORT
  connects, prints what the server sent and the client's own address as
  "GOT <reply> | ME IP:PORT"; exits 1 on failure (printing the error).
       python3 port_client.py udp IP PORT
  sends "hello" (up to 3 times, 2 s apart) and prints the first answer
  the same way; exits 1 when none comes.
"""
import socket
import sys

kind, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((ip, port))
        me = "%s:%d" % s.getsockname()
        data = None
        for _ in range(3):
            s.send(b"hello")
            try:
                data = s.recv(4096)
                break
            except socket.timeout:
                continue
        if data is None:
            print("ERROR no answer")
            sys.exit(1)
    else:
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
