/* MTCNN graphs on the device: the pooling and softmax kernels, and per-shape plans
 * (activation buffers, packed weights, a recorded sequence) for a network.
 *
 * Convolutions and fully connected layers go through fr_ops_record_conv with PReLU in
 * its epilogue, so only max pooling and the softmax needed new shaders. A plan is kept
 * per (batch bucket, h, w): PNet sees one size per pyramid level and images of one
 * size share them; RNet and ONet batches share a plan per power of two (only the
 * actual rows are computed), so the number of boxes does not make a new plan each
 * time. Several plans can be recorded into one sequence (every pyramid level in one
 * submission) and read after it ran. */
#include <stdlib.h>
#include <string.h>

#include "faceri/mtcnn.h"
#include "mtcnn_internal.h"

#define WG 64u
#define MAX_PLANS FR_MTCNN_MAX_PENDING

struct fr_mtcnn_ops {
  fr_vk_context *ctx;
  fr_vk_kernel *pool, *softmax, *im2col;
};

typedef struct pool_push {
  uint32_t batch, in_h, in_w, c, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
} pool_push;

int fr_mtcnn_ops_create(fr_vk_context *ctx, fr_mtcnn_ops **out, fr_error *err)
{
  *out = NULL;
  fr_mtcnn_ops *k = calloc(1, sizeof(*k));
  if (!k)
    return fr_error_set(err, FR_ERR_NOMEM, "mtcnn ops: out of memory");
  k->ctx = ctx;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  uint32_t wg = WG < info->max_workgroup_size[0] ? WG : info->max_workgroup_size[0];
  const fr_vk_binding_kind st[2] = {FR_BIND_STORAGE, FR_BIND_STORAGE};
  int rc = fr_vk_kernel_create(ctx, "mtcnn_maxpool", 2, st, sizeof(pool_push), &wg, 1, &k->pool, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "mtcnn_softmax", 2, st, 8, &wg, 1, &k->softmax, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "mtcnn_im2col", 2, st, sizeof(pool_push), &wg, 1, &k->im2col, err);
  if (rc) {
    fr_mtcnn_ops_destroy(k);
    return rc;
  }
  *out = k;
  return FR_OK;
}

void fr_mtcnn_ops_destroy(fr_mtcnn_ops *k)
{
  if (!k)
    return;
  fr_vk_kernel_destroy(k->ctx, k->pool);
  fr_vk_kernel_destroy(k->ctx, k->softmax);
  fr_vk_kernel_destroy(k->ctx, k->im2col);
  free(k);
}

/* A 1-D launch of `items` invocations split over x and y (x within the device limit). */
static int dispatch_1d(fr_vk_context *ctx, fr_vk_sequence *seq, const fr_vk_kernel *kernel, const fr_vk_arg *args,
                       const void *push, uint64_t items, fr_error *err)
{
  uint64_t groups = (items + WG - 1) / WG;
  uint32_t max_x = fr_vk_context_device(ctx)->max_workgroup_count[0];
  uint32_t gx = groups <= max_x ? (uint32_t)groups : max_x;
  uint64_t gy = (groups + gx - 1) / gx;
  if (gy > fr_vk_context_device(ctx)->max_workgroup_count[1])
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %llu invocations exceed the device's grid",
                        fr_vk_kernel_name(kernel), (unsigned long long)items);
  return fr_vk_sequence_dispatch(seq, kernel, args, push, gx, (uint32_t)gy, 1, NULL, err);
}

int fr_mtcnn_record_maxpool(fr_mtcnn_ops *k, fr_vk_sequence *seq, const fr_pool_params *p, fr_vk_arg in,
                            fr_vk_arg out, fr_error *err)
{
  if (p->batch < 1 || p->in_h < 1 || p->in_w < 1 || p->c < 1 || p->out_h < 1 || p->out_w < 1 ||
      p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 ||
      p->pad_left < 0)
    return fr_error_set(err, FR_ERR_INVALID, "maxpool: inconsistent shape parameters");
  pool_push push = {(uint32_t)p->batch, (uint32_t)p->in_h, (uint32_t)p->in_w, (uint32_t)p->c,
                    (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->kernel_h, (uint32_t)p->kernel_w,
                    (uint32_t)p->stride_h, (uint32_t)p->stride_w, (uint32_t)p->pad_top, (uint32_t)p->pad_left};
  fr_vk_arg args[2] = {in, out};
  return dispatch_1d(k->ctx, seq, k->pool, args, &push, (uint64_t)p->batch * p->out_h * p->out_w * p->c, err);
}

int fr_mtcnn_record_im2col(fr_mtcnn_ops *k, fr_vk_sequence *seq, const fr_pool_params *p, fr_vk_arg in,
                           fr_vk_arg out, fr_error *err)
{
  if (p->batch < 1 || p->in_h < 1 || p->in_w < 1 || p->c < 4 || p->c % 4 || p->out_h < 1 || p->out_w < 1 ||
      p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 ||
      p->pad_left < 0)
    return fr_error_set(err, FR_ERR_INVALID, "im2col: inconsistent shape parameters (channels %d)", p->c);
  pool_push push = {(uint32_t)p->batch, (uint32_t)p->in_h, (uint32_t)p->in_w, (uint32_t)p->c / 4,
                    (uint32_t)p->out_h, (uint32_t)p->out_w, (uint32_t)p->kernel_h, (uint32_t)p->kernel_w,
                    (uint32_t)p->stride_h, (uint32_t)p->stride_w, (uint32_t)p->pad_top, (uint32_t)p->pad_left};
  fr_vk_arg args[2] = {in, out};
  uint64_t texels = (uint64_t)p->batch * p->out_h * p->out_w * p->kernel_h * p->kernel_w * (p->c / 4);
  return dispatch_1d(k->ctx, seq, k->im2col, args, &push, texels, err);
}

int fr_mtcnn_record_softmax(fr_mtcnn_ops *k, fr_vk_sequence *seq, int rows, int c, fr_vk_arg in, fr_vk_arg out,
                            fr_error *err)
{
  if (rows < 1 || c < 1)
    return fr_error_set(err, FR_ERR_INVALID, "softmax: %d rows of %d", rows, c);
  uint32_t push[2] = {(uint32_t)rows, (uint32_t)c};
  fr_vk_arg args[2] = {in, out};
  return dispatch_1d(k->ctx, seq, k->softmax, args, push, (uint64_t)rows, err);
}

/* ---- networks ---- */

typedef struct plan {
  int n, h, w;                       /* n: the largest batch the buffers hold */
  int *oh, *ow, *oc;
  fr_vk_buffer input;
  fr_vk_buffer *act;                 /* per node output */
  fr_vk_buffer *wts, *bias, *slope;  /* per conv/fc node (empty for the others) */
  int *lowered;                      /* per node: a dense conv run as im2col + GEMM */
  fr_vk_buffer cols;                 /* the im2col rows of the lowered convs */
  fr_vk_sequence *seq;
  uint64_t used;
  int pending;                       /* recorded, outputs not read yet: never evicted */
} plan;

struct fr_mtcnn_net {
  fr_vk_context *ctx;
  fr_ops *ops;
  fr_mtcnn_ops *k;
  const fr_mtcnn_graph *g;
  plan *plans[MAX_PLANS];
  uint64_t clock;
};

static void plan_free(fr_mtcnn_net *net, plan *p)
{
  if (!p)
    return;
  fr_vk_sequence_destroy(p->seq);
  fr_vk_buffer_destroy(net->ctx, &p->input);
  fr_vk_buffer_destroy(net->ctx, &p->cols);
  for (int i = 0; i < net->g->n_nodes; i++) {
    if (p->act)
      fr_vk_buffer_destroy(net->ctx, &p->act[i]);
    if (p->wts) {
      fr_vk_buffer_destroy(net->ctx, &p->wts[i]);
      fr_vk_buffer_destroy(net->ctx, &p->bias[i]);
      fr_vk_buffer_destroy(net->ctx, &p->slope[i]);
    }
  }
  free(p->act);
  free(p->wts);
  free(p->oh);
  free(p->lowered);
  free(p);
}

static int upload_new(fr_vk_context *ctx, fr_vk_buffer *b, const float *data, size_t count, fr_error *err)
{
  uint64_t bytes = ((uint64_t)count * sizeof(float) + 15) & ~(uint64_t)15;
  int rc = fr_vk_buffer_create(ctx, bytes, b, err);
  if (!rc)
    rc = fr_vk_buffer_upload(ctx, b, 0, data, (uint64_t)count * sizeof(float), err);
  return rc;
}

static int plan_weights(fr_mtcnn_net *net, plan *p, int i, const fr_conv_params *cp, fr_error *err)
{
  const fr_mtcnn_node *nd = &net->g->nodes[i];
  size_t nw = fr_ops_packed_weight_count(net->ops, cp), nc = fr_ops_packed_channel_count(cp);
  float *w = malloc(nw * sizeof(float)), *b = malloc(nc * sizeof(float)), *s = malloc(nc * sizeof(float));
  int rc = FR_OK;
  if (!w || !b || !s) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory packing '%s'", net->g->source, nd->name);
  } else {
    fr_ops_pack_conv_weights(net->ops, cp, nd->weights, w);
    fr_ops_pack_channels(cp, nd->bias, b);
    fr_ops_pack_channels(cp, nd->slope, s); /* zeros without PReLU: never read */
    rc = upload_new(net->ctx, &p->wts[i], w, nw, err);
    if (!rc)
      rc = upload_new(net->ctx, &p->bias[i], b, nc, err);
    if (!rc)
      rc = upload_new(net->ctx, &p->slope[i], s, nc, err);
  }
  free(w);
  free(b);
  free(s);
  return rc;
}

/* The conv parameters a node runs with: a lowered conv is a 1x1 conv over its im2col
 * rows (OHWI weights are already [out_c, kh * kw * in_c] with the rows' order). */
static void node_conv_params(const fr_mtcnn_node *nd, int lowered, int n, int ih, int iw, int ic, int oh, int ow,
                             fr_conv_params *cp)
{
  mtcnn_conv_params(nd, n, ih, iw, ic, oh, ow, cp);
  if (lowered) {
    cp->in_c = nd->kernel_h * nd->kernel_w * ic;
    cp->in_h = oh, cp->in_w = ow;
    cp->kernel_h = cp->kernel_w = cp->stride_h = cp->stride_w = 1;
    cp->pad_top = cp->pad_left = 0;
  }
}

/* Dense convs over 4k channels are lowered: the generic implicit-im2col GEMM gathers
 * its input one scalar at a time, which made RNet/ONet's 3x3 convs about 5x slower than
 * copying the windows out once (vec4 copies) and running the texel-fed 1x1 GEMM. The
 * copy is kh * kw times the input, so it is capped (PNet's big levels keep the
 * implicit form). */
#define LOWER_MAX_BYTES (64u << 20)
static int lower_conv(const fr_mtcnn_node *nd, int n, int ic, int oh, int ow)
{
  if (nd->op != FR_MTCNN_CONV || ic % 4 || (nd->kernel_h == 1 && nd->kernel_w == 1))
    return 0;
  return (uint64_t)n * oh * ow * nd->kernel_h * nd->kernel_w * ic * sizeof(float) <= LOWER_MAX_BYTES;
}

static int plan_make(fr_mtcnn_net *net, int n, int h, int w, plan **out, fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  int nn = g->n_nodes;
  plan *p = calloc(1, sizeof(*p));
  if (!p)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", g->source);
  p->n = n, p->h = h, p->w = w;
  p->oh = malloc(3 * sizeof(int) * (size_t)nn);
  p->lowered = calloc((size_t)nn, sizeof(int));
  p->act = calloc((size_t)nn, sizeof(fr_vk_buffer));
  p->wts = calloc(3 * (size_t)nn, sizeof(fr_vk_buffer));
  int rc = FR_OK;
  if (!p->oh || !p->lowered || !p->act || !p->wts) {
    plan_free(net, p);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", g->source);
  }
  p->bias = p->wts + nn;
  p->slope = p->wts + 2 * nn;
  p->ow = p->oh + nn, p->oc = p->oh + 2 * nn;
  rc = fr_mtcnn_shapes(g, h, w, p->oh, p->ow, p->oc, err);
  if (!rc)
    rc = fr_vk_buffer_create(net->ctx, fr_ops_tensor_bytes(net->ops, n, h, w, g->in_c), &p->input, err);
  uint64_t cols = 0;
  for (int i = 0; i < nn && !rc; i++) {
    const fr_mtcnn_node *nd = &g->nodes[i];
    rc = fr_vk_buffer_create(net->ctx, fr_ops_tensor_bytes(net->ops, n, p->oh[i], p->ow[i], p->oc[i]), &p->act[i],
                             err);
    if (!rc && (nd->op == FR_MTCNN_CONV || nd->op == FR_MTCNN_FC)) {
      int in = nd->input, ic = in < 0 ? g->in_c : p->oc[in];
      p->lowered[i] = lower_conv(nd, n, ic, p->oh[i], p->ow[i]);
      fr_conv_params cp;
      node_conv_params(nd, p->lowered[i], n, in < 0 ? h : p->oh[in], in < 0 ? w : p->ow[in], ic, p->oh[i],
                       p->ow[i], &cp);
      rc = plan_weights(net, p, i, &cp, err);
      uint64_t b = fr_ops_tensor_bytes(net->ops, n, p->oh[i], p->ow[i], cp.in_c);
      if (p->lowered[i] && b > cols)
        cols = b;
    }
  }
  if (!rc && cols)
    rc = fr_vk_buffer_create(net->ctx, cols, &p->cols, err);
  if (!rc)
    rc = fr_vk_sequence_create(net->ctx, 0, &p->seq, err);
  if (rc) {
    plan_free(net, p);
    return rc;
  }
  *out = p;
  return FR_OK;
}

/* Plans hold batches up to a power of two, so varying box counts share them. */
static int batch_bucket(int n)
{
  int pn = 1;
  while (pn < n)
    pn *= 2;
  return pn;
}

static int plan_get(fr_mtcnn_net *net, int n, int h, int w, plan **out, fr_error *err)
{
  int pn = batch_bucket(n);
  int free_slot = -1, oldest = -1;
  for (int i = 0; i < MAX_PLANS; i++) {
    plan *p = net->plans[i];
    if (!p) {
      free_slot = free_slot < 0 ? i : free_slot;
      continue;
    }
    if (p->n == pn && p->h == h && p->w == w) {
      if (p->pending)
        return fr_error_set(err, FR_ERR_INVALID, "%s: a %dx%d forward is already recorded and not read",
                            net->g->source, w, h);
      p->used = ++net->clock;
      *out = p;
      return FR_OK;
    }
    if (!p->pending && (oldest < 0 || p->used < net->plans[oldest]->used))
      oldest = i;
  }
  int slot = free_slot >= 0 ? free_slot : oldest;
  if (slot < 0)
    return fr_error_set(err, FR_ERR_INVALID, "%s: more than %d shapes recorded before one run", net->g->source,
                        MAX_PLANS);
  plan *p = NULL;
  int rc = plan_make(net, pn, h, w, &p, err);
  if (rc)
    return rc;
  plan_free(net, net->plans[slot]);
  net->plans[slot] = p;
  p->used = ++net->clock;
  *out = p;
  return FR_OK;
}

int fr_mtcnn_net_create(fr_vk_context *ctx, fr_ops *ops, fr_mtcnn_ops *kernels, const fr_mtcnn_graph *g,
                        fr_mtcnn_net **out, fr_error *err)
{
  *out = calloc(1, sizeof(**out));
  if (!*out)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", g->source);
  (*out)->ctx = ctx, (*out)->ops = ops, (*out)->k = kernels, (*out)->g = g;
  return FR_OK;
}

void fr_mtcnn_net_destroy(fr_mtcnn_net *net)
{
  if (!net)
    return;
  for (int i = 0; i < MAX_PLANS; i++)
    plan_free(net, net->plans[i]);
  free(net);
}

static fr_vk_arg arg_of(const fr_vk_buffer *b) { return (fr_vk_arg){b, 0, 0}; }

/* The layers of n inputs: kernel choice never depends on the batch, so a plan's
 * packed weights serve any n up to its size and only the n rows are computed. */
static int record_layers(fr_mtcnn_net *net, fr_vk_sequence *seq, plan *p, int n, fr_mtcnn_input_fn fill, void *user,
                         fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  int rc = FR_OK;
  if (fill) {
    rc = fill(user, seq, arg_of(&p->input), n, p->h, p->w, err);
    fr_vk_sequence_barrier(seq);
  }
  for (int i = 0; i < g->n_nodes && !rc; i++) {
    const fr_mtcnn_node *nd = &g->nodes[i];
    int in = nd->input;
    fr_vk_arg x = arg_of(in < 0 ? &p->input : &p->act[in]), y = arg_of(&p->act[i]);
    int ih = in < 0 ? p->h : p->oh[in], iw = in < 0 ? p->w : p->ow[in], ic = in < 0 ? g->in_c : p->oc[in];
    if (p->lowered[i]) {
      fr_pool_params wp;
      mtcnn_pool_params(nd, n, ih, iw, ic, &wp); /* the same window geometry */
      rc = fr_mtcnn_record_im2col(net->k, seq, &wp, x, arg_of(&p->cols), err);
      fr_vk_sequence_barrier(seq);
      x = arg_of(&p->cols);
    }
    if (!rc && (nd->op == FR_MTCNN_CONV || nd->op == FR_MTCNN_FC)) {
      fr_conv_params cp;
      node_conv_params(nd, p->lowered[i], n, ih, iw, ic, p->oh[i], p->ow[i], &cp);
      rc = fr_ops_record_conv(net->ops, seq, &cp, x, arg_of(&p->wts[i]), arg_of(&p->bias[i]), arg_of(&p->slope[i]),
                              y, y, nd->name, err);
    } else if (!rc && nd->op == FR_MTCNN_MAXPOOL) {
      fr_pool_params pp;
      mtcnn_pool_params(nd, n, ih, iw, ic, &pp);
      rc = fr_mtcnn_record_maxpool(net->k, seq, &pp, x, y, err);
    } else if (!rc) {
      rc = fr_mtcnn_record_softmax(net->k, seq, n * ih * iw, ic, x, y, err);
    }
    fr_vk_sequence_barrier(seq);
  }
  return rc;
}

static int check_forward(const fr_mtcnn_net *net, int n, int h, int w, fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  if (n < 1 || n > (1 << 16))
    return fr_error_set(err, FR_ERR_INVALID, "%s: a forward of %d inputs (1..65536)", g->source, n);
  if (!g->any_size && (h != g->in_h || w != g->in_w))
    return fr_error_set(err, FR_ERR_INVALID, "%s: input %dx%d, the graph takes only %dx%d", g->source, w, h,
                        g->in_w, g->in_h);
  return FR_OK;
}

int fr_mtcnn_net_record(fr_mtcnn_net *net, fr_vk_sequence *seq, int n, int h, int w, fr_mtcnn_input_fn fill,
                        void *fill_user, fr_error *err)
{
  plan *p = NULL;
  int rc = fill ? check_forward(net, n, h, w, err)
                : fr_error_set(err, FR_ERR_INVALID, "%s: a recorded forward needs a fill", net->g->source);
  if (!rc)
    rc = plan_get(net, n, h, w, &p, err);
  if (!rc)
    rc = record_layers(net, seq, p, n, fill, fill_user, err);
  if (!rc)
    p->pending = 1;
  if (rc)
    fr_error_prefix(err, "%s", net->g->source);
  return rc;
}

int fr_mtcnn_net_read(fr_mtcnn_net *net, int n, int h, int w, float **outputs, fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  int pn = batch_bucket(n);
  plan *p = NULL;
  for (int i = 0; i < MAX_PLANS && !p; i++)
    if (net->plans[i] && net->plans[i]->pending && net->plans[i]->n == pn && net->plans[i]->h == h &&
        net->plans[i]->w == w)
      p = net->plans[i];
  if (!p)
    return fr_error_set(err, FR_ERR_INVALID, "%s: no recorded %dx%d forward of %d inputs to read", g->source, w, h,
                        n);
  p->pending = 0;
  int rc = FR_OK;
  for (int k = 0; k < g->n_outputs && !rc; k++) {
    int i = g->outputs[k];
    rc = fr_vk_buffer_download(net->ctx, &p->act[i], 0, outputs[k],
                               sizeof(float) * (uint64_t)n * p->oh[i] * p->ow[i] * p->oc[i], err);
  }
  if (rc)
    fr_error_prefix(err, "%s", g->source);
  return rc;
}

int fr_mtcnn_net_forward(fr_mtcnn_net *net, int n, int h, int w, const float *input, fr_mtcnn_input_fn fill,
                         void *fill_user, float **outputs, fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  if ((!input) == (!fill))
    return fr_error_set(err, FR_ERR_INVALID, "%s: forward needs inputs from exactly one source", g->source);
  int rc = check_forward(net, n, h, w, err);
  plan *p = NULL;
  if (!rc)
    rc = plan_get(net, n, h, w, &p, err);
  if (!rc && input)
    rc = fr_vk_buffer_upload(net->ctx, &p->input, 0, input, (size_t)n * h * w * g->in_c * sizeof(float), err);
  if (!rc)
    rc = fr_vk_sequence_begin(p->seq, err);
  if (!rc)
    rc = record_layers(net, p->seq, p, n, fill, fill_user, err);
  if (!rc)
    rc = fr_vk_sequence_end(p->seq, err);
  if (!rc)
    rc = fr_vk_sequence_run(p->seq, err);
  if (!rc)
    p->pending = 1;
  if (rc) {
    fr_error_prefix(err, "%s", g->source);
    return rc;
  }
  return fr_mtcnn_net_read(net, n, h, w, outputs, err);
}
