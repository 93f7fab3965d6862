/* Host side of the optimizers: groups, params and their device state, the recorded
 * step (clip norm in two stages, then one update dispatch per tensor), the per-step
 * scalars in a small device buffer, and state export/import for checkpoints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/optimizer.h"

#define WG 64u
/* Elements per clip-norm partial: at least this many, and never so many partials
 * that the second stage's single loop meets lavapipe's ~65k iteration limiter. */
#define NORM_CHUNK_MIN 1024u
#define NORM_MAX_PARTIALS 32768u
#define HYPER_GROUP 8u
#define MAGIC "FROPTST1"

typedef struct param {
  int group;
  size_t n;
  fr_vk_arg value, grad;
  fr_vk_buffer state[2];
} param;

struct fr_optimizer {
  fr_vk_context *ctx;
  fr_optimizer_config cfg;
  fr_vk_kernel *norm, *update;
  uint32_t wg;
  fr_param_group *groups;
  int n_groups;
  param *params;
  int n_params;
  int slots;
  int64_t steps;
  fr_vk_buffer hyper, partials;
  uint64_t partials_floats;
};

typedef struct norm_push {
  uint32_t n, chunk, offset, count, stage;
  float max_norm;
} norm_push;

typedef struct update_push {
  uint32_t n, group, adamw, nesterov, clip, has_momentum;
  float momentum, one_minus_dampening, beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
} update_push;

fr_optimizer_config fr_optimizer_sgd_defaults(float lr, float momentum)
{
  return (fr_optimizer_config){.kind = FR_OPTIM_SGD, .lr = lr, .momentum = momentum, .beta1 = 0.9f,
                               .beta2 = 0.999f, .eps = 1e-8f};
}

fr_optimizer_config fr_optimizer_adamw_defaults(float lr)
{
  return (fr_optimizer_config){.kind = FR_OPTIM_ADAMW, .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
}

static int check_config(const fr_optimizer_config *c, fr_error *err)
{
  if (c->kind != FR_OPTIM_SGD && c->kind != FR_OPTIM_ADAMW)
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: unknown kind %d", (int)c->kind);
  if (!(isfinite(c->lr) && c->lr >= 0))
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: learning rate %g", (double)c->lr);
  if (!(c->max_grad_norm >= 0 && isfinite(c->max_grad_norm)))
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: max gradient norm %g", (double)c->max_grad_norm);
  if (c->kind == FR_OPTIM_SGD) {
    if (!(c->momentum >= 0 && c->momentum < 1) || !(c->dampening >= 0 && c->dampening <= 1))
      return fr_error_set(err, FR_ERR_INVALID, "optimizer: SGD momentum %g, dampening %g", (double)c->momentum,
                          (double)c->dampening);
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
      return fr_error_set(err, FR_ERR_INVALID, "optimizer: Nesterov needs momentum > 0 and dampening 0");
  } else if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0)) {
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: AdamW betas (%g, %g), eps %g", (double)c->beta1,
                        (double)c->beta2, (double)c->eps);
  }
  const fr_lr_schedule *s = &c->schedule;
  if (s->warmup_steps < 0 || !(s->warmup_start >= 0 && s->warmup_start <= 1) ||
      (s->decay == FR_LR_STEP && (s->step_size <= 0 || !(s->gamma > 0))) ||
      (s->decay == FR_LR_COSINE && (s->total_steps <= s->warmup_steps || !(s->min_factor >= 0))) ||
      (s->decay != FR_LR_CONSTANT && s->decay != FR_LR_STEP && s->decay != FR_LR_COSINE))
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: inconsistent learning-rate schedule");
  return FR_OK;
}

int fr_optimizer_create(fr_vk_context *ctx, const fr_optimizer_config *cfg, fr_optimizer **out, fr_error *err)
{
  *out = NULL;
  int rc = check_config(cfg, err);
  if (rc)
    return rc;
  fr_optimizer *o = calloc(1, sizeof(*o));
  if (!o)
    return fr_error_set(err, FR_ERR_NOMEM, "optimizer: out of memory");
  o->ctx = ctx;
  o->cfg = *cfg;
  o->slots = cfg->kind == FR_OPTIM_ADAMW ? 2 : cfg->momentum != 0 ? 1 : 0;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  uint32_t lim = info->max_workgroup_size[0] < info->max_workgroup_invocations ? info->max_workgroup_size[0]
                                                                               : info->max_workgroup_invocations;
  o->wg = WG < lim ? WG : lim;
  fr_vk_binding_kind st[FR_VK_MAX_BINDINGS];
  for (int i = 0; i < FR_VK_MAX_BINDINGS; i++)
    st[i] = FR_BIND_STORAGE;
  rc = fr_vk_kernel_create(ctx, "train_optim_norm", 3, st, sizeof(norm_push), &o->wg, 1, &o->norm, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "train_optim_update", 5, st, sizeof(update_push), &o->wg, 1, &o->update, err);
  if (rc) {
    fr_optimizer_destroy(o);
    return rc;
  }
  *out = o;
  return FR_OK;
}

void fr_optimizer_destroy(fr_optimizer *o)
{
  if (!o)
    return;
  for (int k = 0; k < o->n_params; k++)
    for (int s = 0; s < 2; s++)
      if (o->params[k].state[s].buffer)
        fr_vk_buffer_destroy(o->ctx, &o->params[k].state[s]);
  if (o->hyper.buffer)
    fr_vk_buffer_destroy(o->ctx, &o->hyper);
  if (o->partials.buffer)
    fr_vk_buffer_destroy(o->ctx, &o->partials);
  fr_vk_kernel_destroy(o->ctx, o->norm);
  fr_vk_kernel_destroy(o->ctx, o->update);
  free(o->groups);
  free(o->params);
  free(o);
}

static int steps_group(const fr_param_group *g) { return !g->frozen && g->lr_mult != 0.0f; }

/* Device buffer of `floats` zeros. */
static int zero_buffer(fr_vk_context *ctx, uint64_t floats, fr_vk_buffer *b, fr_error *err)
{
  uint64_t bytes = (floats ? floats : 1) * sizeof(float);
  int rc = fr_vk_buffer_create(ctx, bytes, b, err);
  if (rc)
    return rc;
  float *z = calloc(floats ? floats : 1, sizeof(float));
  if (!z) {
    fr_vk_buffer_destroy(ctx, b);
    return fr_error_set(err, FR_ERR_NOMEM, "optimizer: out of memory for %llu floats", (unsigned long long)floats);
  }
  rc = fr_vk_buffer_upload(ctx, b, 0, z, bytes, err);
  free(z);
  if (rc)
    fr_vk_buffer_destroy(ctx, b);
  return rc;
}

int fr_optimizer_add_group(fr_optimizer *o, const fr_param_group *g, fr_error *err)
{
  if (!(g->lr_mult >= 0 && isfinite(g->lr_mult)) || !(g->weight_decay >= 0 && isfinite(g->weight_decay)))
    return -fr_error_set(err, FR_ERR_INVALID, "optimizer: group lr multiplier %g, weight decay %g",
                         (double)g->lr_mult, (double)g->weight_decay);
  if (o->hyper.buffer)
    fr_vk_buffer_destroy(o->ctx, &o->hyper);
  fr_param_group *ng = realloc(o->groups, (size_t)(o->n_groups + 1) * sizeof(*ng));
  if (!ng)
    return -fr_error_set(err, FR_ERR_NOMEM, "optimizer: out of memory for a group");
  o->groups = ng;
  o->groups[o->n_groups] = *g;
  return o->n_groups++;
}

static int need(fr_vk_arg a, uint64_t floats, const char *what, int k, fr_error *err)
{
  if (!a.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: param %d has no buffer for its %s", k, what);
  uint64_t avail = a.offset < a.buffer->size ? a.buffer->size - a.offset : 0;
  if (a.range && a.range < avail)
    avail = a.range;
  if (avail < floats * sizeof(float))
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: param %d's %s holds %llu bytes, it needs %llu", k, what,
                        (unsigned long long)avail, (unsigned long long)(floats * sizeof(float)));
  return FR_OK;
}

int fr_optimizer_add_param(fr_optimizer *o, int group, fr_vk_arg value, fr_vk_arg grad, size_t n, fr_error *err)
{
  int k = o->n_params;
  if (group < 0 || group >= o->n_groups)
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: param %d names group %d of %d", k, group, o->n_groups);
  if (n == 0 || n > UINT32_MAX)
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: param %d has %zu elements", k, n);
  int rc = need(value, n, "value", k, err);
  if (!rc && (steps_group(&o->groups[group]) || grad.buffer))
    rc = need(grad, n, "gradient", k, err);
  if (rc)
    return rc;
  param *np = realloc(o->params, (size_t)(k + 1) * sizeof(*np));
  if (!np)
    return fr_error_set(err, FR_ERR_NOMEM, "optimizer: out of memory for a param");
  o->params = np;
  param *p = &o->params[k];
  *p = (param){.group = group, .n = n, .value = value, .grad = grad};
  for (int s = 0; s < o->slots; s++) {
    if ((rc = zero_buffer(o->ctx, n, &p->state[s], err))) {
      if (s)
        fr_vk_buffer_destroy(o->ctx, &p->state[0]);
      return rc;
    }
  }
  o->n_params++;
  return FR_OK;
}

static uint32_t norm_chunk(const fr_optimizer *o)
{
  uint64_t total = 0;
  for (int k = 0; k < o->n_params; k++)
    if (steps_group(&o->groups[o->params[k].group]))
      total += o->params[k].n;
  uint64_t c = (total + NORM_MAX_PARTIALS / 2 - 1) / (NORM_MAX_PARTIALS / 2);
  return (uint32_t)(c < NORM_CHUNK_MIN ? NORM_CHUNK_MIN : c);
}

static int dispatch(fr_optimizer *o, fr_vk_sequence *seq, const fr_vk_kernel *k, const fr_vk_arg *args,
                    const void *push, uint64_t invocations, fr_error *err)
{
  if (!invocations)
    return FR_OK;
  uint64_t groups = (invocations + o->wg - 1) / o->wg;
  uint32_t max_x = fr_vk_context_device(o->ctx)->max_workgroup_count[0];
  uint32_t gx = groups <= max_x ? (uint32_t)groups : max_x;
  uint64_t gy = (groups + gx - 1) / gx;
  if (gy > fr_vk_context_device(o->ctx)->max_workgroup_count[1])
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %llu invocations exceed one dispatch", fr_vk_kernel_name(k),
                        (unsigned long long)invocations);
  return fr_vk_sequence_dispatch(seq, k, args, push, gx, (uint32_t)gy, 1, NULL, err);
}

static int ensure_hyper(fr_optimizer *o, fr_error *err)
{
  if (o->hyper.buffer)
    return FR_OK;
  return zero_buffer(o->ctx, 4 + (uint64_t)HYPER_GROUP * (o->n_groups ? o->n_groups : 1), &o->hyper, err);
}

static int record_clip_norm(fr_optimizer *o, fr_vk_sequence *seq, fr_error *err)
{
  uint32_t chunk = norm_chunk(o);
  uint64_t count = 0;
  for (int k = 0; k < o->n_params; k++)
    if (steps_group(&o->groups[o->params[k].group]))
      count += (o->params[k].n + chunk - 1) / chunk;
  if (count > NORM_MAX_PARTIALS)
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "optimizer: %llu clip-norm partials exceed %u",
                        (unsigned long long)count, NORM_MAX_PARTIALS);
  if (o->partials.buffer && o->partials_floats < count)
    fr_vk_buffer_destroy(o->ctx, &o->partials);
  int rc;
  if (!o->partials.buffer) {
    if ((rc = zero_buffer(o->ctx, count, &o->partials, err)))
      return rc;
    o->partials_floats = count ? count : 1;
  }
  fr_vk_arg part = {&o->partials, 0, 0}, hyper = {&o->hyper, 0, 0};
  uint32_t offset = 0;
  for (int k = 0; k < o->n_params; k++) {
    const param *p = &o->params[k];
    if (!steps_group(&o->groups[p->group]))
      continue;
    norm_push push = {(uint32_t)p->n, chunk, offset, 0, 0, o->cfg.max_grad_norm};
    fr_vk_arg a[3] = {p->grad, part, hyper};
    uint32_t chunks = (uint32_t)((p->n + chunk - 1) / chunk);
    if ((rc = dispatch(o, seq, o->norm, a, &push, chunks, err)))
      return rc;
    offset += chunks;
  }
  fr_vk_sequence_barrier(seq);
  norm_push push = {0, chunk, 0, offset, 1, o->cfg.max_grad_norm};
  fr_vk_arg a[3] = {part, part, hyper};
  if ((rc = fr_vk_sequence_dispatch(seq, o->norm, a, &push, 1, 1, 1, NULL, err)))
    return rc;
  fr_vk_sequence_barrier(seq);
  return FR_OK;
}

int fr_optimizer_record_step(fr_optimizer *o, fr_vk_sequence *seq, fr_error *err)
{
  int rc = ensure_hyper(o, err);
  if (rc)
    return rc;
  int clip = o->cfg.max_grad_norm > 0;
  if (clip && (rc = record_clip_norm(o, seq, err)))
    return rc;
  const fr_optimizer_config *c = &o->cfg;
  for (int k = 0; k < o->n_params; k++) {
    const param *p = &o->params[k];
    if (!steps_group(&o->groups[p->group]))
      continue;
    update_push push = {(uint32_t)p->n, (uint32_t)p->group, c->kind == FR_OPTIM_ADAMW, (uint32_t)(c->nesterov != 0),
                        (uint32_t)clip, o->slots > 0, c->momentum, (float)(1.0 - (double)c->dampening), c->beta1,
                        (float)(1.0 - (double)c->beta1), c->beta2, (float)(1.0 - (double)c->beta2), c->eps};
    /* Unused state slots are bound to the param itself (never touched). */
    fr_vk_arg s1 = o->slots > 0 ? (fr_vk_arg){&p->state[0], 0, 0} : p->value;
    fr_vk_arg s2 = o->slots > 1 ? (fr_vk_arg){&p->state[1], 0, 0} : s1;
    fr_vk_arg a[5] = {p->value, p->grad, s1, s2, {&o->hyper, 0, 0}};
    if ((rc = dispatch(o, seq, o->update, a, &push, p->n, err)))
      return rc;
  }
  return FR_OK;
}

double fr_optimizer_group_lr(const fr_optimizer *o, int group)
{
  if (group < 0 || group >= o->n_groups)
    return 0.0;
  int64_t t = o->steps > 0 ? o->steps - 1 : 0;
  return (double)o->cfg.lr * o->groups[group].lr_mult * fr_lr_schedule_factor(&o->cfg.schedule, t);
}

int fr_optimizer_begin_step(fr_optimizer *o, fr_error *err)
{
  int rc = ensure_hyper(o, err);
  if (rc)
    return rc;
  int64_t step = o->steps + 1;
  uint32_t n = 4 + HYPER_GROUP * (uint32_t)o->n_groups;
  float *h = calloc(n, sizeof(float));
  if (!h)
    return fr_error_set(err, FR_ERR_NOMEM, "optimizer: out of memory");
  h[0] = 1.0f;
  double bc1 = 1.0 - pow(o->cfg.beta1, (double)step), bc2 = 1.0 - pow(o->cfg.beta2, (double)step);
  double factor = fr_lr_schedule_factor(&o->cfg.schedule, step - 1);
  for (int g = 0; g < o->n_groups; g++) {
    double lr = (double)o->cfg.lr * o->groups[g].lr_mult * factor;
    float *v = h + 4 + HYPER_GROUP * g;
    v[0] = (float)lr;
    v[1] = o->groups[g].weight_decay;
    v[2] = step == 1 ? 1.0f : 0.0f;
    v[3] = (float)(1.0 - lr * o->groups[g].weight_decay);
    v[4] = (float)(lr / bc1);
    v[5] = (float)sqrt(bc2);
  }
  /* Only the per-group part: the clip scale and norm belong to the device. */
  rc = fr_vk_buffer_upload(o->ctx, &o->hyper, 4 * sizeof(float), h + 4, (n - 4) * sizeof(float), err);
  free(h);
  if (!rc)
    o->steps = step;
  return rc;
}

int64_t fr_optimizer_steps(const fr_optimizer *o) { return o->steps; }

int fr_optimizer_grad_norm(fr_optimizer *o, float *norm, fr_error *err)
{
  if (!o->hyper.buffer || o->cfg.max_grad_norm <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "optimizer: the gradient norm is computed only with clipping on");
  return fr_vk_buffer_download(o->ctx, &o->hyper, sizeof(float), norm, sizeof(float), err);
}

/* ---- state blob ---- */
#define HEADER_BYTES (8 + 4 * 4 + 8)

size_t fr_optimizer_state_size(const fr_optimizer *o)
{
  size_t size = HEADER_BYTES + 8 * (size_t)o->n_params;
  for (int k = 0; k < o->n_params; k++)
    size += (size_t)o->slots * o->params[k].n * sizeof(float);
  return size;
}

int fr_optimizer_export(fr_optimizer *o, void *buf, size_t size, fr_error *err)
{
  if (size < fr_optimizer_state_size(o))
    return fr_error_set(err, FR_ERR_INVALID, "optimizer export: %zu bytes given, the state needs %zu", size,
                        fr_optimizer_state_size(o));
  unsigned char *b = buf;
  uint32_t hdr[4] = {(uint32_t)o->cfg.kind, (uint32_t)o->n_params, (uint32_t)o->slots, 0};
  memcpy(b, MAGIC, 8);
  memcpy(b + 8, hdr, sizeof(hdr));
  memcpy(b + 24, &o->steps, 8);
  size_t at = HEADER_BYTES;
  for (int k = 0; k < o->n_params; k++, at += 8) {
    uint64_t n = o->params[k].n;
    memcpy(b + at, &n, 8);
  }
  for (int k = 0; k < o->n_params; k++)
    for (int s = 0; s < o->slots; s++) {
      size_t bytes = o->params[k].n * sizeof(float);
      int rc = fr_vk_buffer_download(o->ctx, &o->params[k].state[s], 0, b + at, bytes, err);
      if (rc)
        return rc;
      at += bytes;
    }
  return FR_OK;
}

int fr_optimizer_import(fr_optimizer *o, const void *buf, size_t size, fr_error *err)
{
  const unsigned char *b = buf;
  if (size < HEADER_BYTES || memcmp(b, MAGIC, 8) != 0)
    return fr_error_set(err, FR_ERR_FORMAT, "optimizer import: not an optimizer state (no %s header)", MAGIC);
  uint32_t hdr[4];
  int64_t steps;
  memcpy(hdr, b + 8, sizeof(hdr));
  memcpy(&steps, b + 24, 8);
  if (hdr[0] != (uint32_t)o->cfg.kind || hdr[2] != (uint32_t)o->slots)
    return fr_error_set(err, FR_ERR_FORMAT, "optimizer import: state of kind %u with %u slots, this optimizer is %u with %d",
                        hdr[0], hdr[2], (unsigned)o->cfg.kind, o->slots);
  if (hdr[1] != (uint32_t)o->n_params)
    return fr_error_set(err, FR_ERR_FORMAT, "optimizer import: state has %u params, this optimizer %d", hdr[1],
                        o->n_params);
  if (size != fr_optimizer_state_size(o) || steps < 0)
    return fr_error_set(err, FR_ERR_FORMAT, "optimizer import: %zu bytes, expected %zu (or step %lld)", size,
                        fr_optimizer_state_size(o), (long long)steps);
  size_t at = HEADER_BYTES;
  for (int k = 0; k < o->n_params; k++, at += 8) {
    uint64_t n;
    memcpy(&n, b + at, 8);
    if (n != o->params[k].n)
      return fr_error_set(err, FR_ERR_FORMAT, "optimizer import: param %d has %llu elements in the state, %zu here",
                          k, (unsigned long long)n, o->params[k].n);
  }
  for (int k = 0; k < o->n_params; k++)
    for (int s = 0; s < o->slots; s++) {
      size_t bytes = o->params[k].n * sizeof(float);
      int rc = fr_vk_buffer_upload(o->ctx, &o->params[k].state[s], 0, b + at, bytes, err);
      if (rc)
        return rc;
      at += bytes;
    }
  o->steps = steps;
  return FR_OK;
}
