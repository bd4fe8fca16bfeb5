// op: softmax of the attention scores of attention_scores.wgsl, in place: s[t, h, i] becomes
// e^(s[t, h, i] − max), and s[t, h, max_pos] the reciprocal of their sum.
// bindings: 0 s (storage, read_write), 1 params (attention.wgsl's), 2 step.
// dispatch: (ceil(n_heads / 64), T, 1); one thread per (token, head).

#include "common/step.wgsl"

#include "common/attention_params.wgsl"

@group(0) @binding(0) var<storage, read_write> s: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    let t = gid.y;
    if (h >= p.n_heads) { return; }
    let pos = step.pos0 + t;
    let lo = first_key(pos);
    let n = pos + 1u - lo;
    let sb = (t * p.n_heads + h) * (p.max_pos + 1u);
    var m = -1e30;
    for (var i = 0u; i < n; i++) { m = max(m, s[sb + i]); }
    var l = 0.0;
    for (var i = 0u; i < n; i++) {
        let e = exp(s[sb + i] - m);
        s[sb + i] = e;
        l += e;
    }
    s[sb + p.max_pos] = 1.0 / l;
}
