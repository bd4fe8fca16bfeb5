//! Splitting rows across threads. Natively a small fork-join pool of its own: a decode step has about
//! five parallel regions per layer of some 100 µs each, and a general-purpose pool's sleep and wake-up
//! per region cost as much as the work on two cores (rayon took 1.12× from a second thread here,
//! llama.cpp's pool 2×). Workers spin a few tens of microseconds for the next region, then park; the
//! caller takes part in every region. `WEBMOE_THREADS` sets the thread count (default: all cores). The
//! threaded browser module (`webmoe-threads`, wasm32-wasip1-threads) runs the same pool on Web
//! Workers, its environment giving `WEBMOE_THREADS`; the single-threaded wasm build (wasm32-unknown-unknown)
//! runs everything on the calling thread.

use std::ops::Range;

/// Threads the CPU kernels use.
pub fn threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), target_os = "wasi"))]
    {
        pool::get().map_or(1, |p| p.workers().len() + 1)
    }
    #[cfg(all(target_arch = "wasm32", not(target_os = "wasi")))]
    {
        1
    }
}

/// Calls `f` on consecutive ranges covering `0..n`, each at least `min` long (but the last), in
/// parallel where threads exist.
pub fn ranges(n: usize, min: usize, f: impl Fn(Range<usize>) + Sync) {
    #[cfg(any(not(target_arch = "wasm32"), target_os = "wasi"))]
    if let Some(p) = pool::get() {
        let threads = p.workers().len() + 1;
        if n > min {
            let len = n.div_ceil(threads * 4).max(min);
            p.run(n.div_ceil(len), &|c| f(c * len..((c + 1) * len).min(n)));
            return;
        }
    }
    let _ = min;
    f(0..n)
}

#[cfg(any(not(target_arch = "wasm32"), target_os = "wasi"))]
mod pool {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    /// How long an idle worker spins for the next region before it parks.
    const SPIN: Duration = Duration::from_micros(50);

    /// The region being run: a lifetime-erased pointer to the caller's closure, valid while the caller
    /// waits in [`Pool::run`].
    #[derive(Clone, Copy)]
    struct Job {
        f: *const (dyn Fn(usize) + Sync),
        chunks: usize,
    }

    // SAFETY: the closure is `Sync` and outlives every use (the caller waits for all workers).
    unsafe impl Send for Job {}

    pub struct Pool {
        workers: OnceLock<Vec<Thread>>,
        epoch: AtomicU64,
        job: Mutex<Option<Job>>,
        next: AtomicUsize,
        done: AtomicUsize,
        panicked: AtomicBool,
        /// One region at a time (callers on several threads take turns).
        region: Mutex<()>,
    }

    static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();

    /// The pool, started on first use; `None` with one thread.
    pub fn get() -> Option<&'static Pool> {
        *POOL.get_or_init(|| {
            let n = std::env::var("WEBMOE_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .clamp(1, 256);
            if n == 1 {
                return None;
            }
            let pool: &'static Pool = Box::leak(Box::new(Pool {
                workers: OnceLock::new(),
                epoch: AtomicU64::new(0),
                job: Mutex::new(None),
                next: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                region: Mutex::new(()),
            }));
            let workers = (1..n)
                .filter_map(|i| {
                    std::thread::Builder::new()
                        .name(format!("webmoe-cpu-{i}"))
                        .spawn(move || pool.work())
                        .ok()
                        .map(|h| h.thread().clone())
                })
                .collect();
            let _ = pool.workers.set(workers);
            if pool.workers().is_empty() {
                None
            } else {
                Some(pool)
            }
        })
    }

    impl Pool {
        /// The worker threads (the caller of [`Pool::run`] is one more).
        pub fn workers(&self) -> &[Thread] {
            self.workers.get().map_or(&[], |w| w.as_slice())
        }

        /// Takes chunks of the current job until none is left.
        fn take(&self, job: Job) {
            loop {
                let c = self.next.fetch_add(1, Ordering::AcqRel);
                if c >= job.chunks {
                    break;
                }
                // SAFETY: the caller of `run` keeps the closure alive until every worker is done.
                let f = unsafe { &*job.f };
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c))).is_err() {
                    self.panicked.store(true, Ordering::Release);
                }
            }
        }

        fn work(&self) {
            let mut seen = 0u64;
            loop {
                let start = Instant::now();
                while self.epoch.load(Ordering::Acquire) == seen {
                    if start.elapsed() < SPIN {
                        std::hint::spin_loop();
                    } else {
                        std::thread::park_timeout(Duration::from_millis(100));
                    }
                }
                seen = self.epoch.load(Ordering::Acquire);
                let job = *self.job.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(job) = job {
                    self.take(job);
                }
                self.done.fetch_add(1, Ordering::AcqRel);
            }
        }

        /// Runs `f(0..chunks)` on the caller and every worker; returns when all chunks are done.
        pub fn run(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
            let _turn = self.region.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the pointer is only dereferenced until every worker has reported done below,
            // before `f` goes out of scope.
            let f: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
            let job = Job { f, chunks };
            *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
            self.next.store(0, Ordering::Release);
            self.done.store(0, Ordering::Release);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            for w in self.workers() {
                w.unpark();
            }
            self.take(job);
            let start = Instant::now();
            while self.done.load(Ordering::Acquire) < self.workers().len() {
                if start.elapsed() < SPIN {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            *self.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if self.panicked.swap(false, Ordering::AcqRel) {
                panic!("a CPU kernel task panicked");
            }
        }
    }
}

/// A mutable f32 buffer written by several threads at disjoint places.
pub struct Shared<'a> {
    ptr: *mut f32,
    len: usize,
    _life: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: `Shared` hands out only the sub-slices callers promise are disjoint (see `slice`).
unsafe impl Send for Shared<'_> {}
// SAFETY: as above.
unsafe impl Sync for Shared<'_> {}

impl<'a> Shared<'a> {
    /// Wraps `buf`.
    pub fn new(buf: &'a mut [f32]) -> Self {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _life: std::marker::PhantomData,
        }
    }

    /// `buf[start..start + len]`.
    ///
    /// # Safety
    /// No two live slices may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}
