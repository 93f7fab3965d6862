#ifndef FACERI_TRAINER_H
#define FACERI_TRAINER_H
/* Training a whole model on a Vulkan device: the backbone's fused layers (conv or
 * depthwise + bias + activation + residual), a classification head (linear layer with
 * softmax cross-entropy, or ArcFace, train_loss.h) on the optionally L2-normalised
 * embedding, the backward pass through every layer, and an optimizer step, all in one
 * recorded command sequence per step.
 *
 * Parameters live on the device in the model's layout (dense OHWI, depthwise HWC), in
 * one buffer with one gradient buffer of the same layout: the backward ops and the
 * optimizer work on them directly. The forward pass uses the inference kernels, which
 * read weights in a packed layout; a single gather dispatch at the end of every step
 * (shaders/train_repack.comp, index map built once from fr_ops_pack_conv_weights)
 * refreshes that packed copy from the updated parameters.
 *
 * Memory: a layer with an activation keeps only its pre-activation z; its output
 * act(z) is recomputed (one element-wise dispatch) wherever a later layer reads it, in
 * the forward and in the backward. A layer without one keeps its output. The batch is
 * split into chunks so that no binding exceeds maxStorageBufferRange; the loss is taken
 * over the whole batch, and parameter gradients are summed over the chunks in a fixed
 * order (bit-identical reruns, like every reduction under it). */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/model.h"
#include "faceri/optimizer.h"
#include "faceri/ri_heads.h"
#include "faceri/train_loss.h"
#include "faceri/vk_context.h"

typedef struct fr_trainer_options {
  int max_batch;           /* images per step (>= 1) */
  int max_chunk;           /* 0: as large as the device allows; else at most this many images per chunk */
  fr_loss_kind loss;       /* FR_LOSS_SOFTMAX (linear head + cross-entropy) or FR_LOSS_ARCFACE */
  int classes;             /* head outputs */
  float s, m;              /* logit scale; ArcFace margin (0 for softmax) */
  int easy_margin;         /* ArcFace */
  int normalize;           /* softmax: L2-normalise the embedding before the head (ArcFace always does) */
  const float *head;       /* initial head weights [classes, embedding]; NULL: uniform +-1/sqrt(dim) from seed */
  uint32_t seed;
  fr_optimizer_config optim;
  fr_param_group backbone; /* lr multiplier, weight decay, frozen: the model's layers */
  /* Layers before this index are frozen and the backward stops there: no gradients,
   * no optimizer state, no backward dispatches below it (fine-tuning the last stages
   * costs a forward plus the backward of those stages only). 0: train every layer. */
  int train_from_layer;
  fr_param_group head_group;
  /* The paper's RI heads (ri_heads.h, docs/RI_HEADS.md) on the feature map F of
   * ri_feature_layer, trained with the backbone: L = ArcFace + alpha L1 + beta ID +
   * gamma MSE. NULL: none. The config's h, w, c, dim, max_batch and max_chunk are
   * replaced by the trainer's; its other fields (options, seed) are used as given.
   * The targets xi (Eq. 3) come from the current prototypes (the head's weights) and
   * ui_centre, before the step's update and detached; dL/dF joins the backbone's
   * gradient of F, and dL/dv (embedding regression, or v' not detached) its gradient
   * of the raw embedding. The heads' parameters form their own optimizer group
   * (ri_group), after the head's. */
  const fr_ri_heads_config *ri;
  int ri_feature_layer;    /* -1 (the default): the input of the first layer with a 1x1 output (48 in MobileFaceNet) */
  const float *ui_centre;  /* [embedding] (copied; normalised on the device), required with ri */
  fr_param_group ri_group;
} fr_trainer_options;

/* SGD with momentum, softmax head over the normalised embedding, s = 1, no decay. */
fr_trainer_options fr_trainer_defaults(int max_batch, int classes, float lr, float momentum);

typedef struct fr_trainer fr_trainer;

/* The model is copied (the trainer owns its parameters from here on). */
int fr_trainer_create(fr_vk_context *ctx, const fr_model *model, const fr_trainer_options *opts, fr_trainer **out,
                      fr_error *err);
void fr_trainer_destroy(fr_trainer *t);

/* images: batch x H x W x C float32, normalised as the model says; labels: [batch]
 * (outside [0, classes): ignored rows, as train_loss.h). 1 <= batch <= max_batch.
 * step: forward, loss, backward, optimizer update (one submission); loss: the batch
 * mean before the update. grads: the same without the update (gradients readable with
 * fr_trainer_read). */
int fr_trainer_step(fr_trainer *t, const float *images, const int32_t *labels, int batch, float *loss,
                    fr_error *err);
int fr_trainer_grads(fr_trainer *t, const float *images, const int32_t *labels, int batch, float *loss,
                     fr_error *err);

/* A batch with UI rows and the RI heads' per-step scalars. flags [batch] (NULL: none):
 * bit 0 marks an unrecognisable-identity image: its label is replaced by -1 (no
 * ArcFace term, no xi; note that the ArcFace mean still divides by the whole batch)
 * and it feeds the heads' UI statistics (fr_trainer_losses.ri.n_ui, ui_mean, ui_var).
 * The heads' dropout masks follow the optimizer's step count (fr_optimizer_steps), so
 * a resumed run draws the same masks. mu_ui, sigma_ui: the ID loss's N(mu, sigma). */
typedef struct fr_trainer_batch {
  const float *images;
  const int32_t *labels;
  const int32_t *flags;
  int batch;
  float mu_ui, sigma_ui;   /* 0, 1 for N(0, 1) */
} fr_trainer_batch;

typedef struct fr_trainer_losses {
  float total;             /* arcface + ri.total */
  float arcface;           /* the head's loss (ArcFace or softmax) */
  fr_ri_loss_values ri;    /* zeros without heads */
} fr_trainer_losses;

/* update 1: a training step (as fr_trainer_step); 0: gradients only. */
int fr_trainer_run_batch(fr_trainer *t, const fr_trainer_batch *b, int update, fr_trainer_losses *out,
                         fr_error *err);
/* The attached heads (NULL without): their tensors are read and written with
 * fr_ri_heads_read_tensor / fr_ri_heads_write_tensor (checkpoints, --resume), their
 * outputs of the last run (xi^, v_attn) with fr_ri_heads_read_outputs. */
fr_ri_heads *fr_trainer_ri_heads(fr_trainer *t);
/* xi (Eq. 3) of the last run's rows [0, n) as the heads' targets (NaN on unlabelled rows). */
int fr_trainer_read_xi(fr_trainer *t, int n, float *xi, fr_error *err);
/* The layer whose output the heads read (-1 without heads). */
int fr_trainer_ri_feature_layer(const fr_trainer *t);

/* Parameter tensors: for each model layer its weights, bias and (PReLU) slope, then the
 * head. name is e.g. "layer 3 (...) weights"; the returned pointer lives as long as t. */
int fr_trainer_tensor_count(const fr_trainer *t);
const char *fr_trainer_tensor_name(const fr_trainer *t, int i);
size_t fr_trainer_tensor_size(const fr_trainer *t, int i);
/* Floats in all tensors, packed one after the other in the order above. */
size_t fr_trainer_total_floats(const fr_trainer *t);
/* Copies every tensor (values, or gradients of the last step/grads call) into out,
 * fr_trainer_total_floats floats in the order above. */
int fr_trainer_read(fr_trainer *t, int gradients, float *out, fr_error *err);
/* Writes the trained backbone into model (same architecture as the trainer's). */
int fr_trainer_export(fr_trainer *t, fr_model *model, fr_error *err);

/* The head's weights [classes, embedding] (the ArcFace prototypes). */
int fr_trainer_read_head(fr_trainer *t, float *out, fr_error *err);

fr_optimizer *fr_trainer_optimizer(fr_trainer *t);
int fr_trainer_chunk_size(const fr_trainer *t);
/* Device memory held by the trainer's buffers (parameters, gradients, optimizer state
 * excluded: see fr_vk_memory_peak for the whole). */
uint64_t fr_trainer_device_bytes(const fr_trainer *t);

/* Times `steps` training steps at `batch` on random inputs (after one warm-up step) and
 * reports images/s and the context's peak device memory. */
typedef struct fr_trainer_bench_result {
  int batch, chunk, steps;
  double images_per_s, ms_per_step;
  uint64_t peak_device_bytes, trainer_bytes;
} fr_trainer_bench_result;

int fr_trainer_bench(fr_vk_context *ctx, const fr_model *model, int batch, int steps, fr_trainer_bench_result *res,
                     fr_error *err);

#endif
