#version 450
// Softmax cross-entropy with ArcFace's target margin (train_loss.h states the formulas).
// Stage 0: one workgroup per row: max and sum of exp(z - max) as shared-memory trees of
// fixed shape (each lane first sums its strided classes in order), the row loss, and
// with backward set dL/dc = (softmax - onehot) * s / batch (times the margin's
// derivative at the target). Stage 1: one invocation adds the row losses in order.
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer Cos { float c[]; };
layout(set = 0, binding = 1) readonly buffer Labels { int labels[]; };
layout(set = 0, binding = 2) writeonly buffer G { float g[]; };
layout(set = 0, binding = 3) buffer RowLoss { float row_loss[]; };
layout(set = 0, binding = 4) writeonly buffer Loss { float loss[]; };
layout(push_constant) uniform Push {
  uint batch, classes, arcface, easy_margin, backward, stage;
  float s, cos_m, sin_m, th, mm;
} p;
shared float red[gl_WorkGroupSize.x];

// Margin on the target cosine; *dt is its derivative.
float margin(float cy, out float dt)
{
  float cc = clamp(cy, -1.0, 1.0);
  float sn = sqrt(max(1.0 - cc * cc, 0.0));
  bool use = p.easy_margin != 0u ? cy > 0.0 : cy > p.th;
  if (use) {
    dt = p.cos_m + p.sin_m * cy / max(sn, 1e-6);
    return cy * p.cos_m - sn * p.sin_m;
  }
  dt = 1.0;
  return p.easy_margin != 0u ? cy : cy - p.mm;
}

void main()
{
  uint lid = gl_LocalInvocationID.x;
  if (p.stage == 1u) {
    if (lid == 0u && gl_WorkGroupID.x == 0u) {
      float acc = 0.0;
      for (uint b = 0u; b < p.batch; b++)
        acc += row_loss[b];
      loss[0] = acc / float(p.batch);
    }
    return;
  }
  uint row = gl_WorkGroupID.x;
  uint base = row * p.classes;
  int y = labels[row];
  bool valid = y >= 0 && uint(y) < p.classes;
  if (!valid) {
    // An ignored row: no loss, no gradient (arcface_torch's label -1).
    if (p.backward != 0u)
      for (uint j = lid; j < p.classes; j += gl_WorkGroupSize.x)
        g[base + j] = 0.0;
    if (lid == 0u)
      row_loss[row] = 0.0;
    return;
  }
  uint uy = uint(y);
  float dt = 1.0;
  float zy = p.s * (p.arcface != 0u ? margin(c[base + uy], dt) : c[base + uy]);

  float mx = -3.402823e38;
  for (uint j = lid; j < p.classes; j += gl_WorkGroupSize.x)
    mx = max(mx, j == uy ? zy : p.s * c[base + j]);
  red[lid] = mx;
  barrier();
  for (uint stride = gl_WorkGroupSize.x / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride)
      red[lid] = max(red[lid], red[lid + stride]);
    barrier();
  }
  mx = red[0];
  barrier();

  float se = 0.0;
  for (uint j = lid; j < p.classes; j += gl_WorkGroupSize.x)
    se += exp((j == uy ? zy : p.s * c[base + j]) - mx);
  red[lid] = se;
  barrier();
  for (uint stride = gl_WorkGroupSize.x / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride)
      red[lid] += red[lid + stride];
    barrier();
  }
  se = red[0];
  // log(se) - (z_y - max): no cancellation between two large logits.
  if (lid == 0u)
    row_loss[row] = log(se) - (zy - mx);
  if (p.backward == 0u)
    return;
  float k = p.s / float(p.batch);
  float inv_se = 1.0 / se;
  for (uint j = lid; j < p.classes; j += gl_WorkGroupSize.x) {
    float z = j == uy ? zy : p.s * c[base + j];
    float prob = exp(z - mx) * inv_se;
    g[base + j] = j == uy ? (prob - 1.0) * k * dt : prob * k;
  }
}
