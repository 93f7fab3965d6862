/* MTCNN graphs on the device: the pooling and softmax kernels, and per-shape plans
 * (activation buffers, packed weights, a recorded sequence) for a network.
 *
 * Convolutions and fully connected layers go through fr_ops_record_conv with PReLU in
 * its epilogue, so only max pooling and the softmax needed new shaders. A plan is kept
 * per (batch, h, w): PNet sees one size per pyramid level and images of one size
 * share them; RNet and ONet batches are rounded up to a power of two so that the
 * number of boxes does not make a new plan each time. */
#include <stdlib.h>
#include <string.h>

#include "faceri/mtcnn.h"
#include "mtcnn_internal.h"

#define WG 64u
#define MAX_PLANS 24

struct fr_mtcnn_ops {
  fr_vk_context *ctx;
  fr_vk_kernel *pool, *softmax;
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
  int n, h, w;
  int *oh, *ow, *oc;
  fr_vk_buffer input;
  fr_vk_buffer *act;                 /* per node output */
  fr_vk_buffer *wts, *bias, *slope;  /* per conv/fc node (empty for the others) */
  fr_vk_sequence *seq;
  uint64_t used;
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

static int plan_make(fr_mtcnn_net *net, int n, int h, int w, plan **out, fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  int nn = g->n_nodes;
  plan *p = calloc(1, sizeof(*p));
  if (!p)
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", g->source);
  p->n = n, p->h = h, p->w = w;
  p->oh = malloc(3 * sizeof(int) * (size_t)nn);
  p->act = calloc((size_t)nn, sizeof(fr_vk_buffer));
  p->wts = calloc(3 * (size_t)nn, sizeof(fr_vk_buffer));
  int rc = FR_OK;
  if (!p->oh || !p->act || !p->wts) {
    plan_free(net, p);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", g->source);
  }
  p->bias = p->wts + nn;
  p->slope = p->wts + 2 * nn;
  p->ow = p->oh + nn, p->oc = p->oh + 2 * nn;
  rc = fr_mtcnn_shapes(g, h, w, p->oh, p->ow, p->oc, err);
  if (!rc)
    rc = fr_vk_buffer_create(net->ctx, fr_ops_tensor_bytes(net->ops, n, h, w, g->in_c), &p->input, err);
  for (int i = 0; i < nn && !rc; i++) {
    const fr_mtcnn_node *nd = &g->nodes[i];
    rc = fr_vk_buffer_create(net->ctx, fr_ops_tensor_bytes(net->ops, n, p->oh[i], p->ow[i], p->oc[i]), &p->act[i],
                             err);
    if (!rc && (nd->op == FR_MTCNN_CONV || nd->op == FR_MTCNN_FC)) {
      int in = nd->input;
      fr_conv_params cp;
      mtcnn_conv_params(nd, n, in < 0 ? h : p->oh[in], in < 0 ? w : p->ow[in], in < 0 ? g->in_c : p->oc[in],
                        p->oh[i], p->ow[i], &cp);
      rc = plan_weights(net, p, i, &cp, err);
    }
  }
  if (!rc)
    rc = fr_vk_sequence_create(net->ctx, 0, &p->seq, err);
  if (rc) {
    plan_free(net, p);
    return rc;
  }
  *out = p;
  return FR_OK;
}

static int plan_get(fr_mtcnn_net *net, int n, int h, int w, plan **out, fr_error *err)
{
  int free_slot = -1, oldest = 0;
  for (int i = 0; i < MAX_PLANS; i++) {
    plan *p = net->plans[i];
    if (!p) {
      free_slot = free_slot < 0 ? i : free_slot;
      continue;
    }
    if (p->n == n && p->h == h && p->w == w) {
      p->used = ++net->clock;
      *out = p;
      return FR_OK;
    }
    if (net->plans[oldest] == NULL || p->used < net->plans[oldest]->used)
      oldest = i;
  }
  int slot = free_slot >= 0 ? free_slot : oldest;
  plan *p = NULL;
  int rc = plan_make(net, n, h, w, &p, err);
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

static int record(fr_mtcnn_net *net, plan *p, fr_mtcnn_input_fn fill, void *user, fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  int rc = fr_vk_sequence_begin(p->seq, err);
  if (!rc && fill) {
    rc = fill(user, p->seq, arg_of(&p->input), p->n, p->h, p->w, err);
    fr_vk_sequence_barrier(p->seq);
  }
  for (int i = 0; i < g->n_nodes && !rc; i++) {
    const fr_mtcnn_node *nd = &g->nodes[i];
    int in = nd->input;
    fr_vk_arg x = arg_of(in < 0 ? &p->input : &p->act[in]), y = arg_of(&p->act[i]);
    int ih = in < 0 ? p->h : p->oh[in], iw = in < 0 ? p->w : p->ow[in], ic = in < 0 ? g->in_c : p->oc[in];
    if (nd->op == FR_MTCNN_CONV || nd->op == FR_MTCNN_FC) {
      fr_conv_params cp;
      mtcnn_conv_params(nd, p->n, ih, iw, ic, p->oh[i], p->ow[i], &cp);
      rc = fr_ops_record_conv(net->ops, p->seq, &cp, x, arg_of(&p->wts[i]), arg_of(&p->bias[i]),
                              arg_of(&p->slope[i]), y, y, nd->name, err);
    } else if (nd->op == FR_MTCNN_MAXPOOL) {
      fr_pool_params pp;
      mtcnn_pool_params(nd, p->n, ih, iw, ic, &pp);
      rc = fr_mtcnn_record_maxpool(net->k, p->seq, &pp, x, y, err);
    } else {
      rc = fr_mtcnn_record_softmax(net->k, p->seq, p->n * ih * iw, ic, x, y, err);
    }
    fr_vk_sequence_barrier(p->seq);
  }
  if (!rc)
    rc = fr_vk_sequence_end(p->seq, err);
  return rc;
}

int fr_mtcnn_net_forward(fr_mtcnn_net *net, int n, int h, int w, const float *input, fr_mtcnn_input_fn fill,
                         void *fill_user, float **outputs, fr_error *err)
{
  const fr_mtcnn_graph *g = net->g;
  if (n < 1 || n > (1 << 16) || (!input) == (!fill))
    return fr_error_set(err, FR_ERR_INVALID, "%s: forward needs 1..65536 inputs from exactly one source",
                        g->source);
  if (!g->any_size && (h != g->in_h || w != g->in_w))
    return fr_error_set(err, FR_ERR_INVALID, "%s: input %dx%d, the graph takes only %dx%d", g->source, w, h,
                        g->in_w, g->in_h);
  int pn = 1;
  while (pn < n)
    pn *= 2;
  plan *p = NULL;
  int rc = plan_get(net, pn, h, w, &p, err);
  if (!rc && input) {
    size_t one = (size_t)h * w * g->in_c * sizeof(float);
    rc = fr_vk_buffer_upload(net->ctx, &p->input, 0, input, one * n, err);
    if (!rc && pn > n) { /* padding rows: zeros, so the unused outputs stay finite */
      float *z = calloc((size_t)(pn - n), one);
      if (!z)
        return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", g->source);
      rc = fr_vk_buffer_upload(net->ctx, &p->input, one * n, z, one * (pn - n), err);
      free(z);
    }
  }
  if (!rc)
    rc = record(net, p, fill, fill_user, err);
  if (!rc)
    rc = fr_vk_sequence_run(p->seq, err);
  for (int k = 0; k < g->n_outputs && !rc; k++) {
    int i = g->outputs[k];
    rc = fr_vk_buffer_download(net->ctx, &p->act[i], 0, outputs[k],
                               sizeof(float) * (uint64_t)n * p->oh[i] * p->ow[i] * p->oc[i], err);
  }
  if (rc)
    fr_error_prefix(err, "%s", g->source);
  return rc;
}
