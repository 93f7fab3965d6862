#version 450
// The forward of train_ri_fc.comp's FC layers (same bindings, push constants and input
// rule), one workgroup per output: the lanes stride over K (neighbouring lanes read
// neighbouring inputs and weights, where one invocation per output reads weights K
// apart), then add their partial sums in a fixed shared-memory tree. The workgroup size
// is a power of two and the order is fixed: bit-identical reruns.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_ri_common.glsl"
layout(set = 0, binding = 0) buffer X { float x[]; };
layout(set = 0, binding = 1) buffer W { float w[]; };
layout(set = 0, binding = 2) buffer Bv { float bias[]; };
layout(set = 0, binding = 3) buffer Y { float y[]; };
layout(set = 0, binding = 4) readonly buffer A { float saved[]; };
layout(set = 0, binding = 5) readonly buffer Ctl { uint ctl[]; };
layout(push_constant) uniform Push {
  uint mode, rows, K, O, x_off, y_off, a_off, row0, flags, seed, threshold;
  float scale;
} p;

#define F_ACCUM 1u
#define F_DROPOUT 2u
#define F_INPUT_RELU 4u

shared float partial[gl_WorkGroupSize.x];

void main()
{
  uint out_i = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  uint lane = gl_LocalInvocationID.x;
  bool live = out_i < p.rows * p.O;
  uint r = live ? out_i / p.O : 0u, o = live ? out_i % p.O : 0u;
  float s = 0.0;
  if (live) {
    uint hs = ri_pcg_hash(p.seed ^ ri_pcg_hash(ctl[0]));
    bool drop = (p.flags & F_DROPOUT) != 0u, relu = (p.flags & F_INPUT_RELU) != 0u;
    for (uint k = lane; k < p.K; k += gl_WorkGroupSize.x) {
      float v = x[p.x_off + r * p.K + k];
      if (relu)
        v = max(v, 0.0);
      if (drop)
        v = ri_pcg_hash(((p.row0 + r) * p.K + k) ^ hs) >= p.threshold ? v * p.scale : 0.0;
      s += v * w[o * p.K + k];
    }
  }
  partial[lane] = s;
  barrier();
  for (uint stride = gl_WorkGroupSize.x / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride)
      partial[lane] += partial[lane + stride];
    barrier();
  }
  if (live && lane == 0u) {
    float t = partial[0] + bias[o];
    uint at = p.y_off + r * p.O + o;
    y[at] = (p.flags & F_ACCUM) != 0u ? y[at] + t : t;
  }
}
