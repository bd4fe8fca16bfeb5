//! A recorded kernel launch: pipeline, bind group (built once at load) and a dispatch rule that depends
//! only on the call's token count and attention split count.

/// How many workgroups a launch needs for a call of `n_tokens` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    /// Always the same.
    Fixed([u32; 3]),
    /// `(x, n_tokens, 1)`.
    Tokens(u32),
    /// `(n_tokens, 1, 1)`.
    PerToken,
    /// `(x, ceil(n_tokens / tile), 1)`.
    TokenTiles(u32, u32),
    /// `(n_tokens * heads, n_splits, 1)`.
    Attention(u32),
    /// `(x, y, n_tokens)`.
    TokensZ(u32, u32),
    /// `(x, y, ceil(n_tokens / tile))`: the grouped expert mat-mul (y = experts).
    TileZ(u32, u32, u32),
}

impl Grid {
    /// Workgroup counts for a call.
    pub fn size(self, n_tokens: u32, n_splits: u32) -> [u32; 3] {
        match self {
            Grid::Fixed(g) => g,
            Grid::Tokens(x) => [x, n_tokens, 1],
            Grid::PerToken => [n_tokens, 1, 1],
            Grid::TokenTiles(x, tile) => [x, n_tokens.div_ceil(tile), 1],
            Grid::Attention(heads) => [n_tokens * heads, n_splits, 1],
            Grid::TokensZ(x, y) => [x, y, n_tokens],
            Grid::TileZ(x, y, tile) => [x, y, n_tokens.div_ceil(tile)],
        }
    }
}

/// One kernel launch.
#[derive(Debug, Clone)]
pub struct Op {
    /// Compiled pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Its resources.
    pub bind_group: wgpu::BindGroup,
    /// Dispatch rule.
    pub grid: Grid,
}

impl Op {
    /// Records the dispatch into `pass`.
    pub fn encode(&self, pass: &mut wgpu::ComputePass, n_tokens: u32, n_splits: u32) {
        let [x, y, z] = self.grid.size(n_tokens, n_splits);
        if x == 0 || y == 0 || z == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Encodes `ops` in one compute pass.
pub fn encode_ops(encoder: &mut wgpu::CommandEncoder, ops: &[Op], n_tokens: u32, n_splits: u32) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: None,
        timestamp_writes: None,
    });
    for op in ops {
        op.encode(&mut pass, n_tokens, n_splits);
    }
}
