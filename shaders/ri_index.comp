#version 450
// Eq. 1-3 per row from the cosines of ri_cos: d_P, d_N (the true class masked with
// -inf; the empty max of C = 1 clamps to -1, d_N = 2), d_UI and xi = d_UI d_N / (d_P + 1e-7).
// An unlabelled row (label outside [0, C)) gets NaN for d_P, d_N and xi.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
#include "ri_common.glsl"
layout(set = 0, binding = 0) readonly buffer V { float v[]; };
layout(set = 0, binding = 1) readonly buffer C { float cosines[]; };
layout(set = 0, binding = 2) readonly buffer L { int labels[]; };
layout(set = 0, binding = 3) readonly buffer U { float centre[]; };
layout(set = 0, binding = 4) writeonly buffer O { float outv[]; };
layout(push_constant) uniform Push { uint n, dim, classes; } p;

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
  float d_ui = 1.0 - clamp_unit(vc / (floored_norm(vv) * floored_norm(cc)));
  float nan = uintBitsToFloat(0x7fc00000u);
  float d_p = nan, d_n = nan;
  int y = labels[i];
  if (y >= 0 && uint(y) < p.classes) {
    uint cb = i * p.classes;
    d_p = 1.0 - cosines[cb + uint(y)];
    float best = uintBitsToFloat(0xff800000u); // -inf
    for (uint j = 0u; j < p.classes; j++) {
      if (j == uint(y))
        continue;
      float c = cosines[cb + j];
      if (isnan(c)) {
        best = nan;
        break;
      }
      best = max(best, c);
    }
    d_n = 1.0 - clamp_unit(best);
  }
  outv[4u * i + 0u] = d_p;
  outv[4u * i + 1u] = d_n;
  outv[4u * i + 2u] = d_ui;
  outv[4u * i + 3u] = d_ui * d_n / (d_p + 1e-7);
}
