// Body of conv_gemm.comp and conv_gemm_64.comp (OUT_U64: N % 4 == 0, shaderInt64).
// 1x1 convolutions and linear layers as a GEMM, and small dense convs (the stem) as an
// implicit GEMM: out[m][n] = sum_k A[m][k] * W[n][k] with the conv epilogue fused.
//
// Shaped for lavapipe first (DESIGN §3): every per-lane load goes through a texel
// buffer (the vectorised gather path), and the weights, which are the same for every
// lane, are fetched once per subgroup (lane j loads texel j of the k-step) and handed
// out with subgroupShuffle by a constant lane: one vpermps there, while
// subgroupBroadcast measured 2.5x slower overall and a gather per lane about 2x (a
// texel gather costs tens of cycles). Each lane keeps an R x 4*CG register tile. On
// GPUs the same scheme is a register-blocked GEMM fed from the texture cache. Needs
// gl_SubgroupSize >= 4*CG and K % 4 == 0 (IM2COL == 0).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
#include "epilogue.glsl"

// Register tile: R rows (output pixels) per lane x CG groups of 4 output channels, so
// T = 4 * CG weight texels per k-step. The loops over rows and groups are unrolled by
// hand (FOR_R, FOR_G): lavapipe keeps loop-indexed local arrays in memory and then
// reads them one lane at a time. Must match GEMM_R / GEMM_CG in worker/nn/ops.c.
#define R 4
#define CG 2
#define T (4 * CG)
#define FOR_R(X) X(0) X(1) X(2) X(3)
#define FOR_G(X, r) X(r, 0) X(r, 1)
// Weight texels one fetch hands out: every lane fetches texel (lane % WL) of each group
// of WL, so any subgroup of at least WL lanes works.
#define WL 8

layout(local_size_x_id = 0) in;
// 0: A is an M x K matrix (1x1 convs). 1: A is the NHWC input of any dense conv,
// gathered one scalar at a time. 2: the same for kernel_w * in_c <= 9 (the stem): one
// kernel row's taps are 9 contiguous floats, fetched as 3 texels and shifted into place,
// with K padded to 12 per kernel row (see fr_ops_pack_conv_weights).
layout(constant_id = 1) const uint IM2COL = 0;
// IM2COL 0 and 2: the k-step count when it is fixed at pipeline creation (0: read
// p.k4). A texel fetch (and the window's shifts) costs about as much as the FMAs it
// feeds, and a lane's rows are the same for every column tile, so with K known the lane
// builds its R x K block of A once into private arrays, and the fully unrolled k loop
// indexes them with constants (registers and stack slots; a dynamically indexed
// private array would go one lane at a time on lavapipe).
layout(constant_id = 2) const uint FIXED_K4 = 0;
const uint AK4 = FIXED_K4 > 0u ? FIXED_K4 : 1u;
layout(set = 0, binding = 0) uniform samplerBuffer A;     // M x K (IM2COL == 0) or the conv input
layout(set = 0, binding = 1) uniform samplerBuffer W;     // packed by fr_ops_pack_conv_weights
layout(set = 0, binding = 2) uniform samplerBuffer Bias;  // out_c padded to 4
layout(set = 0, binding = 3) uniform samplerBuffer Slope;
layout(set = 0, binding = 4) uniform samplerBuffer Res;   // M x N
#ifdef OUT_U64
// lavapipe stores one lane and one component at a time, ~10 instructions each: as two
// 64-bit components a texel costs half as many stores as four floats.
layout(set = 0, binding = 5) writeonly buffer Out8 { u64vec2 y8[]; };
#else
layout(set = 0, binding = 5) writeonly buffer Out4 { vec4 y4[]; };
layout(set = 0, binding = 5) writeonly buffer Out1 { float y1[]; };
#endif
layout(push_constant) uniform Push {
  uint m, n, k4, ntiles, tiles_per_group, act, has_residual;
  uint in_h, in_w, in_c, out_h, out_w, kernel_w, stride_h, stride_w, pad_top, pad_left, k;
} p;

// One scalar of the implicit im2col matrix for the pixel whose input window starts at (iy0, ix0).
float im2col(uint img, int iy0, int ix0, uint k)
{
  if (k >= p.k)
    return 0.0;
  uint kwc = p.kernel_w * p.in_c;
  int iy = iy0 + int(k / kwc);
  uint rem = k % kwc;
  int ix = ix0 + int(rem / p.in_c);
  if (iy < 0 || iy >= int(p.in_h) || ix < 0 || ix >= int(p.in_w))
    return 0.0;
  uint idx = ((img * p.in_h + uint(iy)) * p.in_w + uint(ix)) * p.in_c + rem % p.in_c;
  return texelFetch(A, int(idx >> 2))[idx & 3u];
}

float residual_at(uint idx) { return texelFetch(Res, int(idx >> 2))[idx & 3u]; }

#define DECL_ROW(r)                                                        \
  uint row##r = min(row_base + uint(r) * gl_WorkGroupSize.x, p.m - 1u);      \
  uint img##r, q##r = row##r / p.out_w;                                    \
  img##r = q##r / p.out_h;                                                 \
  int iy##r = int((q##r % p.out_h) * p.stride_h) - int(p.pad_top);         \
  int ix##r = int((row##r % p.out_w) * p.stride_w) - int(p.pad_left);
#define ZERO_ACC(r, g) vec4 acc##r##_##g = vec4(0.0);
#define ZERO_ROW(r) FOR_G(ZERO_ACC, r)
#define LOAD_A(r)                                                          \
  vec4 a##r;                                                               \
  if (IM2COL == 0u) {                                                      \
    a##r = texelFetch(A, int(row##r * p.k4 + k4));                         \
  } else {                                                                 \
    for (uint c = 0u; c < 4u; c++)                                         \
      a##r[c] = im2col(img##r, iy##r, ix##r, k4 * 4u + c);                 \
  }
#define STORE(r, g) store_tile(t * CG + g, row_base + uint(r) * gl_WorkGroupSize.x, acc##r##_##g);
#define STORE_ROW(r) FOR_G(STORE, r)

// Epilogue for 4 output channels starting at column group cg of one row.
void store_tile(uint cg, uint row, vec4 acc)
{
  uint n0 = cg * 4u;
  if (n0 >= p.n || row >= p.m)
    return;
  vec4 v = acc + texelFetch(Bias, int(cg));
  if (p.act != ACT_NONE) {
    vec4 s = p.act == ACT_PRELU ? texelFetch(Slope, int(cg)) : vec4(0.0);
    for (uint c = 0u; c < 4u; c++)
      v[c] = apply_activation(v[c], p.act, s[c]);
  }
  uint o = row * p.n + n0;
#ifdef OUT_U64
  if (p.has_residual != 0u)
    v += texelFetch(Res, int(o >> 2));
  uvec4 b = floatBitsToUint(v);
  y8[o >> 2] = u64vec2(packUint2x32(b.xy), packUint2x32(b.zw));
#else
  if (p.n % 4u == 0u) {
    if (p.has_residual != 0u)
      v += texelFetch(Res, int(o >> 2));
    y4[o >> 2] = v;
  } else {
    for (uint c = 0u; c < 4u && n0 + c < p.n; c++)
      y1[o + c] = v[c] + (p.has_residual != 0u ? residual_at(o + c) : 0.0);
  }
#endif
}

// The 12 floats starting at float index f of A, as 3 texels; floats of the kernel row
// outside the image (or past kernel_w * in_c) are zero.
void window(int f, bool row_ok, int ix0, out vec4 a0, out vec4 a1, out vec4 a2)
{
  int t = f >> 2; // floor, also for the negative f of a left padding column
  uint sh = uint(f & 3);
  vec4 c0 = texelFetch(A, max(t, 0)), c1 = texelFetch(A, max(t + 1, 0)), c2 = texelFetch(A, max(t + 2, 0));
  a0 = sh == 0u ? c0 : sh == 1u ? vec4(c0.yzw, c1.x) : sh == 2u ? vec4(c0.zw, c1.xy) : vec4(c0.w, c1.xyz);
  a1 = sh == 0u ? c1 : sh == 1u ? vec4(c1.yzw, c2.x) : sh == 2u ? vec4(c1.zw, c2.xy) : vec4(c1.w, c2.xyz);
  a2 = vec4(c2[sh], 0.0, 0.0, 0.0);
  // Zero the taps outside the image; j / in_c is the tap's kx.
  for (uint j = 0u; j < 9u; j++) {
    int ix = ix0 + int(j / p.in_c);
    bool ok = row_ok && j < p.kernel_w * p.in_c && ix >= 0 && ix < int(p.in_w);
    if (!ok) {
      if (j < 4u)
        a0[j] = 0.0;
      else if (j < 8u)
        a1[j - 4u] = 0.0;
      else
        a2[0] = 0.0;
    }
  }
}

#define LOAD_WIN(r)                                                              \
  vec4 win##r##_0, win##r##_1, win##r##_2;                                        \
  {                                                                               \
    int iy = iy##r + int(ky);                                                     \
    bool row_ok = iy >= 0 && iy < int(p.in_h);                                    \
    int f = ((int(img##r * p.in_h) + iy) * int(p.in_w) + ix##r) * int(p.in_c);     \
    window(f, row_ok, ix##r, win##r##_0, win##r##_1, win##r##_2);                 \
  }
#define SET_A(r) vec4 a##r = WIN(r);
#if T > WL
#define FETCH_WK(kk, g) vec4 wv##kk##_##g = kk * CG + g < WL ? subgroupShuffle(wl0, kk * CG + g) : subgroupShuffle(wl1, kk * CG + g - WL);
#define FETCH_W vec4 wl0 = texelFetch(W, wi + int(gl_SubgroupInvocationID % WL)), wl1 = texelFetch(W, wi + WL + int(gl_SubgroupInvocationID % WL));
#else
#define FETCH_WK(kk, g) vec4 wv##kk##_##g = subgroupShuffle(wl0, kk * CG + g);
#define FETCH_W vec4 wl0 = texelFetch(W, wi + int(gl_SubgroupInvocationID % T));
#endif
// All 8 weight texels of the k-step are handed out first, then each accumulator takes
// its 16 multiply-adds in a row (the tile does not fit the registers either way; LLVM
// keeps the weights as memory operands). fma() would not help: lavapipe lowers it to a
// multiply and an add.
#define FMA4(r, g)                                                                \
  acc##r##_##g += a##r.x * wv0_##g;                                               \
  acc##r##_##g += a##r.y * wv1_##g;                                               \
  acc##r##_##g += a##r.z * wv2_##g;                                               \
  acc##r##_##g += a##r.w * wv3_##g;
#define FMA4_ROW(r) FOR_G(FMA4, r)
#define K_STEP                                                                    \
  {                                                                               \
    FETCH_W                                                                       \
    FOR_G(FETCH_WK, 0) FOR_G(FETCH_WK, 1) FOR_G(FETCH_WK, 2) FOR_G(FETCH_WK, 3)   \
    FOR_R(FMA4_ROW)                                                               \
  }

#define DECL_ABLOCK(r) vec4 ab##r[AK4];
#define LOAD_ABLOCK(r) ab##r[k4] = texelFetch(A, int(row##r * AK4 + k4));
#define SET_ABLOCK(r) vec4 a##r = ab##r[k4];
#define WIN_ABLOCK(r) ab##r[3u * ky] = win##r##_0; ab##r[3u * ky + 1u] = win##r##_1; ab##r[3u * ky + 2u] = win##r##_2;

void main()
{
  uint row_base = gl_WorkGroupID.x * gl_WorkGroupSize.x * R + gl_LocalInvocationID.x;
  // Rows past the end compute on a clamped row and skip only their stores: every lane
  // must stay active for the weight shuffles.
  FOR_R(DECL_ROW)
  uint t0 = gl_WorkGroupID.y * p.tiles_per_group;
  uint t1 = min(t0 + p.tiles_per_group, p.ntiles);
  if (IM2COL != 1u && FIXED_K4 > 0u) {
    FOR_R(DECL_ABLOCK)
    if (IM2COL == 0u) {
      [[unroll]] for (uint k4 = 0u; k4 < AK4; k4++) {
        FOR_R(LOAD_ABLOCK)
      }
    } else {
      [[unroll]] for (uint ky = 0u; ky < AK4 / 3u; ky++) {
        FOR_R(LOAD_WIN)
        FOR_R(WIN_ABLOCK)
      }
    }
    for (uint t = t0; t < t1; t++) {
      FOR_R(ZERO_ROW)
      int wi = int(t * AK4 * T);
      [[unroll]] for (uint k4 = 0u; k4 < AK4; k4++) {
        FOR_R(SET_ABLOCK)
        K_STEP
        wi += int(T);
      }
      FOR_R(STORE_ROW)
    }
    return;
  }
  for (uint t = t0; t < t1; t++) {
    FOR_R(ZERO_ROW)
    int wi = int(t * p.k4 * T);
    if (IM2COL == 2u) {
      for (uint ky = 0u; ky < p.k4 / 3u; ky++) {
        FOR_R(LOAD_WIN)
#define WIN(r) win##r##_0
        { FOR_R(SET_A) K_STEP }
        wi += int(T);
#undef WIN
#define WIN(r) win##r##_1
        { FOR_R(SET_A) K_STEP }
        wi += int(T);
#undef WIN
#define WIN(r) win##r##_2
        { FOR_R(SET_A) K_STEP }
        wi += int(T);
#undef WIN
      }
    } else {
      for (uint k4 = 0u; k4 < p.k4; k4++, wi += int(T)) {
        FOR_R(LOAD_A)
        K_STEP
      }
    }
    FOR_R(STORE_ROW)
  }
}
