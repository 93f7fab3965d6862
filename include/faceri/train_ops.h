#ifndef FACERI_TRAIN_OPS_H
#define FACERI_TRAIN_OPS_H
/* Training ops on the device: the backward passes of the network's ops and the
 * forward-and-backward of what only training and the paper's heads need (batch norm
 * with batch statistics, dropout, sigmoid, pooling, broadcast multiply, concatenation).
 *
 * Tensors are NHWC float32, weights in the model's layout (dense OHWI, depthwise HWC),
 * unpacked. Every function records dispatches into a sequence; the caller puts a
 * fr_vk_sequence_barrier between a producer and the op that reads its output. Ops
 * made of several dispatches (two-stage reductions, batch norm) put their own
 * barriers between their stages.
 *
 * Determinism: no floating-point atomics anywhere. A gradient that sums over batch x
 * space is reduced in two stages: each (chunk of rows, output) invocation sums its
 * chunk in order into a scratch buffer, then each output adds the chunks in order.
 * The chunking depends only on the shape, so two runs on a device are bit-identical.
 * A scratch buffer must not be shared by ops that are not ordered by a barrier. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/ops.h"
#include "faceri/vk_context.h"

typedef struct fr_train_ops fr_train_ops;

int fr_train_ops_create(fr_vk_context *ctx, fr_train_ops **out, fr_error *err);
void fr_train_ops_destroy(fr_train_ops *t);

/* Floats of scratch the reductions need: a column sum of a [rows, cols] matrix (bias,
 * PReLU slope and batch-norm gradients) and a conv's weight gradient. */
size_t fr_train_reduce_scratch_floats(int rows, int cols);
size_t fr_train_conv_filter_scratch_floats(const fr_conv_params *p);

/* ---- convolution (p->activation and p->has_residual are ignored: the epilogue's
 * gradients are the element-wise ops below) ---- */
/* dx from dy (the gradient of conv(x) + bias) and the weights. */
int fr_train_record_conv_bwd_data(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg dy,
                                  fr_vk_arg weights, fr_vk_arg dx, fr_error *err);
/* dw (model layout) from x and dy; two stages through scratch. */
int fr_train_record_conv_bwd_filter(fr_train_ops *t, fr_vk_sequence *seq, const fr_conv_params *p, fr_vk_arg x,
                                    fr_vk_arg dy, fr_vk_arg scratch, fr_vk_arg dw, fr_error *err);
/* The kernel the two calls above pick for a shape (filter: the weight gradient), for
 * benchmarks and logs. */
const char *fr_train_conv_bwd_kernel_name(const fr_train_ops *t, const fr_conv_params *p, int filter);
/* db[c] = sum over rows of dy[r, c]: the bias gradient of a conv or linear layer. */
int fr_train_record_bias_bwd(fr_train_ops *t, fr_vk_sequence *seq, int rows, int channels, fr_vk_arg dy,
                             fr_vk_arg scratch, fr_vk_arg db, fr_error *err);

/* ---- element-wise; `channels` is the innermost size that per-channel vectors follow ---- */
typedef enum fr_train_act { FR_TRAIN_RELU = 0, FR_TRAIN_PRELU = 1, FR_TRAIN_SIGMOID = 2 } fr_train_act;

/* y = act(x); slope (per channel) only for PReLU. */
int fr_train_record_act(fr_train_ops *t, fr_vk_sequence *seq, fr_train_act act, int rows, int channels, fr_vk_arg x,
                        fr_vk_arg slope, fr_vk_arg y, fr_error *err);
/* dx = dy * act'(.). `saved` is the activation's input x for ReLU and PReLU and its
 * output y for the sigmoid. PReLU with dslope.buffer set also writes the slope gradient
 * (two stages through scratch). */
int fr_train_record_act_bwd(fr_train_ops *t, fr_vk_sequence *seq, fr_train_act act, int rows, int channels,
                            fr_vk_arg saved, fr_vk_arg dy, fr_vk_arg slope, fr_vk_arg dx, fr_vk_arg scratch,
                            fr_vk_arg dslope, fr_error *err);
/* y = x + bias[c]. */
int fr_train_record_bias(fr_train_ops *t, fr_vk_sequence *seq, int rows, int channels, fr_vk_arg x, fr_vk_arg bias,
                         fr_vk_arg y, fr_error *err);
/* out = a + b (a residual add, or two gradients meeting at a fork) and out = a * b.
 * The gradient of a residual add is dy itself, routed to both inputs. */
int fr_train_record_add(fr_train_ops *t, fr_vk_sequence *seq, size_t n, fr_vk_arg a, fr_vk_arg b, fr_vk_arg out,
                        fr_error *err);
int fr_train_record_mul(fr_train_ops *t, fr_vk_sequence *seq, size_t n, fr_vk_arg a, fr_vk_arg b, fr_vk_arg out,
                        fr_error *err);

/* Inverted dropout: y = keep ? x / (1 - rate) : 0, keep decided by a hash of (seed,
 * step, element index) alone. The backward pass is the same call on dy with the same
 * seed and step. 0 <= rate < 1. */
int fr_train_record_dropout(fr_train_ops *t, fr_vk_sequence *seq, size_t n, float rate, uint32_t seed,
                            uint32_t step, fr_vk_arg x, fr_vk_arg y, fr_error *err);
/* Whether element `index` is kept: the device's rule, for references and tests. */
int fr_train_dropout_keep(float rate, uint32_t seed, uint32_t step, uint32_t index);

/* ---- L2 normalisation (forward: fr_ops_record_l2norm, which also gives the norms) ---- */
int fr_train_record_l2norm_bwd(fr_train_ops *t, fr_vk_sequence *seq, int rows, int dim, fr_vk_arg y, fr_vk_arg norms,
                               fr_vk_arg dy, fr_vk_arg dx, fr_error *err);

/* ---- batch norm in training mode over [rows, channels] (rows = batch * h * w) ---- */
typedef struct fr_train_bn {
  int rows, channels;
  float eps;       /* e.g. 1e-5 */
  float momentum;  /* running = (1 - momentum) * running + momentum * batch (PyTorch's convention) */
  fr_vk_arg gamma, beta;              /* parameters */
  fr_vk_arg mean, var, invstd;        /* written by the forward, read by the backward */
  fr_vk_arg running_mean, running_var; /* updated in place by the forward (unbiased variance) */
  fr_vk_arg dgamma, dbeta;            /* written by the backward */
} fr_train_bn;

int fr_train_record_bn_fwd(fr_train_ops *t, fr_vk_sequence *seq, const fr_train_bn *bn, fr_vk_arg x, fr_vk_arg y,
                           fr_vk_arg scratch, fr_error *err);
int fr_train_record_bn_bwd(fr_train_ops *t, fr_vk_sequence *seq, const fr_train_bn *bn, fr_vk_arg x, fr_vk_arg dy,
                           fr_vk_arg dx, fr_vk_arg scratch, fr_error *err);

/* ---- pooling and broadcasts over the middle axis of an [outer, len, inner] tensor:
 * over space: outer = batch, len = h * w, inner = channels (output [batch, channels]);
 * over channels: outer = batch * h * w, len = channels, inner = 1 (output [batch, h, w]) ---- */
typedef enum fr_train_pool { FR_POOL_AVG = 0, FR_POOL_MAX = 1 } fr_train_pool;

int fr_train_record_pool(fr_train_ops *t, fr_vk_sequence *seq, fr_train_pool mode, int outer, int len, int inner,
                         fr_vk_arg x, fr_vk_arg y, fr_error *err);
/* Max pooling sends the gradient to the first maximum of x. */
int fr_train_record_pool_bwd(fr_train_ops *t, fr_vk_sequence *seq, fr_train_pool mode, int outer, int len, int inner,
                             fr_vk_arg x, fr_vk_arg dy, fr_vk_arg dx, fr_error *err);
/* y[o, r, i] = x[o, r, i] * s[o, i] (CBAM's attention); its x gradient is the same call
 * on dy, its s gradient fr_train_record_bcast_mul_bwd_scale. */
int fr_train_record_bcast_mul(fr_train_ops *t, fr_vk_sequence *seq, int outer, int len, int inner, fr_vk_arg x,
                              fr_vk_arg s, fr_vk_arg y, fr_error *err);
/* ds[o, i] = sum over r of dy[o, r, i] * x[o, r, i]. */
int fr_train_record_bcast_mul_bwd_scale(fr_train_ops *t, fr_vk_sequence *seq, int outer, int len, int inner,
                                        fr_vk_arg x, fr_vk_arg dy, fr_vk_arg ds, fr_error *err);

/* ---- concatenation along channels: part [rows, part_c] <-> columns [offset, offset +
 * part_c) of whole [rows, total_c]; split = 1 copies back out (the gradient) ---- */
int fr_train_record_concat(fr_train_ops *t, fr_vk_sequence *seq, int rows, int part_c, int total_c, int offset,
                           int split, fr_vk_arg part, fr_vk_arg whole, fr_error *err);

/* ---- naive CPU references in double, forward and backward: the ground truth for the
 * kernels, themselves checked against central finite differences ---- */
/* y = conv(x, w) + b (b may be NULL); activation and residual ignored. */
void fr_ref_train_conv_fwd(const fr_conv_params *p, const double *x, const double *w, const double *b, double *y);
/* Any of dx, dw, db may be NULL. */
void fr_ref_train_conv_bwd(const fr_conv_params *p, const double *x, const double *w, const double *dy, double *dx,
                           double *dw, double *db);
void fr_ref_train_act_fwd(fr_train_act act, size_t rows, int channels, const double *x, const double *slope,
                          double *y);
/* dslope may be NULL; for the sigmoid `saved` is y, otherwise x (as on the device). */
void fr_ref_train_act_bwd(fr_train_act act, size_t rows, int channels, const double *saved, const double *dy,
                          const double *slope, double *dx, double *dslope);
void fr_ref_train_l2norm_fwd(int rows, int dim, const double *x, double *y, double *norms);
void fr_ref_train_l2norm_bwd(int rows, int dim, const double *y, const double *norms, const double *dy, double *dx);
void fr_ref_train_dropout(size_t n, float rate, uint32_t seed, uint32_t step, const double *x, double *y);
/* Batch statistics forward; mean/var (biased)/invstd may be NULL; running stats (may be
 * NULL) updated as on the device. */
void fr_ref_train_bn_fwd(int rows, int channels, double eps, double momentum, const double *x, const double *gamma,
                         const double *beta, double *y, double *mean, double *var, double *invstd,
                         double *running_mean, double *running_var);
void fr_ref_train_bn_bwd(int rows, int channels, double eps, const double *x, const double *gamma, const double *dy,
                         double *dx, double *dgamma, double *dbeta);
void fr_ref_train_pool_fwd(fr_train_pool mode, int outer, int len, int inner, const double *x, double *y);
void fr_ref_train_pool_bwd(fr_train_pool mode, int outer, int len, int inner, const double *x, const double *dy,
                           double *dx);
void fr_ref_train_bcast_mul_fwd(int outer, int len, int inner, const double *x, const double *s, double *y);
void fr_ref_train_bcast_mul_bwd(int outer, int len, int inner, const double *x, const double *s, const double *dy,
                                double *dx, double *ds);
void fr_ref_train_concat_fwd(int rows, int ca, int cb, const double *a, const double *b, double *y);
void fr_ref_train_concat_bwd(int rows, int ca, int cb, const double *dy, double *da, double *db);

#endif
