// Dequantization of one group of 32 consecutive elements of a row, for every supported ggml type.
// `row` is the byte offset of the row, `g` the index of the 32-element group within the row.
// Formats: spec/models.md §5 (ggml-common.h / ggml-quants.c). The preprocessor maps DQ32 to one of these.

fn dq32_f32(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 128u;
    for (var i = 0u; i < 32u; i++) { (*y)[i] = bitcast<f32>(rw(b + 4u * i)); }
}

fn dq32_f16(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 64u;
    for (var i = 0u; i < 16u; i++) {
        let v = unpack2x16float(rw(b + 4u * i));
        (*y)[2u * i] = v.x; (*y)[2u * i + 1u] = v.y;
    }
}

fn dq32_bf16(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 64u;
    for (var i = 0u; i < 16u; i++) {
        let v = rw(b + 4u * i);
        (*y)[2u * i] = bitcast<f32>(v << 16u); (*y)[2u * i + 1u] = bitcast<f32>(v & 0xffff0000u);
    }
}

fn dq32_q4_0(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 18u;
    let d = rf16(b);
    for (var i = 0u; i < 4u; i++) {
        let q = rw(b + 2u + 4u * i);
        for (var k = 0u; k < 4u; k++) {
            let byte = (q >> (8u * k)) & 0xffu;
            (*y)[4u * i + k] = (f32(byte & 15u) - 8.0) * d;
            (*y)[4u * i + k + 16u] = (f32(byte >> 4u) - 8.0) * d;
        }
    }
}

fn dq32_q4_1(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 20u;
    let dm = unpack2x16float(rw(b));
    for (var i = 0u; i < 4u; i++) {
        let q = rw(b + 4u + 4u * i);
        for (var k = 0u; k < 4u; k++) {
            let byte = (q >> (8u * k)) & 0xffu;
            (*y)[4u * i + k] = f32(byte & 15u) * dm.x + dm.y;
            (*y)[4u * i + k + 16u] = f32(byte >> 4u) * dm.x + dm.y;
        }
    }
}

fn dq32_q5_0(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 22u;
    let d = rf16(b);
    let h = rw(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let q = rw(b + 6u + 4u * i);
        for (var k = 0u; k < 4u; k++) {
            let j = 4u * i + k;
            let byte = (q >> (8u * k)) & 0xffu;
            (*y)[j] = (f32((byte & 15u) | (((h >> j) & 1u) << 4u)) - 16.0) * d;
            (*y)[j + 16u] = (f32((byte >> 4u) | (((h >> (j + 16u)) & 1u) << 4u)) - 16.0) * d;
        }
    }
}

fn dq32_q5_1(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 24u;
    let dm = unpack2x16float(rw(b));
    let h = rw(b + 4u);
    for (var i = 0u; i < 4u; i++) {
        let q = rw(b + 8u + 4u * i);
        for (var k = 0u; k < 4u; k++) {
            let j = 4u * i + k;
            let byte = (q >> (8u * k)) & 0xffu;
            (*y)[j] = f32((byte & 15u) | (((h >> j) & 1u) << 4u)) * dm.x + dm.y;
            (*y)[j + 16u] = f32((byte >> 4u) | (((h >> (j + 16u)) & 1u) << 4u)) * dm.x + dm.y;
        }
    }
}

fn dq32_q8_0(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + g * 34u;
    let d = rf16(b);
    for (var i = 0u; i < 8u; i++) {
        let q = rw(b + 2u + 4u * i);
        for (var k = 0u; k < 4u; k++) { (*y)[4u * i + k] = sx8(q >> (8u * k)) * d; }
    }
}

// 6-bit scale and min of sub-block j of a Q4_K/Q5_K block whose 12 scale bytes start at `s`.
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(rb(s + j) & 63u), f32(rb(s + j + 4u) & 63u));
    }
    let sc = (rb(s + j + 4u) & 15u) | ((rb(s + j - 4u) >> 6u) << 4u);
    let mn = (rb(s + j + 4u) >> 4u) | ((rb(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(mn));
}

fn dq32_q4_k(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + (g / 8u) * 144u;
    let sub = g % 8u;
    let dm = unpack2x16float(rw(b));
    let sm = scale_min_k4(b + 4u, sub);
    let d = dm.x * sm.x;
    let m = dm.y * sm.y;
    let q = b + 16u + 32u * (sub / 2u);
    let shift = 4u * (sub % 2u);
    for (var i = 0u; i < 8u; i++) {
        let v = rw(q + 4u * i) >> shift;
        for (var k = 0u; k < 4u; k++) { (*y)[4u * i + k] = d * f32((v >> (8u * k)) & 15u) - m; }
    }
}

fn dq32_q5_k(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + (g / 8u) * 176u;
    let sub = g % 8u;
    let dm = unpack2x16float(rw(b));
    let sm = scale_min_k4(b + 4u, sub);
    let d = dm.x * sm.x;
    let m = dm.y * sm.y;
    let q = b + 48u + 32u * (sub / 2u);
    let shift = 4u * (sub % 2u);
    for (var i = 0u; i < 8u; i++) {
        let v = rw(q + 4u * i) >> shift;
        let h = rw(b + 16u + 4u * i) >> sub;
        for (var k = 0u; k < 4u; k++) {
            let qv = ((v >> (8u * k)) & 15u) | (((h >> (8u * k)) & 1u) << 4u);
            (*y)[4u * i + k] = d * f32(qv) - m;
        }
    }
}

fn dq32_q6_k(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + (g / 8u) * 210u;
    let sub = g % 8u;
    let n = sub / 4u;
    let m = sub % 4u;
    let d = rf16(b + 208u);
    let ql = b + 64u * n + 32u * (m % 2u);
    let qh = b + 128u + 32u * n;
    let lshift = 4u * (m / 2u);
    let hshift = 2u * m;
    let sc = b + 192u + 8u * n + 2u * m;
    let d0 = d * sx8(rb(sc));
    let d1 = d * sx8(rb(sc + 1u));
    for (var i = 0u; i < 8u; i++) {
        let lo = rw(ql + 4u * i) >> lshift;
        let hi = rw(qh + 4u * i) >> hshift;
        let dd = select(d1, d0, i < 4u);
        for (var k = 0u; k < 4u; k++) {
            let q = i32(((lo >> (8u * k)) & 15u) | (((hi >> (8u * k)) & 3u) << 4u)) - 32;
            (*y)[4u * i + k] = dd * f32(q);
        }
    }
}

fn dq32_q2_k(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + (g / 8u) * 84u;
    let sub = g % 8u;
    let n = sub / 4u;
    let jj = sub % 4u;
    let dm = unpack2x16float(rw(b + 80u));
    for (var h = 0u; h < 2u; h++) {
        let s = rb(b + 8u * n + 2u * jj + h);
        let dl = dm.x * f32(s & 15u);
        let ml = dm.y * f32(s >> 4u);
        for (var i = 0u; i < 4u; i++) {
            let v = rw(b + 16u + 32u * n + 16u * h + 4u * i) >> (2u * jj);
            for (var k = 0u; k < 4u; k++) { (*y)[16u * h + 4u * i + k] = dl * f32((v >> (8u * k)) & 3u) - ml; }
        }
    }
}

fn q3k_scale(sb: u32, i: u32) -> f32 {
    var lo: u32;
    if (i < 8u) { lo = rb(sb + i) & 15u; } else { lo = rb(sb + i - 8u) >> 4u; }
    let hi = (rb(sb + 8u + i % 4u) >> (2u * (i / 4u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn dq32_q3_k(row: u32, g: u32, y: ptr<function, array<f32, 32>>) {
    let b = row + (g / 8u) * 110u;
    let sub = g % 8u;
    let n = sub / 4u;
    let jj = sub % 4u;
    let d = rf16(b + 108u);
    let mbit = 4u * n + jj;
    for (var h = 0u; h < 2u; h++) {
        let dl = d * q3k_scale(b + 96u, 8u * n + 2u * jj + h);
        for (var i = 0u; i < 4u; i++) {
            let v = rw(b + 32u + 32u * n + 16u * h + 4u * i) >> (2u * jj);
            let hm = rw(b + 16u * h + 4u * i) >> mbit;
            for (var k = 0u; k < 4u; k++) {
                let q = i32((v >> (8u * k)) & 3u) - select(4, 0, ((hm >> (8u * k)) & 1u) != 0u);
                (*y)[16u * h + 4u * i + k] = dl * f32(q);
            }
        }
    }
}
