// vireo in the browser: run a GGUF model in a web page, on the visitor's GPU (WebGPU) or, without one, on the
// CPU (WebAssembly SIMD).
//
//   import * as vireo from './vireo.js';
//   const model = await vireo.load('https://example.org/model.gguf', {onProgress: (p) => console.log(p)});
//   for await (const piece of model.generate('Once upon a time', {maxTokens: 64})) out.textContent += piece;
//   for await (const piece of model.chat([{role: 'user', content: 'Hi'}])) ...
//
// The engine runs in a module worker (worker.js); this file is the page's side of it.

const DEFAULT_SAMPLING = {temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, maxTokens: 256};

function abortError(signal) {
  return signal && signal.reason !== undefined ? signal.reason : new DOMException('The operation was aborted.', 'AbortError');
}

class Model {
  constructor(worker, info) {
    this.worker = worker;
    this.info = info;           // architecture, backend ('webgpu' | 'cpu'), adapter, fallbackReason, ...
    this.lastStats = null;      // the statistics of the last finished generation
    this.nextId = 1;
    this.streams = new Map();   // id -> {push(msg)}
    worker.addEventListener('message', (e) => {
      const m = e.data;
      const s = m.id !== undefined ? this.streams.get(m.id) : null;
      if (s) s.push(m);
    });
  }

  // The backend that runs the model: 'webgpu' or 'cpu'.
  get backend() { return this.info.backend; }

  // Streams the continuation of `prompt` as text pieces. options: maxTokens, temperature (0: greedy), topK,
  // topP, minP, repeatPenalty, presencePenalty, frequencyPenalty, seed, stop (string or list), ignoreEos,
  // addBos, signal (AbortSignal: the generator throws its reason). Statistics land in `lastStats`.
  generate(prompt, options = {}) {
    return this.stream({type: 'generate', prompt: String(prompt)}, options);
  }

  // Streams the assistant's reply to `messages` ([{role, content}, ...]) in the model's chat template (plain
  // "User:/Assistant:" turns when the model has none). Same options as generate().
  chat(messages, options = {}) {
    return this.stream({type: 'generate', messages}, options);
  }

  async *stream(request, options) {
    const {signal, ...rest} = options;
    if (signal && signal.aborted) throw abortError(signal);
    const id = this.nextId++;
    const queue = [];
    let wake = null;
    this.streams.set(id, {push: (m) => { queue.push(m); if (wake) { wake(); wake = null; } }});
    const onAbort = () => this.worker.postMessage({type: 'cancel', id});
    if (signal) signal.addEventListener('abort', onAbort, {once: true});
    let finished = false;
    try {
      this.worker.postMessage({...request, id, options: {...DEFAULT_SAMPLING, ...rest}});
      for (;;) {
        while (queue.length === 0) await new Promise((r) => { wake = r; });
        const m = queue.shift();
        if (m.type === 'piece') {
          if (m.text) yield m.text;
        } else if (m.type === 'done') {
          finished = true;
          this.lastStats = m.stats;
          if (m.stats && m.stats.stopReason === 'error') throw new Error(m.stats.error);
          if (signal && signal.aborted) throw abortError(signal);
          return;
        } else if (m.type === 'error') {
          finished = true;
          throw new Error(m.message);
        }
      }
    } finally {
      if (!finished) this.worker.postMessage({type: 'cancel', id});  // the caller stopped early
      if (signal) signal.removeEventListener('abort', onAbort);
      this.streams.delete(id);
    }
  }

  // Frees the model and ends the worker.
  async unload() {
    this.worker.terminate();
    this.streams.clear();
  }
}

// Loads a GGUF model. `source`: a URL (string or URL; fetched with HTTP Range requests and resumed when a
// connection drops) or a File/Blob. options:
//   onProgress({phase: 'download'|'hash'|'compile'|'upload', done, total, fraction}) (compile: pipelines, the
//   rest bytes)
//   device: 'auto' (WebGPU when usable, else CPU) | 'webgpu' | 'cpu'
//   cache: 'auto' (OPFS, else IndexedDB) | 'opfs' | 'indexeddb' | false; a cached URL loads without the network
//   contextLength: tokens of context (0: the model's, capped at 4096)
//   threads: CPU threads (default one per core; more than one needs a cross-origin isolated page)
//   signal: AbortSignal
//   workerUrl: where worker.js is served from (default: next to this file)
export async function load(source, options = {}) {
  const {onProgress, signal, workerUrl, ...rest} = options;
  if (signal && signal.aborted) throw abortError(signal);
  const worker = new Worker(workerUrl || new URL('./worker.js', import.meta.url), {type: 'module'});
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      worker.terminate();
      reject(abortError(signal));
    };
    if (signal) signal.addEventListener('abort', onAbort, {once: true});
    const finish = () => signal && signal.removeEventListener('abort', onAbort);
    worker.onerror = (e) => {
      finish();
      worker.terminate();
      reject(new Error('vireo worker failed: ' + (e.message || 'could not start (is dist/ built?)')));
    };
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.type === 'progress') {
        if (onProgress) onProgress({phase: m.phase, done: m.done, total: m.total,
                                    fraction: m.total > 0 ? Math.min(1, m.done / m.total) : null});
      } else if (m.type === 'loaded') {
        finish();
        worker.onmessage = null;
        resolve(new Model(worker, m.info));
      } else if (m.type === 'error') {
        finish();
        worker.terminate();
        reject(new Error(m.message));
      }
    };
    // A File/Blob crosses to the worker as a handle; its bytes are read there.
    worker.postMessage({type: 'load', source: source instanceof Blob ? source : String(source), options: rest});
  });
}

// What this browser offers: {webgpu, jspi, crossOriginIsolated, reason} (reason: why WebGPU will not be used).
export async function capabilities() {
  const jspi = typeof WebAssembly !== 'undefined' && typeof WebAssembly.Suspending === 'function';
  let webgpu = false;
  let reason = null;
  let adapter = null;
  if (!('gpu' in navigator)) reason = 'this browser has no WebGPU (navigator.gpu)';
  else {
    const a = await navigator.gpu.requestAdapter();
    if (!a) reason = 'WebGPU has no adapter here (blocklisted GPU or disabled)';
    else {
      webgpu = true;
      const i = a.info || {};
      adapter = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ');
    }
  }
  if (webgpu && !jspi) reason = 'this browser lacks WebAssembly JavaScript Promise Integration, which the WebGPU path needs';
  return {webgpu: webgpu && jspi, jspi, adapter, crossOriginIsolated: !!self.crossOriginIsolated, reason};
}

// Removes cached models (all, or the one fetched from `url`).
export async function clearCache(url) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), {type: 'module'});
  await new Promise((resolve, reject) => {
    worker.onmessage = (e) => (e.data.type === 'cacheCleared' ? resolve() : e.data.type === 'error' && reject(new Error(e.data.message)));
    worker.postMessage({type: 'clearCache', url: url ? String(url) : null});
  });
  worker.terminate();
}
