#version 450
// Broadcasts over the middle axis of an [outer, len, inner] tensor: the gradients of
// average and max pooling (max: to the first maximum only, as the references do) and
// the broadcast multiply x * s[outer, inner] (CBAM's attention, forward and the x
// gradient). One invocation per (outer, inner), each writing its own elements.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer A { float a[]; };     // [outer, len, inner]: x
layout(set = 0, binding = 1) readonly buffer S { float s[]; };     // [outer, inner]: dy or s
layout(set = 0, binding = 2) writeonly buffer Out { float o[]; };  // [outer, len, inner]
layout(push_constant) uniform Push { uint outer, len, inner, mode; } p;

#define BC_AVG_BWD 0u
#define BC_MAX_BWD 1u
#define BC_MUL 2u

void main()
{
  uint idx = flat_index();
  if (idx >= p.outer * p.inner)
    return;
  uint i = idx % p.inner;
  uint base = (idx / p.inner) * p.len * p.inner + i;
  float g = s[idx];
  if (p.mode == BC_AVG_BWD) {
    float v = g / float(p.len);
    for (uint r = 0u; r < p.len; r++)
      o[base + r * p.inner] = v;
  } else if (p.mode == BC_MAX_BWD) {
    uint arg = 0u;
    float best = a[base];
    for (uint r = 1u; r < p.len; r++) {
      float v = a[base + r * p.inner];
      if (v > best) {
        best = v;
        arg = r;
      }
    }
    for (uint r = 0u; r < p.len; r++)
      o[base + r * p.inner] = r == arg ? g : 0.0;
  } else {
    for (uint r = 0u; r < p.len; r++)
      o[base + r * p.inner] = a[base + r * p.inner] * g;
  }
}
