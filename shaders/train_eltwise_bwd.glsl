// Body of train_eltwise_bwd.comp and _64.comp (OUT_U64: shaderInt64 stores).
// The element-wise ops of the backward pass on [rows, 4 * c4] tensors, one texel (4
// channels) at a time: activation gradients, gradient sums, the activation recompute,
// and the column sums of the bias and PReLU-slope gradients. train_eltwise and
// train_reduce do the same one float per lane through storage buffers, whose loads and
// stores lavapipe runs one lane at a time (docs/PERFORMANCE.md); here every load is a
// texel fetch and every store one texel.
//
// Two launch shapes. Flat (SUMS == 0): lane i owns texel i. Column sums (SUMS == 1):
// lane (chunk, c4) walks its chunk of rows in order, writing the element-wise result
// (unless OP_COLSUM) and adding its column sums, which it leaves in part[chunk];
// train_reduce adds the chunks in order. The chunking is the direct kernels' own
// (fr_tops_chunking), so both paths add the same numbers in the same order.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint SUMS = 0u;
#include "train_common.glsl"

layout(set = 0, binding = 0) uniform samplerBuffer A;
layout(set = 0, binding = 1) uniform samplerBuffer B;
layout(set = 0, binding = 2) uniform samplerBuffer V; // per channel
#ifdef OUT_U64
layout(set = 0, binding = 3) writeonly buffer Out8 { u64vec2 o8[]; };
#else
layout(set = 0, binding = 3) writeonly buffer Out4 { vec4 o4[]; };
#endif
layout(set = 0, binding = 4) writeonly buffer Part { vec4 part[]; }; // [chunks][c4]
layout(push_constant) uniform Push {
  uint rows, c4, rows_per_chunk, chunks, op, a_base, b_base, v_base;
} p;

// Must match the EB_* codes in worker/train/ops_bwd.c.
#define EB_ADD 0u        // a + b
#define EB_RELU 1u       // max(a, 0)
#define EB_PRELU 2u      // a > 0 ? a : a v
#define EB_RELU_BWD 3u   // b > 0 ? a : 0 (a = dy, b = x)
#define EB_PRELU_BWD 4u  // b > 0 ? a : a v; sums a min(b, 0) (the slope gradient)
#define EB_COLSUM 5u     // sums a (the bias gradient); no element-wise output

void put(uint i, vec4 v)
{
#ifdef OUT_U64
  uvec4 b = floatBitsToUint(v);
  o8[i] = u64vec2(packUint2x32(b.xy), packUint2x32(b.zw));
#else
  o4[i] = v;
#endif
}

// Element-wise result of texel i (channel texel c), and the term its column sum adds.
vec4 apply(uint i, vec4 v, out vec4 term)
{
  vec4 a = texelFetch(A, int(p.a_base + i));
  term = a;
  if (p.op == EB_ADD)
    return a + texelFetch(B, int(p.b_base + i));
  if (p.op == EB_RELU)
    return max(a, vec4(0.0));
  if (p.op == EB_PRELU)
    return mix(a * v, a, greaterThan(a, vec4(0.0)));
  if (p.op == EB_COLSUM)
    return a;
  vec4 b = texelFetch(B, int(p.b_base + i));
  term = a * min(b, vec4(0.0));
  if (p.op == EB_RELU_BWD)
    return mix(vec4(0.0), a, greaterThan(b, vec4(0.0)));
  return mix(a * v, a, greaterThan(b, vec4(0.0)));
}

void main()
{
  uint idx = flat_index();
  if (SUMS == 0u) {
    if (idx >= p.rows * p.c4)
      return;
    vec4 term, v = p.op == EB_PRELU || p.op == EB_PRELU_BWD ? texelFetch(V, int(p.v_base + idx % p.c4)) : vec4(0.0);
    put(idx, apply(idx, v, term));
    return;
  }
  if (idx >= p.chunks * p.c4)
    return;
  uint c = idx % p.c4, chunk = idx / p.c4;
  uint r0 = chunk * p.rows_per_chunk, r1 = min(p.rows, r0 + p.rows_per_chunk);
  vec4 v = p.op == EB_PRELU_BWD ? texelFetch(V, int(p.v_base + c)) : vec4(0.0);
  vec4 acc = vec4(0.0);
  for (uint r = r0; r < r1; r++) {
    uint i = r * p.c4 + c;
    vec4 term, y = apply(i, v, term);
    if (p.op != EB_COLSUM)
      put(i, y);
    acc += term;
  }
  part[chunk * p.c4 + c] = acc;
}
