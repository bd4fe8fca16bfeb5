// The error type of the public API and the promise-that-is-a-stream helper, shared by the local engine
// (webmoe.js) and the remote one (remote.js).

/** An error with a `code` a program can act on (see webmoe.d.ts for the codes). */
export class WebmoeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'WebmoeError';
    this.code = code;
  }
}

/** A promise that is also an async iterable (of what it resolves to), so that both
 * `for await (const c of create({ stream: true }))` and `for await (const c of await create(...))` work. */
export function iterablePromise(promise) {
  promise[Symbol.asyncIterator] = () => {
    let it = null;
    return {
      async next() { it ??= (await promise)[Symbol.asyncIterator](); return it.next(); },
      async return() { it ??= (await promise.catch(() => null))?.[Symbol.asyncIterator](); return it?.return?.() ?? { done: true, value: undefined }; },
    };
  };
  return promise;
}
