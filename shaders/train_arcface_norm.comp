#version 450
// Row norms of the class weights and the normalised rows w^_j = w_j / max(||w_j||, 1e-12),
// one invocation per class; the squared norm is summed in index order (deterministic).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer W { float w[]; };
layout(set = 0, binding = 1) writeonly buffer WN { float wn[]; };
layout(set = 0, binding = 2) writeonly buffer Norms { float norms[]; };
layout(push_constant) uniform Push { uint classes, dim; } p;

void main()
{
  uint j = flat_index();
  if (j >= p.classes)
    return;
  uint base = j * p.dim;
  float ss = 0.0;
  for (uint d = 0u; d < p.dim; d++)
    ss += w[base + d] * w[base + d];
  float norm = max(sqrt(ss), 1e-12);
  float inv = 1.0 / norm;
  for (uint d = 0u; d < p.dim; d++)
    wn[base + d] = w[base + d] * inv;
  norms[j] = norm;
}
