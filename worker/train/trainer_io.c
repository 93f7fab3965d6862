/* The trainer's step calls, parameter queries, export and benchmark. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer_internal.h"

int fr_trainer_setup_optimizer(fr_trainer *t, fr_error *err)
{
  int rc = fr_optimizer_create(t->ctx, &t->o.optim, &t->opt, err);
  if (rc)
    return rc;
  /* Whole ranges: the alignment gaps are zero in values and gradients, so every
   * optimizer leaves them at zero, and two ranges cost two dispatches, not 150. */
  size_t first = 0; /* the first trainable float of the backbone */
  if (t->o.train_from_layer > 0) {
    first = t->L[t->o.train_from_layer].off_w;
    fr_param_group stem = {0.0f, 0.0f, 1};
    int g = fr_optimizer_add_group(t->opt, &stem, err);
    if (g < 0)
      return g;
    rc = fr_optimizer_add_param(t->opt, g, floats_at(&t->params, 0, first), (fr_vk_arg){0}, first, err);
    if (rc)
      return rc;
  }
  int g = fr_optimizer_add_group(t->opt, &t->o.backbone, err);
  if (g < 0)
    return g;
  rc = fr_optimizer_add_param(t->opt, g, floats_at(&t->params, first, t->off_head - first),
                              floats_at(&t->grads, first, t->off_head - first), t->off_head - first, err);
  if (rc)
    return rc;
  g = fr_optimizer_add_group(t->opt, &t->o.head_group, err);
  if (g < 0)
    return g;
  size_t nh = (size_t)t->o.classes * t->dim;
  rc = fr_optimizer_add_param(t->opt, g, floats_at(&t->params, t->off_head, nh), floats_at(&t->grads, t->off_head, nh),
                              nh, err);
  if (rc || !t->ri)
    return rc;
  g = fr_optimizer_add_group(t->opt, &t->o.ri_group, err);
  if (g < 0)
    return g;
  return fr_ri_heads_add_to_optimizer(t->ri, t->opt, g, err);
}

int fr_trainer_initial_repack(fr_trainer *t, fr_error *err)
{
  int rc = fr_vk_sequence_begin(t->seq, err);
  if (!rc)
    rc = fr_trainer_record_repack(t, t->seq, err);
  if (!rc)
    rc = fr_vk_sequence_end(t->seq, err);
  if (!rc)
    rc = fr_vk_sequence_run(t->seq, err);
  t->recorded_batch = -1;
  return rc;
}

int fr_trainer_run_batch(fr_trainer *t, const fr_trainer_batch *bt, int update, fr_trainer_losses *out,
                         fr_error *err)
{
  int batch = bt ? bt->batch : 0;
  if (out)
    memset(out, 0, sizeof(*out));
  if (!bt || !bt->images || !bt->labels || batch < 1 || batch > t->o.max_batch)
    return fr_error_set(err, FR_ERR_INVALID, "training step: batch %d (1..%d) or NULL data", batch, t->o.max_batch);
  uint64_t img = (uint64_t)t->in_h * t->in_w * t->in_c;
  int rc = FR_OK;
  for (int c = 0; c * t->chunk < batch && !rc; c++) {
    int nb = batch - c * t->chunk < t->chunk ? batch - c * t->chunk : t->chunk;
    rc = fr_vk_buffer_upload(t->ctx, &t->input, (uint64_t)c * t->in_slice, bt->images + (uint64_t)c * t->chunk * img,
                             (uint64_t)nb * img * sizeof(float), err);
  }
  if (!rc && t->ri)
    rc = fr_trainer_ri_upload(t, bt, err);
  else if (!rc)
    rc = fr_vk_buffer_upload(t->ctx, &t->labels, 0, bt->labels, (uint64_t)batch * sizeof(int32_t), err);
  if (!rc && (t->recorded_batch != batch || t->recorded_update != update))
    rc = fr_trainer_record(t, batch, update, err);
  if (!rc && update)
    rc = fr_optimizer_begin_step(t->opt, err);
  if (!rc)
    rc = fr_vk_sequence_run(t->seq, err);
  if (!rc && out) {
    rc = fr_vk_buffer_download(t->ctx, &t->loss_val, 0, &out->arcface, sizeof(float), err);
    if (!rc && t->ri)
      rc = fr_ri_heads_read_loss(t->ri, &out->ri, err);
    out->total = out->arcface + out->ri.total;
  }
  if (rc)
    fr_error_prefix(err, "training step (batch %d)", batch);
  return rc;
}

static int run(fr_trainer *t, const float *images, const int32_t *labels, int batch, float *loss, int update,
               fr_error *err)
{
  fr_trainer_batch b = {images, labels, NULL, batch, 0.0f, 1.0f};
  fr_trainer_losses l;
  int rc = fr_trainer_run_batch(t, &b, update, &l, err);
  if (!rc && loss)
    *loss = l.total;
  return rc;
}

int fr_trainer_step(fr_trainer *t, const float *images, const int32_t *labels, int batch, float *loss, fr_error *err)
{
  return run(t, images, labels, batch, loss, 1, err);
}

int fr_trainer_grads(fr_trainer *t, const float *images, const int32_t *labels, int batch, float *loss,
                     fr_error *err)
{
  return run(t, images, labels, batch, loss, 0, err);
}

int fr_trainer_tensor_count(const fr_trainer *t) { return t->n_tensors; }
const char *fr_trainer_tensor_name(const fr_trainer *t, int i)
{
  return i >= 0 && i < t->n_tensors ? t->tensors[i].name : "";
}
size_t fr_trainer_tensor_size(const fr_trainer *t, int i) { return i >= 0 && i < t->n_tensors ? t->tensors[i].n : 0; }
size_t fr_trainer_total_floats(const fr_trainer *t)
{
  size_t n = 0;
  for (int i = 0; i < t->n_tensors; i++)
    n += t->tensors[i].n;
  return n;
}

int fr_trainer_read(fr_trainer *t, int gradients, float *out, fr_error *err)
{
  float *all = malloc(t->n_params * sizeof(float));
  if (!all)
    return fr_error_set(err, FR_ERR_NOMEM, "reading %s: out of memory", gradients ? "gradients" : "parameters");
  int rc = fr_vk_buffer_download(t->ctx, gradients ? &t->grads : &t->params, 0, all, t->n_params * sizeof(float), err);
  size_t at = 0;
  for (int i = 0; i < t->n_tensors && !rc; i++) {
    memcpy(out + at, all + t->tensors[i].offset, t->tensors[i].n * sizeof(float));
    at += t->tensors[i].n;
  }
  free(all);
  return rc;
}

int fr_trainer_export(fr_trainer *t, fr_model *model, fr_error *err)
{
  if (!model || model->n_layers != t->n)
    return fr_error_set(err, FR_ERR_INVALID, "export: the model has %d layers, the trainer %d",
                        model ? model->n_layers : 0, t->n);
  for (int i = 0; i < t->n; i++) {
    const fr_layer *a = &model->layers[i], *b = &t->layers[i];
    if (a->kind != b->kind || a->out_c != b->out_c || a->in_c != b->in_c || a->kernel_h != b->kernel_h ||
        a->kernel_w != b->kernel_w || a->activation != b->activation)
      return fr_error_set(err, FR_ERR_INVALID, "export: layer %d (%s) differs from the trained one", i, a->name);
  }
  float *all = malloc(t->n_params * sizeof(float));
  if (!all)
    return fr_error_set(err, FR_ERR_NOMEM, "export: out of memory");
  int rc = fr_vk_buffer_download(t->ctx, &t->params, 0, all, t->n_params * sizeof(float), err);
  for (int i = 0; i < t->n && !rc; i++) {
    fr_layer *l = &model->layers[i];
    memcpy(l->weights, all + t->L[i].off_w, (size_t)fr_layer_weight_count(l) * sizeof(float));
    memcpy(l->bias, all + t->L[i].off_b, (size_t)l->out_c * sizeof(float));
    if (l->activation == FR_ACT_PRELU)
      memcpy(l->slope, all + t->L[i].off_s, (size_t)l->out_c * sizeof(float));
  }
  free(all);
  if (!rc)
    rc = fr_model_weights_sha256(model, model->weights_sha256, err);
  return rc;
}

int fr_trainer_read_head(fr_trainer *t, float *out, fr_error *err)
{
  size_t n = (size_t)t->o.classes * t->dim;
  return fr_vk_buffer_download(t->ctx, &t->params, (uint64_t)t->off_head * sizeof(float), out, n * sizeof(float),
                               err);
}

fr_optimizer *fr_trainer_optimizer(fr_trainer *t) { return t->opt; }
int fr_trainer_chunk_size(const fr_trainer *t) { return t->chunk; }
uint64_t fr_trainer_device_bytes(const fr_trainer *t) { return t->bytes; }

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int fr_trainer_bench(fr_vk_context *ctx, const fr_model *model, int batch, int steps, fr_trainer_bench_result *res,
                     fr_error *err)
{
  memset(res, 0, sizeof(*res));
  if (batch < 1 || steps < 1)
    return fr_error_set(err, FR_ERR_INVALID, "train bench: batch %d, %d steps", batch, steps);
  size_t img = (size_t)model->input_h * model->input_w * model->input_c;
  float *images = malloc((size_t)batch * img * sizeof(float));
  int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
  if (!images || !labels) {
    free(images);
    free(labels);
    return fr_error_set(err, FR_ERR_NOMEM, "train bench: out of memory for %d images", batch);
  }
  uint32_t rng = 12345u;
  for (size_t i = 0; i < (size_t)batch * img; i++) {
    rng = rng * 1664525u + 1013904223u;
    images[i] = (float)(rng >> 8) / 8388608.0f - 1.0f;
  }
  enum { CLASSES = 1000 };
  for (int b = 0; b < batch; b++)
    labels[b] = (int32_t)((uint32_t)b * 7919u % CLASSES);
  fr_vk_memory_reset_peak(ctx);
  fr_trainer_options o = fr_trainer_defaults(batch, CLASSES, 0.01f, 0.9f);
  fr_trainer *t = NULL;
  int rc = fr_trainer_create(ctx, model, &o, &t, err);
  float loss = 0;
  if (!rc)
    rc = fr_trainer_step(t, images, labels, batch, &loss, err); /* warm-up: records, compiles, touches memory */
  double t0 = now_s();
  for (int s = 0; s < steps && !rc; s++)
    rc = fr_trainer_step(t, images, labels, batch, &loss, err);
  double dt = now_s() - t0;
  if (!rc) {
    res->batch = batch;
    res->chunk = t->chunk;
    res->steps = steps;
    res->ms_per_step = dt * 1e3 / steps;
    res->images_per_s = (double)batch * steps / dt;
    res->peak_device_bytes = fr_vk_memory_peak(ctx);
    res->trainer_bytes = t->bytes;
  }
  fr_trainer_destroy(t);
  free(images);
  free(labels);
  if (rc)
    fr_error_prefix(err, "train bench");
  return rc;
}
