// Types of the webmoe JavaScript API (webmoe.js).

/** Codes of {@link WebmoeError}. */
export type ErrorCode =
  | 'webgpu-unavailable' // device 'gpu' was asked for, but there is no WebGPU or no adapter
  | 'download-failed'    // network error after retries, HTTP error (404...), unreadable file
  | 'model-changed'      // the file changed on the server during the download: load again
  | 'invalid-model'      // not a GGUF, corrupt, unsupported architecture or quant type
  | 'model-too-large'    // the model fits neither the adapter nor the CPU backend's heap (3 GiB)
  | 'gpu-self-test-failed' // device 'gpu' was asked for, but the adapter computed a kernel wrongly
  | 'device-lost'        // the GPU device failed or was lost: create a new engine
  | 'invalid-request'    // bad arguments (sampling values out of range too), prompt longer than the context, busy, unloaded
  | 'numerical-error'    // the model produced NaN or infinite logits (broken weights or config): no token is made up
  | 'internal';

export class WebmoeError extends Error {
  readonly name: 'WebmoeError';
  readonly code: ErrorCode;
}

export interface LoadProgress {
  /** 'header' (reading the model header), 'device' (choosing and setting up the device, with the GPU
   * self-test), 'weights', 'ready'. */
  phase: 'header' | 'device' | 'weights' | 'ready';
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
  /**
   * GPU kernel variants, comma-separated: 'fused' (q/k/v and gate/up decode launches with the RMSNorm
   * folded in), 'subgroups', 'tiled' (workgroup-memory prefill mat-mul), 'f16' (its f16 weight tiles),
   * 'all' or 'none'. Default: all the adapter supports on a real GPU, none on a software adapter.
   * Variants the adapter lacks are dropped; `stats().kernels` says what runs.
   */
  kernels?: string;
  /**
   * Threads of the CPU backend (default: the cores, at most 8). More than one needs a cross-origin
   * isolated page (COOP/COEP headers, `crossOriginIsolated`); elsewhere the CPU backend runs on one
   * thread. `stats().device.cpuKernels` says what runs, e.g. 'wasm-relaxed-simd, 2 threads'.
   */
  threads?: number;
  /**
   * Seconds a server may stall a read before it is aborted (default 30; 1 to 3600): a response must
   * start within it and each chunk arrive within it plus its size at 256 KiB/s. A read that stalls
   * twice fails the load with 'download-failed'.
   */
  stallTimeout?: number;
  /** Run the engine in a Web Worker (default true). */
  worker?: boolean;
  /**
   * Which device runs the model (default 'auto'). 'auto' takes the GPU unless there is no WebGPU, no
   * adapter, a software adapter (SwiftShader, WARP, llvmpipe), the model does not fit it, or its
   * self-test fails; then the CPU backend (WebAssembly SIMD) runs it, unless the model is over the
   * CPU backend's 3 GiB heap, in which case whatever adapter there is runs it. 'gpu' fails with
   * 'webgpu-unavailable' or 'gpu-self-test-failed' instead of falling back; 'cpu' always takes the CPU.
   */
  device?: 'auto' | 'gpu' | 'cpu';
  /** Run the GPU self-test before downloading (default true; well under a second). */
  selfTest?: boolean;
  /** The WebAssembly build (default: 'relaxed-simd' where the browser validates it, else 'simd128'). */
  simd?: 'simd128' | 'relaxed-simd';
  /** Make the GPU self-test fail, to see the fallback (testing only). */
  forceSelfTestFailure?: boolean;
  /** Lower the CPU backend's heap limit below its 3 GiB, in bytes (testing only). */
  cpuHeapLimit?: number;
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

export interface SelfTestCheck {
  /** 'model prefill', 'model decode', 'sampler', 'matvec Q4_1', 'matmul Q8_0', ... */
  kernel: string;
  /** Normalized mean-squared error against the CPU reference. */
  nmse: number;
  passed: boolean;
}

export interface DeviceReport {
  /** The device that runs the model. */
  device: 'gpu' | 'cpu';
  /** Why (the request, no WebGPU, a software adapter, the model's size, a failed self-test...). */
  reason: string;
  adapter: string | null;
  /** The GPU self-test (null when it did not run). */
  selfTest: { passed: boolean; checks: SelfTestCheck[] } | null;
  selfTestSeconds: number;
  /** The CPU kernels in use: 'wasm-relaxed-simd' | 'wasm-simd128' (null on the GPU). */
  cpuKernels: string | null;
  /** Bytes planned on that device. */
  bytesPlanned: number;
}

export interface EngineStats {
  model: { architecture: string; vocabSize: number; hiddenSize: number; layers: number; contextLength: number; hasChatTemplate: boolean };
  /** Which device runs the model, and why. */
  device: DeviceReport;
  /** The WebAssembly build in use. */
  wasmBuild: 'simd128' | 'relaxed-simd';
  adapter: string;
  /** The page's view of the adapter (null without WebGPU or with device 'cpu'). */
  adapterInfo: { vendor: string; architecture: string; device: string; description: string; features: string[]; maxStorageBufferBindingSize: number; maxBufferSize: number; isFallbackAdapter: boolean; software: boolean } | null;
  backend: string;
  deviceType: string;
  /** The mat-vec kernel shape on the GPU: [threads per row, rows per thread] (null on the CPU). */
  tuning: [number, number] | null;
  /** Optional WebGPU features the kernels use ('subgroups', 'shader-f16'; none in the baseline). */
  featuresUsed: string[];
  /** GPU kernel variants in use ('fused,subgroups,tiled,f16' ... or 'none'; null on the CPU). */
  kernels: string | null;
  /** Bytes planned on the device that runs the model; gpuBytesPlanned is 0 on the CPU. */
  bytesPlanned: number;
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
