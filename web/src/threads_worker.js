// A pool thread of the threaded CPU backend (threads.js): waits for the module, the shared memory and
// its thread id, then runs the thread's start routine (which parks between kernel regions).
import { wasiImports } from './threads.js';

self.onmessage = ({ data: { module, memory, env, tid, arg } }) => {
  const instance = new WebAssembly.Instance(module, {
    env: { memory },
    wasi_snapshot_preview1: wasiImports(memory, env),
    wasi: { 'thread-spawn': () => -1 },
  });
  instance.exports.wasi_thread_start(tid, arg);
};
self.postMessage('ready');
