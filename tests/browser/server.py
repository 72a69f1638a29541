#!/usr/bin/env python3
"""Static file server for the browser tests: serves the repository's web/ at / and the fixture models at /models/,
with HTTP Range support (what vireo's loader uses), and counts the GET requests per path (GET /__requests returns
them as JSON; POST /__requests/reset clears them). Optional cross-origin isolation headers (--isolate).

    python3 tests/browser/server.py --port 0 --web web --models ../shared/fixtures/models
prints "listening on PORT" once ready."""
import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
         '.mjs': 'text/javascript; charset=utf-8', '.wasm': 'application/wasm', '.css': 'text/css',
         '.json': 'application/json', '.gguf': 'application/octet-stream', '.ts': 'text/plain', '.png': 'image/png'}


def make_handler(roots, isolate, counts, lock, cuts, ranges):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *args):
            pass

        def headers_common(self):
            self.send_header('Cache-Control', 'no-store')
            if isolate:
                self.send_header('Cross-Origin-Opener-Policy', 'same-origin')
                self.send_header('Cross-Origin-Embedder-Policy', 'require-corp')

        def reply(self, code, body, ctype='text/plain'):
            self.send_response(code)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(body)))
            self.headers_common()
            self.end_headers()
            self.wfile.write(body)

        def resolve(self, path):
            for prefix, root in roots:
                if path.startswith(prefix):
                    rel = path[len(prefix):]
                    full = os.path.realpath(os.path.join(root, rel))
                    if not full.startswith(os.path.realpath(root)):
                        return None
                    if os.path.isdir(full):
                        full = os.path.join(full, 'index.html')
                    return full if os.path.isfile(full) else None
            return None

        def do_POST(self):
            if self.path == '/__requests/reset':
                with lock:
                    counts.clear()
                self.reply(200, b'{}', 'application/json')
            else:
                self.reply(404, b'not found')

        def do_GET(self):
            path = self.path.split('?')[0]
            if path == '/__requests':
                with lock:
                    body = json.dumps(counts).encode()
                self.reply(200, body, 'application/json')
                return
            with lock:
                counts[path] = counts.get(path, 0) + 1
                ranges.append((path, self.headers.get('Range')))
                cut = cuts.pop(path, None)
            full = self.resolve(path)
            if not full:
                self.reply(404, b'not found')
                return
            size = os.path.getsize(full)
            start, end, code = 0, size - 1, 200
            rng = self.headers.get('Range')
            if rng:
                m = re.match(r'bytes=(\d*)-(\d*)$', rng.strip())
                if not m or (m.group(1) == '' and m.group(2) == ''):
                    self.reply(416, b'bad range')
                    return
                if m.group(1) == '':
                    start, end = max(0, size - int(m.group(2))), size - 1
                else:
                    start = int(m.group(1))
                    end = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header('Content-Range', f'bytes */{size}')
                    self.send_header('Content-Length', '0')
                    self.headers_common()
                    self.end_headers()
                    return
                code = 206
            self.send_response(code)
            ext = os.path.splitext(full)[1]
            self.send_header('Content-Type', TYPES.get(ext, 'application/octet-stream'))
            self.send_header('Accept-Ranges', 'bytes')
            self.send_header('Content-Length', str(end - start + 1))
            if code == 206:
                self.send_header('Content-Range', f'bytes {start}-{end}/{size}')
            self.headers_common()
            self.end_headers()
            with open(full, 'rb') as f:
                f.seek(start)
                left = end - start + 1
                if cut is not None:  # a dropped connection: part of the body (in pieces, as a network would), then close
                    sent = 0
                    while sent < min(left, cut):
                        piece = f.read(min(16384, min(left, cut) - sent))
                        self.wfile.write(piece)
                        self.wfile.flush()
                        sent += len(piece)
                        time.sleep(0.02)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                while left > 0:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)

    return Handler


class Server:
    """The server running in a thread: `port`; `counts` (GETs per path), `ranges` ((path, Range header) per GET);
    cut(path, nbytes): the next GET of `path` sends nbytes of its body and drops the connection."""

    def __init__(self, web, models, port=0, isolate=False):
        self.counts, self.ranges, self.cuts, self.lock = {}, [], {}, threading.Lock()
        roots = [('/models/', models), ('/', web)]
        handler = make_handler(roots, isolate, self.counts, self.lock, self.cuts, self.ranges)
        self.httpd = ThreadingHTTPServer(('127.0.0.1', port), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def cut(self, path, nbytes):
        with self.lock:
            self.cuts[path] = nbytes

    def reset(self):
        with self.lock:
            self.counts.clear()
            self.ranges.clear()

    def shutdown(self):
        self.httpd.shutdown()


def start(web, models, port=0, isolate=False):
    return Server(web, models, port, isolate)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, default=8080)
    ap.add_argument('--web', default='web')
    ap.add_argument('--models', default='../shared/fixtures/models')
    ap.add_argument('--isolate', action='store_true', help='send COOP/COEP headers (cross-origin isolation)')
    a = ap.parse_args()
    server = start(a.web, a.models, a.port, a.isolate)
    print(f'listening on {server.port}', flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
        sys.exit(0)
