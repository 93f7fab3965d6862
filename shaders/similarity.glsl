// Body of similarity_topk.comp and similarity_pairs.comp (PAIRS): scores
// s[i][j] = <A_i, B_j> of row-normalised embeddings, consumed where they are made
// (a per-row top-k list, or the pairs above a threshold), so the score matrix never
// exists in memory. Host side and layouts: worker/nn/similarity.c.
//
// The arithmetic is fr_similarity_cpu's, operation for operation, so the device and
// CPU paths give bit-identical scores and therefore the same candidates and the same
// tie order: products summed in 8 interleaved lanes (two vec4 accumulators per pair:
// texel 2q holds lanes 0-3 of 8-float step q, texel 2q+1 lanes 4-7), the dim % 8
// tail summed in order from 0, then the 8 lanes added in order. `precise` keeps
// every multiply and add separately rounded (no contraction into FMA on GPUs).
//
// Fed as conv_gemm.glsl is (docs/PERFORMANCE.md): each lane owns R probe rows read
// through a texel buffer; every lane scans the same C templates at a time, whose 2C
// texels of a k-step are fetched once per subgroup (lane j loads texel j) and handed
// out with subgroupShuffle. Needs gl_SubgroupSize >= 8.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require

// Must match SIM_R / SIM_C in worker/nn/similarity.c. Unrolled by hand: lavapipe
// keeps loop-indexed local arrays in memory and reads them one lane at a time.
#define R 4
#define C 4
#define FOR_R(X) X(0) X(1) X(2) X(3)
#define FOR_C(X, r) X(r, 0) X(r, 1) X(r, 2) X(r, 3)
#define FOR_RC(X) FOR_C(X, 0) FOR_C(X, 1) FOR_C(X, 2) FOR_C(X, 3)

layout(local_size_x_id = 0) in;
// dim / 8 when fixed at pipeline creation (CPU devices, dim % 8 == 0): the lane then
// keeps its rows' A in private arrays indexed by constants in a fully unrolled loop,
// fetched once per dispatch instead of once per column group. 0: read p.dim.
layout(constant_id = 1) const uint FIXED_D8 = 0;
const uint AD = FIXED_D8 > 0u ? 2u * FIXED_D8 : 1u;

layout(set = 0, binding = 0) uniform samplerBuffer A; // [m, ld4 texels], zero-padded rows
layout(set = 0, binding = 1) uniform samplerBuffer B; // [n, ld4 texels], one chunk of the templates
#ifdef PAIRS
// count may pass cap: the host then knows how many pairs there were.
layout(set = 0, binding = 2) buffer Hits { uint count; uint pad0, pad1, pad2; uvec4 hit[]; };
#else
// Sorted (score desc, index asc) lists of k, one per (row, split): [m, splits, k].
layout(set = 0, binding = 2) buffer TopS { float top_s[]; };
layout(set = 0, binding = 3) buffer TopI { int top_i[]; };
#endif

layout(push_constant) uniform Push {
  uint m, n, ld4, dim;
  uint cbase, cols_per_split, splits, k;
  uint first;  // top-k: the lists start empty (this lane writes them)
  int col0;    // global index of B's row 0
  int row0;    // pairs: global index of A's row 0
  uint upper;  // pairs: only global column > global row
  float thr;   // pairs: score > thr
  uint cap;    // pairs: capacity of hit[]
} p;

// The dim % 8 tail of one pair, summed in order from 0 as the CPU does.
float tail_dot(uint ra, uint rb)
{
  precise float s = 0.0;
  for (uint q = p.dim & ~7u; q < p.dim; q++)
    s += texelFetch(A, int(ra * p.ld4 + (q >> 2)))[q & 3u] * texelFetch(B, int(rb * p.ld4 + (q >> 2)))[q & 3u];
  return s;
}

float finish(float t, vec4 lo, vec4 hi)
{
  precise float s = t;
  s += lo.x;
  s += lo.y;
  s += lo.z;
  s += lo.w;
  s += hi.x;
  s += hi.y;
  s += hi.z;
  s += hi.w;
  return s;
}

#ifndef PAIRS
// Same order as fr_topk_merge's better(): higher score, then lower index; an empty
// slot (index -1) loses to any score that is not NaN.
bool better(float s, int i, float s2, int i2) { return s > s2 || (s == s2 && (i2 < 0 || i < i2)); }

void insert(uint base, float s, int idx)
{
  uint r = p.k - 1u;
  while (r > 0u) {
    float ps = top_s[base + r - 1u];
    int pi = top_i[base + r - 1u];
    if (!better(s, idx, ps, pi))
      break;
    top_s[base + r] = ps;
    top_i[base + r] = pi;
    r--;
  }
  top_s[base + r] = s;
  top_i[base + r] = idx;
}
#endif

// Rows past the end compute on a clamped row and select nothing: every lane must stay
// active for the shuffles.
#define DECL_ROW(r)                                                             \
  uint rowu##r = row_base + uint(r) * gl_WorkGroupSize.x;                         \
  bool ok##r = rowu##r < p.m;                                                     \
  uint row##r = min(rowu##r, p.m - 1u);
#ifdef PAIRS
#define INIT_TOP(r)
#else
#define INIT_TOP(r)                                                             \
  uint base##r = (row##r * p.splits + split) * p.k;                               \
  if (p.first != 0u && ok##r)                                                     \
    for (uint i = 0u; i < p.k; i++) {                                             \
      top_s[base##r + i] = uintBitsToFloat(0xff800000u);                          \
      top_i[base##r + i] = -1;                                                    \
    }                                                                             \
  float ts##r = ok##r ? top_s[base##r + p.k - 1u] : 0.0;                          \
  int ti##r = ok##r ? top_i[base##r + p.k - 1u] : 0;
#endif
#define ZERO(r, c) precise vec4 lo##r##_##c = vec4(0.0), hi##r##_##c = vec4(0.0);
#define SHUF(c) vec4 b##c##_0 = subgroupShuffle(wl, 2u * c), b##c##_1 = subgroupShuffle(wl, 2u * c + 1u);
#define MAC(r, c)                                                                \
  lo##r##_##c += a##r##_0 * b##c##_0;                                              \
  hi##r##_##c += a##r##_1 * b##c##_1;
#define LOAD_A(r)                                                                \
  vec4 a##r##_0 = texelFetch(A, int(row##r * p.ld4 + 2u * q)),                     \
       a##r##_1 = texelFetch(A, int(row##r * p.ld4 + 2u * q + 1u));
#define DECL_ABLOCK(r) vec4 ab##r[AD];
#define LOAD_ABLOCK(r) ab##r[q] = texelFetch(A, int(row##r * p.ld4 + q));
#define SET_ABLOCK(r) vec4 a##r##_0 = ab##r[2u * q], a##r##_1 = ab##r[2u * q + 1u];
#ifdef PAIRS
#define CONSIDER(r, s, cc)                                                       \
  if (s > p.thr && (p.upper == 0u || p.col0 + int(cc) > p.row0 + int(rowu##r))) { \
    uint h = atomicAdd(count, 1u);                                                \
    if (h < p.cap)                                                                \
      hit[h] = uvec4(rowu##r, uint(p.col0 + int(cc)), floatBitsToUint(s), 0u);     \
  }
#else
#define CONSIDER(r, s, cc)                                                       \
  if (better(s, p.col0 + int(cc), ts##r, ti##r)) {                                \
    insert(base##r, s, p.col0 + int(cc));                                         \
    ts##r = top_s[base##r + p.k - 1u];                                            \
    ti##r = top_i[base##r + p.k - 1u];                                            \
  }
#endif
#define SELECT(r, c)                                                             \
  {                                                                               \
    uint cc = col + uint(c);                                                      \
    if (ok##r && cc < c_end) {                                                    \
      float t = tails ? tail_dot(row##r, cc) : 0.0;                               \
      float s = finish(t, lo##r##_##c, hi##r##_##c);                              \
      CONSIDER(r, s, cc)                                                          \
    }                                                                             \
  }

void main()
{
  uint row_base = gl_WorkGroupID.x * gl_WorkGroupSize.x * R + gl_LocalInvocationID.x;
  uint split = gl_WorkGroupID.y;
  FOR_R(DECL_ROW)
  FOR_R(INIT_TOP)
  uint c_begin = p.cbase + split * p.cols_per_split;
  uint c_end = min(c_begin + p.cols_per_split, p.n);
  // Lane j of each group of 8 fetches half (j & 1) of template (j >> 1) of the group.
  uint lane8 = gl_SubgroupInvocationID & 7u;
  uint d8 = p.dim >> 3;
  bool tails = (p.dim & 7u) != 0u;
  FOR_R(DECL_ABLOCK)
  if (FIXED_D8 > 0u) {
    [[unroll]] for (uint q = 0u; q < AD; q++) {
      FOR_R(LOAD_ABLOCK)
    }
  }
  for (uint col = c_begin; col < c_end; col += C) {
    int bi = int(min(col + (lane8 >> 1), p.n - 1u) * p.ld4 + (lane8 & 1u));
    FOR_RC(ZERO)
    if (FIXED_D8 > 0u) {
      [[unroll]] for (uint q = 0u; q < FIXED_D8; q++) {
        vec4 wl = texelFetch(B, bi + int(2u * q));
        SHUF(0) SHUF(1) SHUF(2) SHUF(3)
        FOR_R(SET_ABLOCK)
        FOR_RC(MAC)
      }
    } else {
      for (uint q = 0u; q < d8; q++) {
        vec4 wl = texelFetch(B, bi + int(2u * q));
        SHUF(0) SHUF(1) SHUF(2) SHUF(3)
        FOR_R(LOAD_A)
        FOR_RC(MAC)
      }
    }
    FOR_RC(SELECT)
  }
}
