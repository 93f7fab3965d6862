#version 450
// d_UI = 1 - cos(v_i, centre) per row (Eq. 2), or with project = 1 the projection away
// from the UI centre v'_i = v_i - <v_i, c^> c^ (Eq. 8), one invocation per row.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
#include "ri_common.glsl"
layout(set = 0, binding = 0) readonly buffer V { float v[]; };
layout(set = 0, binding = 1) readonly buffer U { float centre[]; };
layout(set = 0, binding = 2) writeonly buffer O { float outv[]; };
layout(push_constant) uniform Push { uint n, dim, project; } p;

void main()
{
  uint i = flat_index();
  if (i >= p.n)
    return;
  uint vb = i * p.dim;
  float vv = 0.0, cc = 0.0, vc = 0.0;
  for (uint d = 0u; d < p.dim; d++) {
    float a = v[vb + d], b = centre[d];
    vv += a * a;
    cc += b * b;
    vc += a * b;
  }
  if (p.project == 0u) {
    outv[i] = 1.0 - clamp_unit(vc / (floored_norm(vv) * floored_norm(cc)));
    return;
  }
  // A zero centre leaves v unchanged, as in the reference.
  float k = sqrt(cc) > 1e-12 ? vc / cc : 0.0;
  for (uint d = 0u; d < p.dim; d++)
    outv[vb + d] = v[vb + d] - k * centre[d];
}
