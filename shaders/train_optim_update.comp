#version 450
// One optimizer step on one parameter tensor, element-wise, in PyTorch's order of
// operations (torch.optim.SGD and AdamW, foreach=False). Step-dependent scalars (the
// scheduled learning rate, bias corrections, the clip scale) come from the hyper
// buffer the host fills before each run, so a recorded step can be replayed.
// hyper: [0] clip scale, [1] grad norm, then 8 floats per group at 4 + 8 * group:
//   lr, weight decay, first step (1/0), 1 - lr * wd, lr / (1 - beta1^t), sqrt(1 - beta2^t)
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
#include "train_common.glsl"
layout(set = 0, binding = 0) buffer P { float param[]; };
layout(set = 0, binding = 1) readonly buffer G { float grad[]; };
layout(set = 0, binding = 2) buffer S1 { float s1[]; }; // momentum buffer / exp_avg
layout(set = 0, binding = 3) buffer S2 { float s2[]; }; // exp_avg_sq
layout(set = 0, binding = 4) readonly buffer Hyper { float hyper[]; };
layout(push_constant) uniform Push {
  uint n, group, adamw, nesterov, clip, has_momentum;
  float momentum, one_minus_dampening, beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
} p;

void main()
{
  uint i = flat_index();
  if (i >= p.n)
    return;
  uint h = 4u + 8u * p.group;
  float lr = hyper[h], wd = hyper[h + 1u];
  float g = grad[i];
  if (p.clip != 0u)
    g *= hyper[0];
  float x = param[i];
  if (p.adamw == 0u) {
    if (wd != 0.0)
      g = g + wd * x;
    if (p.has_momentum != 0u) {
      float buf = hyper[h + 2u] != 0.0 ? g : s1[i] * p.momentum + p.one_minus_dampening * g;
      s1[i] = buf;
      g = p.nesterov != 0u ? g + p.momentum * buf : buf;
    }
    param[i] = x + (-lr) * g;
  } else {
    x = x * hyper[h + 3u];
    float m = s1[i] + p.one_minus_beta1 * (g - s1[i]);
    float v = s2[i] * p.beta2 + p.one_minus_beta2 * g * g;
    s1[i] = m;
    s2[i] = v;
    float denom = sqrt(v) / hyper[h + 5u] + p.eps;
    param[i] = x + (-hyper[h + 4u]) * (m / denom);
  }
}
