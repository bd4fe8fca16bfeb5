// Type-level test (`tsc -p web/tests/types`, run by the browser suite): webmoe's request and response
// types against the `openai` package's. Requests written for OpenAI's client are accepted by webmoe's
// create(); webmoe's answers can be handled by code typed for OpenAI's (finish_reason 'abort' aside, which
// OpenAI's types do not have: an aborted answer is typed apart, see AnsweredChoice below).
import type OpenAI from 'openai';
import type {
  ChatRequest, CompletionRequest, ChatCompletion, ChatCompletionChunk, Completion, Engine, RemoteEngine,
  ChatMessage, Tool, ToolChoice,
} from '../../src/webmoe.js';

// Each line below fails to compile if webmoe's types drift from OpenAI's.

declare const engine: Engine;
declare const remote: RemoteEngine;

// OpenAI requests go into webmoe as they are.
declare const oaChat: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming;
declare const oaChatStream: OpenAI.Chat.ChatCompletionCreateParamsStreaming;
// Text prompts only (OpenAI also takes token arrays and lists of prompts, which webmoe does not).
declare const oaText: OpenAI.CompletionCreateParamsNonStreaming & { prompt: string };
const chatReq: ChatRequest = oaChat;
const streamReq: ChatRequest = oaChatStream;
const textReq: CompletionRequest = oaText;
const messages: ChatMessage[] = oaChat.messages;
const tools: Tool[] | undefined = oaChat.tools?.filter((t): t is OpenAI.Chat.ChatCompletionFunctionTool => t.type === 'function');
const choice: ToolChoice | undefined = oaChat.tool_choice === 'auto' || oaChat.tool_choice === 'none' || oaChat.tool_choice === 'required' ? oaChat.tool_choice : undefined;
void [chatReq, streamReq, textReq, messages, tools, choice];

// A `stream` held in a boolean variable picks the union overload.
declare const flag: boolean;
const either = engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: flag });
void either;

// Answers, where the generation was not aborted, are OpenAI's answers.
type Answered<T> = T extends { finish_reason: infer F } ? Omit<T, 'finish_reason'> & { finish_reason: Exclude<F, 'abort'> } : T;
type AnsweredCompletion = Omit<ChatCompletion, 'choices'> & { choices: Answered<ChatCompletion['choices'][number]>[] };
type AnsweredChunk = Omit<ChatCompletionChunk, 'choices'> & { choices: Answered<ChatCompletionChunk['choices'][number]>[] };
type AnsweredText = Omit<Completion, 'choices'> & { choices: Answered<Completion['choices'][number]>[] };

async function answers() {
  const r = (await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] })) as AnsweredCompletion;
  const asOpenAI: OpenAI.Chat.ChatCompletion = r;
  for await (const c of engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true })) {
    const chunk: OpenAI.Chat.ChatCompletionChunk = c as AnsweredChunk;
    void chunk;
  }
  const t: OpenAI.Completion = (await remote.completions.create({ prompt: 'x' })) as AnsweredText;
  void [asOpenAI, t];
}
void answers;
