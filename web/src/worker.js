// The engine's home: a module worker holding the WASM build (../dist/vireo-web.js), so that loading and
// generating never block the page. Talks to vireo.js with messages:
//   in:  {type: 'load', source, options} | {type: 'generate', id, prompt | messages, options} |
//        {type: 'cancel', id} | {type: 'unload'} | {type: 'clearCache', url}
//   out: {type: 'progress', phase, done, total} | {type: 'loaded', info} | {type: 'piece', id, text, tokens} |
//        {type: 'done', id, stats} | {type: 'error', id?, message}
import createVireoModule from '../dist/vireo-web.js';
import {clearCache, obtainModel} from './cache.js';

let mod = null;           // the Emscripten module of the loaded model
let gpu = false;          // running on WebGPU (steps wait on the GPU, so messages get through between them)
const active = new Map(); // request id (engine's) -> caller's id
const cancelled = new Set();
let pumping = false;

const post = (m) => self.postMessage(m);

function withString(s, fn) {
  const n = mod.lengthBytesUTF8(s) + 1;
  const p = mod._malloc(n);
  mod.stringToUTF8(s, p, n);
  try {
    return fn(p);
  } finally {
    mod._free(p);
  }
}
async function withStrings(list, fn) {
  const ptrs = list.map((s) => {
    const n = mod.lengthBytesUTF8(s) + 1;
    const p = mod._malloc(n);
    mod.stringToUTF8(s, p, n);
    return p;
  });
  try {
    return await fn(...ptrs);
  } finally {
    ptrs.forEach((p) => mod._free(p));
  }
}
const lastError = () => mod.UTF8ToString(mod._vireo_web_error());
// The exports that may wait on the GPU are promise-returning (pre.js) in the single-threaded module; the
// threaded one (CPU only) calls them directly.
const entry = (name) => (mod.vireoAsync ? mod.vireoAsync[name] : mod['_' + name]);

// WebGPU when asked for and usable; otherwise why not (for 'auto', the CPU then runs it).
async function openGpu(want) {
  if (want === 'cpu') return {why: 'the CPU was asked for'};
  if (typeof navigator === 'undefined' || !navigator.gpu) return {why: 'this browser has no WebGPU (navigator.gpu)'};
  if (typeof WebAssembly.Suspending !== 'function')
    return {why: 'this browser lacks WebAssembly JavaScript Promise Integration, which the WebGPU path needs'};
  const adapter = await navigator.gpu.requestAdapter({powerPreference: 'high-performance'});
  if (!adapter) return {why: 'WebGPU has no adapter here (blocklisted GPU or disabled)'};
  const limits = adapter.limits;
  // The optional features the kernels have variants for (subgroups: row sums by shuffles), where offered.
  const requiredFeatures = ['subgroups', 'shader-f16'].filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
    },
  });
  const info = adapter.info || {};
  const adapterInfo = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') ||
                      'WebGPU adapter';
  return {device, adapterInfo, features: [...adapter.features]};
}

async function load(source, options) {
  const t0 = performance.now();
  const onProgress = (done, total, phase) => post({type: 'progress', phase, done, total});
  const got = await obtainModel(source, {cache: options.cache, onProgress});
  const want = options.device || 'auto';
  const g = await openGpu(want);
  if (!g.device && want === 'webgpu') throw new Error('WebGPU is not available: ' + g.why);
  if (mod) mod._vireo_web_unload();
  // On the CPU, the threaded module when the page is cross-origin isolated (SharedArrayBuffer) and it is there.
  // The module starts max(1, cores - 1) workers (CMakeLists.txt, PTHREAD_POOL_SIZE): threads beyond that + 1
  // would wait forever for a worker to start.
  const cores = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
  const maxThreads = Math.max(1, cores - 1) + 1;
  let factory = createVireoModule;
  let threads = 1;
  let threadsWhy = null;
  if (g.device) {
    threadsWhy = 'WebGPU runs the model';
  } else if (!self.crossOriginIsolated) {
    threadsWhy = 'the page is not cross-origin isolated (COOP/COEP headers), so WebAssembly threads are off';
  } else if ((options.threads || cores) <= 1) {
    threadsWhy = 'one thread asked for or one core';
  } else {
    try {
      factory = (await import('../dist/vireo-web-mt.js')).default;
      threads = Math.min(options.threads || cores, maxThreads);
    } catch (err) {
      threadsWhy = 'the threaded module (dist/vireo-web-mt.js) did not load: ' + (err && err.message || err);
    }
  }
  mod = await factory({
    vireoGpu: g.device ? {device: g.device, adapterInfo: g.adapterInfo} : null,
    onLoadProgress: (done, total) => post({type: 'progress', phase: 'upload', done, total}),
    onCompileProgress: (done, total) => post({type: 'progress', phase: 'compile', done, total}),
    print: (s) => console.log(s),
    printErr: (s) => console.warn(s),
  });
  gpu = !!g.device;
  mod.FS.mkdir('/models');
  mod.FS.mount(mod.WORKERFS, {blobs: [{name: 'model.gguf', data: got.blob}]}, '/models');
  const engineOptions =
      JSON.stringify({device: gpu ? 'webgpu' : 'cpu', contextLength: options.contextLength || 0, threads});
  const rc = await withStrings(['/models/model.gguf', engineOptions], (path, opts) => entry('vireo_web_load')(path, opts));
  if (rc !== 0) throw new Error(lastError());
  const info = JSON.parse(mod.UTF8ToString(mod._vireo_web_info()));
  info.backend = gpu ? 'webgpu' : 'cpu';
  info.fallbackReason = gpu ? null : g.why;
  info.threadsReason = threadsWhy;  // why info.threads is 1, where it is
  info.adapter = g.adapterInfo || null;
  info.adapterFeatures = g.features || [];
  info.sha256 = got.sha256;
  info.fromCache = got.fromCache;
  info.cache = got.store;
  info.fileBytes = got.blob.size;
  info.loadSeconds = (performance.now() - t0) / 1000;
  return info;
}

// Lets queued messages (cancel) in between CPU steps, which do not wait on anything.
const channel = new MessageChannel();
const yieldToEvents = () => new Promise((resolve) => {
  channel.port1.onmessage = () => resolve();
  channel.port2.postMessage(0);
});

function drain(engineId) {
  const out = JSON.parse(mod.UTF8ToString(mod._vireo_web_poll(engineId)));
  const id = active.get(engineId);
  if (!out) return true;
  if (out.text || out.tokens.length) post({type: 'piece', id, text: out.text, tokens: out.tokens});
  if (out.done) {
    post({type: 'done', id, stats: out.stats});
    active.delete(engineId);
  }
  return out.done;
}

async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    while (active.size) {
      for (const engineId of cancelled) mod._vireo_web_cancel(engineId);
      cancelled.clear();
      const rc = await entry('vireo_web_step')();
      if (rc < 0) {
        const message = lastError();
        for (const id of active.values()) post({type: 'error', id, message});
        active.clear();
        break;
      }
      for (const engineId of [...active.keys()]) drain(engineId);
      if (rc === 0) {  // idle but requests left: they finished in this step's bookkeeping
        for (const engineId of [...active.keys()]) if (!drain(engineId)) active.delete(engineId);
      }
      if (!gpu) await yieldToEvents();
    }
  } finally {
    pumping = false;
  }
}

function generate(id, msg) {
  let prompt = msg.prompt;
  const options = Object.assign({}, msg.options || {});
  if (msg.messages) {
    const p = withString(JSON.stringify(msg.messages), (m) => mod._vireo_web_chat_prompt(m));
    if (!p) throw new Error(lastError());
    prompt = mod.UTF8ToString(p);
    options.chat = true;
  }
  const engineId = withString(prompt, (p) => withString(JSON.stringify(options), (o) => mod._vireo_web_start(p, o)));
  if (engineId < 0) throw new Error(lastError());
  active.set(engineId, id);
  pump();
}

self.onmessage = async (e) => {
  const msg = e.data;
  try {
    if (msg.type === 'load') {
      post({type: 'loaded', info: await load(msg.source, msg.options || {})});
    } else if (msg.type === 'generate') {
      if (!mod) throw new Error('no model loaded');
      generate(msg.id, msg);
    } else if (msg.type === 'cancel') {
      for (const [engineId, id] of active) if (id === msg.id) cancelled.add(engineId);
    } else if (msg.type === 'unload') {
      if (mod) mod._vireo_web_unload();
      mod = null;
      post({type: 'unloaded'});
    } else if (msg.type === 'clearCache') {
      await clearCache(msg.url);
      post({type: 'cacheCleared'});
    }
  } catch (err) {
    post({type: 'error', id: msg.id, message: err && err.message ? err.message : String(err)});
  }
};
