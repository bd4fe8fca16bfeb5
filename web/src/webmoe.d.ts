// Types of the webmoe JavaScript API (webmoe.js).

/** Codes of {@link WebmoeError}. */
export type ErrorCode =
  | 'webgpu-unavailable' // no WebGPU or no adapter: tell the user which browser/flag to use
  | 'download-failed'    // network error after retries, HTTP error (404...), unreadable file
  | 'model-changed'      // the file changed on the server during the download: load again
  | 'invalid-model'      // not a GGUF, corrupt, unsupported architecture or quant type
  | 'model-too-large'    // the model does not fit this adapter's limits or memory
  | 'device-lost'        // the GPU device failed or was lost: create a new engine
  | 'invalid-request'    // bad arguments, prompt longer than the context, busy, unloaded
  | 'internal';

export class WebmoeError extends Error {
  readonly name: 'WebmoeError';
  readonly code: ErrorCode;
}

export interface LoadProgress {
  /** 'header' (reading the model header), 'gpu' (setting up the device), 'weights', 'ready'. */
  phase: 'header' | 'gpu' | 'weights' | 'ready';
  loadedBytes: number;
  totalBytes: number;
  /** Bytes of loadedBytes that came from the persistent cache. */
  cachedBytes: number;
  bytesPerSecond: number;
  /** The last chunk came from the cache. */
  fromCache: boolean;
  /** WebAssembly heap size in bytes. */
  heapBytes: number;
  /** Set when the browser refused to cache more (quota); the load continues. */
  warning?: string;
}

export interface EngineOptions {
  /** URL of a .gguf file (absolute or relative to the page), or a File/Blob from a picker or a drop. */
  model: string | URL | Blob;
  onProgress?: (p: LoadProgress) => void;
  /** Bytes per range request (default 16 MiB, at least 4096). */
  chunkSize?: number;
  /** Range requests in flight (default 4). */
  parallel?: number;
  /** KV cache element type (default 'f16'). */
  kvDtype?: 'f16' | 'f32';
  /** Positions the KV cache holds (default 4096, capped at the model's context length). */
  contextSize?: number;
  /** Keep downloaded chunks in the Cache API (default true). */
  cache?: boolean;
  /** Mat-vec kernel shape [threads per row, rows per thread] (default: chosen for the adapter type). */
  tuning?: [number, number];
  /** Run the engine in a Web Worker (default true). */
  worker?: boolean;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface SamplingOptions {
  /** Most tokens to generate (default: up to the context size). */
  max_tokens?: number;
  /** 0 = greedy. Default 0.8. */
  temperature?: number;
  /** Default 0.95. */
  top_p?: number;
  /** Default 40 (0 = all). */
  top_k?: number;
  /** Default 0.05. */
  min_p?: number;
  /** llama.cpp-style repetition penalty over the last 64 tokens (default 1 = off). */
  repeat_penalty?: number;
  seed?: number;
  /** Generation ends before any of these strings (they are not returned). */
  stop?: string | string[];
  /** Aborting it interrupts the generation. */
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** webmoe-specific details on every completion and on the last stream chunk. */
export interface WebmoeExtras {
  prompt_ids: number[];
  ids: number[];
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  time_to_first_token_s: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string }; finish_reason: FinishReason; logprobs: null }[];
  usage: Usage;
  webmoe: WebmoeExtras;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: FinishReason | null; logprobs: null }[];
  /** On the last chunk only. */
  usage?: Usage;
  webmoe?: WebmoeExtras;
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: 0; text: string; finish_reason: FinishReason | null; logprobs: null }[];
  usage?: Usage;
  webmoe?: WebmoeExtras;
}

export interface CachedModel {
  url: string;
  validator: string;
  size: number;
  cachedBytes: number;
  totalBytes: number;
  complete: boolean;
}

export interface EngineStats {
  model: { architecture: string; vocabSize: number; hiddenSize: number; layers: number; contextLength: number; hasChatTemplate: boolean };
  adapter: string;
  adapterInfo: { vendor: string; architecture: string; device: string; description: string; features: string[]; maxStorageBufferBindingSize: number; maxBufferSize: number };
  backend: string;
  deviceType: string;
  /** The mat-vec kernel shape in use: [threads per row, rows per thread] (see the `tuning` option). */
  tuning: [number, number];
  /** Optional WebGPU features the kernels use (none: f16 weights are unpacked from u32). */
  featuresUsed: string[];
  gpuBytesPlanned: number;
  kvDtype: 'f16' | 'f32';
  contextSize: number;
  heapBytes: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  busy: boolean;
  load: {
    source: string; totalBytes: number; cachedBytes: number; loadSeconds: number;
    heapBeforeBytes: number; heapPeakBytes: number; cacheWarning: string | null;
    streamedWithoutRange: boolean; dataStart: number;
  };
}

export interface Engine {
  /** The stats at the end of the load. */
  readonly info: EngineStats;
  chat: {
    completions: {
      create(req: { messages: ChatMessage[]; stream?: false } & SamplingOptions): Promise<ChatCompletion>;
      create(req: { messages: ChatMessage[]; stream: true } & SamplingOptions): AsyncIterableIterator<ChatCompletionChunk>;
    };
  };
  completions: {
    create(req: { prompt: string; stream?: false } & SamplingOptions): Promise<Completion>;
    create(req: { prompt: string; stream: true } & SamplingOptions): AsyncIterableIterator<Completion>;
  };
  /** Stops the running generation after the current token (finish_reason 'abort'). */
  interrupt(): Promise<void>;
  stats(): Promise<EngineStats>;
  /** Frees the model, its GPU memory and the worker. */
  unload(): Promise<void>;
  listCachedModels(): Promise<CachedModel[]>;
  deleteCachedModel(url: string): Promise<boolean>;
}

/** Starts an engine (in a Web Worker by default) and loads a model. Rejects with a WebmoeError. */
export function createEngine(options: EngineOptions): Promise<Engine>;
export function listCachedModels(): Promise<CachedModel[]>;
export function deleteCachedModel(url: string): Promise<boolean>;
