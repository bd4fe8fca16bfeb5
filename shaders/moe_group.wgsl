// op: group a prefill's routing slots by expert for the grouped expert mat-mul. Slot s = t*K + j routes
// token t to expert ids[s]. Writes offsets[e] = first position of expert e in `sorted` (offsets[E] =
// T*K) and sorted[offsets[e] ..] = the slots of expert e in increasing order (deterministic: the same
// slots always land in the same places). Experts that receive no slot get an empty range.
// bindings: 0 ids (storage, read, u32 [T*K]), 1 offsets (storage, read_write, u32 [E + 1]), 2 sorted
//           (storage, read_write, u32 [T*K]), 3 params (uniform: n_experts, K), 4 step.
// dispatch: (1, 1, 1); workgroup = 256 threads, thread e counts and places expert e (E ≤ 256).

#include "common/step.wgsl"

struct Params {
    n_experts: u32,
    k: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read_write> offsets: array<u32>;
@group(0) @binding(2) var<storage, read_write> sorted: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

var<workgroup> counts: array<u32, 256>;
var<workgroup> starts: array<u32, 257>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) e: u32) {
    let n = step.n_tokens * p.k;
    var c = 0u;
    if (e < p.n_experts) {
        for (var s = 0u; s < n; s++) {
            if (ids[s] == e) { c++; }
        }
    }
    counts[e] = c;
    workgroupBarrier();
    if (e == 0u) {
        var acc = 0u;
        for (var i = 0u; i < p.n_experts; i++) {
            starts[i] = acc;
            offsets[i] = acc;
            acc += counts[i];
        }
        starts[p.n_experts] = acc;
        offsets[p.n_experts] = acc;
    }
    workgroupBarrier();
    if (e < p.n_experts) {
        var o = starts[e];
        for (var s = 0u; s < n; s++) {
            if (ids[s] == e) {
                sorted[o] = s;
                o++;
            }
        }
    }
}
