#version 450
// Cosines c[i, j] = clamp(<v_i, w_j> / (|v_i| |w_j|)) for the RI's prototype terms,
// one invocation per (row, class); the sums run in index order (deterministic).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
#include "ri_common.glsl"
layout(set = 0, binding = 0) readonly buffer V { float v[]; };
layout(set = 0, binding = 1) readonly buffer W { float w[]; };
layout(set = 0, binding = 2) writeonly buffer C { float cosines[]; };
layout(push_constant) uniform Push { uint n, dim, classes; } p;

void main()
{
  uint idx = flat_index();
  if (idx >= p.n * p.classes)
    return;
  uint i = idx / p.classes, j = idx % p.classes;
  uint vb = i * p.dim, wb = j * p.dim;
  float vv = 0.0, ww = 0.0, vw = 0.0;
  for (uint d = 0u; d < p.dim; d++) {
    float a = v[vb + d], b = w[wb + d];
    vv += a * a;
    ww += b * b;
    vw += a * b;
  }
  cosines[idx] = clamp_unit(vw / (floored_norm(vv) * floored_norm(ww)));
}
