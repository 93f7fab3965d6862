#version 450
// Dense convolution weight gradient, first stage, as a GEMM over the output pixels:
// dW[co][k] = sum over rows m of dy[m][co] * im2col(x)[m][k], k = (ky, kx, ci) in the
// model's OHWI order. Each group of 8 lanes owns one chunk of rows, 32 output channels
// and a block of 8 k's, and writes its partial sums, in row order, to part[chunk];
// train_reduce adds the chunks in chunk order (bit-identical reruns, no float atomics).
//
// Shaped for lavapipe (docs/PERFORMANCE.md): a lane holds 4 output channels x 8 k's of
// accumulators and fetches its own dy texel per row (the vectorised gather). The 8 x
// values of a row are the same for the 8 lanes: storage-buffer loads would go one lane
// at a time even at a uniform address, so the lanes fetch them together as texels
// (1x1: lane j fetches texel j % 2 of row m + j / 2, four rows per gather; im2col: lane
// j fetches value j of the row) and hand them out with subgroupShuffle. Lanes past the
// last output channel compute on a clamped one and skip their stores: every lane must
// stay active for the shuffles.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x_id = 0) in;
// k-blocks per workgroup (each 8 lanes of one subgroup): 1 on CPUs, more on GPUs.
layout(constant_id = 1) const uint KB_PER_WG = 1u;
// 0: 1x1 stride-1 conv or linear layer with in_c % 4 == 0 (x rows are the K values);
//    1: any dense conv (implicit im2col, one scalar per k).
layout(constant_id = 2) const uint IM2COL = 0u;
#define LANES 8u // must match FILTER_LANES (and FILTER_KB) in worker/train/ops_bwd_conv.c
#define FOR_K(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define FOR_ROW4(X) X(0) X(1) X(2) X(3)

layout(set = 0, binding = 0) uniform samplerBuffer DY; // [rows][out_c] NHWC, out_c % 4 == 0
layout(set = 0, binding = 1) uniform samplerBuffer X;  // NHWC input
layout(set = 0, binding = 2) writeonly buffer Part { float part[]; }; // [chunks][out_c][K]
layout(push_constant) uniform Push {
  uint rows, out_c, k, in_c, in_h, in_w, out_h, out_w, kernel_w, stride_h, stride_w, pad_top, pad_left;
  uint rows_per_chunk, chunks, co_groups, k_groups, dy_base, x_base, x_last;
} p;

#define DECL_ACC(j) vec4 acc##j = vec4(0.0);
#define MAC(j) acc##j += d * xv##j;
#define STORE(j)                                                                   \
  if (k0 + uint(j) < p.k)                                                          \
    part[obase + k0 + uint(j)] = acc##j[c];
// 1x1: the 8 x values of row r of the four in xg are texels 2r and 2r + 1 of the group.
#define ROW4(r)                                                                    \
  {                                                                                \
    vec4 d = m + uint(r) < m1 ? texelFetch(DY, int(dy_row + uint(r) * out_c4)) : vec4(0.0); \
    vec4 xa = subgroupShuffle(xg, gbase + 2u * uint(r));                           \
    vec4 xb = subgroupShuffle(xg, gbase + 2u * uint(r) + 1u);                      \
    float xv0 = xa.x, xv1 = xa.y, xv2 = xa.z, xv3 = xa.w;                          \
    float xv4 = xb.x, xv5 = xb.y, xv6 = xb.z, xv7 = xb.w;                          \
    FOR_K(MAC)                                                                     \
  }
#define SHUF_K(j) float xv##j = subgroupShuffle(xs, gbase + uint(j));

void main()
{
  uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  uint kg = g % p.k_groups;
  uint t = g / p.k_groups;
  uint cog = t % p.co_groups;
  uint chunk = t / p.co_groups;
  uint lane = gl_SubgroupInvocationID % LANES;
  uint gbase = gl_SubgroupInvocationID - lane; // first lane of this group of 8
  uint kb = KB_PER_WG == 1u ? kg : kg * KB_PER_WG + gl_LocalInvocationID.x / LANES;
  uint k0 = kb * LANES;
  uint co4 = cog * LANES + lane, out_c4 = p.out_c / 4u;
  uint co4c = min(co4, out_c4 - 1u);
  uint m0 = min(chunk * p.rows_per_chunk, p.rows);
  uint m1 = min(p.rows, m0 + p.rows_per_chunk);
  FOR_K(DECL_ACC)
  if (IM2COL == 0u) {
    // Lane j's texel: row m + j / 2, k texel k0 / 4 + j % 2, clamped inside the view
    // (clamped rows and k's feed accumulators that are zeroed by d or never stored).
    uint in_c4 = p.in_c / 4u;
    uint xoff = k0 / 4u + lane % 2u;
    for (uint m = m0; m < m1; m += 4u) {
      uint dy_row = p.dy_base + m * out_c4 + co4c;
      vec4 xg = texelFetch(X, int(min(p.x_base + (m + lane / 2u) * in_c4 + xoff, p.x_last)));
      FOR_ROW4(ROW4)
    }
  } else {
    // Lane j gathers im2col value k0 + j of each row: its tap (ky, kx, ci) is fixed.
    uint kk = min(k0 + lane, p.k - 1u), kwc = p.kernel_w * p.in_c;
    int tky = int(kk / kwc), tkx = int((kk % kwc) / p.in_c);
    uint tci = kk % p.in_c;
    bool tok = k0 + lane < p.k;
    // Walk the chunk's pixels with running coordinates (no divisions in the loop).
    uint ox = m0 % p.out_w, q = m0 / p.out_w;
    uint oy = q % p.out_h, n = q / p.out_h;
    for (uint m = m0; m < m1; m++) {
      vec4 d = texelFetch(DY, int(p.dy_base + m * out_c4 + co4c));
      int iy = int(oy * p.stride_h) - int(p.pad_top) + tky, ix = int(ox * p.stride_w) - int(p.pad_left) + tkx;
      bool inside = tok && iy >= 0 && iy < int(p.in_h) && ix >= 0 && ix < int(p.in_w);
      uint xi = ((n * p.in_h + uint(clamp(iy, 0, int(p.in_h) - 1))) * p.in_w + uint(clamp(ix, 0, int(p.in_w) - 1))) *
                    p.in_c + tci;
      vec4 xt = texelFetch(X, int(p.x_base + (xi >> 2)));
      float xs = inside ? xt[xi & 3u] : 0.0;
      FOR_K(SHUF_K)
      FOR_K(MAC)
      if (++ox == p.out_w) {
        ox = 0u;
        if (++oy == p.out_h) {
          oy = 0u;
          n++;
        }
      }
    }
  }
  if (co4 >= out_c4 || k0 >= p.k || chunk >= p.chunks)
    return;
  [[unroll]] for (uint c = 0u; c < 4u; c++) {
    uint obase = (chunk * p.out_c + co4 * 4u + c) * p.k;
    FOR_K(STORE)
  }
}
