#version 450
// Channel concatenation: copies a [rows, part_c] tensor into columns [offset,
// offset + part_c) of a [rows, total_c] tensor (split = 0), or back out (split = 1,
// the gradient of the concatenation).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) buffer Part { float part[]; };
layout(set = 0, binding = 1) buffer Whole { float whole[]; };
layout(push_constant) uniform Push { uint rows, part_c, total_c, offset, split; } p;

void main()
{
  uint idx = flat_index();
  if (idx >= p.rows * p.part_c)
    return;
  uint c = idx % p.part_c;
  uint w = (idx / p.part_c) * p.total_c + p.offset + c;
  if (p.split != 0u)
    part[idx] = whole[w];
  else
    whole[w] = part[idx];
}
