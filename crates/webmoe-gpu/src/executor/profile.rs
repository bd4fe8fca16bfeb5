//! Per-kernel decode timing (native only, for `webmoe bench --profile`): each launch of one decode step
//! is repeated in its own submit and timed with the wall clock, then summed by kind.

use super::Engine;
use crate::op::Op;
use std::time::Instant;

impl Engine {
    /// Milliseconds per decode step spent in each kind of launch, measured at the current position
    /// with `token` as input (the KV cache is not advanced). Each launch is repeated `reps` times in one
    /// submit, so the numbers exclude submit overhead. The entry `whole_layers_step` times all layers'
    /// launches together in one pass, as a real step runs them (without embedding, head and sampling).
    pub fn profile_decode(&mut self, token: u32, reps: u32) -> Vec<(&'static str, f64)> {
        let n_splits = super::attention::n_splits(1, (self.pos + 1) as u32, self.attention_plan);
        self.gpu
            .queue
            .write_buffer(&self.s.ids, 0, bytemuck::cast_slice(&[token]));
        self.gpu.queue.write_buffer(
            &self.s.step,
            0,
            bytemuck::cast_slice(&[crate::uniforms::StepParams {
                n_tokens: 1,
                pos0: self.pos as u32,
                n_splits,
                pad: 0,
            }]),
        );
        let mut ops: Vec<(&'static str, &Op)> = Vec::new();
        ops.extend(self.embed.iter().map(|o| ("embed", o)));
        for launch in self.layers.iter().flatten() {
            ops.extend(launch.decode.iter().map(|o| (launch.name, o)));
        }
        ops.push(("rmsnorm", &self.final_norm));
        ops.extend(self.lm_head.decode.iter().map(|o| ("lm_head", o)));
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
        // All layers in one pass, as `forward` encodes them: the barriers and cache effects between
        // launches that the per-kind times above leave out (best of 6).
        let mut best = f64::MAX;
        for _ in 0..6 {
            let t = Instant::now();
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for op in self.layers.iter().flatten().flat_map(|l| &l.decode) {
                    op.encode(&mut pass, 1, n_splits);
                }
            }
            self.gpu.queue.submit([enc.finish()]);
            wait(&self.gpu);
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        out.push(("whole_layers_step", best));
        out
    }
}
