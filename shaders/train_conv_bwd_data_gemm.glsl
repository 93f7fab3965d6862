// Body of train_conv_bwd_data_gemm.comp and _64.comp (OUT_U64: shaderInt64 stores).
// Input gradient of a 1x1 stride-1 convolution or linear layer: dx[m][ci] =
// sum_co dy[m][co] * W[co][ci], a GEMM whose B operand is the model's OHWI weights read
// as they are: for a fixed co, 4 consecutive ci are one texel. Same scheme as the
// forward GEMM (shaders/conv_gemm.glsl, docs/PERFORMANCE.md): dy through texel fetches,
// each k-step's 8 weight texels fetched once per subgroup (lane j fetches texel j) and
// handed out with subgroupShuffle, an R x 8 register tile per lane unrolled by hand.
// Needs out_c % 4 == 0, in_c % 4 == 0 and gl_SubgroupSize >= 8.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require

#define R 4
#define CG 2
#define T (4 * CG)
#define FOR_R(X) X(0) X(1) X(2) X(3)
#define FOR_G(X, r) X(r, 0) X(r, 1)

layout(local_size_x_id = 0) in;
// The k-step count (out_c / 4) when fixed at pipeline creation (0: read p.k4). With K
// known, a lane loads its R x K block of dy once for every column tile, and the fully
// unrolled k loop indexes it with constants (CPU devices only: a GPU would spill it).
layout(constant_id = 1) const uint FIXED_K4 = 0;
const uint AK4 = FIXED_K4 > 0u ? FIXED_K4 : 1u;
layout(set = 0, binding = 0) uniform samplerBuffer DY; // [m][out_c]
layout(set = 0, binding = 1) uniform samplerBuffer W;  // OHWI = [out_c][in_c]
#ifdef OUT_U64
layout(set = 0, binding = 2) writeonly buffer Out8 { u64vec2 y8[]; };
#else
layout(set = 0, binding = 2) writeonly buffer Out4 { vec4 y4[]; };
#endif
layout(push_constant) uniform Push {
  uint m, n4, k4, ntiles, tiles_per_group, dy_base, w_base;
} p;

#define DECL_ROW(r) uint row##r = min(row_base + uint(r) * gl_WorkGroupSize.x, p.m - 1u);
#define ZERO_ACC(r, g) vec4 acc##r##_##g = vec4(0.0);
#define ZERO_ROW(r) FOR_G(ZERO_ACC, r)
#define LOAD_A(r) vec4 a##r = texelFetch(DY, int(p.dy_base + row##r * p.k4 + k4));
#define STORE(r, g) store_tile(t * CG + g, row_base + uint(r) * gl_WorkGroupSize.x, acc##r##_##g);
#define STORE_ROW(r) FOR_G(STORE, r)

void store_tile(uint c4, uint row, vec4 v)
{
  if (c4 >= p.n4 || row >= p.m)
    return;
  uint o = row * p.n4 + c4;
#ifdef OUT_U64
  uvec4 b = floatBitsToUint(v);
  y8[o] = u64vec2(packUint2x32(b.xy), packUint2x32(b.zw));
#else
  y4[o] = v;
#endif
}

// Texel j = kk * CG + g of k-step k4 is W[4 k4 + kk][t * 8 + 4 g .. + 3]; a tile past
// in_c reads a clamped texel whose columns are never stored.
#define FETCH_W                                                                             \
  vec4 wl0;                                                                                 \
  {                                                                                         \
    uint j = gl_SubgroupInvocationID % uint(T);                                             \
    uint c4 = min(t * CG + j % CG, p.n4 - 1u);                                              \
    wl0 = texelFetch(W, int(p.w_base + (k4 * 4u + j / CG) * p.n4 + c4));                    \
  }
#define FETCH_WK(kk, g) vec4 wv##kk##_##g = subgroupShuffle(wl0, kk * CG + g);
#define FMA4(r, g)                                                                          \
  acc##r##_##g += a##r.x * wv0_##g;                                                         \
  acc##r##_##g += a##r.y * wv1_##g;                                                         \
  acc##r##_##g += a##r.z * wv2_##g;                                                         \
  acc##r##_##g += a##r.w * wv3_##g;
#define FMA4_ROW(r) FOR_G(FMA4, r)
#define K_STEP                                                                              \
  {                                                                                         \
    FETCH_W                                                                                 \
    FOR_G(FETCH_WK, 0) FOR_G(FETCH_WK, 1) FOR_G(FETCH_WK, 2) FOR_G(FETCH_WK, 3)             \
    FOR_R(FMA4_ROW)                                                                         \
  }
#define DECL_ABLOCK(r) vec4 ab##r[AK4];
#define LOAD_ABLOCK(r) ab##r[k4] = texelFetch(DY, int(p.dy_base + row##r * AK4 + k4));
#define SET_ABLOCK(r) vec4 a##r = ab##r[k4];

void main()
{
  uint row_base = gl_WorkGroupID.x * gl_WorkGroupSize.x * R + gl_LocalInvocationID.x;
  // Rows past the end compute on a clamped row and skip only their stores: every lane
  // must stay active for the weight shuffles.
  FOR_R(DECL_ROW)
  uint t0 = gl_WorkGroupID.y * p.tiles_per_group;
  uint t1 = min(t0 + p.tiles_per_group, p.ntiles);
  if (FIXED_K4 > 0u) {
    FOR_R(DECL_ABLOCK)
    [[unroll]] for (uint k4 = 0u; k4 < AK4; k4++) {
      FOR_R(LOAD_ABLOCK)
    }
    for (uint t = t0; t < t1; t++) {
      FOR_R(ZERO_ROW)
      [[unroll]] for (uint k4 = 0u; k4 < AK4; k4++) {
        FOR_R(SET_ABLOCK)
        K_STEP
      }
      FOR_R(STORE_ROW)
    }
    return;
  }
  for (uint t = t0; t < t1; t++) {
    FOR_R(ZERO_ROW)
    for (uint k4 = 0u; k4 < p.k4; k4++) {
      FOR_R(LOAD_A)
      K_STEP
    }
    FOR_R(STORE_ROW)
  }
}
