#version 450
// Reduces the middle axis of an [outer, len, inner] tensor: global pooling over space
// (outer = batch, len = h*w, inner = channels) or over channels (outer = batch*h*w,
// len = channels, inner = 1), and the sum of products that is the gradient of a
// broadcast multiply. One invocation per output, summing in order (deterministic).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer A { float a[]; };
layout(set = 0, binding = 1) readonly buffer B { float b[]; };
layout(set = 0, binding = 2) writeonly buffer Out { float o[]; }; // [outer, inner]
layout(push_constant) uniform Push { uint outer, len, inner, mode; } p;

#define POOL_AVG 0u
#define POOL_MAX 1u
#define POOL_DOT 2u

void main()
{
  uint idx = flat_index();
  if (idx >= p.outer * p.inner)
    return;
  uint i = idx % p.inner;
  uint base = (idx / p.inner) * p.len * p.inner + i;
  float acc = p.mode == POOL_MAX ? a[base] : 0.0;
  for (uint r = 0u; r < p.len; r++) {
    float v = a[base + r * p.inner];
    if (p.mode == POOL_MAX)
      acc = max(acc, v);
    else if (p.mode == POOL_DOT)
      acc += v * b[base + r * p.inner];
    else
      acc += v;
  }
  o[idx] = p.mode == POOL_AVG ? acc / float(p.len) : acc;
}
