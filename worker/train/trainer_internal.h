#ifndef FACERI_TRAINER_INTERNAL_H
#define FACERI_TRAINER_INTERNAL_H
/* Shared by trainer.c (layout, forward, head, recording), trainer_bwd.c (the backward
 * pass) and trainer_io.c (queries, export, benchmark). */
#include "faceri/ops.h"
#include "faceri/ri.h"
#include "faceri/ri_heads.h"
#include "faceri/train_ops.h"
#include "faceri/trainer.h"

#define TRAINER_MAX_SLOTS 16

typedef struct tensor_info {
  char name[48];
  size_t offset, n; /* floats, in the parameter buffer */
} tensor_info;

typedef struct tlayer {
  fr_conv_params p;             /* batch 1; set per chunk when recording */
  size_t off_w, off_b, off_s;   /* parameter (and gradient) buffer offsets, floats */
  size_t poff_w, poff_b, poff_s; /* packed copy for the inference kernels */
  size_t pn_w, pn_c;
  int keep_z, keep_y;           /* which tensors the forward keeps for the backward */
  fr_vk_buffer z, y;            /* one slice per chunk */
  uint64_t slice;               /* bytes per chunk slice */
} tlayer;

struct fr_trainer {
  fr_vk_context *ctx;
  fr_trainer_options o;
  fr_loss_params lp;
  int normalize;
  int n, output_layer, dim, in_h, in_w, in_c;
  fr_layer *layers; /* shapes only (weight pointers NULL) */
  tlayer *L;
  fr_ops *ops;
  fr_train_ops *tops;
  fr_loss *loss;
  fr_optimizer *opt;
  fr_vk_kernel *repack;
  uint32_t repack_wg;
  int n_tensors, cap_tensors;
  tensor_info *tensors;
  size_t n_params, off_head, n_packed;
  int chunk, n_chunks;
  uint64_t tensor_bytes, in_slice; /* largest per-chunk tensor; input slice */
  fr_vk_buffer params, grads, grads_tmp, index, packed, input;
  fr_vk_buffer rec_in, rec_res, dz, dx_tmp, scr_f, scr_a;
  fr_vk_buffer emb_raw, emb_n, d_emb, d_raw, norms, labels, loss_val, loss_ws;
  fr_vk_buffer slots[TRAINER_MAX_SLOTS]; /* gradients of layer outputs, reused */
  int n_slots;
  /* The RI heads (NULL without) on the kept output of layer feat. */
  fr_ri_heads *ri;
  fr_ri_device *rid;
  int feat;
  fr_vk_buffer flags, xi, ri_ws, centre;
  int32_t *host_labels; /* [max_batch]: labels with the UI rows set to -1 */
  fr_vk_sequence *seq;
  int recorded_batch, recorded_update;
  uint64_t bytes;
};

static inline uint64_t round_up(uint64_t n, uint64_t m) { return (n + m - 1) / m * m; }
static inline fr_vk_arg whole(const fr_vk_buffer *b) { return (fr_vk_arg){b, 0, 0}; }
static inline fr_vk_arg floats_at(const fr_vk_buffer *b, size_t off, size_t n)
{
  return (fr_vk_arg){b, (uint64_t)off * sizeof(float), (uint64_t)n * sizeof(float)};
}
/* Chunk c's slice of a per-layer activation buffer. */
static inline fr_vk_arg slice(const fr_vk_buffer *b, uint64_t slice_bytes, int c)
{
  return (fr_vk_arg){b, (uint64_t)c * slice_bytes, slice_bytes};
}
static inline fr_train_act fr_trainer_act(fr_activation a) { return a == FR_ACT_RELU ? FR_TRAIN_RELU : FR_TRAIN_PRELU; }

/* Layer j's output (or the input, j = FR_LAYER_INPUT) for chunk c of nb images: the
 * kept tensor, or act(z) recomputed into rec (the caller puts a barrier before use). */
int fr_trainer_y_view(fr_trainer *t, fr_vk_sequence *seq, int j, int c, int nb, fr_vk_buffer *rec, fr_vk_arg *out,
                      fr_error *err);
int fr_trainer_record(fr_trainer *t, int batch, int update, fr_error *err);
int fr_trainer_record_backward(fr_trainer *t, fr_vk_sequence *seq, int c, int nb, fr_error *err);
int fr_trainer_record_repack(fr_trainer *t, fr_vk_sequence *seq, fr_error *err);
int fr_trainer_setup_optimizer(fr_trainer *t, fr_error *err);
int fr_trainer_initial_repack(fr_trainer *t, fr_error *err);
/* Chunk c's rows of the heads' feature map (the kept output of layer feat). */
fr_vk_arg fr_trainer_feature(const fr_trainer *t, int c);
/* trainer_ri.c: setup, and the phases recorded between the forward and the backward. */
int fr_trainer_ri_feature(fr_trainer *t, const fr_model *m, int requested, fr_error *err);
int fr_trainer_ri_setup(fr_trainer *t, const fr_trainer_options *opts, fr_error *err);
void fr_trainer_ri_destroy(fr_trainer *t);
int fr_trainer_ri_upload(fr_trainer *t, const fr_trainer_batch *b, fr_error *err);
int fr_trainer_ri_record_mid(fr_trainer *t, fr_vk_sequence *seq, int batch, fr_error *err);

#endif
