#ifndef FACERI_OPTIMIZER_H
#define FACERI_OPTIMIZER_H
/* Optimizers as device kernels over parameter buffers, with PyTorch's semantics:
 *  SGD (torch.optim.SGD): d = g + wd p; buf = d on the first step, else
 *      momentum buf + (1 - dampening) d; d = nesterov ? d + momentum buf : buf;
 *      p -= lr d.
 *  AdamW (torch.optim.AdamW, amsgrad off): p *= 1 - lr wd; m = lerp(m, g, 1 - beta1);
 *      v = beta2 v + (1 - beta2) g^2; p -= lr / (1 - beta1^t) * m / (sqrt(v) /
 *      sqrt(1 - beta2^t) + eps). Defaults beta = (0.9, 0.999), eps = 1e-8, wd = 1e-2.
 *  Clipping (torch.nn.utils.clip_grad_norm_): the global L2 norm over the gradients of
 *      every group that steps; g *= min(1, max_norm / (norm + 1e-6)), applied inside the
 *      update (the gradient buffers are left as they are). The norm is a two-stage
 *      fixed-order reduction: bit-identical reruns.
 *  Schedules (host): lr(t) = base * group lr_mult * warm-up(t) * decay(t - warmup).
 *
 * Groups: a frozen group, or one with lr_mult 0, is skipped entirely: no dispatch, no
 * state update, no part in the clip norm (PyTorch's requires_grad = False). Freezing is
 * decided when a group is added.
 *
 * Use: add every group and param first, record the step into a sequence once (after
 * the backward, behind a barrier), then before every run of that sequence call
 * fr_optimizer_begin_step, which writes that step's learning rates and bias
 * corrections to a small device buffer the kernels read. Adding a group or param
 * afterwards may replace that buffer: re-record then. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/vk_context.h"

typedef enum fr_optim_kind { FR_OPTIM_SGD = 0, FR_OPTIM_ADAMW = 1 } fr_optim_kind;

/* ---- learning-rate schedules, all on the host; t counts steps taken (0 = first) ---- */
typedef enum fr_lr_decay { FR_LR_CONSTANT = 0, FR_LR_STEP = 1, FR_LR_COSINE = 2 } fr_lr_decay;

typedef struct fr_lr_schedule {
  int warmup_steps;     /* linear warm-up (PyTorch LinearLR): factor start + (1 - start) t / W */
  double warmup_start;  /* factor at t = 0, in [0, 1] */
  fr_lr_decay decay;    /* applied to t' = max(0, t - warmup_steps) */
  int step_size;        /* FR_LR_STEP: gamma^floor(t' / step_size) (StepLR) */
  double gamma;
  int total_steps;      /* FR_LR_COSINE over T = total - warmup: min + (1 - min)(1 + cos(pi t'/T))/2 */
  double min_factor;    /* (CosineAnnealingLR's eta_min / base); t' > T stays at min */
} fr_lr_schedule;

/* The factor at step t; 1 for a zeroed schedule. */
double fr_lr_schedule_factor(const fr_lr_schedule *s, int64_t t);

typedef struct fr_optimizer_config {
  fr_optim_kind kind;
  float lr;                   /* base learning rate */
  float momentum, dampening;  /* SGD */
  int nesterov;               /* SGD; needs momentum > 0 and dampening 0 (as PyTorch) */
  float beta1, beta2, eps;    /* AdamW */
  float max_grad_norm;        /* > 0: clip; 0: off */
  fr_lr_schedule schedule;
} fr_optimizer_config;

fr_optimizer_config fr_optimizer_sgd_defaults(float lr, float momentum);
fr_optimizer_config fr_optimizer_adamw_defaults(float lr);

typedef struct fr_param_group {
  float lr_mult;       /* the group's lr = scheduled lr * lr_mult; 0 freezes */
  float weight_decay;  /* SGD: L2 on the gradient; AdamW: decoupled */
  int frozen;
} fr_param_group;

typedef struct fr_optimizer fr_optimizer;

int fr_optimizer_create(fr_vk_context *ctx, const fr_optimizer_config *cfg, fr_optimizer **out, fr_error *err);
void fr_optimizer_destroy(fr_optimizer *o);

/* Returns the group's index (0, 1, ...) or a negative fr_status. */
int fr_optimizer_add_group(fr_optimizer *o, const fr_param_group *g, fr_error *err);
/* A tensor of n floats and its gradient (grad may be {0} in a frozen group); its
 * optimizer state is allocated on the device and zeroed. */
int fr_optimizer_add_param(fr_optimizer *o, int group, fr_vk_arg value, fr_vk_arg grad, size_t n, fr_error *err);

/* Records clipping (if on) and every stepping tensor's update. */
int fr_optimizer_record_step(fr_optimizer *o, fr_vk_sequence *seq, fr_error *err);
/* Advances the step counter and uploads that step's scalars; call before each run. */
int fr_optimizer_begin_step(fr_optimizer *o, fr_error *err);

/* Steps begun so far. */
int64_t fr_optimizer_steps(const fr_optimizer *o);
/* A group's learning rate for the step last begun (or the next one before any). */
double fr_optimizer_group_lr(const fr_optimizer *o, int group);
/* The global gradient norm the last run computed (clipping on only). */
int fr_optimizer_grad_norm(fr_optimizer *o, float *norm, fr_error *err);

/* ---- state for checkpoints: a versioned blob
 *   "FROPTST1" | u32 kind | u32 params | u32 slots (state tensors per param) | u32 0 |
 *   i64 steps | u64 n[params] | float slot data, param by param, slot by slot
 * (slots: SGD with momentum 1, SGD without 0, AdamW 2: exp_avg then exp_avg_sq),
 * host byte order. Import checks kind, count and sizes against this optimizer. ---- */
size_t fr_optimizer_state_size(const fr_optimizer *o);
int fr_optimizer_export(fr_optimizer *o, void *buf, size_t size, fr_error *err);
int fr_optimizer_import(fr_optimizer *o, const void *buf, size_t size, fr_error *err);

/* ---- CPU reference, in float in PyTorch's order of operations ---- */
typedef struct fr_ref_param {
  int group;
  size_t n;
  float *value;
  const float *grad;
  float *s1, *s2; /* state (as many as the kind needs), zero before the first step */
} fr_ref_param;

/* One step number `step` (1 = first); returns the global gradient norm (computed in
 * double over the stepping groups). */
double fr_ref_optimizer_step(const fr_optimizer_config *cfg, const fr_param_group *groups, fr_ref_param *params,
                             int n_params, int64_t step);

#endif
