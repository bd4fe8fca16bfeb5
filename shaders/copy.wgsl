// op: dst[i] = src[i] over vec4<u32> — the device's own copy bandwidth, measured by `webmoe bench`.
// bindings: 0 src (storage, read), 1 dst (storage, read_write).
// dispatch: (ceil(n_vec4 / 64 / 16), 1, 1); each thread copies 16 consecutive vec4 (one contiguous span).

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = arrayLength(&src);
    let b = gid.x * 16u;
    for (var i = 0u; i < 16u; i++) {
        if (b + i < n) { dst[b + i] = src[b + i]; }
    }
}
