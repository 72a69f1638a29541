// Types of vireo's browser package (vireo.js).

export type Device = 'auto' | 'webgpu' | 'cpu';
export type CacheKind = 'auto' | 'opfs' | 'indexeddb';

export interface LoadProgress {
  /** download: bytes from the network; hash: checking the content; upload: weights into the engine. */
  /** download and hash: bytes; compile: WebGPU pipelines (created before the weights upload); upload: bytes */
  phase: 'download' | 'hash' | 'compile' | 'upload';
  done: number;
  /** -1 when the server did not say. */
  total: number;
  /** done / total in [0, 1], or null when the total is unknown. */
  fraction: number | null;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  /** 'auto' (default): WebGPU when usable, else the CPU (see ModelInfo.fallbackReason). */
  device?: Device;
  /** Where downloads are kept, keyed by the content's SHA-256 (default 'auto': OPFS, else IndexedDB); false: not kept. */
  cache?: CacheKind | false;
  /** Tokens of context (0 or absent: the model's own, capped at 4096). */
  contextLength?: number;
  /** CPU threads (default: one per core, at most 16). More than one needs a cross-origin isolated page (COOP/COEP
   *  headers), where dist/vireo-web-mt.js runs; see ModelInfo.threadsReason. */
  threads?: number;
  signal?: AbortSignal;
  /** Where worker.js is served from (default: next to vireo.js). */
  workerUrl?: string | URL;
}

export interface ModelInfo {
  architecture: string;
  name: string;
  /** What runs the model: 'webgpu' or 'cpu'. */
  backend: 'webgpu' | 'cpu';
  /** The engine's description of the device ("webgpu: <adapter>", "cpu"). */
  device: string;
  /** The WebGPU adapter (vendor, architecture, device), or null on the CPU. */
  adapter: string | null;
  adapterFeatures: string[];
  /** Why WebGPU is not used, when backend is 'cpu'. */
  fallbackReason: string | null;
  contextLength: number;
  vocabSize: number;
  memoryBytes: number;
  weightBytesPerToken: number;
  hasChatTemplate: boolean;
  /** CPU threads the engine computes with (1 on WebGPU). */
  threads: number;
  /** Why threads is 1 on the CPU (not cross-origin isolated, one core, ...), or null. */
  threadsReason: string | null;
  /** SHA-256 of the GGUF file (hex). */
  sha256: string;
  fileBytes: number;
  /** The bytes came from the browser cache, not the network. */
  fromCache: boolean;
  cache: 'opfs' | 'indexeddb' | null;
  loadSeconds: number;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0: greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number;
  /** Stop strings (not included in the output). */
  stop?: string | string[];
  ignoreEos?: boolean;
  /** Prepend BOS (default: as the model's tokenizer asks). */
  addBos?: boolean;
  /** Aborting stops generation; the iterator then throws signal.reason. */
  signal?: AbortSignal;
}

export interface GenerateStats {
  promptTokens: number;
  /** Prompt tokens actually computed (the rest came from the KV cache). */
  promptComputed: number;
  generatedTokens: number;
  promptSeconds: number;
  decodeSeconds: number;
  ttftSeconds: number;
  stopReason: 'eos' | 'stop' | 'length' | 'context' | 'cancelled' | 'error';
  error: string;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export interface Model {
  readonly info: ModelInfo;
  readonly backend: 'webgpu' | 'cpu';
  /** Statistics of the last finished generation. */
  readonly lastStats: GenerateStats | null;
  /** Streams the continuation of `prompt`, piece by piece (each piece is whole UTF-8 text). */
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<string, void, undefined>;
  /** Streams the assistant's reply in the model's chat template (plain User/Assistant turns without one). */
  chat(messages: ChatMessage[], options?: GenerateOptions): AsyncGenerator<string, void, undefined>;
  /** Frees the model and its worker. */
  unload(): Promise<void>;
}

export interface Capabilities {
  /** WebGPU will be used (an adapter exists and JSPI is available). */
  webgpu: boolean;
  /** WebAssembly JavaScript Promise Integration (the WebGPU path needs it). */
  jspi: boolean;
  adapter: string | null;
  crossOriginIsolated: boolean;
  /** Why WebGPU will not be used, or null. */
  reason: string | null;
}

/** Loads a GGUF model from a URL (HTTP Range requests, resumable, cached) or a File/Blob. */
export function load(source: string | URL | Blob, options?: LoadOptions): Promise<Model>;
export function capabilities(): Promise<Capabilities>;
/** Removes cached models: all of them, or the one fetched from `url`. */
export function clearCache(url?: string | URL): Promise<void>;
