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
  | 'aborted'            // the request's signal was aborted before it started (it was never run)
  | 'remote-failed'      // a remote engine's server could not be reached, failed, or sent something that is not OpenAI's
  | 'internal';

export class WebmoeError extends Error {
  constructor(code: ErrorCode, message: string);
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
  /** On the events sent every half second while no chunk arrives: seconds since the last one (the
   * load fails with download-failed after `stallTimeout`). */
  stalledSeconds?: number;
}

/** An OpenAI-compatible server (vLLM, llama.cpp's server, `webmoe serve --openai`). */
export interface RemoteOptions {
  /** The API's base, as OpenAI's clients take it (e.g. 'http://127.0.0.1:8080/v1'). */
  baseURL: string;
  /** Sent as `Authorization: Bearer …`. */
  apiKey?: string;
  /** The server's model name (sent as `model` with every request). */
  model: string;
}

export interface EngineOptions {
  /** URL of a .gguf file or of a Hugging Face model folder (a URL whose path does not end in `.gguf`:
   * `config.json`, `model.safetensors` or the shards of `model.safetensors.index.json`, and
   * `tokenizer.json` under it), absolute or relative to the page; a .gguf File/Blob from a picker or
   * a drop; or a folder's files (a `FileList` from `<input webkitdirectory>`, an array of Files from a
   * drop, or a `FileSystemDirectoryHandle`). Without it, `remote` must be given and the engine is the
   * server's. */
  model?: string | URL | Blob | FileList | File[] | FileSystemDirectoryHandle;
  /** Quantize a Hugging Face folder's weight matrices as they load (a quarter of bf16's memory with
   * 'q4_0' / 'q4_k'); an error for a GGUF file, whose tensors are used as stored. */
  quantize?: 'q8_0' | 'q4_0' | 'q4_k';
  /** A server: alone, the engine is backed by it; with `model` and `fallback: 'remote'`, it answers
   * when the model does not fit this device (model-too-large, no WebGPU, a failed GPU self-test). */
  remote?: RemoteOptions;
  fallback?: 'remote';
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
  /** Where the package's .wasm files are (a folder URL, or the main module's .wasm file); default:
   * next to webmoe.js. For bundlers and CDNs that move the JavaScript but not the .wasm files. */
  wasmUrl?: string | URL;
}

/** A chat message (OpenAI's shape; content may be a string or a list of text parts). */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool' | (string & {});
  /** Text, or content parts: text parts are joined; other kinds (image_url, input_audio, file) are
   * typed so that OpenAI messages fit, and refused at run time with `invalid-request`. */
  content?: string | ContentPart[] | null;
  name?: string;
  /** The calls an assistant message made (send them back as the engine returned them; OpenAI's
   * `custom` tool calls are typed so that OpenAI messages fit, and refused at run time). */
  tool_calls?: (ToolCall | { id: string; type: 'custom' })[] | null;
  /** On a `tool` message: the call it answers. */
  tool_call_id?: string;
}

/** A part of a message's content. */
export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url' | 'input_audio' | 'file' | 'refusal' };

/** A function the model may call (OpenAI's tool definition). */
export interface Tool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}

/** A call the model made: `arguments` is JSON text. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** `auto` (default with tools), `none`, `required` (some call, enforced by a grammar), or one function. */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

/** OpenAI's `response_format`. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name?: string; description?: string; schema?: Record<string, unknown> | boolean; strict?: boolean | null } };

export interface SamplingOptions {
  /** Ignored (the engine runs the model it loaded); accepted because OpenAI code always sends it. */
  model?: string;
  /** Most tokens to generate (default: up to the context size). */
  max_tokens?: number | null;
  /** OpenAI's newer name for max_tokens. */
  max_completion_tokens?: number | null;
  /** 0 = greedy. Default 0.8. */
  temperature?: number | null;
  /** Default 0.95. */
  top_p?: number | null;
  /** Default 40 (0 = all). */
  top_k?: number;
  /** Default 0.05. */
  min_p?: number;
  /** llama.cpp-style repetition penalty over the last 64 tokens (default 1 = off). */
  repeat_penalty?: number;
  /** -2..2, subtracted from the logit of each token in the last 64 (default 0). */
  presence_penalty?: number | null;
  /** -2..2, subtracted once per occurrence in the last 64 tokens (default 0). */
  frequency_penalty?: number | null;
  seed?: number | null;
  /** Generation ends before any of these strings (they are not returned). */
  stop?: string | string[] | null;
  /** Choices to generate (1..16, default 1); they run one after another on the cached prompt. */
  n?: number | null;
  /** Structured output: any JSON object, or JSON valid for a schema. */
  response_format?: ResponseFormat;
  /** Structured output (webmoe extension): a Lark grammar (llguidance's dialect) or GBNF (`root ::= ...`). */
  grammar?: string | { type: 'lark' | 'gbnf'; grammar: string };
  /** Structured output (webmoe extension): the whole answer matches this regular expression. */
  regex?: string;
  /** Aborting it ends a running request (finish_reason 'abort') or cancels a queued one (code 'aborted'). */
  signal?: AbortSignal;
}

/** OpenAI's finish reasons; 'abort' when the request was interrupted or its signal aborted. */
export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'abort';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** cached_tokens: prompt tokens the KV cache already held (not prefilled again). */
  prompt_tokens_details: { cached_tokens: number };
}

/** webmoe-specific details on every completion and on the last stream chunk. */
export interface WebmoeExtras {
  prompt_ids: number[];
  ids: number[];
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  time_to_first_token_s: number;
  /** Prompt tokens taken from the KV cache. */
  reused_tokens: number;
  /** Milliseconds of structured-output masks per generated token (0 without). */
  constraint_ms_per_token: number;
}

export interface TopLogprob { token: string; logprob: number; bytes: number[] | null }
export interface TokenLogprob extends TopLogprob { top_logprobs: TopLogprob[] }
export interface ChatLogprobs { content: TokenLogprob[] | null; refusal: null }

export interface ChatCompletionMessage { role: 'assistant'; content: string | null; refusal: null; tool_calls?: ToolCall[] }

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: number; message: ChatCompletionMessage; finish_reason: FinishReason; logprobs: ChatLogprobs | null }[];
  usage: Usage;
  webmoe: WebmoeExtras;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** Empty on the usage chunk of `stream_options: { include_usage: true }`. */
  choices: { index: number; delta: { role?: 'assistant'; content?: string | null; tool_calls?: (ToolCall & { index: number })[] }; finish_reason: FinishReason | null; logprobs: ChatLogprobs | null }[];
  /** On each choice's last chunk and on the usage chunk. */
  usage?: Usage | null;
  webmoe?: WebmoeExtras;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; finish_reason: 'stop' | 'length' | 'abort'; logprobs: CompletionLogprobs | null }[];
  usage?: Usage;
  webmoe?: WebmoeExtras;
}

/** A streamed text completion's chunk (finish_reason is null until the choice's last chunk). */
export interface CompletionChunk extends Omit<Completion, 'choices'> {
  choices: { index: number; text: string; finish_reason: 'stop' | 'length' | 'abort' | null; logprobs: CompletionLogprobs | null }[];
}

export interface ChatRequest extends SamplingOptions {
  messages: ChatMessage[];
  /** Functions the model may call; the model's chat template shows them to it. (OpenAI's `custom`
   * tools and `allowed_tools` / `custom` choices are typed so that OpenAI requests fit, and refused at
   * run time with `invalid-request`.) */
  tools?: (Tool | { type: 'custom' })[] | null;
  tool_choice?: ToolChoice | { type: 'allowed_tools' | 'custom' } | null;
  /** Log probabilities of the answer's tokens, with `top_logprobs` (0..20) alternatives each. */
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
}

export interface CompletionRequest extends SamplingOptions {
  prompt: string;
  /** Log probabilities with this many alternatives per token (0..20). */
  logprobs?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
}

/** What `create({ stream: true })` returns: a promise of the stream that is itself iterable too. */
export type StreamPromise<T> = Promise<AsyncIterable<T>> & AsyncIterable<T>;

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
    /** 'gguf', or 'folder' for a Hugging Face folder. */
    format: 'gguf' | 'folder';
  };
}

/**
 * A loaded model. Requests run one at a time, in the order they were made (later ones wait); every
 * call returns a promise and never throws synchronously.
 */
export declare class Engine {
  private constructor();
  /** The stats at the end of the load. */
  readonly info: EngineStats;
  chat: {
    completions: {
      create(req: ChatRequest & { stream: true }): StreamPromise<ChatCompletionChunk>;
      create(req: ChatRequest & { stream?: false | null }): Promise<ChatCompletion>;
      create(req: ChatRequest): Promise<ChatCompletion> | StreamPromise<ChatCompletionChunk>;
    };
  };
  completions: {
    create(req: CompletionRequest & { stream: true }): StreamPromise<CompletionChunk>;
    create(req: CompletionRequest & { stream?: false | null }): Promise<Completion>;
    create(req: CompletionRequest): Promise<Completion> | StreamPromise<CompletionChunk>;
  };
  /** Stops the running generation after the current token (finish_reason 'abort'). */
  interrupt(): Promise<void>;
  stats(): Promise<EngineStats>;
  /** Frees the model, its GPU memory and the worker. */
  unload(): Promise<void>;
  listCachedModels(): Promise<CachedModel[]>;
  deleteCachedModel(url: string): Promise<boolean>;
}

/**
 * The same request API on an OpenAI-compatible server. Requests run concurrently (the server queues
 * them); abort and `break` cancel the HTTP request.
 */
export declare class RemoteEngine {
  constructor(remote: RemoteOptions, why?: { fallbackFrom?: string; reason?: string });
  /** Where the answers come from, and why (after a fallback). */
  readonly info: { remote: true; baseURL: string; model: { name: string }; fallbackFrom?: string; reason?: string };
  chat: Engine['chat'];
  completions: Engine['completions'];
  /** Cancels every running request. */
  interrupt(): Promise<void>;
  stats(): Promise<{ remote: true; baseURL: string; busy: boolean }>;
  unload(): Promise<void>;
}

/** Starts an engine (in a Web Worker by default) and loads a model. Rejects with a WebmoeError. */
export function createEngine(options: EngineOptions & { model: string | URL | Blob; fallback?: undefined }): Promise<Engine>;
export function createEngine(options: EngineOptions & { remote: RemoteOptions; model?: undefined }): Promise<RemoteEngine>;
export function createEngine(options: EngineOptions): Promise<Engine | RemoteEngine>;
export function listCachedModels(): Promise<CachedModel[]>;
export function deleteCachedModel(url: string): Promise<boolean>;
