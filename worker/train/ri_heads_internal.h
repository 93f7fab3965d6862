#ifndef FACERI_RI_HEADS_INTERNAL_H
#define FACERI_RI_HEADS_INTERNAL_H
/* Shared by ri_heads.c (buffers, parameters, I/O), ri_heads_record.c (the recorded
 * phases) and ri_heads_ref.c (the tensor layout). */
#include "faceri/ri_heads.h"
#include "faceri/train_ops.h"

/* Tensor order: the trainable ones, then the batch norm's running statistics. */
enum { T_REG_W, T_REG_B, T_MLP1_W, T_MLP1_B, T_MLP2_W, T_MLP2_B, T_CONV_W, T_BN_G, T_BN_B, T_ATT_W, T_ATT_B, T_BN_RM,
       T_BN_RV, T_COUNT };

/* Regions of the whole-batch buffer, in floats (each starts 256-byte aligned). */
enum { R_LOSS, R_XH, R_DXH, R_ROWS, R_VA, R_DVA, R_X2, R_HPRE, R_Z, R_MC, R_P, R_S, R_SN, R_MS, R_DMS, R_DSN, R_DS,
       R_DP, R_DX2, R_DH, R_DZ, R_BN_MEAN, R_BN_VAR, R_BN_INVSTD, R_COUNT };

#define RI_LOSS_FLOATS 16

struct fr_ri_heads {
  fr_vk_context *ctx;
  fr_ri_heads_config cfg;
  fr_train_ops *tops;
  fr_vk_kernel *fc, *fc_fwd, *loss, *cbam;
  uint32_t wg, wg_tree; /* wg_tree: a power of two, for fc_fwd's shared-memory tree */
  int n_tensors, hidden, hw, chunk;
  size_t hwc;
  size_t toff[T_COUNT], tn[T_COUNT], n_params;
  uint32_t r[R_COUNT];
  fr_vk_buffer params, grads, ctl, hb, t1, t2, scratch;
  size_t hb_floats;
};

static inline fr_vk_arg ri_floats(const fr_vk_buffer *b, size_t off, size_t n)
{
  return (fr_vk_arg){b, (uint64_t)off * sizeof(float), (uint64_t)n * sizeof(float)};
}

#endif
