"""The browser package (web/) in a real browser: Debian's Chromium, headless, WebGPU on SwiftShader, driven by
Playwright against pages served from 127.0.0.1 (tests/browser/server.py, with HTTP Range support).

Checks: stories260K loaded from the server over WebGPU gives llama.cpp's 64 greedy tokens; a reload loads it from
the OPFS cache without a request for the model; a download cut mid-way resumes with a Range request and hashes
right; IndexedDB as the cache; chat and AbortSignal; the CPU fallback with WebGPU disabled (same text; threaded
when the page is cross-origin isolated); the demo
page after a reply (screenshot kept in build/browser-artifacts/). Speeds are printed (and kept in
build/browser-artifacts/speeds.json) for docs/BENCHMARKS.md.

Run by scripts/test-browser.sh; skips when Chromium, Playwright, the fixtures or web/dist are missing."""
import hashlib
import json
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server as test_server  # noqa: E402

FIXTURES = os.path.join(ROOT, '..', 'shared', 'fixtures')
MODELS = os.path.join(FIXTURES, 'models')
WEB = os.path.join(ROOT, 'web')
ARTIFACTS = os.path.join(ROOT, 'build', 'browser-artifacts')
CHROMIUM = os.environ.get('VIREO_CHROMIUM', '/usr/bin/chromium')
BASE_FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--no-first-run', '--disable-quic', '--disable-gpu-sandbox']
WEBGPU_FLAGS = ['--enable-unsafe-webgpu']

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None

if not os.path.isdir(FIXTURES):
    pytest.skip('../shared/fixtures not found: browser tests skipped', allow_module_level=True)
if sync_playwright is None:
    pytest.skip('playwright (PyPI) not installed: browser tests skipped', allow_module_level=True)
if not os.path.exists(CHROMIUM):
    pytest.skip(f'{CHROMIUM} not found (apt-get install chromium): browser tests skipped', allow_module_level=True)
if not os.path.exists(os.path.join(WEB, 'dist', 'vireo-web.wasm')):
    pytest.skip('web/dist/vireo-web.wasm not built (scripts/test-wasm.sh builds it): browser tests skipped',
                allow_module_level=True)

SPEEDS = {}


@pytest.fixture(scope='module', autouse=True)
def speeds_report():
    yield
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, 'speeds.json'), 'w') as f:
        json.dump(SPEEDS, f, indent=1)
    print('\nbrowser speeds:', json.dumps(SPEEDS))


def golden_continuation(name='stories260K-f32'):
    with open(os.path.join(FIXTURES, 'golden', f'llamacpp_{name}_once_upon_a_time_n64.txt'), encoding='utf-8') as f:
        want = f.read().rstrip('\n')
    prefix = '<s> Once upon a time'
    assert want.startswith(prefix)
    return want[len(prefix):]


@pytest.fixture(scope='module')
def srv():
    s = test_server.start(WEB, MODELS)
    yield s
    s.shutdown()


@pytest.fixture(scope='module')
def playwright():
    with sync_playwright() as p:
        yield p


def launch(playwright, webgpu=True):
    """A fresh browser profile (empty OPFS/IndexedDB) as a persistent context."""
    profile = tempfile.mkdtemp(prefix='vireo-chromium-')
    ctx = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=BASE_FLAGS + (WEBGPU_FLAGS if webgpu else []))
    ctx.set_default_timeout(180_000)
    return ctx, profile


def close(ctx, profile):
    ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


def open_test_page(ctx, srv):
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    logs = []
    page.on('console', lambda m: logs.append(m.text))
    page.on('pageerror', lambda e: logs.append(f'pageerror: {e}'))
    page.goto(f'http://127.0.0.1:{srv.port}/test/index.html')
    page.wait_for_function("document.title === 'ready'")
    return page, logs


GENERATE = """async ([url, options, prompt, gen]) => {
  const phases = [];  // progress phases in order, with the last report of each
  const m = await vireo.load(url, {...options, onProgress: (p) => {
    if (!phases.length || phases[phases.length - 1].phase !== p.phase) phases.push({...p});
    else phases[phases.length - 1] = {...p};
  }});
  const t0 = performance.now();
  let text = '';
  for await (const piece of m.generate(prompt, gen)) text += piece;
  const out = {info: m.info, text, stats: m.lastStats, ms: performance.now() - t0, phases};
  await m.unload();
  return out;
}"""


def generate(page, url, options=None, prompt='Once upon a time', gen=None):
    return page.evaluate(GENERATE, [url, options or {}, prompt, gen or {'maxTokens': 64, 'temperature': 0}])


def decode_rate(stats):
    n = stats['generatedTokens']
    return (n - 1) / stats['decodeSeconds'] if n > 1 and stats['decodeSeconds'] > 0 else 0.0


def file_sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_webgpu_golden_then_cache_without_refetch(srv, playwright):
    url = '/models/stories260K-f32.gguf'
    ctx, profile = launch(playwright)
    try:
        page, logs = open_test_page(ctx, srv)
        srv.reset()
        r = generate(page, url)
        assert r['info']['backend'] == 'webgpu', (r['info'], logs)
        assert r['info']['fromCache'] is False
        assert r['info']['cache'] == 'opfs'
        assert r['info']['sha256'] == file_sha256(os.path.join(MODELS, 'stories260K-f32.gguf'))
        assert r['text'] == golden_continuation(), logs
        assert r['stats']['generatedTokens'] == 64 and r['stats']['stopReason'] == 'length'
        assert srv.counts.get(url, 0) >= 1
        # Every pipeline is compiled at load, reported as its own phase before the weights upload.
        names = [p['phase'] for p in r['phases']]
        assert 'compile' in names and names.index('compile') < names.index('upload'), r['phases']
        compile_phase = r['phases'][names.index('compile')]
        assert compile_phase['done'] == compile_phase['total'] >= 20, compile_phase
        SPEEDS['swiftshader_webgpu_stories260K_f32'] = {
            'decode_tok_s': decode_rate(r['stats']), 'prompt_s': r['stats']['promptSeconds'],
            'adapter': r['info']['adapter']}

        # Reload: the model comes from OPFS, the server sees no request for it.
        srv.reset()
        page.reload()
        page.wait_for_function("document.title === 'ready'")
        r2 = generate(page, url)
        assert r2['info']['fromCache'] is True
        assert srv.counts.get(url, 0) == 0, srv.counts
        assert r2['text'] == golden_continuation()
    finally:
        close(ctx, profile)


def test_download_resumes_after_a_dropped_connection(srv, playwright):
    url = '/models/stories260K-f16.gguf'
    ctx, profile = launch(playwright)
    try:
        page, logs = open_test_page(ctx, srv)
        srv.reset()
        srv.cut(url, 200_000)
        r = generate(page, url)
        model_gets = [rng for path, rng in srv.ranges if path == url]
        assert len(model_gets) >= 2, model_gets
        assert model_gets[0].startswith('bytes=0-')
        assert any(rng and not rng.startswith('bytes=0-') for rng in model_gets[1:]), model_gets
        assert r['info']['sha256'] == file_sha256(os.path.join(MODELS, 'stories260K-f16.gguf'))
        assert r['text'] == golden_continuation('stories260K-f16')
    finally:
        close(ctx, profile)


def test_indexeddb_cache(srv, playwright):
    url = '/models/stories260K-Q4_K_M-fallback.gguf'
    ctx, profile = launch(playwright)
    try:
        page, logs = open_test_page(ctx, srv)
        r = generate(page, url, {'cache': 'indexeddb'})
        assert r['info']['cache'] == 'indexeddb' and r['info']['fromCache'] is False
        assert r['text'] == golden_continuation('stories260K-Q4_K_M-fallback')
        srv.reset()
        page.reload()
        page.wait_for_function("document.title === 'ready'")
        r2 = generate(page, url, {'cache': 'indexeddb'})
        assert r2['info']['fromCache'] is True and srv.counts.get(url, 0) == 0
        assert r2['info']['sha256'] == r['info']['sha256']
        assert r2['text'] == r['text']
    finally:
        close(ctx, profile)


def test_chat_and_abort(srv, playwright):
    ctx, profile = launch(playwright)
    try:
        page, logs = open_test_page(ctx, srv)
        r = page.evaluate("""async (url) => {
          const m = await vireo.load(url);
          let reply = '';
          for await (const p of m.chat([{role: 'user', content: 'Tell me a story.'}], {maxTokens: 16, temperature: 0}))
            reply += p;
          const chatStats = m.lastStats;
          const ctl = new AbortController();
          let pieces = 0, error = null;
          try {
            for await (const p of m.generate('Once upon a time', {maxTokens: 100, temperature: 0, signal: ctl.signal})) {
              if (++pieces === 3) ctl.abort();
            }
          } catch (e) { error = e.name; }
          const abortStats = m.lastStats;
          const sampled = [];
          for (let k = 0; k < 2; ++k) {  // sampling (candidates picked on the GPU): the same seed, the same text
            let t = '';
            for await (const p of m.generate('Once upon a time', {maxTokens: 24, temperature: 0.9, seed: 5})) t += p;
            sampled.push([t, m.lastStats.generatedTokens]);
          }
          let after = '';
          for await (const p of m.generate('Once upon a time', {maxTokens: 64, temperature: 0})) after += p;
          await m.unload();
          return {reply, chatStats, error, pieces, abortStats, sampled, after};
        }""", '/models/stories260K-f32.gguf')
        assert r['chatStats']['generatedTokens'] >= 1 and r['reply'].strip(), r
        # plain User:/Assistant: turns for a model without a template, BOS added as the tokenizer asks
        assert r['chatStats']['promptTokens'] > 5
        assert r['error'] == 'AbortError', r
        assert r['abortStats']['stopReason'] == 'cancelled', r['abortStats']
        assert r['abortStats']['generatedTokens'] < 100
        assert r['sampled'][0] == r['sampled'][1] and r['sampled'][0][1] == 24, r['sampled']
        assert r['sampled'][0][0] != golden_continuation()[:len(r['sampled'][0][0])]  # not the greedy text
        assert r['after'] == golden_continuation()  # the engine is fine after a cancel
    finally:
        close(ctx, profile)


def test_cpu_fallback_without_webgpu(srv, playwright):
    ctx, profile = launch(playwright, webgpu=False)
    try:
        page, logs = open_test_page(ctx, srv)
        caps = page.evaluate('vireo.capabilities()')
        assert caps['webgpu'] is False and caps['reason'], caps
        r = generate(page, '/models/stories260K-f32.gguf')
        assert r['info']['backend'] == 'cpu'
        assert r['info']['fallbackReason'] and 'WebGPU' in r['info']['fallbackReason']
        assert r['text'] == golden_continuation()
        assert r['info']['threads'] == 1 and 'cross-origin isolated' in r['info']['threadsReason'], r['info']
        SPEEDS['chromium_wasm_cpu_stories260K_f32'] = {'decode_tok_s': decode_rate(r['stats'])}
    finally:
        close(ctx, profile)


@pytest.fixture(scope='module')
def isolated_srv():
    s = test_server.start(WEB, MODELS, isolate=True)
    yield s
    s.shutdown()


def test_cpu_fallback_threads_when_cross_origin_isolated(isolated_srv, playwright):
    """With COOP/COEP headers the CPU path runs the threaded module (dist/vireo-web-mt.js): same golden text."""
    ctx, profile = launch(playwright, webgpu=False)
    try:
        page, logs = open_test_page(ctx, isolated_srv)
        caps = page.evaluate('vireo.capabilities()')
        assert caps['crossOriginIsolated'] is True, caps
        cores = page.evaluate('navigator.hardwareConcurrency')
        r = generate(page, '/models/stories260K-f32.gguf')  # default: one thread per core
        assert r['info']['backend'] == 'cpu'
        assert r['info']['threads'] == max(1, min(cores, 16)), (cores, r['info'])
        assert r['text'] == golden_continuation()
        SPEEDS['chromium_wasm_cpu_threads_stories260K_f32'] = {'threads': r['info']['threads'],
                                                               'decode_tok_s': decode_rate(r['stats'])}
        for name in ('stories260K-f32', 'stories260K-Q4_K_M-fallback'):  # two threads, whatever the cores
            r = generate(page, f'/models/{name}.gguf', {'threads': 2})
            assert r['info']['threads'] == 2 and r['info']['threadsReason'] is None, r['info']
            assert r['text'] == golden_continuation(name), name
        assert not [m for m in logs if m.startswith('pageerror')], logs
    finally:
        close(ctx, profile)


def test_demo_page_reply_screenshot(srv, playwright):
    ctx, profile = launch(playwright)
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_viewport_size({'width': 1000, 'height': 760})
        page.goto(f'http://127.0.0.1:{srv.port}/demo/index.html?model=/models/stories260K-f32.gguf')
        page.wait_for_selector('#chat:not([hidden])')
        assert 'WebGPU on' in page.inner_text('#model-info')
        page.fill('#temperature', '0')
        page.fill('#max-tokens', '48')
        page.fill('#input', 'Once upon a time')
        page.click('#send')
        page.wait_for_function("document.body.dataset.replies === '1'")
        reply = page.inner_text('.msg.assistant')
        assert reply.strip()
        assert 'tok/s' in page.inner_text('#speed')
        assert page.is_hidden('#error')
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, 'demo.png'), full_page=True)
        assert os.path.getsize(os.path.join(ARTIFACTS, 'demo.png')) > 10_000
    finally:
        close(ctx, profile)


@pytest.mark.skipif(not os.environ.get('VIREO_BROWSER_TINYLLAMA'),
                    reason='set VIREO_BROWSER_TINYLLAMA=1 (synthesizes a 640 MB TinyLlama; minutes on SwiftShader; '
                           '=cpu: the CPU paths only)')
def test_tinyllama_shapes_speed(srv, playwright, tmp_path_factory):
    """A synthetic TinyLlama-1.1B Q4_K_M (random weights) over WebGPU on SwiftShader and on the WASM CPU path:
    loads (streamed into GPU buffers), generates 2 tokens, and records the speeds (SwiftShader: ~1 minute per
    token on the 2-core CI machine)."""
    import subprocess
    models = tmp_path_factory.mktemp('models')
    path = models / 'tinyllama-q4_k_m.gguf'
    subprocess.run([os.path.join(ROOT, 'build', 'vireo'), 'synth', '--preset', 'tinyllama-1.1b', '--type', 'q4_k_m',
                    '-o', str(path)], check=True)
    big = test_server.start(WEB, str(models))
    isolated = test_server.start(WEB, str(models), isolate=True)  # the CPU path with threads
    try:
        for webgpu, server in ((True, big), (False, big), (False, isolated)):
            if os.environ.get('VIREO_BROWSER_TINYLLAMA') == 'cpu' and webgpu:
                continue
            ctx, profile = launch(playwright, webgpu=webgpu)
            try:
                page, logs = open_test_page(ctx, server)
                r = generate(page, '/models/tinyllama-q4_k_m.gguf', {'contextLength': 64}, 'Hello',
                             {'maxTokens': 2, 'temperature': 0, 'ignoreEos': True})
                assert r['info']['backend'] == ('webgpu' if webgpu else 'cpu'), r['info']
                assert r['stats']['generatedTokens'] == 2, (r['stats'], logs)
                SPEEDS['tinyllama_q4_k_m_' + r['info']['backend'] + f"_{r['info']['threads']}t"] = {
                    'decode_tok_s': decode_rate(r['stats']), 'ttft_s': r['stats']['ttftSeconds'],
                    'prompt_tok_s': r['stats']['promptComputed'] / max(r['stats']['promptSeconds'], 1e-9),
                    'load_s': r['info']['loadSeconds']}
            finally:
                close(ctx, profile)
    finally:
        big.shutdown()
        isolated.shutdown()


ROW_SUM_CHECK = """async ([subgroupModule, sharedModule]) => {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter.features.has('subgroups')) return {subgroups: false};
  const device = await adapter.requestDevice({requiredFeatures: ['subgroups']});
  async function run(code) {
    const module = device.createShaderModule({code});
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error')
        .map((m) => m.lineNum + ': ' + m.message);
    if (errors.length) return {errors};
    const pipeline = device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}});
    const out = device.createBuffer({size: 32, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC});
    const read = device.createBuffer({size: 32, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    const group = device.createBindGroup({layout: pipeline.getBindGroupLayout(0),
                                         entries: [{binding: 0, resource: {buffer: out}}]});
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, 32);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    return {sums: [...new Float32Array(read.getMappedRange())]};
  }
  return {subgroups: true, size: adapter.info.subgroupMinSize, subgroup: await run(subgroupModule),
          shared: await run(sharedModule)};
}"""

# An entry point shaped like matvec_int8's (the same Ids / Lane inputs), summing each 32-lane row of lane values.
ROW_SUM_ENTRY = """
const LANES: u32 = 32u;
@group(0) @binding(0) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(256)
fn main(ids: Ids, lane_ids: Lane) {
  let tid = lane_ids.lid.x;
  let s = row_sum(ids, tid, f32(tid * tid % 97u));
  if (tid % LANES == 0u) { Y[tid / LANES] = s; }
}
"""


def test_subgroup_row_sums_pass_tint_and_match(srv, playwright):
    """row_sum_subgroup.wgsl as a browser compiles it (Tint: `enable subgroups;`, its uniformity analysis) and
    runs it at the adapter's subgroup size (SwiftShader: 4), against row_sum.wgsl and the host's sums. (The
    matvec_finish variants run in the WebGPU page tests above: SwiftShader has subgroups.)"""
    wgsl = os.path.join(ROOT, 'src', 'backend', 'webgpu', 'wgsl')
    def source(*names):
        text = ''
        for n in names:
            with open(os.path.join(wgsl, n + '.wgsl')) as f:
                text += f.read()
        return text + ROW_SUM_ENTRY
    subgroup = 'enable subgroups;\n' + source('ids_subgroup', 'row_sum_subgroup')
    shared = source('ids', 'row_sum')
    ctx, profile = launch(playwright)
    try:
        page, logs = open_test_page(ctx, srv)
        r = page.evaluate(ROW_SUM_CHECK, [subgroup, shared])
    finally:
        close(ctx, profile)
    if not r['subgroups']:
        pytest.skip('this adapter has no subgroups')
    want = [float(sum(t * t % 97 for t in range(32 * row, 32 * row + 32))) for row in range(8)]
    assert r['shared'] == {'sums': want}, r['shared']
    assert r['subgroup'] == {'sums': want}, (r['size'], r['subgroup'])
