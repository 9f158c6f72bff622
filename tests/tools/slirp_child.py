"""The child of rootlesskit in the slirp4netns tests: egress, DNS, a port.

Usage: python3 slirp_child.py EGRESS_PORT NAME CHILD_PORT

1. connects to 10.0.2.2:EGRESS_PORT (slirp4netns's host loopback) and
   prints "egress: <what the host server sent>";
2. resolves NAME through /etc/resolv.conf (rootlesskit points it at
   10.0.2.3) and prints "dns: <address>";
3. listens on CHILD_PORT, prints "listening", serves one connection with
   "from-child" and prints "served". Gives up after 30 s.
Every line is flushed at once: the test reads them as they come.
"""
import socket
import sys

egress_port, name, child_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def say(line):
    print(line, flush=True)


try:
    with socket.create_connection(("10.0.2.2", egress_port), timeout=5) as c:
        say("egress: " + c.recv(100).decode())
except OSError as e:
    say("egress failed: %s" % e)

try:
    say("dns: " + socket.gethostbyname(name))
except OSError as e:
    say("dns failed: %s" % e)

srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", child_port))
srv.listen(4)
srv.settimeout(30)
say("listening")
try:
    conn, peer = srv.accept()
    conn.sendall(b"from-child")
    conn.close()
    say("served")
except OSError as e:
    say("accept failed: %s" % e)
