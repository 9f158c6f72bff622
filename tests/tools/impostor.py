"""An impostor warren daemon: another user's listener on a victim's socket path.

Usage: python3 impostor.py SOCKET [UID]. Binds SOCKET (mode 0777, so anyone
can connect; chowned to UID if given), prints "listening", then for every
connection prints "connect" and, if the client sends anything, "request "
and its first line, and answers 200 with `[]` (enough for `network ls` or a
ping to believe it). Every line is flushed at once: the test reads them
from a file. Serves forever (the test kills it).
"""
import os
import socket
import sys

path = sys.argv[1]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o777)
if len(sys.argv) > 2:
    os.chown(path, int(sys.argv[2]), -1, follow_symlinks=False)
srv.listen(16)
print("listening", flush=True)
while True:
    conn, _ = srv.accept()
    print("connect", flush=True)
    conn.settimeout(3)
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    if data:
        print("request " + data.split(b"\r\n")[0].decode("latin-1"), flush=True)
        try:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: 2\r\nconnection: close\r\n\r\n[]"
            )
        except OSError:
            pass
    conn.close()
