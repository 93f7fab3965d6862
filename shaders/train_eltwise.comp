#version 450
// Element-wise training ops on an [n / channels, channels] tensor (channel = index %
// channels for the per-channel vectors): activations and their gradients, residual and
// gradient sums, batch-norm apply and its input gradient, seeded dropout.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer A { float a[]; };
layout(set = 0, binding = 1) readonly buffer B { float b[]; };
layout(set = 0, binding = 2) writeonly buffer Out { float o[]; };
layout(set = 0, binding = 3) readonly buffer V0 { float v0[]; };
layout(set = 0, binding = 4) readonly buffer V1 { float v1[]; };
layout(set = 0, binding = 5) readonly buffer V2 { float v2[]; };
layout(set = 0, binding = 6) readonly buffer V3 { float v3[]; };
layout(set = 0, binding = 7) readonly buffer V4 { float v4[]; };
layout(push_constant) uniform Push {
  uint n, channels, op, seed, step, threshold;
  float f0;
} p;

// Must match fr_train_op in include/faceri/train_ops.h.
#define OP_ADD 0u
#define OP_MUL 1u
#define OP_RELU 2u
#define OP_RELU_BWD 3u
#define OP_PRELU 4u
#define OP_PRELU_BWD 5u
#define OP_SIGMOID 6u
#define OP_SIGMOID_BWD 7u
#define OP_BIAS 8u
#define OP_BN 9u
#define OP_BN_BWD 10u
#define OP_DROPOUT 11u

// Counter-based: the mask of element i depends only on (seed, step, i), so the
// backward pass regenerates it and any device or launch shape gives the same mask.
// Must match fr_train_dropout_keep.
uint pcg_hash(uint v)
{
  uint state = v * 747796405u + 2891336453u;
  uint word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

void main()
{
  uint i = flat_index();
  if (i >= p.n)
    return;
  uint c = i % p.channels;
  float x = a[i];
  float r;
  switch (p.op) {
  case OP_ADD: r = x + b[i]; break;
  case OP_MUL: r = x * b[i]; break;
  case OP_RELU: r = max(x, 0.0); break;
  case OP_RELU_BWD: r = b[i] > 0.0 ? x : 0.0; break;
  case OP_PRELU: r = x > 0.0 ? x : x * v0[c]; break;
  case OP_PRELU_BWD: r = b[i] > 0.0 ? x : x * v0[c]; break;
  case OP_SIGMOID: r = 1.0 / (1.0 + exp(-x)); break;
  case OP_SIGMOID_BWD: r = x * b[i] * (1.0 - b[i]); break;
  case OP_BIAS: r = x + v0[c]; break;
  // v0 mean, v1 1/std, v2 gamma, v3 beta
  case OP_BN: r = v2[c] * ((x - v0[c]) * v1[c]) + v3[c]; break;
  // a = dy, b = x; v3 = dbeta = sum dy, v4 = dgamma = sum dy * xhat; f0 = rows
  case OP_BN_BWD: {
    float xhat = (b[i] - v0[c]) * v1[c];
    r = v2[c] * v1[c] * (x - (v3[c] + xhat * v4[c]) / p.f0);
    break;
  }
  case OP_DROPOUT: {
    uint h = pcg_hash(i ^ pcg_hash(p.seed ^ pcg_hash(p.step)));
    r = h >= p.threshold ? x * p.f0 : 0.0;
    break;
  }
  default: r = 0.0; break;
  }
  o[i] = r;
}
