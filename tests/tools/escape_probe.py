"""What a hostile sandbox tries first (issue 16), run inside one.

    escape_probe.py RUNTIME STATE HANDED_SOCKET

Prints one line per attempt, with the errno or HTTP status it got:
  umount PATH ERRNO        umount2() of each cover (0 means it came off)
  bind PARENT ERRNO        a non-recursive bind of the covers' parent,
                           which would show what the covers hide
  api PATH STATUS          GET /v1/ping and POST /v1/networks through the
                           socket path (0 = could not connect)
"""
import ctypes
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)


def call(fn, *args):
    r = fn(*args)
    return 0 if r == 0 else ctypes.get_errno()


def http(path, request):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
    except OSError:
        return 0
    s.sendall(request)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1


runtime, state, handed = sys.argv[1:4]
for d in (runtime, state):
    print("umount", d, call(libc.umount2, d.encode(), 0))
    print("umount-detach", d, call(libc.umount2, d.encode(), 2))
parent = os.path.dirname(runtime)
os.makedirs("/tmp/probe-mnt", exist_ok=True)
MS_BIND = 4096
print("bind", parent, call(libc.mount, parent.encode(), b"/tmp/probe-mnt", None, MS_BIND, None))
for sock in (os.path.join(runtime, "warren.sock"), handed):
    ping = b"GET /v1/ping HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
    body = b'{"name":"evil","options":{"host-loopback":"true"}}'
    create = (
        b"POST /v1/networks HTTP/1.1\r\nHost: w\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    print("api", sock, http(sock, ping), http(sock, create), flush=True)
