#!/usr/bin/env python3
"""Load test for `vireo serve` over loopback, standard library only (runs on machines without pip packages).

Starts the server (or uses --url), then for each client count keeps that many streaming chat clients busy for
--duration seconds. Checks: zero failed requests, every stream complete (a finish_reason, usage, then [DONE]),
server memory flat (RSS at the end within --rss-tolerance of RSS after the warm-up). Prints one JSON line per
client count and exits non-zero when a check fails.

  tests/server/load_test.py --vireo build/vireo --model models/stories260K.gguf --clients 32 --duration 120
  tests/server/load_test.py --vireo .devbin/vireo --model /tmp/m/llama3.2-1b.gguf --device cuda \
      --clients 1,8,32,64 --duration 30 --max-tokens 128
"""
import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

PROMPTS = [
    "Tell me a story about a cat.", "What is the sun?", "Once upon a time there was a girl named Lily.",
    "Why do birds sing?", "Write about a big red ball.", "Tom and Sam went to the park.", "Hello!",
    "Describe a rainy day.",
]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


EXTRA_SAMPLING = {}  # further request fields (--top-k)


def stream_once(host, port, max_tokens, key, rng, temperature):
    body = json.dumps({"messages": [{"role": "user", "content": rng.choice(PROMPTS)}], "max_tokens": max_tokens,
                       "temperature": temperature, "seed": rng.randrange(1 << 30), "stream": True,
                       "stream_options": {"include_usage": True}, **EXTRA_SAMPLING})
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        if resp.status != 200:
            return False, 0, f"HTTP {resp.status}: {resp.read()[:200]!r}"
        finish = usage = None
        done = False
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                return False, 0, "error chunk: " + data[:200]
            if chunk.get("choices") and chunk["choices"][0].get("finish_reason"):
                finish = chunk["choices"][0]["finish_reason"]
            if chunk.get("usage"):
                usage = chunk["usage"]
        if not (done and finish and usage):
            return False, 0, f"incomplete stream (done={done}, finish={finish}, usage={usage is not None})"
        return True, usage["completion_tokens"], ""
    except Exception as e:  # noqa: BLE001 - every failure is counted and reported
        return False, 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def run_load(host, port, clients, duration, max_tokens, key, temperature):
    stop_at = time.time() + duration
    lock = threading.Lock()
    stats = {"requests": 0, "failed": 0, "tokens": 0, "errors": []}

    def client(i):
        rng = random.Random(i)
        while time.time() < stop_at:
            ok, toks, why = stream_once(host, port, max_tokens, key, rng, temperature)
            with lock:
                stats["requests"] += 1
                stats["tokens"] += toks
                if not ok:
                    stats["failed"] += 1
                    if len(stats["errors"]) < 5:
                        stats["errors"].append(why)

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = time.time() - t0
    stats["tok_s"] = stats["tokens"] / stats["seconds"]
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vireo", help="vireo CLI to start (else --url)")
    ap.add_argument("--model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--url", help="an already running server, http://host:port")
    ap.add_argument("--clients", default="32", help="comma-separated client counts")
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--warmup", type=float, default=10, help="seconds of load before the baseline RSS sample")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=0, help="top_k of every request (0: not sent, the server's off)")
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--server-args", default="", help="extra arguments for vireo serve")
    a = ap.parse_args()
    if a.top_k > 0:
        EXTRA_SAMPLING["top_k"] = a.top_k
    counts = [int(c) for c in a.clients.split(",")]
    proc = None
    if a.vireo:
        args = [a.vireo, "serve", "-m", a.model, "--port", "0", "--device", a.device, "--parallel", str(max(counts)),
                "--max-queue", str(max(counts)), "--ctx", str(a.ctx)] + a.server_args.split()
        proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        port = None
        while port is None:
            line = proc.stderr.readline()
            if not line:
                sys.exit("server did not start")
            m = re.search(r"on http://[\d.]+:(\d+)", line)
            port = int(m.group(1)) if m else None
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        host = "127.0.0.1"
    else:
        m = re.match(r"http://([^:/]+):(\d+)", a.url)
        host, port = m.group(1), int(m.group(2))

    ok = True
    try:
        for n in counts:
            if proc and a.warmup > 0:
                run_load(host, port, n, a.warmup, a.max_tokens, None, a.temperature)
            rss0 = rss_kb(proc.pid) if proc else 0
            st = run_load(host, port, n, a.duration, a.max_tokens, None, a.temperature)
            rss1 = rss_kb(proc.pid) if proc else 0
            st.update({"clients": n, "device": a.device, "temperature": a.temperature, "top_k": a.top_k, "model": os.path.basename(a.model or a.url),
                       "rss_after_warmup_kb": rss0, "rss_end_kb": rss1})
            grew = rss0 and rss1 > rss0 * (1 + a.rss_tolerance)
            st["pass"] = st["failed"] == 0 and st["requests"] > 0 and not grew
            ok &= st["pass"]
            print(json.dumps(st), flush=True)
    finally:
        if proc:
            proc.terminate()
            code = proc.wait(timeout=30)
            if code != 0:
                print(f"server exit code {code}", file=sys.stderr)
                ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
