# The OpenAI-compatible server against the official `openai` client and raw HTTP (tests/server/conftest.py starts
# `vireo serve` on the bundled stories260K model).
import concurrent.futures
import json
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import API_KEY, MODEL, VIREO, Server


@pytest.fixture(scope="session")
def client(server):
    openai = pytest.importorskip("openai", reason="the openai package is not installed (scripts/install-deps.sh makes .venv)")
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0)


def greedy_cli(prompt, n):
    """The CLI's greedy continuation: the reference the server must reproduce."""
    out = subprocess.run([VIREO, "run", "-m", MODEL, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "1", "--ctx", "256"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.endswith("\n")
    return out.stdout[:-1]


# ---- the official client ----

def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["stories260K.gguf"]


def test_completion_matches_cli(client):
    ref = greedy_cli("Once upon a time", 30)
    r = client.completions.create(model="stories260K.gguf", prompt="Once upon a time", max_tokens=30, temperature=0)
    assert r.choices[0].text == ref
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 30
    assert r.usage.total_tokens == r.usage.prompt_tokens + 30


def test_completion_stream_equals_non_stream(client):
    full = client.completions.create(model="x", prompt="The little dog", max_tokens=25, temperature=0)
    pieces, finish = [], None
    for ch in client.completions.create(model="x", prompt="The little dog", max_tokens=25, temperature=0, stream=True):
        pieces.append(ch.choices[0].text)
        finish = ch.choices[0].finish_reason or finish
    assert "".join(pieces) == full.choices[0].text
    assert finish == "length"


def test_chat_non_stream_and_usage(server, client):
    r = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hello"}], max_tokens=20,
                                       temperature=0)
    msg = r.choices[0].message
    assert msg.role == "assistant" and isinstance(msg.content, str) and msg.content
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 20
    # The prompt is the fallback template's rendering (the model has no chat template), tokenized with BOS.
    toks = server.post("/tokenize", {"content": "User: Hello\nAssistant:", "add_special": True}).json()["tokens"]
    assert r.usage.prompt_tokens == len(toks)
    # The same prompt through /v1/completions gives the same greedy text.
    c = client.completions.create(model="x", prompt="User: Hello\nAssistant:", max_tokens=20, temperature=0)
    assert c.choices[0].text == msg.content


def test_chat_stream_with_usage(client):
    msgs = [{"role": "system", "content": "Tell a story."}, {"role": "user", "content": "A cat"}]
    full = client.chat.completions.create(model="x", messages=msgs, max_tokens=24, temperature=0)
    chunks = list(client.chat.completions.create(model="x", messages=msgs, max_tokens=24, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
    assert all(c.id == chunks[0].id for c in chunks)


def test_stop_strings(client):
    ref = client.completions.create(model="x", prompt="Once upon a time", max_tokens=40, temperature=0).choices[0].text
    words = ref.split(" ")
    stop = " " + words[5]
    cut = ref[: ref.index(stop)]
    r = client.completions.create(model="x", prompt="Once upon a time", max_tokens=40, temperature=0, stop=[stop, "@@@"])
    assert r.choices[0].text == cut
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="x", prompt="Once upon a time", max_tokens=40, temperature=0, stop=stop, stream=True))
    assert streamed == cut


def test_seed_determinism(client):
    def run(seed):
        return client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Once"}], max_tokens=30,
                                              temperature=1.0, seed=seed).choices[0].message.content
    a, b = run(42), run(42)
    assert a == b
    assert any(run(s) != a for s in (43, 44, 45))


def test_logprobs(client):
    r = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 8
    for e in content:
        assert e.logprob <= 0
        assert len(e.top_logprobs) == 3
        assert e.top_logprobs[0].token == e.token  # greedy takes the most likely token
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
    c = client.completions.create(model="x", prompt="Hi", max_tokens=5, temperature=0, logprobs=2)
    assert len(c.choices[0].logprobs.tokens) == 5 and len(c.choices[0].logprobs.top_logprobs[0]) == 2


def test_prefix_cache_counts(client):
    system = "Lily and Tom went to the park. They saw a big tree and a small bird. " * 2
    msgs = lambda q: [{"role": "system", "content": system}, {"role": "user", "content": q}]
    client.chat.completions.create(model="x", messages=msgs("What did they see?"), max_tokens=4, temperature=0)
    r = client.chat.completions.create(model="x", messages=msgs("Who was there?"), max_tokens=4, temperature=0)
    cached = r.usage.prompt_tokens_details.cached_tokens
    assert cached >= 30, f"expected the shared system prompt to come from the cache, got {cached}"


def test_concurrent_requests_match_sequential(client):
    prompts = ["Once upon a time", "The little dog", "One day, a bird", "Sam had a red ball.", "The sun was hot",
               "Lily wanted to", "Tom saw a big", "Mom said"]
    seq = [client.completions.create(model="x", prompt=p, max_tokens=20, temperature=0).choices[0].text for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        par = list(ex.map(lambda p: client.completions.create(model="x", prompt=p, max_tokens=20,
                                                              temperature=0).choices[0].text, prompts))
    assert par == seq


# ---- raw HTTP: every error case ----

def err(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str) and body["error"]["type"]
    return body["error"]


def test_malformed_json(server):
    e = err(server.post("/v1/chat/completions", raw="{not json"), 400)
    assert e["type"] == "invalid_request_error"
    err(server.post("/v1/completions", raw="[1, 2]"), 400)
    err(server.post("/v1/chat/completions", raw=""), 400)


@pytest.mark.parametrize("body,param", [
    ({"messages": "hi"}, "messages"),
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": 7}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2.5}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": 3}, "stop"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, "top_logprobs"),
])
def test_wrong_fields(server, body, param):
    e = err(server.post("/v1/chat/completions", body), 400)
    assert e["param"] == param


def test_completion_wrong_prompt(server):
    assert err(server.post("/v1/completions", {"prompt": {"a": 1}}), 400)["param"] == "prompt"
    assert err(server.post("/v1/completions", {"prompt": [1, 99999999]}), 400)["param"] == "prompt"


def test_unknown_fields_tolerated(server):
    r = server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
                                             "frobnicate": {"a": [1, 2]}, "user": "me", "metadata": None})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 3


def test_prompt_too_long(server):
    e = err(server.post("/v1/completions", {"prompt": "Once upon a time " * 200, "max_tokens": 4}), 400)
    assert e["code"] == "context_length_exceeded"
    e = err(server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "a cat " * 300}]}), 400)
    assert e["code"] == "context_length_exceeded"


def test_bad_key(server):
    r = requests.post(server.base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
                      headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert err(r, 401)["code"] == "invalid_api_key"
    r = requests.get(server.base + "/v1/models", timeout=10)
    err(r, 401)
    assert requests.get(server.base + "/health", timeout=10).status_code == 200  # health needs no key


def test_not_found(server):
    err(server.get("/v1/nope"), 404)
    err(server.get("/v1/models/other-model"), 404)
    assert server.get("/v1/models/stories260K.gguf").json()["id"] == "stories260K.gguf"


def test_tokenize_detokenize(server):
    toks = server.post("/tokenize", {"content": "Once upon a time"}).json()["tokens"]
    assert toks and all(isinstance(t, int) for t in toks)
    assert server.post("/detokenize", {"tokens": toks}).json()["content"].strip() == "Once upon a time"
    err(server.post("/tokenize", {"content": 3}), 400)
    err(server.post("/detokenize", {"tokens": [-1]}), 400)


def test_health_and_metrics(server):
    assert server.get("/health").json() == {"status": "ok"}
    m = server.get("/metrics").text
    for name in ["vireo_requests_total", "vireo_generated_tokens_total", "vireo_queue_depth",
                 "vireo_time_to_first_token_seconds_bucket", "vireo_inter_token_latency_seconds_count",
                 "vireo_prompt_tokens_cached_total"]:
        assert name in m
    assert int(next(l for l in m.splitlines() if l.startswith("vireo_generated_tokens_total")).split()[1]) > 0


def metric(server, name):
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


@pytest.fixture(scope="module")
def slow_server():
    s = Server(["--step-delay-ms", "20"])
    yield s
    assert s.stop() == 0


def test_disconnect_mid_stream_frees_slot(slow_server):
    server = slow_server
    before = metric(server, "vireo_client_disconnects_total")
    r = requests.post(server.base + "/v1/completions", headers=server.headers(), stream=True, timeout=30,
                      json={"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": True,
                            "ignore_eos": True})
    lines = r.iter_lines()
    got = 0
    for line in lines:
        if line.startswith(b"data: "):
            got += 1
            if got == 3:
                break
    r.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        if metric(server, "vireo_client_disconnects_total") > before and metric(server, "vireo_active_sequences") == 0:
            break
        time.sleep(0.05)
    assert metric(server, "vireo_client_disconnects_total") > before
    assert metric(server, "vireo_active_sequences") == 0
    # The server keeps serving.
    assert server.post("/v1/completions", {"prompt": "Hi", "max_tokens": 2}).status_code == 200


def test_queue_full_gets_503():
    s = Server(["--step-delay-ms", "5"], api_key=None, parallel=1, max_queue=1)
    try:
        body = {"prompt": "Once upon a time", "max_tokens": 180, "temperature": 0, "ignore_eos": True}
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            codes = list(ex.map(lambda _: s.post("/v1/completions", body).status_code, range(6)))
        assert 503 in codes and 200 in codes, codes
        r = s.post("/v1/completions", {"prompt": "Hi", "max_tokens": 1})
        assert r.status_code == 200
    finally:
        assert s.stop() == 0


def test_sigint_ends_streams_cleanly():
    s = Server(["--step-delay-ms", "20"], api_key=None)
    r = requests.post(s.base + "/v1/completions", stream=True, timeout=30,
                      json={"prompt": "Once upon a time", "max_tokens": 100000, "temperature": 0, "stream": True,
                            "ignore_eos": True})
    lines = []

    def read():
        for line in r.iter_lines():
            if line:
                lines.append(line)

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGINT)
    t.join(timeout=20)
    assert not t.is_alive()
    assert lines[-1] == b"data: [DONE]"
    final = json.loads(lines[-2][len(b"data: "):])
    assert final["choices"][0]["finish_reason"] == "stop"
    assert s.proc.wait(timeout=20) == 0
