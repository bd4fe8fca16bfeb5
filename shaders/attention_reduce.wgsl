// op: merge the per-split attention partials of attention.wgsl into the normalized output
// out[t, h * head_dim + d] = Σ_s o_s[d]·e^(m_s − M) / Σ_s l_s·e^(m_s − M).
// bindings: 0 part (storage, read), 1 out (storage, read_write, [T, n_heads * head_dim]), 2 params
//           (attention.wgsl's), 3 step.
// dispatch: (ceil(n_heads * head_dim / 64), n_tokens, 1); one thread per output element.

#include "common/step.wgsl"

#include "common/attention_params.wgsl"

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let hd = p.head_dim;
    let t = gid.y;
    let e = gid.x;
    if (t >= step.n_tokens || e >= p.n_heads * hd) { return; }
    let h = e / hd;
    let d = e % hd;
    let base = (t * p.n_heads + h) * step.n_splits;
    var mx = -1e30;
    for (var s = 0u; s < step.n_splits; s++) { mx = max(mx, part[(base + s) * (hd + 2u) + hd]); }
    var num = 0.0;
    var den = 0.0;
    for (var s = 0u; s < step.n_splits; s++) {
        let pb = (base + s) * (hd + 2u);
        let f = exp(part[pb + hd] - mx);
        num += part[pb + d] * f;
        den += part[pb + hd + 1u] * f;
    }
    out[t * p.n_heads * hd + e] = num / den;
}
