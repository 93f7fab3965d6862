#ifndef FACERI_RI_HEADS_H
#define FACERI_RI_HEADS_H
/* The paper's two heads and their loss terms (section 3.2-3.4, DESIGN §5), trained on
 * the device; docs/RI_HEADS.md has the choices and their reasons.
 *
 *   regression   F [B,h,w,c] -> flatten (NHWC order) -> dropout -> FC -> xi^ [B]
 *                (option: FC on the raw embedding v instead, CR-FIQA style)
 *   attention    CBAM on F: Mc = sigmoid(MLP(avgpool F) + MLP(maxpool F)) with MLP =
 *                FC(c -> c/r) -> ReLU -> FC(c/r -> c), shared; F1 = F * Mc;
 *                Ms = sigmoid(BN(conv7x7([max_c F1, mean_c F1]))) (no conv bias, BN in
 *                training mode with batch statistics); F2 = F1 * Ms; flatten -> FC -> v_attn
 *   losses       L1  = mean smooth-L1(xi^ - xi; beta_l1 = 0.75)          over L1 rows
 *                ID  = mean max(0, tau - (xi^ - mu_UI) / sigma_UI)         over ID rows
 *                MSE = mean (v' - v_attn)^2 over rows x dim (nn.MSELoss)  over MSE rows
 *                total = alpha L1 + beta ID + gamma MSE (5, 2, 1); ArcFace is the trainer's.
 *   targets      xi from Eq. 3 (fr_ri_record_index), detached: it only flows back as
 *                dL/dxi into a caller buffer when asked. v' = v - <v, c^> c^ computed
 *                here from the RAW embedding v and the UI centre c: Eq. 8 projects v_i,
 *                where Eq. 1 explicitly normalises (v^_i); option: project v^ instead.
 *                v' is detached by default (a target, as CR-FIQA detaches its own);
 *                not detached, dL/dv' flows into dv.
 *   rows         per-row flags (bit 0: a UI image). A term's rows are the non-UI rows
 *                (and the UI rows whose bit is set in ui_terms, default none): UI images
 *                are unlabelled (no xi) and, per section 3.3, they define mu/sigma of
 *                the ID loss rather than being pushed by it. L1 also skips rows whose xi
 *                is not finite (ri_device gives NaN for unlabelled rows). Each mean
 *                divides by its own row count (0 rows: the term is 0). The UI rows' xi^
 *                mean and variance are reported (stats) so a trainer can estimate
 *                mu/sigma from K UI samples (Eq. 6) instead of N(0, 1).
 *
 * Chunks: the trainer runs its batch in chunks. The only coupling between images is
 * the batch norm of the spatial attention (statistics over batch x h x w) and the loss
 * means, so recording is in phases; the per-chunk phases are called for every chunk in
 * order, the first at row 0 (it writes the parameter gradients, later chunks add):
 *   for c: fwd_chunk(row0, nb, F_c)      xi^ rows; CBAM up to the [max, mean] maps
 *   fwd_batch(batch)                     7x7 conv, BN (batch stats), sigmoid: Ms
 *   for c: fwd2_chunk(row0, nb, F_c)     v_attn rows
 *   loss(batch, targets)                 terms, dL/dxi^, dL/dv_attn (and dv, dxi)
 *   for c: bwd_chunk(row0, nb, F_c)      attention FC gradients, dL/dMs rows
 *   bwd_batch(batch)                     sigmoid, BN, 7x7 conv gradients
 *   for c: bwd2_chunk(row0, nb, F_c, dF_c)  the rest; dF_c += dL/dF_c
 * F_c must hold the same values in every phase (the trainer recomputes it from its
 * kept pre-activation). fr_ri_heads_record_train records all phases for one chunk =
 * the whole batch. Every phase puts barriers around its own dispatches: the caller
 * orders the producers of F, v, xi before the first and the readers of dF, dv after.
 * Batch outputs (xi^, v_attn, the loss terms) stay in the module's buffers.
 *
 * Determinism: no float atomics; every sum is a fixed-order loop (one invocation per
 * output), a GEMM tile's fixed-order k loop, or the train_ops two-stage reductions:
 * reruns are bit-identical. Results do not depend on the chunking except for the
 * rounding of the parameter-gradient sums.
 *
 * The attention FC (h*w*c -> dim, 4.8 M weights for MobileFaceNet) runs on the
 * network's GEMM kernels: its forward as a 1x1 conv on a 1x1x(h*w*c) input
 * (fr_ops_record_conv, on a packed copy of the weights that the heads regather from
 * the parameters after every device-side update), its input and weight gradients on
 * train_ops' 1x1 backward kernels.
 *
 * Inference (fr_ri_heads_record_infer): xi^ and v_attn per chunk, no dropout, batch
 * norm with its running statistics, no coupling between images. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/optimizer.h"
#include "faceri/vk_context.h"

typedef enum fr_ri_reg_input { FR_RI_REG_FEATURES = 0, FR_RI_REG_EMBEDDING = 1 } fr_ri_reg_input;

/* Term bits, for ui_terms. */
#define FR_RI_TERM_L1 1u
#define FR_RI_TERM_ID 2u
#define FR_RI_TERM_MSE 4u

typedef struct fr_ri_heads_config {
  int h, w, c;               /* the last feature map: 7, 7, 512 for MobileFaceNet */
  int dim;                   /* embedding size: 192 */
  int max_batch;             /* rows of every batch buffer, <= 16384 */
  int max_chunk;             /* images per chunk phase call (0: max_batch) */
  fr_ri_reg_input reg_input; /* FR_RI_REG_FEATURES (the paper) */
  float dropout;             /* regression head's dropout rate: 0.5 (nn.Dropout's default) */
  int attention;             /* 1: the perceptibility attention head and L_MSE */
  int reduction;             /* CBAM channel MLP reduction: 16 */
  int spatial_kernel;        /* CBAM spatial conv: 7 (odd) */
  float bn_eps, bn_momentum; /* 1e-5, 0.01 (CBAM's BasicConv) */
  float alpha, beta, gamma;  /* term weights: 5, 2, 1 */
  float l1_beta;             /* smooth-L1 switch: 0.75 */
  float tau;                 /* ID margin: 1.645 (one-sided 95% of N(0, 1)) */
  int detach_vproj;          /* 1: v' is a constant target */
  int project_normalized;    /* 0: v' from the raw v (Eq. 8); 1: from v / |v| */
  int mse_sum_dim;           /* 0: mean over rows x dim; 1: sum over dim, mean over rows (Eq. 9 literally) */
  unsigned ui_terms;         /* FR_RI_TERM_* bits UI rows take part in: 0 */
  uint32_t seed;             /* initial weights and the dropout masks */
  int att_fwd_gemm;          /* attention FC forward: 0 auto (the texel GEMM on CPU devices, one workgroup
                                per output on GPUs), 1 the GEMM, -1 one workgroup per output */
} fr_ri_heads_config;

/* The defaults above for a feature map h x w x c and an embedding of dim. */
fr_ri_heads_config fr_ri_heads_defaults(int h, int w, int c, int dim, int max_batch);

typedef struct fr_ri_heads fr_ri_heads;

/* Initial weights as PyTorch's defaults (U(+-1/sqrt(fan_in)) for FC and conv weights
 * and biases, BN gamma 1 beta 0, running mean 0 var 1) from a generator seeded by seed. */
int fr_ri_heads_create(fr_vk_context *ctx, const fr_ri_heads_config *cfg, fr_ri_heads **out, fr_error *err);
void fr_ri_heads_destroy(fr_ri_heads *h);
const fr_ri_heads_config *fr_ri_heads_config_of(const fr_ri_heads *h);

/* ---- parameters: tensors in a fixed order, named as the model file's datasets
 * (stored under /heads/ri/ by faceri train --ri, docs/MODEL_FORMAT.md §4.2) ---- */
int fr_ri_heads_tensor_count(const fr_ri_heads *h);
/* e.g. "regression/fc_weight"; NULL past the end. */
const char *fr_ri_heads_tensor_name(const fr_ri_heads *h, int i);
size_t fr_ri_heads_tensor_size(const fr_ri_heads *h, int i);
/* 1: a trainable parameter; 0: state (the BN running statistics). */
int fr_ri_heads_tensor_trainable(const fr_ri_heads *h, int i);
/* Copies tensor i's values (or, gradients = 1, its gradient from the last run) to host. */
int fr_ri_heads_read_tensor(fr_ri_heads *h, int i, int gradients, float *out, fr_error *err);
int fr_ri_heads_write_tensor(fr_ri_heads *h, int i, const float *values, size_t n, fr_error *err);

/* Registers every trainable tensor with its gradient in the optimizer's group. */
int fr_ri_heads_add_to_optimizer(fr_ri_heads *h, fr_optimizer *o, int group, fr_error *err);

/* Per-run scalars, uploaded before each run of a recorded training sequence: the step
 * (it picks the dropout masks), mu_UI and sigma_UI (> 0) of the ID loss. */
int fr_ri_heads_begin_step(fr_ri_heads *h, uint32_t step, float mu_ui, float sigma_ui, fr_error *err);

/* ---- training phases (see above); F_c [nb, h, w, c], dF_c the same shape ---- */
typedef struct fr_ri_targets {
  int batch;
  fr_vk_arg v;               /* [batch, dim] raw embedding */
  fr_vk_arg xi;              /* xi of row r at xi[r * xi_stride + xi_offset] (floats) */
  int xi_stride, xi_offset;  /* fr_ri_record_index's out: 4, 3 */
  fr_vk_arg flags;           /* int32 [batch], bit 0 = UI image; {0}: no UI rows */
  fr_vk_arg centre;          /* UI centre [dim], any length (normalised here) */
  fr_vk_arg dv;              /* [batch, dim]: dL/dv added (embedding regression, or v' not
                                detached); {0} only when neither applies */
  fr_vk_arg dxi;             /* {0} or [batch]: dL/dxi written (alpha-weighted) */
} fr_ri_targets;

int fr_ri_heads_record_fwd_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_error *err);
/* v: [batch, dim] (read only with FR_RI_REG_EMBEDDING; may be {0} otherwise). */
int fr_ri_heads_record_fwd_batch(fr_ri_heads *h, fr_vk_sequence *seq, int batch, fr_vk_arg v, fr_error *err);
int fr_ri_heads_record_fwd2_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_error *err);
int fr_ri_heads_record_loss(fr_ri_heads *h, fr_vk_sequence *seq, const fr_ri_targets *t, fr_error *err);
int fr_ri_heads_record_bwd_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_error *err);
int fr_ri_heads_record_bwd_batch(fr_ri_heads *h, fr_vk_sequence *seq, int batch, fr_error *err);
int fr_ri_heads_record_bwd2_chunk(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg dF,
                                  fr_error *err);
/* All of the above with the whole batch as one chunk (F, dF: [t->batch, h, w, c]). */
int fr_ri_heads_record_train(fr_ri_heads *h, fr_vk_sequence *seq, fr_vk_arg F, const fr_ri_targets *t, fr_vk_arg dF,
                             fr_error *err);

/* Forward only (see above): xi^ and v_attn of rows [row0, row0 + nb). v: [nb, dim] rows
 * of this chunk, read only with FR_RI_REG_EMBEDDING. */
int fr_ri_heads_record_infer(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                             fr_error *err);
/* The same in parts, for a caller that has F and v at different times (the engine
 * reuses F's buffer long before the embedding exists): FR_RI_INFER_FEATURES records
 * what reads F (the attention head; the regression on the feature map), FR_RI_INFER_-
 * EMBEDDING the regression on the embedding (nothing for the feature-map variant).
 * F is read only with the first, v only with the second. */
#define FR_RI_INFER_FEATURES 1
#define FR_RI_INFER_EMBEDDING 2
int fr_ri_heads_record_infer_parts(fr_ri_heads *h, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                                   int parts, fr_error *err);

/* ---- results of the last run ---- */
typedef struct fr_ri_loss_values {
  float total;               /* alpha L1 + beta ID + gamma MSE */
  float l1, id, mse;         /* unweighted */
  int n_l1, n_id, n_mse;     /* rows each term averaged over */
  int n_ui;                  /* UI rows, and the mean and (unbiased) variance of their xi^ */
  float ui_mean, ui_var;
} fr_ri_loss_values;

int fr_ri_heads_read_loss(fr_ri_heads *h, fr_ri_loss_values *out, fr_error *err);
/* xi^ [n] and v_attn [n, dim] of rows [0, n) (v_attn needs attention). */
int fr_ri_heads_read_outputs(fr_ri_heads *h, int n, float *xi_hat, float *v_attn, fr_error *err);
/* Device views of the same (valid until destroy). */
fr_vk_arg fr_ri_heads_xi_hat_arg(const fr_ri_heads *h);
fr_vk_arg fr_ri_heads_v_attn_arg(const fr_ri_heads *h);

/* ---- CPU reference in double (worker/train/ri_heads_ref.c) ----
 * Parameters as host arrays in tensor order (p[i] has fr_ri_heads_tensor_size floats;
 * the state tensors hold the running statistics, updated by a training forward). */
typedef struct fr_ri_ref_inputs {
  int batch;
  const double *F;           /* [batch, h, w, c] */
  const double *v;           /* [batch, dim] */
  const double *xi;          /* [batch] (NaN: no target) */
  const int32_t *flags;      /* [batch] or NULL */
  const double *centre;      /* [dim] */
  uint32_t step;
  double mu_ui, sigma_ui;
  int training;              /* 1: dropout and batch statistics; 0: inference */
  int update_running;        /* training: update the running statistics in params */
} fr_ri_ref_inputs;

typedef struct fr_ri_ref_outputs {
  double *xi_hat;            /* [batch] */
  double *v_attn;            /* [batch, dim] or NULL */
  fr_ri_loss_values loss;    /* as floats */
  double total, l1, id, mse; /* in double */
} fr_ri_ref_outputs;

/* Forward (and losses when training); with grads != NULL also the backward:
 * grads[i] (tensor order, state tensors untouched), dF [batch,h,w,c], dv [batch,dim]
 * and dxi [batch] (each may be NULL) are overwritten with dL/d. */
int fr_ri_ref_run(const fr_ri_heads_config *cfg, double *const *params, const fr_ri_ref_inputs *in,
                  fr_ri_ref_outputs *out, double *const *grads, double *dF, double *dv, double *dxi, fr_error *err);
/* Tensor layout without a device (the same as fr_ri_heads'). */
int fr_ri_ref_tensor_count(const fr_ri_heads_config *cfg);
size_t fr_ri_ref_tensor_size(const fr_ri_heads_config *cfg, int i);
const char *fr_ri_ref_tensor_name(const fr_ri_heads_config *cfg, int i);
int fr_ri_ref_tensor_trainable(const fr_ri_heads_config *cfg, int i);

#endif
