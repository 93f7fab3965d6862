#ifndef FACERI_RI_HEADS_INTERNAL_H
#define FACERI_RI_HEADS_INTERNAL_H
/* Shared by ri_heads.c (buffers, parameters, I/O), ri_heads_record.c (the recorded
 * phases) and ri_heads_ref.c (the tensor layout). */
#include "faceri/ops.h"
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
  /* The attention FC on the GEMM kernels (ri_heads_fc.c). */
  int gemm_fwd;            /* its forward on fr_ops' GEMM (else train_ri_fc_fwd) */
  int device_updates;      /* an optimizer changes the parameters on the device */
  fr_ops *ops;             /* gemm_fwd only */
  fr_vk_kernel *repack;    /* gemm_fwd only: packed = parameters through the index map */
  fr_vk_sequence *seq;     /* one-off repacks after a host write */
  size_t pk_w, pk_b, pk_n; /* packed weights at 0, packed bias at pk_b, pk_n floats in all */
  fr_vk_buffer pk, pk_index, stage, dw_tmp;
};

/* ri_heads_fc.c: buffers and kernels of the attention FC, made and freed with the heads. */
int ri_att_fc_create(fr_ri_heads *h, fr_error *err);
/* The attention FC as a 1x1 conv over nb rows. */
fr_conv_params ri_att_fc_params(const fr_ri_heads *h, int nb);
void ri_att_fc_destroy(fr_ri_heads *h);
/* Regathers the packed forward weights from the parameters now (after a host write). */
int ri_att_fc_repack_now(fr_ri_heads *h, fr_error *err);
/* Records that regather (gemm_fwd only; nothing otherwise). */
int ri_att_fc_record_repack(fr_ri_heads *h, fr_vk_sequence *seq, fr_error *err);
/* stage = the attention FC of the chunk's F2 (t1, nb rows): the GEMM forward. */
int ri_att_fc_record_fwd(fr_ri_heads *h, fr_vk_sequence *seq, int nb, fr_error *err);
/* From stage = dL/dv_attn of the chunk: dW (written at row 0, added after) from F2 in
 * t1, or t1 = dL/dF2. */
int ri_att_fc_record_bwd_filter(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_error *err);
int ri_att_fc_record_bwd_data(fr_ri_heads *h, fr_vk_sequence *seq, int nb, fr_error *err);

static inline fr_vk_arg ri_floats(const fr_vk_buffer *b, size_t off, size_t n)
{
  return (fr_vk_arg){b, (uint64_t)off * sizeof(float), (uint64_t)n * sizeof(float)};
}

#endif
