#version 450
// Gathers the training parameters (model layout, the optimizer's) into the layout the
// inference kernels read (fr_ops_pack_conv_weights / fr_ops_pack_channels): that
// packing is a pure permutation with zero padding, so the host describes it once as
// an index map, and every step's repack is this one dispatch over all layers.
// index[i] = 0: padding (0.0); otherwise dst[i] = src[index[i] - 1].
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer Index { uint index[]; };
layout(set = 0, binding = 1) readonly buffer Src { float src[]; };
layout(set = 0, binding = 2) writeonly buffer Dst { float dst[]; };
layout(push_constant) uniform Push { uint n; } p;

void main()
{
  uint i = flat_index();
  if (i >= p.n)
    return;
  uint k = index[i];
  dst[i] = k == 0u ? 0.0 : src[k - 1u];
}
