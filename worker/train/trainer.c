/* The training engine: layout, buffers and the recorded step (see faceri/trainer.h).
 * Queries, export and the benchmark are in trainer_io.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/ops.h"
#include "faceri/train_ops.h"
#include "trainer_internal.h"

#define ALIGN_FLOATS 64u /* 256 bytes: every storage-buffer offset the device can ask for */
#define ALIGN_BYTES 256u
#define WG 64u
/* The repack's index map stores positions as exact float integers while packing. */
#define MAX_EXACT_INDEX (1u << 24)

fr_trainer_options fr_trainer_defaults(int max_batch, int classes, float lr, float momentum)
{
  fr_trainer_options o;
  memset(&o, 0, sizeof(o));
  o.max_batch = max_batch;
  o.loss = FR_LOSS_SOFTMAX;
  o.classes = classes;
  o.s = 1.0f;
  o.normalize = 1;
  o.seed = 1;
  o.optim = fr_optimizer_sgd_defaults(lr, momentum);
  o.backbone = (fr_param_group){1.0f, 0.0f, 0};
  o.head_group = (fr_param_group){1.0f, 0.0f, 0};
  o.ri_feature_layer = -1;
  o.ri_group = (fr_param_group){1.0f, 0.0f, 0};
  return o;
}

static int buffer(fr_trainer *t, fr_vk_buffer *b, uint64_t bytes, const char *what, fr_error *err)
{
  int rc = fr_vk_buffer_create(t->ctx, round_up(bytes ? bytes : 16, 16), b, err);
  if (rc)
    fr_error_prefix(err, "trainer %s (%llu bytes)", what, (unsigned long long)bytes);
  else
    t->bytes += b->size;
  return rc;
}

static void destroy_buffer(fr_trainer *t, fr_vk_buffer *b)
{
  if (b->buffer)
    fr_vk_buffer_destroy(t->ctx, b);
  memset(b, 0, sizeof(*b));
}

static uint64_t out_floats(const fr_layer *l) { return (uint64_t)l->out_h * l->out_w * l->out_c; }

/* ---- parameter layout, the repack index map, initial values ---- */

static int add_tensor(fr_trainer *t, int layer, const char *what, size_t n, size_t *off, fr_error *err)
{
  if (t->n_tensors == t->cap_tensors) {
    int cap = t->cap_tensors ? 2 * t->cap_tensors : 64;
    tensor_info *grown = realloc(t->tensors, (size_t)cap * sizeof(*grown));
    if (!grown)
      return fr_error_set(err, FR_ERR_NOMEM, "trainer: out of memory listing tensors");
    t->tensors = grown;
    t->cap_tensors = cap;
  }
  tensor_info *ti = &t->tensors[t->n_tensors++];
  if (layer >= 0)
    snprintf(ti->name, sizeof(ti->name), "layer %d %s", layer, what);
  else
    snprintf(ti->name, sizeof(ti->name), "%s", what);
  ti->offset = t->n_params;
  ti->n = n;
  *off = t->n_params;
  t->n_params = round_up(t->n_params + n, ALIGN_FLOATS);
  return FR_OK;
}

static int plan_params(fr_trainer *t, fr_error *err)
{
  int rc = FR_OK;
  size_t packed = 0;
  for (int i = 0; i < t->n && !rc; i++) {
    tlayer *L = &t->L[i];
    const fr_layer *l = &t->layers[i];
    fr_conv_params_from_layer(l, 1, &L->p);
    rc = add_tensor(t, i, "weights", (size_t)fr_layer_weight_count(l), &L->off_w, err);
    if (!rc)
      rc = add_tensor(t, i, "bias", (size_t)l->out_c, &L->off_b, err);
    if (!rc && l->activation == FR_ACT_PRELU)
      rc = add_tensor(t, i, "slope", (size_t)l->out_c, &L->off_s, err);
    L->pn_w = fr_ops_packed_weight_count(t->ops, &L->p);
    L->pn_c = fr_ops_packed_channel_count(&L->p);
    L->poff_w = packed;
    packed = round_up(packed + L->pn_w, ALIGN_FLOATS);
    L->poff_b = packed;
    packed = round_up(packed + L->pn_c, ALIGN_FLOATS);
    L->poff_s = packed;
    if (l->activation == FR_ACT_PRELU)
      packed = round_up(packed + L->pn_c, ALIGN_FLOATS);
  }
  if (!rc)
    rc = add_tensor(t, -1, "head", (size_t)t->o.classes * t->dim, &t->off_head, err);
  t->n_packed = packed;
  if (!rc && t->n_params >= MAX_EXACT_INDEX)
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "trainer: %zu parameter floats, the repack map allows %u",
                      t->n_params, MAX_EXACT_INDEX);
  return rc;
}

/* The packed layout as positions into the parameter buffer (1-based, 0 = padding):
 * pack a tensor whose values are its own positions. */
static void index_map(fr_trainer *t, uint32_t *index, float *tmp_in, float *tmp_out)
{
  memset(index, 0, t->n_packed * sizeof(uint32_t));
  for (int i = 0; i < t->n; i++) {
    tlayer *L = &t->L[i];
    const fr_layer *l = &t->layers[i];
    size_t nw = (size_t)fr_layer_weight_count(l);
    for (size_t k = 0; k < nw; k++)
      tmp_in[k] = (float)(L->off_w + k + 1);
    fr_ops_pack_conv_weights(t->ops, &L->p, tmp_in, tmp_out);
    for (size_t k = 0; k < L->pn_w; k++)
      index[L->poff_w + k] = (uint32_t)tmp_out[k];
    for (int s = 0; s < (l->activation == FR_ACT_PRELU ? 2 : 1); s++) {
      size_t off = s ? L->off_s : L->off_b;
      for (int k = 0; k < l->out_c; k++)
        tmp_in[k] = (float)(off + (size_t)k + 1);
      fr_ops_pack_channels(&L->p, tmp_in, tmp_out);
      for (size_t k = 0; k < L->pn_c; k++)
        index[(s ? L->poff_s : L->poff_b) + k] = (uint32_t)tmp_out[k];
    }
  }
}

static void initial_values(fr_trainer *t, const fr_model *m, float *v)
{
  memset(v, 0, t->n_params * sizeof(float));
  for (int i = 0; i < t->n; i++) {
    const fr_layer *l = &m->layers[i];
    memcpy(v + t->L[i].off_w, l->weights, (size_t)fr_layer_weight_count(l) * sizeof(float));
    memcpy(v + t->L[i].off_b, l->bias, (size_t)l->out_c * sizeof(float));
    if (l->activation == FR_ACT_PRELU)
      memcpy(v + t->L[i].off_s, l->slope, (size_t)l->out_c * sizeof(float));
  }
  size_t nh = (size_t)t->o.classes * t->dim;
  if (t->o.head) {
    memcpy(v + t->off_head, t->o.head, nh * sizeof(float));
    return;
  }
  uint32_t rng = t->o.seed * 2654435761u + 1u;
  float a = 1.0f / sqrtf((float)t->dim);
  for (size_t k = 0; k < nh; k++) {
    rng = rng * 1664525u + 1013904223u;
    v[t->off_head + k] = ((float)(rng >> 8) / 16777216.0f * 2.0f - 1.0f) * a;
  }
}

static int upload_params(fr_trainer *t, const fr_model *m, fr_error *err)
{
  size_t biggest = 0;
  for (int i = 0; i < t->n; i++) {
    size_t w = (size_t)fr_layer_weight_count(&t->layers[i]);
    size_t c = t->L[i].pn_w > t->L[i].pn_c ? t->L[i].pn_w : t->L[i].pn_c;
    biggest = w > biggest ? w : biggest;
    biggest = c > biggest ? c : biggest;
  }
  float *values = calloc(t->n_params, sizeof(float));
  uint32_t *index = calloc(t->n_packed ? t->n_packed : 1, sizeof(uint32_t));
  float *tmp_in = calloc(biggest + 4, sizeof(float)), *tmp_out = calloc(biggest + 4, sizeof(float));
  int rc = FR_OK;
  if (!values || !index || !tmp_in || !tmp_out)
    rc = fr_error_set(err, FR_ERR_NOMEM, "trainer: out of memory preparing %zu parameters", t->n_params);
  if (!rc) {
    initial_values(t, m, values);
    index_map(t, index, tmp_in, tmp_out);
  }
  uint64_t pbytes = (uint64_t)t->n_params * sizeof(float);
  if (!rc)
    rc = buffer(t, &t->params, pbytes, "parameters", err);
  if (!rc)
    rc = fr_vk_buffer_upload(t->ctx, &t->params, 0, values, pbytes, err);
  if (!rc)
    rc = buffer(t, &t->grads, pbytes, "gradients", err);
  if (!rc) {
    memset(values, 0, pbytes); /* the alignment gaps stay zero: the optimizer steps over them */
    rc = fr_vk_buffer_upload(t->ctx, &t->grads, 0, values, pbytes, err);
  }
  if (!rc && t->n_chunks > 1)
    rc = buffer(t, &t->grads_tmp, pbytes, "chunk gradients", err);
  if (!rc && t->n_chunks > 1)
    rc = fr_vk_buffer_upload(t->ctx, &t->grads_tmp, 0, values, pbytes, err);
  if (!rc)
    rc = buffer(t, &t->index, (uint64_t)t->n_packed * sizeof(uint32_t), "repack map", err);
  if (!rc)
    rc = fr_vk_buffer_upload(t->ctx, &t->index, 0, index, (uint64_t)t->n_packed * sizeof(uint32_t), err);
  if (!rc)
    rc = buffer(t, &t->packed, (uint64_t)t->n_packed * sizeof(float), "packed weights", err);
  free(values);
  free(index);
  free(tmp_in);
  free(tmp_out);
  return rc;
}

/* ---- activations: how many images per chunk, and the kept tensors ---- */

static int plan_chunks(fr_trainer *t, fr_error *err)
{
  const fr_vk_device_info *dev = fr_vk_context_device(t->ctx);
  uint64_t per_image = (uint64_t)t->in_h * t->in_w * t->in_c * sizeof(float);
  for (int i = 0; i < t->n; i++) {
    uint64_t b = out_floats(&t->layers[i]) * sizeof(float);
    per_image = b > per_image ? b : per_image;
  }
  uint64_t limit = dev->max_storage_buffer_range;
  if (dev->has_texel_rgba32f && dev->max_texel_buffer_elements * 16 < limit)
    limit = dev->max_texel_buffer_elements * 16;
  /* Slices are rounded up to 256 bytes: leave room for that. */
  uint64_t fit = limit > ALIGN_BYTES ? (limit - ALIGN_BYTES) / per_image : 0;
  if (fit == 0)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "trainer: one image needs a %llu-byte tensor, over the device's %llu",
                        (unsigned long long)per_image, (unsigned long long)limit);
  int chunk = t->o.max_batch;
  if ((uint64_t)chunk > fit)
    chunk = (int)fit;
  if (t->o.max_chunk > 0 && chunk > t->o.max_chunk)
    chunk = t->o.max_chunk;
  if (chunk < t->o.max_batch) {
    /* Chunk c's rows of the [batch, dim] embedding buffers are bound at offsets. */
    uint64_t align = dev->min_storage_offset_alignment ? dev->min_storage_offset_alignment : 1;
    uint64_t row = (uint64_t)t->dim * sizeof(float), step = 1;
    while ((step * row) % align)
      step++;
    if ((uint64_t)chunk < step)
      return fr_error_set(err, FR_ERR_UNSUPPORTED,
                          "trainer: chunks of %d images cannot start at aligned embedding rows (need %llu)", chunk,
                          (unsigned long long)step);
    chunk = (int)((uint64_t)chunk / step * step);
  }
  t->chunk = chunk;
  t->n_chunks = (t->o.max_batch + chunk - 1) / chunk;
  t->tensor_bytes = round_up(per_image * (uint64_t)chunk, ALIGN_BYTES);
  return FR_OK;
}

static int allocate_activations(fr_trainer *t, fr_error *err)
{
  int rc = FR_OK;
  t->in_slice = round_up((uint64_t)t->chunk * t->in_h * t->in_w * t->in_c * sizeof(float), ALIGN_BYTES);
  rc = buffer(t, &t->input, t->in_slice * t->n_chunks, "input", err);
  size_t scr_f = 0, scr_a = 0;
  for (int i = 0; i < t->n && !rc; i++) {
    tlayer *L = &t->L[i];
    const fr_layer *l = &t->layers[i];
    L->slice = round_up(out_floats(l) * sizeof(float) * (uint64_t)t->chunk, ALIGN_BYTES);
    L->keep_z = l->activation != FR_ACT_NONE;
    /* The heads' feature map is read in six phases: kept rather than recomputed. */
    L->keep_y = l->activation == FR_ACT_NONE || l->residual != FR_NO_LAYER || i == t->output_layer || i == t->feat;
    if (L->keep_z)
      rc = buffer(t, &L->z, L->slice * t->n_chunks, "pre-activations", err);
    if (!rc && L->keep_y)
      rc = buffer(t, &L->y, L->slice * t->n_chunks, "activations", err);
    fr_conv_params p = L->p;
    p.batch = t->chunk;
    size_t f = fr_train_conv_filter_scratch_floats(&p);
    size_t a = fr_train_reduce_scratch_floats(t->chunk * l->out_h * l->out_w, l->out_c);
    scr_f = f > scr_f ? f : scr_f;
    scr_a = a > scr_a ? a : scr_a;
  }
  const char *names[4] = {"recompute (input)", "recompute (residual)", "pre-activation gradient", "input gradient"};
  fr_vk_buffer *bufs[4] = {&t->rec_in, &t->rec_res, &t->dz, &t->dx_tmp};
  for (int k = 0; k < 4 && !rc; k++)
    rc = buffer(t, bufs[k], t->tensor_bytes, names[k], err);
  if (!rc)
    rc = buffer(t, &t->scr_f, scr_f * sizeof(float), "filter-gradient scratch", err);
  if (!rc)
    rc = buffer(t, &t->scr_a, scr_a * sizeof(float), "reduction scratch", err);
  uint64_t bd = (uint64_t)t->o.max_batch * t->dim * sizeof(float);
  fr_vk_buffer *emb[4] = {&t->emb_raw, &t->emb_n, &t->d_emb, &t->d_raw};
  for (int k = 0; k < 4 && !rc; k++)
    rc = buffer(t, emb[k], bd, "embeddings", err);
  if (!rc)
    rc = buffer(t, &t->norms, (uint64_t)t->o.max_batch * sizeof(float), "norms", err);
  if (!rc)
    rc = buffer(t, &t->labels, (uint64_t)t->o.max_batch * sizeof(int32_t), "labels", err);
  if (!rc)
    rc = buffer(t, &t->loss_val, sizeof(float), "loss", err);
  fr_loss_params lp = t->lp;
  lp.batch = t->o.max_batch;
  if (!rc)
    rc = buffer(t, &t->loss_ws, fr_loss_workspace_floats(t->loss, &lp) * sizeof(float), "loss workspace", err);
  return rc;
}

/* ---- create / destroy ---- */

static int check_options(const fr_model *m, const fr_trainer_options *o, fr_error *err)
{
  if (!o || o->max_batch < 1 || o->max_batch > 16384 || o->classes < 2 || !(o->s > 0.0f))
    return fr_error_set(err, FR_ERR_INVALID, "trainer: batch %d, %d classes, scale %g: need 1..16384, >= 2, > 0",
                        o ? o->max_batch : 0, o ? o->classes : 0, o ? (double)o->s : 0.0);
  if (o->loss != FR_LOSS_SOFTMAX && o->loss != FR_LOSS_ARCFACE)
    return fr_error_set(err, FR_ERR_INVALID, "trainer: unknown loss kind %d", (int)o->loss);
  if (o->loss == FR_LOSS_SOFTMAX && o->m != 0.0f)
    return fr_error_set(err, FR_ERR_INVALID, "trainer: a softmax head takes no margin (m = %g)", (double)o->m);
  if (o->train_from_layer < 0 || o->train_from_layer >= m->n_layers)
    return fr_error_set(err, FR_ERR_INVALID, "trainer: train_from_layer %d outside the model's %d layers",
                        o->train_from_layer, m->n_layers);
  /* Every layer's output must reach the loss, or its gradients would never be written. */
  for (int i = 0; i < m->n_layers; i++) {
    int used = i == m->output_layer;
    for (int j = i + 1; j < m->n_layers && !used; j++)
      used = m->layers[j].input == i || m->layers[j].residual == i;
    if (!used)
      return fr_error_set(err, FR_ERR_UNSUPPORTED, "trainer: layer %d (%s) feeds nothing the loss depends on", i,
                          m->layers[i].name);
  }
  return FR_OK;
}

int fr_trainer_create(fr_vk_context *ctx, const fr_model *model, const fr_trainer_options *opts, fr_trainer **out,
                      fr_error *err)
{
  *out = NULL;
  int rc = fr_model_validate(model, err);
  if (!rc)
    rc = check_options(model, opts, err);
  if (rc)
    return rc;
  fr_trainer *t = calloc(1, sizeof(*t));
  if (!t)
    return fr_error_set(err, FR_ERR_NOMEM, "trainer: out of memory");
  t->ctx = ctx;
  t->o = *opts;
  t->o.head = NULL; /* not kept: the caller's array may go away */

  t->n = model->n_layers;
  t->output_layer = model->output_layer;
  t->dim = model->embedding_size;
  t->in_h = model->input_h, t->in_w = model->input_w, t->in_c = model->input_c;
  t->normalize = opts->loss == FR_LOSS_ARCFACE || opts->normalize;
  t->lp = (fr_loss_params){opts->loss, opts->max_batch, t->dim, opts->classes, opts->s, opts->m, opts->easy_margin};
  t->recorded_batch = -1;
  t->feat = -1;
  t->layers = calloc((size_t)t->n, sizeof(fr_layer));
  t->L = calloc((size_t)t->n, sizeof(tlayer));
  if (!t->layers || !t->L)
    rc = fr_error_set(err, FR_ERR_NOMEM, "trainer: out of memory");
  for (int i = 0; i < t->n && !rc; i++) {
    t->layers[i] = model->layers[i];
    t->layers[i].weights = t->layers[i].bias = t->layers[i].slope = NULL; /* shapes only */
  }
  if (!rc)
    rc = fr_ops_create(ctx, &t->ops, err);
  if (!rc)
    rc = fr_train_ops_create(ctx, &t->tops, err);
  if (!rc)
    rc = fr_loss_create(ctx, &t->loss, err);
  if (!rc && opts->ri)
    rc = fr_trainer_ri_feature(t, model, opts->ri_feature_layer, err);
  if (!rc)
    rc = plan_chunks(t, err);
  if (!rc) {
    t->o.head = opts->head; /* read once, by upload_params */
    rc = plan_params(t, err);
    if (!rc)
      rc = upload_params(t, model, err);
    t->o.head = NULL;
  }
  if (!rc)
    rc = allocate_activations(t, err);
  fr_vk_binding_kind kinds[3] = {FR_BIND_STORAGE, FR_BIND_STORAGE, FR_BIND_STORAGE};
  uint32_t wg = WG;
  const fr_vk_device_info *dev = fr_vk_context_device(ctx);
  if (wg > dev->max_workgroup_size[0])
    wg = dev->max_workgroup_size[0];
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_repack", 3, kinds, sizeof(uint32_t), &wg, 1, &t->repack, err);
  t->repack_wg = wg;
  if (!rc && opts->ri)
    rc = fr_trainer_ri_setup(t, opts, err);
  t->o.ri = NULL; /* copied by the heads */
  t->o.ui_centre = NULL;
  if (!rc)
    rc = fr_trainer_setup_optimizer(t, err);
  if (!rc)
    rc = fr_vk_sequence_create(ctx, 0, &t->seq, err);
  if (!rc)
    rc = fr_trainer_initial_repack(t, err);
  if (rc) {
    fr_error_prefix(err, "creating the trainer");
    fr_trainer_destroy(t);
    return rc;
  }
  *out = t;
  return FR_OK;
}

void fr_trainer_destroy(fr_trainer *t)
{
  if (!t)
    return;
  fr_vk_sequence_destroy(t->seq);
  fr_optimizer_destroy(t->opt);
  fr_trainer_ri_destroy(t);
  if (t->repack)
    fr_vk_kernel_destroy(t->ctx, t->repack);
  for (int i = 0; t->L && i < t->n; i++) {
    destroy_buffer(t, &t->L[i].z);
    destroy_buffer(t, &t->L[i].y);
  }
  for (int s = 0; s < t->n_slots; s++)
    destroy_buffer(t, &t->slots[s]);
  fr_vk_buffer *bufs[] = {&t->params,  &t->grads, &t->grads_tmp, &t->index,   &t->packed,  &t->input,
                          &t->rec_in,  &t->rec_res, &t->dz,      &t->dx_tmp,  &t->scr_f,   &t->scr_a,
                          &t->emb_raw, &t->emb_n, &t->d_emb,     &t->d_raw,   &t->norms,   &t->labels,
                          &t->loss_val, &t->loss_ws};
  for (size_t k = 0; k < sizeof(bufs) / sizeof(bufs[0]); k++)
    destroy_buffer(t, bufs[k]);
  fr_loss_destroy(t->loss);
  fr_train_ops_destroy(t->tops);
  fr_ops_destroy(t->ops);
  free(t->L);
  free(t->layers);
  free(t->tensors);
  free(t);
}

/* ---- recording ---- */

/* Layer j's output for chunk c (images nb): kept, or recomputed from z into rec
 * (the caller puts a barrier before reading it). */
int fr_trainer_y_view(fr_trainer *t, fr_vk_sequence *seq, int j, int c, int nb, fr_vk_buffer *rec, fr_vk_arg *out,
                  fr_error *err)
{
  if (j == FR_LAYER_INPUT) {
    *out = slice(&t->input, t->in_slice, c);
    return FR_OK;
  }
  tlayer *L = &t->L[j];
  const fr_layer *l = &t->layers[j];
  if (L->keep_y) {
    *out = slice(&L->y, L->slice, c);
    return FR_OK;
  }
  *out = (fr_vk_arg){rec, 0, L->slice};
  fr_vk_arg sl = l->activation == FR_ACT_PRELU ? floats_at(&t->params, L->off_s, (size_t)l->out_c) : floats_at(&t->params, L->off_b, 1);
  return fr_train_record_act(t->tops, seq, fr_trainer_act(l->activation), nb * l->out_h * l->out_w, l->out_c,
                             slice(&L->z, L->slice, c), sl, *out, err);
}

static int record_forward(fr_trainer *t, fr_vk_sequence *seq, int c, int nb, fr_error *err)
{
  int rc = FR_OK;
  for (int i = 0; i < t->n && !rc; i++) {
    tlayer *L = &t->L[i];
    const fr_layer *l = &t->layers[i];
    fr_vk_arg in, res = {0};
    rc = fr_trainer_y_view(t, seq, l->input, c, nb, &t->rec_in, &in, err);
    if (!rc && l->residual != FR_NO_LAYER)
      rc = fr_trainer_y_view(t, seq, l->residual, c, nb, &t->rec_res, &res, err);
    fr_vk_sequence_barrier(seq);
    fr_conv_params p = L->p;
    p.batch = nb;
    p.activation = FR_ACT_NONE;
    p.has_residual = !L->keep_z && l->residual != FR_NO_LAYER;
    fr_vk_arg out = L->keep_z ? slice(&L->z, L->slice, c) : slice(&L->y, L->slice, c);
    fr_vk_arg w = floats_at(&t->packed, L->poff_w, L->pn_w), b = floats_at(&t->packed, L->poff_b, L->pn_c);
    if (!rc)
      rc = fr_ops_record_conv(t->ops, seq, &p, in, w, b, b, p.has_residual ? res : out, out, NULL, err);
    fr_vk_sequence_barrier(seq);
    if (!rc && L->keep_z && L->keep_y) { /* activation, then the residual (or the output layer) */
      int rows = nb * l->out_h * l->out_w;
      fr_vk_arg sl = l->activation == FR_ACT_PRELU ? floats_at(&t->params, L->off_s, (size_t)l->out_c) : b;
      fr_vk_arg y = slice(&L->y, L->slice, c);
      rc = fr_train_record_act(t->tops, seq, fr_trainer_act(l->activation), rows, l->out_c, out, sl, y, err);
      fr_vk_sequence_barrier(seq);
      if (!rc && l->residual != FR_NO_LAYER)
        rc = fr_train_record_add(t->tops, seq, (size_t)rows * l->out_c, y, res, y, err);
      fr_vk_sequence_barrier(seq);
    }
    if (rc)
      fr_error_prefix(err, "forward, layer %d (%s)", i, l->name);
  }
  /* This chunk's rows of the contiguous [batch, dim] embedding the loss reads. */
  fr_vk_arg emb = {0};
  if (!rc)
    rc = fr_trainer_y_view(t, seq, t->output_layer, c, nb, &t->rec_in, &emb, err);
  fr_vk_sequence_barrier(seq);
  uint64_t row = (uint64_t)t->dim * sizeof(float);
  fr_vk_arg dst = {&t->emb_raw, (uint64_t)c * t->chunk * row, (uint64_t)nb * row};
  if (!rc)
    rc = fr_train_record_concat(t->tops, seq, nb, t->dim, t->dim, 0, 0, emb, dst, err);
  return rc;
}

static int record_head(fr_trainer *t, fr_vk_sequence *seq, int batch, fr_error *err)
{
  fr_loss_params lp = t->lp;
  lp.batch = batch;
  uint64_t bd = (uint64_t)batch * t->dim * sizeof(float);
  fr_vk_arg raw = {&t->emb_raw, 0, bd}, x = raw, dx = {&t->d_raw, 0, bd};
  int rc = FR_OK;
  fr_vk_sequence_barrier(seq);
  if (t->normalize) {
    x = (fr_vk_arg){&t->emb_n, 0, bd};
    dx = (fr_vk_arg){&t->d_emb, 0, bd};
    rc = fr_ops_record_l2norm(t->ops, seq, batch, t->dim, raw, x, whole(&t->norms), NULL, err);
    fr_vk_sequence_barrier(seq);
  }
  size_t nh = (size_t)t->o.classes * t->dim;
  if (!rc)
    rc = fr_loss_record(t->loss, seq, &lp, x, floats_at(&t->params, t->off_head, nh), whole(&t->labels), whole(&t->loss_ws),
                        whole(&t->loss_val), dx, floats_at(&t->grads, t->off_head, nh), err);
  fr_vk_sequence_barrier(seq);
  if (!rc && t->normalize)
    rc = fr_train_record_l2norm_bwd(t->tops, seq, batch, t->dim, x, whole(&t->norms), dx,
                                    (fr_vk_arg){&t->d_raw, 0, bd}, err);
  fr_vk_sequence_barrier(seq);
  if (rc)
    fr_error_prefix(err, "recording the head");
  return rc;
}

int fr_trainer_record(fr_trainer *t, int batch, int update, fr_error *err)
{
  fr_vk_sequence *seq = t->seq;
  t->recorded_batch = -1;
  int rc = fr_vk_sequence_begin(seq, err);
  /* Orders the previous submission's writes (parameters, packed weights) before this one. */
  fr_vk_sequence_barrier(seq);
  int chunks = (batch + t->chunk - 1) / t->chunk;
  for (int c = 0; c < chunks && !rc; c++) {
    int nb = c == chunks - 1 ? batch - c * t->chunk : t->chunk;
    rc = record_forward(t, seq, c, nb, err);
    if (!rc && t->ri)
      rc = fr_ri_heads_record_fwd_chunk(t->ri, seq, c * t->chunk, nb, fr_trainer_feature(t, c), err);
  }
  if (!rc)
    rc = record_head(t, seq, batch, err);
  if (!rc && t->ri)
    rc = fr_trainer_ri_record_mid(t, seq, batch, err);
  for (int c = 0; c < chunks && !rc; c++)
    rc = fr_trainer_record_backward(t, seq, c, c == chunks - 1 ? batch - c * t->chunk : t->chunk, err);
  if (!rc && update) {
    rc = fr_optimizer_record_step(t->opt, seq, err);
    fr_vk_sequence_barrier(seq);
    if (!rc)
      rc = fr_trainer_record_repack(t, seq, err);
  }
  if (!rc)
    rc = fr_vk_sequence_end(seq, err);
  if (!rc) {
    t->recorded_batch = batch;
    t->recorded_update = update;
  }
  return rc;
}

fr_vk_arg fr_trainer_feature(const fr_trainer *t, int c) { return slice(&t->L[t->feat].y, t->L[t->feat].slice, c); }

int fr_trainer_record_repack(fr_trainer *t, fr_vk_sequence *seq, fr_error *err)
{
  uint32_t n = (uint32_t)t->n_packed;
  fr_vk_arg args[3] = {whole(&t->index), whole(&t->params), whole(&t->packed)};
  uint32_t groups = fr_div_up(n, t->repack_wg);
  uint32_t max_x = fr_vk_context_device(t->ctx)->max_workgroup_count[0];
  uint32_t gx = groups < max_x ? groups : max_x, gy = fr_div_up(groups, gx);
  return fr_vk_sequence_dispatch(seq, t->repack, args, &n, gx, gy, 1, NULL, err);
}
