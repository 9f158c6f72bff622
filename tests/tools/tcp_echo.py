"""A TCP server that echoes each connection's bytes back upper-cased.

Usage: python3 tcp_echo.py PORT. Serves forever (the test kills it).
"""
import socket
import sys

srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(64)
while True:
    conn, _ = srv.accept()
    with conn:
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                conn.sendall(chunk.upper())
        except OSError:
            pass  # a client that resets must not stop the server
