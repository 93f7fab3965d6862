#version 450
// c[b, j] = x_b . w_j over dim, summed in index order: the cosines when w holds the
// normalised class rows, a linear head's x W^T otherwise. Adjacent invocations take
// adjacent classes of one row, so they share x_b.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) readonly buffer W { float w[]; };
layout(set = 0, binding = 2) writeonly buffer C { float c[]; };
layout(push_constant) uniform Push { uint batch, dim, classes; } p;

void main()
{
  uint idx = flat_index();
  if (idx >= p.batch * p.classes)
    return;
  uint b = idx / p.classes;
  uint j = idx % p.classes;
  float acc = 0.0;
  for (uint d = 0u; d < p.dim; d++)
    acc += x[b * p.dim + d] * w[j * p.dim + d];
  c[idx] = acc;
}
