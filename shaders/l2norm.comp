#version 450
// Row-wise L2 normalisation that also returns the norm: one workgroup per row,
// a shared-memory tree reduction (no float atomics: results are deterministic).
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer In { float x[]; };
layout(set = 0, binding = 1) writeonly buffer Out { float y[]; };
layout(set = 0, binding = 2) writeonly buffer Norms { float norms[]; };
layout(push_constant) uniform Push { uint rows, dim; } p;
shared float partial[gl_WorkGroupSize.x];

void main()
{
  uint row = gl_WorkGroupID.x;
  uint lid = gl_LocalInvocationID.x;
  float s = 0.0;
  for (uint i = lid; i < p.dim; i += gl_WorkGroupSize.x) {
    float v = x[row * p.dim + i];
    s += v * v;
  }
  partial[lid] = s;
  barrier();
  for (uint stride = gl_WorkGroupSize.x / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride)
      partial[lid] += partial[lid + stride];
    barrier();
  }
  float sum = partial[0];
  float inv = 1.0 / sqrt(max(sum, 1e-10));
  for (uint i = lid; i < p.dim; i += gl_WorkGroupSize.x)
    y[row * p.dim + i] = x[row * p.dim + i] * inv;
  if (lid == 0u)
    norms[row] = sqrt(sum);
}
