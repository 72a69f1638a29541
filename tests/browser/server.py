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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
         '.mjs': 'text/javascript; charset=utf-8', '.wasm': 'application/wasm', '.css': 'text/css',
         '.json': 'application/json', '.gguf': 'application/octet-stream', '.ts': 'text/plain', '.png': 'image/png'}


def make_handler(roots, isolate, counts, lock):
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
                while left > 0:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)

    return Handler


def start(web, models, port=0, isolate=False):
    """Starts the server in a thread; returns (server, port, counts)."""
    counts, lock = {}, threading.Lock()
    roots = [('/models/', models), ('/', web)]
    server = ThreadingHTTPServer(('127.0.0.1', port), make_handler(roots, isolate, counts, lock))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1], counts


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, default=8080)
    ap.add_argument('--web', default='web')
    ap.add_argument('--models', default='../shared/fixtures/models')
    ap.add_argument('--isolate', action='store_true', help='send COOP/COEP headers (cross-origin isolation)')
    a = ap.parse_args()
    server, port, _ = start(a.web, a.models, a.port, a.isolate)
    print(f'listening on {port}', flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
        sys.exit(0)
