"""Bulk TCP throughput for manual NAT measurements (not a timed test).

Usage: python3 nat_throughput.py serve PORT_FILE      on the host: 127.0.0.1, port 0;
                                                      per connection, reads 1 byte:
                                                      'r' → receive until EOF, 's' → send SECONDS of data
       python3 nat_throughput.py recv HOST PORT SECS  in a sandbox: download for SECS, print Gbit/s
       python3 nat_throughput.py send HOST PORT SECS  in a sandbox: upload for SECS, print Gbit/s
"""
import os
import socket
import sys
import threading
import time

CHUNK = memoryview(bytearray(1 << 20))


def serve(port_file):
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(lst.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)

    def one(c):
        with c:
            mode = c.recv(1)
            if mode == b"r":
                buf = bytearray(1 << 20)
                while c.recv_into(buf):
                    pass
            elif mode == b"s":
                secs = float(c.recv(16).decode())
                end = time.monotonic() + secs
                try:
                    while time.monotonic() < end:
                        c.sendall(CHUNK)
                except OSError:
                    pass

    while True:
        c, _ = lst.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def client(mode, host, port, secs):
    s = socket.create_connection((host, port))
    start = time.monotonic()
    total = 0
    if mode == "recv":
        s.sendall(b"s" + str(secs).encode().ljust(16))
        buf = bytearray(1 << 20)
        while True:
            n = s.recv_into(buf)
            if not n:
                break
            total += n
    else:
        s.sendall(b"r")
        end = start + secs
        while time.monotonic() < end:
            s.sendall(CHUNK)
            total += len(CHUNK)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    took = time.monotonic() - start
    print(f"{mode} {total * 8 / took / 1e9:.2f} Gbit/s ({total} bytes in {took:.2f} s)")


if sys.argv[1] == "serve":
    serve(sys.argv[2])
else:
    client(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
