// op: elementwise kernels on f32 rows of `n` elements, for step.n_tokens rows.
//   swiglu:   a[i] = silu(a[i]) * b[i]         (gate in a, up in b)
//   add_bias: a[i] = a[i] + b[i % n]           (b is a bias vector of n)
// bindings: 0 a (storage, read_write), 1 b (storage, read), 2 params (uniform: n), 3 step.
// dispatch: (ceil(n / 64), n_tokens, 1).

#include "common/step.wgsl"

struct Params {
    n: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(64)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= step.n_tokens) { return; }
    let i = gid.y * p.n + gid.x;
    let g = a[i];
    a[i] = g / (1.0 + exp(-g)) * b[i];
}

@compute @workgroup_size(64)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n || gid.y >= step.n_tokens) { return; }
    let i = gid.y * p.n + gid.x;
    a[i] = a[i] + b[gid.x];
}
