#version 450
// Infrastructure check: out[i] = a[i] * scale + texel(b)[i]. Used only by tests/test_vk.c.
layout(local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer A { float a[]; };
layout(set = 0, binding = 1) uniform samplerBuffer b;
layout(set = 0, binding = 2) writeonly buffer Out { float outv[]; };
layout(push_constant) uniform Push { uint n; float scale; } pc;
void main()
{
  uint i = gl_GlobalInvocationID.x;
  if (i >= pc.n)
    return;
  vec4 t = texelFetch(b, int(i / 4u));
  outv[i] = a[i] * pc.scale + t[i % 4u];
}
