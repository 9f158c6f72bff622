"""The tutorials' services without their images: an HTTP server that
answers every GET with one line naming it (what `curl -s es:9200` shows).

Usage: python3 seed_http.py PORT TEXT. Serves until killed.
"""
import http.server
import sys

PORT, TEXT = int(sys.argv[1]), sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (TEXT + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
