# Starts `vireo serve` on the bundled stories260K model for the whole test session.
import os
import pathlib
import re
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
VIREO = os.environ.get("VIREO_CLI", str(ROOT / "build" / "vireo"))
MODEL = os.environ.get("VIREO_SERVE_MODEL", str(ROOT / "models" / "stories260K.gguf"))
API_KEY = "test-key-123"


class Server:
    def __init__(self, extra_args=(), api_key=API_KEY, parallel=4, max_queue=8):
        args = [VIREO, "serve", "-m", MODEL, "--port", "0", "--parallel", str(parallel), "--ctx", "256", "-t", "1",
                "--max-queue", str(max_queue)]
        if api_key:
            args += ["--api-key", api_key]
        args += list(extra_args)
        self.api_key = api_key
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.time() + 60
        self.log = []
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"on http://[\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("vireo serve did not start:\n" + "".join(self.log) + self.proc.stderr.read())
        self.base = f"http://127.0.0.1:{self.port}"

    def headers(self):
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def post(self, path, body=None, raw=None, **kw):
        h = dict(self.headers())
        h.update(kw.pop("headers", {}))
        if raw is not None:
            h.setdefault("Content-Type", "application/json")
            return requests.post(self.base + path, data=raw, headers=h, timeout=60, **kw)
        return requests.post(self.base + path, json=body, headers=h, timeout=60, **kw)

    def get(self, path, **kw):
        return requests.get(self.base + path, headers=self.headers(), timeout=60, **kw)

    def stop(self, sig=None):
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    if not pathlib.Path(VIREO).exists():
        pytest.skip(f"vireo CLI not built at {VIREO}")
    s = Server()
    yield s
    code = s.stop()
    assert code == 0, "server did not exit cleanly on SIGTERM"
