// Shared by the RI kernels (ri_*.comp; conventions in include/faceri/ri.h).

// Clamp to [-1, 1] that keeps NaN (GLSL's clamp() is undefined for NaN).
float clamp_unit(float c)
{
  if (c > 1.0)
    return 1.0;
  if (c < -1.0)
    return -1.0;
  return c;
}

// Length with the 1e-12 floor of the reference; NaN stays NaN.
float floored_norm(float ss)
{
  float n = sqrt(ss);
  return (n > 1e-12 || isnan(n)) ? n : 1e-12;
}
