"""Test servers on the host's loopback for the NAT tests.

Usage: python3 nat_server.py KIND PORT_FILE
  KIND http : HTTP on 127.0.0.1: GET /blob?n=N answers N pattern bytes,
              POST /upload answers the SHA-256 (hex) of the body.
  KIND udp  : UDP echo on 127.0.0.1 (zero-length datagrams included).
  KIND hold : TCP on 127.0.0.1 that accepts everything and closes each
              connection when its peer does; writes the number of open
              connections to PORT_FILE.open and of every connection it
              ever accepted to PORT_FILE.accepted every 100 ms.
  KIND echo : TCP on 127.0.0.1 echoing each connection upper-cased until
              EOF, then closing (half-close both ways).
  KIND reset: TCP on 127.0.0.1; a connection that sends "rst-me" is reset
              (SO_LINGER 0); one that sends "watch" is read until it ends,
              and how it ended ("reset" or "eof") goes to PORT_FILE.seen.
  KIND sink : TCP on 127.0.0.1 that accepts and never reads.
  KIND hoard: TCP on 127.0.0.1 that accepts, never reads, and writes to every
              connection until its sends block (small socket buffers, so
              what fills up is the NAT's); retries every 50 ms.
  KIND source: TCP on 127.0.0.1 that writes to each connection until a write
              blocks for a second, then writes the byte count to
              PORT_FILE.sent.
Binds port 0 and writes the port to PORT_FILE once listening.
"""
import hashlib
import http.server
import os
import resource
import selectors
import socket
import sys
import time

kind, port_file = sys.argv[1], sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pattern(n):
    block = bytes((i * 7 + 3) % 251 for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


def announce(port):
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, port_file)


if kind == "http":

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            n = int(self.path.split("n=")[1]) if "n=" in self.path else 0
            body = pattern(n)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers["Content-Length"])
            h = hashlib.sha256()
            while n > 0:
                chunk = self.rfile.read(min(n, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                n -= len(chunk)
            body = h.hexdigest().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    announce(server.server_address[1])
    server.serve_forever()
elif kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    announce(s.getsockname()[1])
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
elif kind == "hold":
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    lst.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lst, selectors.EVENT_READ)
    announce(lst.getsockname()[1])
    open_count = 0
    accepted = 0
    last = 0.0
    while True:
        for key, _ in sel.select(0.1):
            if key.fileobj is lst:
                try:
                    while True:
                        c, _ = lst.accept()
                        c.setblocking(False)
                        sel.register(c, selectors.EVENT_READ)
                        open_count += 1
                        accepted += 1
                except BlockingIOError:
                    pass
            else:
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    open_count -= 1
        now = time.monotonic()
        if now - last > 0.1:
            last = now
            for name, value in ((".open", open_count), (".accepted", accepted)):
                with open(port_file + name + ".tmp", "w") as f:
                    f.write(str(value))
                os.rename(port_file + name + ".tmp", port_file + name)
elif kind in ("sink", "source"):
    import threading

    def feed(conn):
        conn.settimeout(1.0)
        sent = 0
        chunk = b"s" * 65536
        try:
            while True:
                sent += conn.send(chunk)
        except socket.timeout:
            pass
        except OSError:
            sent = -1
        with open(port_file + ".sent.tmp", "w") as f:
            f.write(str(sent))
        os.rename(port_file + ".sent.tmp", port_file + ".sent")

    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    announce(lst.getsockname()[1])
    held = []
    while True:
        c, _ = lst.accept()
        held.append(c)
        if kind == "source":
            threading.Thread(target=feed, args=(c,), daemon=True).start()
elif kind == "hoard":
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections.
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    lst.setblocking(False)
    announce(lst.getsockname()[1])
    held = []
    chunk = b"h" * 65536
    while True:
        try:
            while True:
                c, _ = lst.accept()
                c.setblocking(False)
                held.append(c)
        except BlockingIOError:
            pass
        for c in held:
            try:
                while c.send(chunk):
                    pass
            except OSError:
                pass
        time.sleep(0.05)
elif kind in ("echo", "reset"):
    import struct
    import threading

    def serve(conn):
        with conn:
            try:
                if kind == "echo":
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        conn.sendall(chunk.upper())
                    return
                first = conn.recv(64)
                if first.startswith(b"rst-me"):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                how = "eof"
                try:
                    while conn.recv(65536):
                        pass
                except ConnectionResetError:
                    how = "reset"
                with open(port_file + ".seen.tmp", "w") as f:
                    f.write(how)
                os.rename(port_file + ".seen.tmp", port_file + ".seen")
            except OSError:
                pass

    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    announce(lst.getsockname()[1])
    while True:
        c, _ = lst.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    sys.exit(f"unknown kind {kind}")
