/* The RI heads inside the trainer's step (faceri/trainer.h, ri_heads.h): where each
 * recorded phase goes and the buffers the targets need.
 *
 * Step order (one submission):
 *   forward chunk c, then the heads' fwd_chunk on F_c     (trainer.c)
 *   ArcFace head: loss, dL/dv into d_raw                  (trainer.c)
 *   fwd_batch, fwd2_chunk for every c, xi from the current prototypes and the UI
 *   centre, the heads' loss (adds dL/dv into d_raw), bwd_chunk for every c, bwd_batch
 *                                                          (here)
 *   backward chunk c: bwd2_chunk adds dL/dF_c into the gradient of F when the walk
 *   reaches the feature layer                              (trainer_bwd.c)
 *   optimizer (the heads' tensors are a group), repack. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer_internal.h"

int fr_trainer_ri_feature(fr_trainer *t, const fr_model *m, int requested, fr_error *err)
{
  int f = requested;
  if (f < 0) {
    for (int i = 0; i < m->n_layers && f < 0; i++) {
      const fr_layer *l = &m->layers[i];
      if (l->out_h * l->out_w == 1 && l->in_h * l->in_w > 1 && l->input >= 0)
        f = l->input;
    }
    if (f < 0)
      return fr_error_set(err, FR_ERR_UNSUPPORTED,
                          "RI heads: the model has no layer reducing a feature map to 1x1 (give the feature layer)");
  }
  if (f >= m->n_layers)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: feature layer %d outside the model's %d layers", f,
                        m->n_layers);
  t->feat = f;
  return FR_OK;
}

static int ri_buffer(fr_trainer *t, fr_vk_buffer *b, uint64_t bytes, const char *what, fr_error *err)
{
  int rc = fr_vk_buffer_create(t->ctx, ((bytes ? bytes : 16) + 15) & ~(uint64_t)15, b, err);
  if (rc)
    fr_error_prefix(err, "trainer %s (%llu bytes)", what, (unsigned long long)bytes);
  else
    t->bytes += b->size;
  return rc;
}

int fr_trainer_ri_setup(fr_trainer *t, const fr_trainer_options *opts, fr_error *err)
{
  if (!opts->ui_centre)
    return fr_error_set(err, FR_ERR_INVALID, "RI heads: no UI centre (the model has none: faceri model set-ui)");
  for (int k = 0; k < t->dim; k++)
    if (!isfinite(opts->ui_centre[k]))
      return fr_error_set(err, FR_ERR_INVALID, "RI heads: UI centre value %d is not finite", k);
  const fr_layer *l = &t->layers[t->feat];
  fr_ri_heads_config cfg = *opts->ri;
  cfg.h = l->out_h, cfg.w = l->out_w, cfg.c = l->out_c, cfg.dim = t->dim;
  cfg.max_batch = t->o.max_batch;
  cfg.max_chunk = t->chunk;
  int B = t->o.max_batch;
  int rc = fr_ri_heads_create(t->ctx, &cfg, &t->ri, err);
  if (!rc)
    rc = fr_ri_device_create(t->ctx, &t->rid, err);
  if (!rc)
    rc = ri_buffer(t, &t->flags, (uint64_t)B * sizeof(int32_t), "UI flags", err);
  if (!rc)
    rc = ri_buffer(t, &t->xi, (uint64_t)B * 4 * sizeof(float), "RI targets", err);
  if (!rc)
    rc = ri_buffer(t, &t->ri_ws, fr_ri_workspace_floats(B, t->o.classes) * sizeof(float), "RI workspace", err);
  if (!rc)
    rc = ri_buffer(t, &t->centre, (uint64_t)t->dim * sizeof(float), "UI centre", err);
  if (!rc)
    rc = fr_vk_buffer_upload(t->ctx, &t->centre, 0, opts->ui_centre, (uint64_t)t->dim * sizeof(float), err);
  if (!rc && !(t->host_labels = malloc((size_t)B * sizeof(int32_t))))
    rc = fr_error_set(err, FR_ERR_NOMEM, "RI heads: out of memory");
  if (rc)
    fr_error_prefix(err, "RI heads on layer %d (%s)", t->feat, l->name);
  return rc;
}

void fr_trainer_ri_destroy(fr_trainer *t)
{
  fr_vk_buffer *b[] = {&t->flags, &t->xi, &t->ri_ws, &t->centre};
  for (size_t k = 0; k < sizeof(b) / sizeof(b[0]); k++)
    if (b[k]->buffer)
      fr_vk_buffer_destroy(t->ctx, b[k]);
  fr_ri_device_destroy(t->rid);
  fr_ri_heads_destroy(t->ri);
  free(t->host_labels);
  t->ri = NULL;
  t->rid = NULL;
  t->host_labels = NULL;
}

int fr_trainer_ri_record_mid(fr_trainer *t, fr_vk_sequence *seq, int batch, fr_error *err)
{
  uint64_t bd = (uint64_t)batch * t->dim * sizeof(float);
  fr_vk_arg v = {&t->emb_raw, 0, bd};
  int chunks = (batch + t->chunk - 1) / t->chunk;
  int rc = fr_ri_heads_record_fwd_batch(t->ri, seq, batch, v, err);
  for (int c = 0; c < chunks && !rc; c++)
    rc = fr_ri_heads_record_fwd2_chunk(t->ri, seq, c * t->chunk, c == chunks - 1 ? batch - c * t->chunk : t->chunk,
                                       fr_trainer_feature(t, c), err);
  /* Eq. 3 on the prototypes as they are before this step's update: a detached target. */
  size_t nh = (size_t)t->o.classes * t->dim;
  fr_vk_sequence_barrier(seq);
  if (!rc)
    rc = fr_ri_record_index(t->rid, seq, batch, t->dim, t->o.classes, v,
                            (fr_vk_arg){&t->params, (uint64_t)t->off_head * sizeof(float), nh * sizeof(float)},
                            (fr_vk_arg){&t->labels, 0, 0}, (fr_vk_arg){&t->centre, 0, 0},
                            (fr_vk_arg){&t->ri_ws, 0, 0}, (fr_vk_arg){&t->xi, 0, 0}, err);
  fr_vk_sequence_barrier(seq);
  fr_ri_targets tg = {batch, v, {&t->xi, 0, 0}, 4, 3, {&t->flags, 0, 0}, {&t->centre, 0, 0}, {&t->d_raw, 0, bd},
                      {0}};
  if (!rc)
    rc = fr_ri_heads_record_loss(t->ri, seq, &tg, err);
  for (int c = 0; c < chunks && !rc; c++)
    rc = fr_ri_heads_record_bwd_chunk(t->ri, seq, c * t->chunk, c == chunks - 1 ? batch - c * t->chunk : t->chunk,
                                      fr_trainer_feature(t, c), err);
  if (!rc)
    rc = fr_ri_heads_record_bwd_batch(t->ri, seq, batch, err);
  fr_vk_sequence_barrier(seq);
  if (rc)
    fr_error_prefix(err, "recording the RI heads");
  return rc;
}

/* Labels with the UI rows unlabelled, and the flags, for a batch. */
int fr_trainer_ri_upload(fr_trainer *t, const fr_trainer_batch *b, fr_error *err)
{
  for (int r = 0; r < b->batch; r++)
    t->host_labels[r] = b->flags && (b->flags[r] & 1) ? -1 : b->labels[r];
  int rc = fr_vk_buffer_upload(t->ctx, &t->labels, 0, t->host_labels, (uint64_t)b->batch * sizeof(int32_t), err);
  if (!rc) {
    /* host_labels is reused for the flags once uploaded (uploads copy synchronously) */
    for (int r = 0; r < b->batch; r++)
      t->host_labels[r] = b->flags ? b->flags[r] : 0;
    rc = fr_vk_buffer_upload(t->ctx, &t->flags, 0, t->host_labels, (uint64_t)b->batch * sizeof(int32_t), err);
  }
  if (!rc)
    rc = fr_ri_heads_begin_step(t->ri, (uint32_t)fr_optimizer_steps(t->opt), b->mu_ui, b->sigma_ui, err);
  return rc;
}

fr_ri_heads *fr_trainer_ri_heads(fr_trainer *t) { return t->ri; }
int fr_trainer_ri_feature_layer(const fr_trainer *t) { return t->ri ? t->feat : -1; }

int fr_trainer_read_xi(fr_trainer *t, int n, float *xi, fr_error *err)
{
  if (!t->ri || n < 1 || n > t->o.max_batch)
    return fr_error_set(err, FR_ERR_INVALID, "trainer: reading %d xi rows (%s)", n, t->ri ? "out of range" : "no RI heads");
  float *all = malloc((size_t)n * 4 * sizeof(float));
  if (!all)
    return fr_error_set(err, FR_ERR_NOMEM, "trainer: out of memory");
  int rc = fr_vk_buffer_download(t->ctx, &t->xi, 0, all, (uint64_t)n * 4 * sizeof(float), err);
  for (int r = 0; !rc && r < n; r++)
    xi[r] = all[4 * r + 3];
  free(all);
  return rc;
}
