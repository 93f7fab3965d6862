// Shared by the RI head kernels. The dropout rule of train_eltwise.comp and
// fr_train_dropout_keep: element i of (seed, step) is kept when the hash >= threshold.
uint ri_pcg_hash(uint v)
{
  uint state = v * 747796405u + 2891336453u;
  uint word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

bool ri_dropout_keep(uint seed, uint step, uint i, uint threshold)
{
  return ri_pcg_hash(i ^ ri_pcg_hash(seed ^ ri_pcg_hash(step))) >= threshold;
}

float ri_sigmoid(float v) { return 1.0 / (1.0 + exp(-v)); }
