#version 450
// Gradient of y = x / max(||x||, 1e-5) per row: dx = (dy - y (y . dy)) / ||x||, or
// dy / 1e-5 where the clamp held. One workgroup per row; the dot product is a
// shared-memory tree in a fixed order (deterministic).
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer Y { float y[]; };
layout(set = 0, binding = 1) readonly buffer Norms { float norms[]; };
layout(set = 0, binding = 2) readonly buffer DY { float dy[]; };
layout(set = 0, binding = 3) writeonly buffer DX { float dx[]; };
layout(push_constant) uniform Push { uint rows, dim; } p;
shared float partial[gl_WorkGroupSize.x];

void main()
{
  uint row = gl_WorkGroupID.x;
  uint lid = gl_LocalInvocationID.x;
  uint base = row * p.dim;
  float s = 0.0;
  for (uint i = lid; i < p.dim; i += gl_WorkGroupSize.x)
    s += y[base + i] * dy[base + i];
  partial[lid] = s;
  barrier();
  for (uint stride = gl_WorkGroupSize.x / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride)
      partial[lid] += partial[lid + stride];
    barrier();
  }
  float dot = partial[0];
  float norm = norms[row];
  // The forward clamps the squared norm at 1e-10; below it y is x scaled by a constant.
  bool clamped = norm * norm <= 1e-10;
  float inv = 1.0 / (clamped ? 1e-5 : norm);
  for (uint i = lid; i < p.dim; i += gl_WorkGroupSize.x)
    dx[base + i] = clamped ? dy[base + i] * inv : (dy[base + i] - y[base + i] * dot) * inv;
}
