// Shared conv epilogue: bias, activation, residual. Activation codes match fr_activation.
#define ACT_NONE 0u
#define ACT_PRELU 1u
#define ACT_RELU 2u

float apply_activation(float v, uint act, float slope)
{
  if (act == ACT_PRELU)
    return v > 0.0 ? v : v * slope;
  if (act == ACT_RELU)
    return max(v, 0.0);
  return v;
}
