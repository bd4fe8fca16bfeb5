//! Per-kernel decode timing (native only, for `webmoe bench --profile`): each launch of one decode step
//! is repeated in its own submit and timed with the wall clock, then summed by kind.

use super::Engine;
use crate::op::Op;
use std::time::Instant;

impl Engine {
    /// Milliseconds per decode step spent in each kind of launch, measured at the current position
    /// with `token` as input (the KV cache is not advanced). Each launch is repeated `reps` times in one
    /// submit, so the numbers exclude submit overhead; the total is a lower bound of a real step.
    pub fn profile_decode(&mut self, token: u32, reps: u32) -> Vec<(&'static str, f64)> {
        let n_splits = super::attention::n_splits(1, (self.pos + 1) as u32);
        self.gpu
            .queue
            .write_buffer(&self.s.ids, 0, bytemuck::cast_slice(&[token]));
        self.gpu.queue.write_buffer(
            &self.s.step,
            0,
            bytemuck::cast_slice(&[1, self.pos as u32, n_splits, 0]),
        );
        let mut ops: Vec<(&'static str, &Op)> = Vec::new();
        ops.extend(self.embed.iter().map(|o| ("embed", o)));
        for l in &self.layers {
            ops.push(("rmsnorm", &l.attn_norm));
            for (name, lin) in [("q", &l.q), ("k", &l.k), ("v", &l.v)] {
                ops.extend(lin.vec.iter().map(|o| (name, o)));
            }
            ops.extend(l.bias.iter().map(|o| ("bias", o)));
            ops.push(("rope", &l.rope));
            ops.push(("kv_store", &l.kv_store));
            ops.extend(l.attn.iter().map(|o| ("attention", o)));
            ops.extend(l.wo.vec.iter().map(|o| ("o", o)));
            ops.push(("rmsnorm", &l.ffn_norm));
            if let Some((router, route)) = &l.router {
                ops.extend(router.vec.iter().map(|o| ("router", o)));
                ops.push(("route", route));
            }
            ops.extend(l.gate.vec.iter().map(|o| ("gate", o)));
            ops.extend(l.up.vec.iter().map(|o| ("up", o)));
            ops.push(("swiglu", &l.swiglu));
            ops.extend(l.down.vec.iter().map(|o| ("down", o)));
            ops.extend(l.combine.iter().map(|o| ("combine", o)));
        }
        ops.push(("rmsnorm", &self.final_norm));
        ops.extend(self.lm_head.vec.iter().map(|o| ("lm_head", o)));
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        let wait = |gpu: &crate::Gpu| {
            let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
        };
        for (name, op) in ops {
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                op.encode(&mut pass, 1, n_splits);
            }
            self.gpu.queue.submit([enc.finish()]);
            wait(&self.gpu);
            let t = Instant::now();
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for _ in 0..reps {
                    op.encode(&mut pass, 1, n_splits);
                }
            }
            self.gpu.queue.submit([enc.finish()]);
            wait(&self.gpu);
            let ms = t.elapsed().as_secs_f64() * 1e3 / f64::from(reps);
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 += ms,
                None => out.push((name, ms)),
            }
        }
        out
    }
}
