// Getting a model's bytes into the worker: from a URL (HTTP Range requests, resumed after a dropped connection
// or a page reload) or a local File, kept in the Origin Private File System (IndexedDB where OPFS is missing)
// under the SHA-256 of the content, so that a second load of the same URL reads no byte from the network.
// Runs in the worker (OPFS sync access handles exist only there).
import {Sha256, sha256Blob} from './sha256.js';

const CHUNK = 16 << 20;     // bytes asked for per Range request
const RETRIES = 5;          // consecutive failed requests before giving up

function abortError(signal) {
  return signal && signal.reason ? signal.reason : new DOMException('aborted', 'AbortError');
}

// ---- stores: the same four operations over OPFS and over IndexedDB ----

class OpfsStore {
  static async open() {
    if (!navigator.storage || !navigator.storage.getDirectory) return null;
    try {
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle('vireo-models', {create: true});
      return new OpfsStore(dir);
    } catch (e) {
      return null;
    }
  }
  constructor(dir) { this.dir = dir; this.kind = 'opfs'; }

  async readIndex() {
    try {
      const f = await (await this.dir.getFileHandle('index.json')).getFile();
      return JSON.parse(await f.text());
    } catch (e) {
      return {};
    }
  }
  async writeIndex(index) {
    const h = await this.dir.getFileHandle('index.json', {create: true});
    const access = await h.createSyncAccessHandle();
    try {
      const bytes = new TextEncoder().encode(JSON.stringify(index));
      access.truncate(0);
      access.write(bytes, {at: 0});
      access.flush();
    } finally {
      access.close();
    }
  }
  // The stored content named `name`, as a File, or null.
  async get(name) {
    try {
      return await (await this.dir.getFileHandle(name)).getFile();
    } catch (e) {
      return null;
    }
  }
  // A writer appending to the partial file `name` from its current end: {size, write(bytes), close()}.
  async appender(name) {
    const h = await this.dir.getFileHandle(name, {create: true});
    const access = await h.createSyncAccessHandle();
    let size = access.getSize();
    return {
      get size() { return size; },
      write(bytes) {
        let done = 0;
        while (done < bytes.length) done += access.write(bytes.subarray(done), {at: size + done});
        size += bytes.length;
      },
      truncate() { access.truncate(0); size = 0; },
      close() { access.flush(); access.close(); },
    };
  }
  // Renames the finished partial file to its content name (copies where move() is missing).
  async finish(partial, name) {
    const h = await this.dir.getFileHandle(partial);
    if (typeof h.move === 'function') {
      await h.move(this.dir, name);
      return;
    }
    const file = await h.getFile();
    const out = await this.appender(name);
    out.truncate();
    for (let at = 0; at < file.size; at += CHUNK)
      out.write(new Uint8Array(await file.slice(at, at + CHUNK).arrayBuffer()));
    out.close();
    await this.dir.removeEntry(partial);
  }
  async remove(name) {
    try { await this.dir.removeEntry(name); } catch (e) { /* already gone */ }
  }
}

// IndexedDB: a file is a list of chunk Blobs under (name, index); the File is their concatenation.
class IdbStore {
  static async open() {
    if (typeof indexedDB === 'undefined') return null;
    const db = await new Promise((resolve) => {
      const req = indexedDB.open('vireo-models', 1);
      req.onupgradeneeded = () => {
        req.result.createObjectStore('chunks');
        req.result.createObjectStore('meta');
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
    });
    return db ? new IdbStore(db) : null;
  }
  constructor(db) { this.db = db; this.kind = 'indexeddb'; }

  op(store, mode, fn) {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(store, mode);
      const req = fn(tx.objectStore(store));
      tx.oncomplete = () => resolve(req ? req.result : undefined);
      tx.onerror = () => reject(tx.error);
    });
  }
  async readIndex() { return (await this.op('meta', 'readonly', (s) => s.get('index'))) || {}; }
  async writeIndex(index) { await this.op('meta', 'readwrite', (s) => s.put(index, 'index')); }
  async chunks(name) { return (await this.op('meta', 'readonly', (s) => s.get('n:' + name))) || 0; }
  async get(name) {
    const n = await this.chunks(name);
    if (!n) return null;
    const parts = [];
    for (let i = 0; i < n; ++i) {
      const b = await this.op('chunks', 'readonly', (s) => s.get([name, i].join('#')));
      if (!b) return null;
      parts.push(b);
    }
    return new Blob(parts);
  }
  async appender(name) {
    const blob = await this.get(name);
    let n = await this.chunks(name);
    const self = this;
    const pending = [];
    return {
      size: blob ? blob.size : 0,
      write(bytes) {
        const i = n++;
        this.size += bytes.length;
        pending.push(self.op('chunks', 'readwrite', (s) => s.put(new Blob([bytes]), [name, i].join('#')))
                         .then(() => self.op('meta', 'readwrite', (s) => s.put(i + 1, 'n:' + name))));
      },
      truncate() { n = 0; this.size = 0; pending.push(self.op('meta', 'readwrite', (s) => s.put(0, 'n:' + name))); },
      close() { return Promise.all(pending); },
    };
  }
  async finish(partial, name) {
    const n = await this.chunks(partial);
    for (let i = 0; i < n; ++i) {
      const b = await this.op('chunks', 'readonly', (s) => s.get([partial, i].join('#')));
      await this.op('chunks', 'readwrite', (s) => s.put(b, [name, i].join('#')));
    }
    await this.op('meta', 'readwrite', (s) => s.put(n, 'n:' + name));
    await this.remove(partial);
  }
  async remove(name) {
    const n = await this.chunks(name);
    for (let i = 0; i < n; ++i) await this.op('chunks', 'readwrite', (s) => s.delete([name, i].join('#')));
    await this.op('meta', 'readwrite', (s) => s.delete('n:' + name));
  }
}

// The store to use: 'opfs', 'indexeddb', or 'auto' (OPFS, else IndexedDB); null when neither works.
export async function openStore(kind = 'auto') {
  if (kind === 'opfs') return OpfsStore.open();
  if (kind === 'indexeddb') return IdbStore.open();
  return (await OpfsStore.open()) || (await IdbStore.open());
}

function partialName(url) {
  return 'partial-' + new Sha256().update(new TextEncoder().encode(url)).hex().slice(0, 32);
}

// Downloads `url` into `store` (appending to what an earlier attempt left), in Range requests of CHUNK bytes;
// resumes after a failed request from where it stopped. Returns the finished File/Blob and its SHA-256.
async function download(url, store, {onProgress, signal, fetchImpl = fetch}) {
  const partial = partialName(url);
  const out = await store.appender(partial);
  let total = -1;
  let failures = 0;
  try {
    for (;;) {
      if (signal && signal.aborted) throw abortError(signal);
      const from = out.size;
      if (total >= 0 && from >= total) break;
      const to = total >= 0 ? Math.min(total, from + CHUNK) - 1 : from + CHUNK - 1;
      let response;
      try {
        response = await fetchImpl(url, {headers: {Range: `bytes=${from}-${to}`}, signal, cache: 'no-store'});
        if (response.status === 416 && from > 0) {  // the partial file is longer than the resource: start over
          out.truncate();
          continue;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText} for ${url}`);
        if (response.status === 200) {
          // No Range support: the whole body follows; keep it only when starting from zero.
          if (from > 0) out.truncate();
          total = Number(response.headers.get('Content-Length') || -1);
        } else {
          const range = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(response.headers.get('Content-Range') || '');
          if (!range || Number(range[1]) !== from) throw new Error(`bad Content-Range from ${url}`);
          if (range[3] !== '*') total = Number(range[3]);
        }
        const reader = response.body.getReader();
        let got = 0;
        for (;;) {
          const {done, value} = await reader.read();
          if (done) break;
          out.write(value);
          got += value.length;
          if (onProgress) onProgress(out.size, total);
        }
        failures = 0;
        if (response.status === 200) {
          total = out.size;
          break;
        }
        if (got === 0) {  // nothing more to come
          if (total < 0) total = out.size;
          break;
        }
      } catch (e) {
        if ((signal && signal.aborted) || e.name === 'AbortError') throw abortError(signal);
        if (e.message && e.message.startsWith('HTTP 4')) throw e;
        if (++failures > RETRIES) throw new Error(`downloading ${url} failed after ${RETRIES} retries: ${e.message}`);
        await new Promise((r) => setTimeout(r, 250 * 2 ** failures));
      }
    }
  } finally {
    await out.close();
  }
  const file = await store.get(partial);
  const sha256 = await sha256Blob(file, onProgress ? (d, t) => onProgress(d, t, 'hash') : null);
  if (await store.get(sha256 + '.gguf')) await store.remove(partial);  // the same content under another URL
  else await store.finish(partial, sha256 + '.gguf');
  return {file: await store.get(sha256 + '.gguf'), sha256};
}

// The model's bytes as a Blob: {blob, sha256, fromCache, store}. `source` is a URL (string or URL) or a
// File/Blob. options: {cache: 'auto'|'opfs'|'indexeddb'|false, onProgress(done, total, phase), signal}.
export async function obtainModel(source, options = {}) {
  const {onProgress, signal} = options;
  const store = options.cache === false ? null : await openStore(options.cache || 'auto');
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const sha256 = await sha256Blob(source, onProgress ? (d, t) => onProgress(d, t, 'hash') : null);
    return {blob: source, sha256, fromCache: false, store: store ? store.kind : null};
  }
  const url = new URL(String(source), self.location.href).href;
  if (!store) {
    const response = await fetch(url, {signal});
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText} for ${url}`);
    const blob = await response.blob();
    return {blob, sha256: await sha256Blob(blob), fromCache: false, store: null};
  }
  const index = await store.readIndex();
  const known = index[url];
  if (known) {
    const blob = await store.get(known.sha256 + '.gguf');
    if (blob && blob.size === known.size) return {blob, sha256: known.sha256, fromCache: true, store: store.kind};
  }
  const {file, sha256} = await download(url, store, {onProgress: onProgress
                                                       ? (d, t, phase) => onProgress(d, t, phase || 'download')
                                                       : null, signal});
  const fresh = await store.readIndex();
  fresh[url] = {sha256, size: file.size, stored: new Date().toISOString()};
  await store.writeIndex(fresh);
  return {blob: file, sha256, fromCache: false, store: store.kind};
}

// Forgets every cached model (or only `url`'s).
export async function clearCache(url, kind = 'auto') {
  const store = await openStore(kind);
  if (!store) return;
  const index = await store.readIndex();
  for (const key of Object.keys(index)) {
    if (url && key !== new URL(String(url), self.location.href).href) continue;
    const sha = index[key].sha256;
    delete index[key];
    if (!Object.values(index).some((v) => v.sha256 === sha)) await store.remove(sha + '.gguf');
  }
  await store.writeIndex(index);
}
