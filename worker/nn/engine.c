/* The inference engine: a model's layers as recorded dispatches. */
#include <math.h>

#include "faceri/ri_infer.h"
#include "faceri/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/log.h"
#include "faceri/ops.h"

#define ALIGN 256u

typedef struct layer_state {
  fr_conv_params params; /* batch filled in at recording */
  fr_vk_buffer weights, bias, slope;
  int out_slot;          /* activation buffer holding this layer's output */
  double total_ms;
} layer_state;

struct fr_engine {
  fr_vk_context *ctx;
  const fr_model *model;
  fr_ops *ops;
  int max_batch, chunk;
  int timing;
  int n_layers;
  layer_state *layers;
  int n_slots;
  fr_vk_buffer *slots;
  uint64_t *slot_bytes_per_image;
  fr_vk_buffer input, embeddings, norms;
  /* Two recordings: full chunks and the last, partial one, so a batch that is
   * split never re-records between its chunks. */
  fr_vk_sequence *seqs[2];
  fr_ri_infer *ri; /* the model's RI heads, run on the feature layer's output in the same submission */
  int ri_layer;
  int recorded_batch[2];
  uint64_t weight_bytes, activation_bytes;
};

static uint64_t round_up(uint64_t n, uint64_t m) { return (n + m - 1) / m * m; }

static uint64_t layer_out_floats(const fr_layer *l) { return (uint64_t)l->out_h * l->out_w * l->out_c; }

static int upload_floats(fr_engine *e, fr_vk_buffer *buf, const float *data, size_t n, fr_error *err)
{
  int rc = fr_vk_buffer_create(e->ctx, round_up(n * sizeof(float), 16), buf, err);
  if (!rc)
    rc = fr_vk_buffer_upload(e->ctx, buf, 0, data, n * sizeof(float), err);
  if (!rc)
    e->weight_bytes += buf->size;
  return rc;
}

static int upload_layer(fr_engine *e, int i, fr_error *err)
{
  const fr_layer *l = &e->model->layers[i];
  layer_state *s = &e->layers[i];
  fr_conv_params_from_layer(l, 1, &s->params);
  size_t wn = fr_ops_packed_weight_count(e->ops, &s->params);
  size_t cn = fr_ops_packed_channel_count(&s->params);
  float *packed = malloc((wn > cn ? wn : cn) * sizeof(float));
  if (!packed)
    return fr_error_set(err, FR_ERR_NOMEM, "layer %d (%s): out of memory packing weights", i, l->name);
  fr_ops_pack_conv_weights(e->ops, &s->params, l->weights, packed);
  int rc = upload_floats(e, &s->weights, packed, wn, err);
  if (!rc) {
    fr_ops_pack_channels(&s->params, l->bias, packed);
    rc = upload_floats(e, &s->bias, packed, cn, err);
  }
  if (!rc && l->activation == FR_ACT_PRELU) {
    fr_ops_pack_channels(&s->params, l->slope, packed);
    rc = upload_floats(e, &s->slope, packed, cn, err);
  }
  free(packed);
  if (rc)
    fr_error_prefix(err, "uploading layer %d (%s)", i, l->name);
  return rc;
}

/* Gives each layer output a slot, reusing a slot once every reader of its
 * tensor has run: the network needs only a few live tensors at any time. */
static int plan_slots(fr_engine *e, fr_error *err)
{
  const fr_model *m = e->model;
  int n = m->n_layers;
  int *last_use = malloc((size_t)n * sizeof(int));
  int *slot_free_after = malloc((size_t)n * sizeof(int)); /* per slot: layer index after which it is free */
  e->slot_bytes_per_image = calloc((size_t)n, sizeof(uint64_t));
  if (!last_use || !slot_free_after || !e->slot_bytes_per_image) {
    free(last_use);
    free(slot_free_after);
    return fr_error_set(err, FR_ERR_NOMEM, "planning activations: out of memory");
  }
  for (int i = 0; i < n; i++)
    last_use[i] = i == m->output_layer ? n : i;
  for (int i = 0; i < n; i++) {
    const fr_layer *l = &m->layers[i];
    if (l->input >= 0 && last_use[l->input] < i)
      last_use[l->input] = i;
    if (l->residual >= 0 && last_use[l->residual] < i)
      last_use[l->residual] = i;
  }
  e->n_slots = 0;
  for (int i = 0; i < n; i++) {
    int slot = -1;
    for (int s = 0; s < e->n_slots && slot < 0; s++)
      if (slot_free_after[s] < i)
        slot = s;
    if (slot < 0)
      slot = e->n_slots++;
    slot_free_after[slot] = last_use[i];
    e->layers[i].out_slot = slot;
    uint64_t bytes = round_up(layer_out_floats(&m->layers[i]) * sizeof(float), ALIGN);
    if (bytes > e->slot_bytes_per_image[slot])
      e->slot_bytes_per_image[slot] = bytes;
  }
  free(last_use);
  free(slot_free_after);
  return FR_OK;
}

static int allocate_activations(fr_engine *e, fr_error *err)
{
  const fr_model *m = e->model;
  const fr_vk_device_info *dev = fr_vk_context_device(e->ctx);
  uint64_t input_bytes = (uint64_t)m->input_h * m->input_w * m->input_c * sizeof(float);
  uint64_t largest = round_up(input_bytes, ALIGN);
  for (int s = 0; s < e->n_slots; s++)
    if (e->slot_bytes_per_image[s] > largest)
      largest = e->slot_bytes_per_image[s];
  uint64_t limit = dev->max_storage_buffer_range;
  if (dev->has_texel_rgba32f && dev->max_texel_buffer_elements * 16 < limit)
    limit = dev->max_texel_buffer_elements * 16;
  uint64_t fit = limit / largest;
  if (fit == 0)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "one image needs a %llu-byte tensor, over the device's %llu-byte limit",
                        (unsigned long long)largest, (unsigned long long)limit);
  e->chunk = e->max_batch < (int)(fit < 4096 ? fit : 4096) ? e->max_batch : (int)(fit < 4096 ? fit : 4096);
  e->slots = calloc((size_t)e->n_slots, sizeof(fr_vk_buffer));
  if (!e->slots)
    return fr_error_set(err, FR_ERR_NOMEM, "activations: out of memory");
  int rc = FR_OK;
  for (int s = 0; s < e->n_slots && !rc; s++) {
    /* Per-image sizes are 256-byte multiples, so this also covers the ops' padding
     * rule (fr_ops_tensor_bytes) for any tensor assigned to the slot. */
    rc = fr_vk_buffer_create(e->ctx, e->slot_bytes_per_image[s] * (uint64_t)e->chunk, &e->slots[s], err);
    e->activation_bytes += e->slot_bytes_per_image[s] * (uint64_t)e->chunk;
  }
  for (int i = 0; i < m->n_layers && !rc; i++) {
    const fr_layer *l = &m->layers[i];
    if (fr_ops_tensor_bytes(e->ops, e->chunk, l->out_h, l->out_w, l->out_c) > e->slots[e->layers[i].out_slot].size)
      rc = fr_error_set(err, FR_ERR_INTERNAL, "layer %d (%s): its output does not fit its activation buffer", i,
                        l->name);
  }
  uint64_t d = (uint64_t)m->embedding_size;
  if (!rc)
    rc = fr_vk_buffer_create(e->ctx, fr_ops_tensor_bytes(e->ops, e->chunk, m->input_h, m->input_w, m->input_c),
                             &e->input, err);
  if (!rc)
    rc = fr_vk_buffer_create(e->ctx, round_up(d * sizeof(float) * (uint64_t)e->chunk, 16), &e->embeddings, err);
  if (!rc)
    rc = fr_vk_buffer_create(e->ctx, round_up(sizeof(float) * (uint64_t)e->chunk, 16), &e->norms, err);
  e->activation_bytes += e->input.size + e->embeddings.size + e->norms.size;
  if (rc)
    fr_error_prefix(err, "allocating activations for %d images", e->chunk);
  return rc;
}

static fr_vk_arg whole(const fr_vk_buffer *b) { return (fr_vk_arg){b, 0, 0}; }

static int record(fr_engine *e, fr_vk_sequence *seq, int batch, fr_error *err)
{
  const fr_model *m = e->model;
  int rc = fr_vk_sequence_begin(seq, err);
  for (int i = 0; i < m->n_layers && !rc; i++) {
    const fr_layer *l = &m->layers[i];
    layer_state *s = &e->layers[i];
    s->params.batch = batch;
    fr_vk_arg input = l->input == FR_LAYER_INPUT ? whole(&e->input) : whole(&e->slots[e->layers[l->input].out_slot]);
    fr_vk_arg out = whole(&e->slots[s->out_slot]);
    fr_vk_arg residual = out;
    if (l->residual == FR_LAYER_INPUT)
      residual = whole(&e->input);
    else if (l->residual >= 0)
      residual = whole(&e->slots[e->layers[l->residual].out_slot]);
    fr_vk_arg slope = l->activation == FR_ACT_PRELU ? whole(&s->slope) : whole(&s->bias);
    rc = fr_ops_record_conv(e->ops, seq, &s->params, input, whole(&s->weights), whole(&s->bias), slope, residual,
                            out, e->timing ? l->name : NULL, err);
    if (rc)
      fr_error_prefix(err, "recording layer %d (%s)", i, l->name);
    fr_vk_sequence_barrier(seq);
    /* Right after the feature layer, while its activation buffer still holds it (later
     * layers reuse the buffers). */
    if (!rc && e->ri && i == e->ri_layer) {
      rc = fr_ri_infer_record_parts(e->ri, seq, 0, batch, out, (fr_vk_arg){0}, FR_RI_INFER_FEATURES, err);
      fr_vk_sequence_barrier(seq);
    }
  }
  /* The embedding regression (if any) on the raw embedding, the output layer's buffer. */
  if (!rc && e->ri) {
    fr_vk_arg raw = whole(&e->slots[e->layers[m->output_layer].out_slot]);
    rc = fr_ri_infer_record_parts(e->ri, seq, 0, batch, (fr_vk_arg){0}, raw, FR_RI_INFER_EMBEDDING, err);
    fr_vk_sequence_barrier(seq);
  }
  if (!rc)
    rc = fr_ops_record_l2norm(e->ops, seq, batch, m->embedding_size,
                              whole(&e->slots[e->layers[m->output_layer].out_slot]), whole(&e->embeddings),
                              whole(&e->norms), e->timing ? "l2norm" : NULL, err);
  if (!rc)
    rc = fr_vk_sequence_end(seq, err);
  return rc;
}

int fr_engine_create(fr_vk_context *ctx, const fr_model *model, const fr_engine_options *opts, fr_engine **out,
                     fr_error *err)
{
  *out = NULL;
  int rc = fr_model_validate(model, err);
  if (rc)
    return rc;
  fr_engine *e = calloc(1, sizeof(*e));
  if (!e)
    return fr_error_set(err, FR_ERR_NOMEM, "engine: out of memory");
  e->ctx = ctx;
  e->model = model;
  e->max_batch = opts && opts->max_batch > 0 ? opts->max_batch : 32;
  e->timing = opts ? opts->timing : 0;
  e->n_layers = model->n_layers;
  e->layers = calloc((size_t)model->n_layers, sizeof(layer_state));
  if (!e->layers) {
    free(e);
    return fr_error_set(err, FR_ERR_NOMEM, "engine: out of memory");
  }
  rc = fr_ops_create(ctx, &e->ops, err);
  for (int i = 0; i < model->n_layers && !rc; i++)
    rc = upload_layer(e, i, err);
  if (!rc)
    rc = plan_slots(e, err);
  if (!rc)
    rc = allocate_activations(e, err);
  fr_ri_heads_config ri_cfg;
  int ri_layer = -1;
  fr_error ri_err = {0};
  if (!rc && fr_model_has_ri_heads(model) &&
      fr_ri_config_from_model(model, e->chunk, &ri_cfg, &ri_layer, &ri_err) != FR_OK)
    /* Heads that do not fit this network (e.g. a copy cut at the feature layer): the
     * embeddings are still right; only the learned RI is missing. */
    fr_warn("engine: the model's RI heads are not used: %s", ri_err.message);
  else if (!rc && fr_model_has_ri_heads(model)) {
    rc = fr_ri_infer_create(ctx, model, e->chunk, &e->ri, err);
    if (!rc)
      e->ri_layer = fr_ri_infer_feature_layer(e->ri);
    if (rc)
      fr_error_prefix(err, "engine: the model's RI heads");
  }
  for (int i = 0; i < 2 && !rc; i++)
    rc = fr_vk_sequence_create(ctx, e->timing ? model->n_layers + 1 : 0, &e->seqs[i], err);
  if (rc) {
    fr_engine_destroy(e);
    return rc;
  }
  fr_debug("engine: %d layers, %d activation buffers, chunk %d images, weights %.1f MiB, activations %.1f MiB",
           model->n_layers, e->n_slots, e->chunk, (double)e->weight_bytes / 1048576.0,
           (double)e->activation_bytes / 1048576.0);
  *out = e;
  return FR_OK;
}

void fr_engine_destroy(fr_engine *e)
{
  if (!e)
    return;
  fr_vk_sequence_destroy(e->seqs[0]);
  fr_vk_sequence_destroy(e->seqs[1]);
  fr_ri_infer_destroy(e->ri);
  for (int i = 0; i < e->n_layers; i++) {
    fr_vk_buffer_destroy(e->ctx, &e->layers[i].weights);
    fr_vk_buffer_destroy(e->ctx, &e->layers[i].bias);
    fr_vk_buffer_destroy(e->ctx, &e->layers[i].slope);
  }
  for (int s = 0; s < e->n_slots && e->slots; s++)
    fr_vk_buffer_destroy(e->ctx, &e->slots[s]);
  fr_vk_buffer_destroy(e->ctx, &e->input);
  fr_vk_buffer_destroy(e->ctx, &e->embeddings);
  fr_vk_buffer_destroy(e->ctx, &e->norms);
  fr_ops_destroy(e->ops);
  free(e->slots);
  free(e->slot_bytes_per_image);
  free(e->layers);
  free(e);
}

int fr_engine_has_ri(const fr_engine *e) { return e->ri != NULL; }
int fr_engine_has_attention(const fr_engine *e) { return e->ri && fr_ri_infer_config(e->ri)->attention; }
int fr_engine_attention_dim(const fr_engine *e) { return fr_engine_has_attention(e) ? e->model->embedding_size : 0; }

int fr_engine_run(fr_engine *e, const float *input, int batch, float *embeddings, float *norms, float *raw,
                  fr_error *err)
{
  fr_engine_outputs o = {embeddings, norms, raw, NULL, NULL};
  return fr_engine_run_outputs(e, input, batch, &o, err);
}

int fr_engine_run_ri(fr_engine *e, const float *input, int batch, float *embeddings, float *norms, float *raw,
                     float *ri, fr_error *err)
{
  fr_engine_outputs o = {embeddings, norms, raw, ri, NULL};
  return fr_engine_run_outputs(e, input, batch, &o, err);
}

int fr_engine_run_outputs(fr_engine *e, const float *input, int batch, const fr_engine_outputs *out, fr_error *err)
{
  const fr_model *m = e->model;
  if (batch <= 0 || batch > e->max_batch)
    return fr_error_set(err, FR_ERR_INVALID, "batch of %d images (the engine takes 1..%d)", batch, e->max_batch);
  uint64_t per_image = (uint64_t)m->input_h * m->input_w * m->input_c;
  uint64_t d = (uint64_t)m->embedding_size;
  const fr_vk_buffer *raw_buf = &e->slots[e->layers[m->output_layer].out_slot];
  int attention = fr_engine_has_attention(e);
  for (int start = 0; start < batch; start += e->chunk) {
    int n = batch - start < e->chunk ? batch - start : e->chunk;
    int which = n == e->chunk ? 0 : 1;
    fr_vk_sequence *seq = e->seqs[which];
    int rc = FR_OK;
    if (e->recorded_batch[which] != n) {
      e->recorded_batch[which] = 0;
      rc = record(e, seq, n, err);
      if (!rc)
        e->recorded_batch[which] = n;
    }
    if (!rc)
      rc = fr_vk_buffer_upload(e->ctx, &e->input, 0, input + (uint64_t)start * per_image,
                               per_image * (uint64_t)n * sizeof(float), err);
    if (!rc)
      rc = fr_vk_sequence_run(seq, err);
    if (!rc && out->embeddings)
      rc = fr_vk_buffer_download(e->ctx, &e->embeddings, 0, out->embeddings + (uint64_t)start * d,
                                 d * (uint64_t)n * sizeof(float), err);
    if (!rc && out->norms)
      rc = fr_vk_buffer_download(e->ctx, &e->norms, 0, out->norms + start, (uint64_t)n * sizeof(float), err);
    if (!rc && out->raw)
      rc = fr_vk_buffer_download(e->ctx, raw_buf, 0, out->raw + (uint64_t)start * d, d * (uint64_t)n * sizeof(float),
                                 err);
    for (int i = 0; out->ri && !e->ri && i < n; i++)
      out->ri[start + i] = NAN;
    for (uint64_t i = 0; out->v_attn && !attention && i < (uint64_t)n * d; i++)
      out->v_attn[(uint64_t)start * d + i] = NAN;
    if (!rc && e->ri && (out->ri || (out->v_attn && attention)))
      rc = fr_ri_infer_read(e->ri, n, out->ri ? out->ri + start : NULL,
                            out->v_attn && attention ? out->v_attn + (uint64_t)start * d : NULL, err);
    if (rc) {
      fr_error_prefix(err, "running images %d..%d", start, start + n - 1);
      return rc;
    }
    if (e->timing) {
      int count = fr_vk_sequence_timed_count(seq);
      for (int i = 0; i < count && i < e->n_layers; i++) {
        const char *label;
        double ms;
        if (fr_vk_sequence_timing(seq, i, &label, &ms) == FR_OK)
          e->layers[i].total_ms += ms;
      }
    }
  }
  return FR_OK;
}

int fr_engine_chunk_size(const fr_engine *e) { return e->chunk; }
uint64_t fr_engine_activation_bytes(const fr_engine *e) { return e->activation_bytes; }
uint64_t fr_engine_weight_bytes(const fr_engine *e) { return e->weight_bytes; }
int fr_engine_timing_count(const fr_engine *e) { return e->timing ? e->n_layers : 0; }

void fr_engine_timing(const fr_engine *e, int i, const char **label, const char **kernel, double *total_ms)
{
  *label = e->model->layers[i].name;
  *kernel = fr_ops_conv_kernel_name(e->ops, &e->layers[i].params);
  *total_ms = e->layers[i].total_ms;
}

void fr_engine_reset_timings(fr_engine *e)
{
  for (int i = 0; i < e->n_layers; i++)
    e->layers[i].total_ms = 0;
}
