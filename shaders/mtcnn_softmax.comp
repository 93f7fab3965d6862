#version 450
// Softmax over the last axis of [rows, c], max-subtracted as the MTCNN graphs spell
// it (reduce_max, sub, exp, sum, div). One invocation per row: c is 2 here.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer In { float x[]; };
layout(set = 0, binding = 1) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Push { uint rows, c; } p;

void main()
{
  uint r = flat_index();
  if (r >= p.rows)
    return;
  uint base = r * p.c;
  float m = x[base];
  for (uint i = 1u; i < p.c; i++)
    m = max(m, x[base + i]);
  float s = 0.0;
  for (uint i = 0u; i < p.c; i++)
    s += exp(x[base + i] - m);
  for (uint i = 0u; i < p.c; i++)
    y[base + i] = exp(x[base + i] - m) / s;
}
