#version 450
// Global gradient L2 norm in two fixed-order stages (no float atomics):
// stage 0: invocation k sums the squares of its chunk of one tensor's gradient, in
//          index order, into part[offset + k] (one dispatch per tensor);
// stage 1: one invocation adds every partial in order and writes the clip scale
//          min(1, max_norm / (norm + 1e-6)) (PyTorch's clip_grad_norm_) and the norm.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) readonly buffer G { float g[]; };
layout(set = 0, binding = 1) buffer Part { float part[]; };
layout(set = 0, binding = 2) buffer Hyper { float hyper[]; };
layout(push_constant) uniform Push {
  uint n, chunk, offset, count, stage;
  float max_norm;
} p;

void main()
{
  uint idx = flat_index();
  if (p.stage == 0u) {
    uint chunks = (p.n + p.chunk - 1u) / p.chunk;
    if (idx >= chunks)
      return;
    uint i0 = idx * p.chunk;
    uint i1 = min(p.n, i0 + p.chunk);
    float acc = 0.0;
    for (uint i = i0; i < i1; i++)
      acc += g[i] * g[i];
    part[p.offset + idx] = acc;
  } else {
    if (idx != 0u)
      return;
    float acc = 0.0;
    for (uint k = 0u; k < p.count; k++)
      acc += part[k];
    float norm = sqrt(acc);
    hyper[0] = min(1.0, p.max_norm / (norm + 1e-6));
    hyper[1] = norm;
  }
}
