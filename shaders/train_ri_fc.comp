#version 450
// Fully connected layers of the RI heads (faceri/ri_heads.h): y[r, o] = b[o] + sum_k
// in(r, k) w[o, k] over a [rows, K] input, and its three gradients. One invocation per
// output, every sum a fixed-order loop: bit-identical reruns, no atomics. M_COPY moves
// rows between the batch buffer and the attention FC's GEMM operands (ri_heads_fc.c).
//   in(r, k) = x[x_off + r K + k], then max(0, .) with F_INPUT_RELU, then the dropout
//   mask of element (row0 + r) K + k (the batch row, so masks do not depend on chunking).
// Element offsets come as push constants so a chunk's rows need no aligned binding.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
#include "train_ri_common.glsl"
layout(set = 0, binding = 0) buffer X { float x[]; };   // input; dx for BWD_DATA
layout(set = 0, binding = 1) buffer W { float w[]; };   // weights [O, K]; dw for BWD_W
layout(set = 0, binding = 2) buffer Bv { float bias[]; }; // bias [O]; db for BWD_B
layout(set = 0, binding = 3) buffer Y { float y[]; };   // output; dy for the gradients
layout(set = 0, binding = 4) readonly buffer A { float saved[]; }; // BWD_DATA F_MASK_RELU: the pre-activation
layout(set = 0, binding = 5) readonly buffer Ctl { uint ctl[]; };  // ctl[0]: the step (dropout)
layout(push_constant) uniform Push {
  uint mode, rows, K, O, x_off, y_off, a_off, row0, flags, seed, threshold;
  float scale;
} p;

#define M_FWD 0u
#define M_BWD_DATA 1u
#define M_BWD_W 2u
#define M_BWD_B 3u
#define M_COPY 4u
#define F_ACCUM 1u
#define F_DROPOUT 2u
#define F_INPUT_RELU 4u
#define F_MASK_RELU 8u

float mask(uint r, uint k)
{
  if ((p.flags & F_DROPOUT) == 0u)
    return 1.0;
  return ri_dropout_keep(p.seed, ctl[0], (p.row0 + r) * p.K + k, p.threshold) ? p.scale : 0.0;
}

float in_x(uint r, uint k)
{
  float v = x[p.x_off + r * p.K + k];
  if ((p.flags & F_INPUT_RELU) != 0u)
    v = max(v, 0.0);
  return v * mask(r, k);
}

void main()
{
  uint i = flat_index();
  bool acc = (p.flags & F_ACCUM) != 0u;
  if (p.mode == M_FWD) {
    if (i >= p.rows * p.O)
      return;
    uint r = i / p.O, o = i % p.O;
    float s = 0.0;
    for (uint k = 0u; k < p.K; k++)
      s += in_x(r, k) * w[o * p.K + k];
    s += bias[o];
    uint at = p.y_off + r * p.O + o;
    y[at] = acc ? y[at] + s : s;
  } else if (p.mode == M_BWD_DATA) {
    if (i >= p.rows * p.K)
      return;
    uint r = i / p.K, k = i % p.K;
    float s = 0.0;
    for (uint o = 0u; o < p.O; o++)
      s += y[p.y_off + r * p.O + o] * w[o * p.K + k];
    s *= mask(r, k);
    if ((p.flags & F_MASK_RELU) != 0u && !(saved[p.a_off + r * p.K + k] > 0.0))
      s = 0.0;
    uint at = p.x_off + r * p.K + k;
    x[at] = acc ? x[at] + s : s;
  } else if (p.mode == M_BWD_W) {
    if (i >= p.O * p.K)
      return;
    uint o = i / p.K, k = i % p.K;
    float s = 0.0;
    for (uint r = 0u; r < p.rows; r++)
      s += y[p.y_off + r * p.O + o] * in_x(r, k);
    w[i] = acc ? w[i] + s : s;
  } else if (p.mode == M_COPY) { // rows x O floats between a chunk's batch rows and a binding at offset 0
    if (i >= p.rows * p.O)
      return;
    y[p.y_off + i] = x[p.x_off + i];
  } else if (p.mode == M_BWD_B) {
    if (i >= p.O)
      return;
    float s = 0.0;
    for (uint r = 0u; r < p.rows; r++)
      s += y[p.y_off + r * p.O + i];
    bias[i] = acc ? bias[i] + s : s;
  }
}
