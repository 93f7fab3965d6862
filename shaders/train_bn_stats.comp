#version 450
// Batch norm in training mode, per channel: 1/std from the batch variance, and the
// running statistics moved toward the batch's (unbiased variance, as PyTorch keeps).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
// After the layout: gl_WorkGroupSize is only the specialised size from here on.
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer Mean { float mean[]; };
layout(set = 0, binding = 1) readonly buffer Var { float var[]; };  // biased (divided by rows)
layout(set = 0, binding = 2) writeonly buffer InvStd { float invstd[]; };
layout(set = 0, binding = 3) buffer RunMean { float run_mean[]; };
layout(set = 0, binding = 4) buffer RunVar { float run_var[]; };
layout(push_constant) uniform Push {
  uint channels, rows;
  float eps, momentum;
} p;

void main()
{
  uint c = flat_index();
  if (c >= p.channels)
    return;
  float v = var[c];
  invstd[c] = 1.0 / sqrt(v + p.eps);
  float unbiased = p.rows > 1u ? v * float(p.rows) / float(p.rows - 1u) : v;
  run_mean[c] = (1.0 - p.momentum) * run_mean[c] + p.momentum * mean[c];
  run_var[c] = (1.0 - p.momentum) * run_var[c] + p.momentum * unbiased;
}
