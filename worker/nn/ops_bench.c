/* Timing harness for the conv kernels on MobileFaceNet's shapes (random weights).
 * Layers read and write batch-sized tensors (three rotating activation buffers, as the
 * network would), each layer timed alone over several runs, best run kept. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faceri/ops.h"
#include "faceri/ops_bench.h"

#define MAX_LAYERS 64

typedef struct bench_net {
  fr_conv_params p[MAX_LAYERS];
  int n;
} bench_net;

static void add(bench_net *net, int batch, int h, int cin, int cout, int k, int s, int dw, fr_activation act,
                int residual)
{
  fr_conv_params p = {.batch = batch, .in_h = h, .in_w = h, .in_c = cin, .out_c = cout, .kernel_h = k,
                      .kernel_w = k, .stride_h = s, .stride_w = s, .depthwise = dw, .activation = act,
                      .has_residual = residual};
  if (k == 7) { /* the global depthwise conv: VALID */
    p.out_h = p.out_w = 1;
  } else { /* TF SAME: the extra padding goes bottom/right */
    p.out_h = p.out_w = (h + s - 1) / s;
    int total = (p.out_h - 1) * s + k - h;
    p.pad_top = p.pad_left = total > 0 ? total / 2 : 0;
  }
  net->p[net->n++] = p;
}

static void bottleneck(bench_net *net, int batch, int h, int cin, int expand, int cout, int s, int repeats)
{
  for (int r = 0; r < repeats; r++) {
    int stride = r == 0 ? s : 1, in = r == 0 ? cin : cout;
    add(net, batch, h, in, expand, 1, 1, 0, FR_ACT_PRELU, 0);
    add(net, batch, h, expand, expand, 3, stride, 1, FR_ACT_PRELU, 0);
    int oh = (h + stride - 1) / stride;
    add(net, batch, oh, expand, cout, 1, 1, 0, FR_ACT_NONE, stride == 1 && in == cout);
    h = oh;
  }
}

static void mobilefacenet(bench_net *net, int batch)
{
  net->n = 0;
  add(net, batch, 112, 3, 64, 3, 2, 0, FR_ACT_PRELU, 0);
  add(net, batch, 56, 64, 64, 3, 1, 1, FR_ACT_PRELU, 0);
  add(net, batch, 56, 64, 64, 1, 1, 0, FR_ACT_NONE, 0);
  bottleneck(net, batch, 56, 64, 128, 64, 2, 5);
  bottleneck(net, batch, 28, 64, 256, 128, 2, 1);
  bottleneck(net, batch, 14, 128, 256, 128, 1, 6);
  bottleneck(net, batch, 14, 128, 512, 128, 2, 1);
  bottleneck(net, batch, 7, 128, 256, 128, 1, 2);
  add(net, batch, 7, 128, 512, 1, 1, 0, FR_ACT_PRELU, 0);
  add(net, batch, 7, 512, 512, 7, 1, 1, FR_ACT_NONE, 0);
  add(net, batch, 1, 512, 512, 1, 1, 0, FR_ACT_NONE, 0);
  add(net, batch, 1, 512, 192, 1, 1, 0, FR_ACT_NONE, 0);
}

static double conv_macs(const fr_conv_params *p)
{
  double per_out = (double)p->kernel_h * p->kernel_w * (p->depthwise ? 1 : p->in_c);
  return per_out * p->batch * p->out_h * p->out_w * p->out_c;
}

static size_t tensor_floats(int n, int h, int w, int c) { return (size_t)n * h * w * c; }

/* Small random values scaled by fan-in keep activations bounded over 52 layers. */
static void fill_random(float *a, size_t n, float scale, unsigned *state)
{
  for (size_t i = 0; i < n; i++) {
    *state = *state * 1664525u + 1013904223u;
    a[i] = ((float)(*state >> 8) / 16777216.0f * 2.0f - 1.0f) * scale;
  }
}

typedef struct bench_bufs {
  fr_vk_buffer act[3], weights[MAX_LAYERS], bias[MAX_LAYERS], slope[MAX_LAYERS];
} bench_bufs;

static void free_bufs(fr_vk_context *ctx, bench_bufs *b)
{
  for (int i = 0; i < 3; i++)
    fr_vk_buffer_destroy(ctx, &b->act[i]);
  for (int i = 0; i < MAX_LAYERS; i++) {
    fr_vk_buffer_destroy(ctx, &b->weights[i]);
    fr_vk_buffer_destroy(ctx, &b->bias[i]);
    fr_vk_buffer_destroy(ctx, &b->slope[i]);
  }
}

static int upload_new(fr_vk_context *ctx, const float *data, size_t n, fr_vk_buffer *buf, fr_error *err)
{
  int rc = fr_vk_buffer_create(ctx, (n * sizeof(float) + 255) & ~(size_t)255, buf, err);
  if (!rc)
    rc = fr_vk_buffer_upload(ctx, buf, 0, data, n * sizeof(float), err);
  return rc;
}

/* Packs and uploads one layer's random weights, bias and slope. */
static int upload_layer(fr_vk_context *ctx, fr_ops *ops, const fr_conv_params *p, bench_bufs *b, int i,
                        unsigned *state, fr_error *err)
{
  size_t wn = p->depthwise ? (size_t)p->kernel_h * p->kernel_w * p->out_c
                           : (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
  size_t pn = fr_ops_packed_weight_count(ops, p), cn = fr_ops_packed_channel_count(p);
  float *w = malloc(wn * sizeof(float)), *packed = malloc(pn * sizeof(float));
  float *ch = malloc((size_t)p->out_c * sizeof(float)), *chp = malloc(cn * sizeof(float));
  int rc = FR_OK;
  if (!w || !packed || !ch || !chp) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "ops bench: out of memory for layer %d weights", i);
  } else {
    fill_random(w, wn, 1.7f / sqrtf((float)(wn / (size_t)p->out_c)), state);
    fr_ops_pack_conv_weights(ops, p, w, packed);
    rc = upload_new(ctx, packed, pn, &b->weights[i], err);
    fill_random(ch, (size_t)p->out_c, 0.1f, state);
    fr_ops_pack_channels(p, ch, chp);
    if (!rc)
      rc = upload_new(ctx, chp, cn, &b->bias[i], err);
    fill_random(ch, (size_t)p->out_c, 0.25f, state);
    fr_ops_pack_channels(p, ch, chp);
    if (!rc)
      rc = upload_new(ctx, chp, cn, &b->slope[i], err);
  }
  free(w), free(packed), free(ch), free(chp);
  return rc;
}

/* Which act[] buffers each layer reads and writes: act[cur] holds the layer input and
 * `keep` a block input that a later residual add reads. */
static void plan_buffers(const bench_net *net, int *in_buf, int *out_buf, int *res_buf)
{
  int cur = 0, keep = -1;
  for (int i = 0; i < net->n; i++) {
    if (i + 2 < net->n && net->p[i + 2].has_residual && !net->p[i].depthwise)
      keep = cur;
    int out = 0;
    while (out == cur || out == keep)
      out++;
    in_buf[i] = cur;
    out_buf[i] = out;
    res_buf[i] = net->p[i].has_residual ? keep : out;
    if (net->p[i].has_residual)
      keep = -1;
    cur = out;
  }
}

static double cpu_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Each layer is its own sequence so its wall and process CPU time can be measured
 * alone: on a CPU device shared with other work, CPU seconds are the stable figure. */
static int time_layer(fr_vk_context *ctx, fr_ops *ops, const fr_conv_params *p, bench_bufs *b, int i, int in,
                      int out, int res, int runs, double *wall_ms, double *cpu_ms, fr_error *err)
{
  fr_vk_sequence *seq = NULL;
  int rc = fr_vk_sequence_create(ctx, 0, &seq, err);
  if (!rc)
    rc = fr_vk_sequence_begin(seq, err);
  if (!rc)
    rc = fr_ops_record_conv(ops, seq, p, (fr_vk_arg){&b->act[in], 0, 0}, (fr_vk_arg){&b->weights[i], 0, 0},
                            (fr_vk_arg){&b->bias[i], 0, 0}, (fr_vk_arg){&b->slope[i], 0, 0},
                            (fr_vk_arg){&b->act[res], 0, 0}, (fr_vk_arg){&b->act[out], 0, 0}, NULL, err);
  if (!rc)
    rc = fr_vk_sequence_end(seq, err);
  if (!rc)
    rc = fr_vk_sequence_run(seq, err); /* warm-up: pages touched, caches filled */
  *wall_ms = *cpu_ms = DBL_MAX;
  for (int r = 0; !rc && r < runs; r++) {
    double w0 = wall_seconds(), c0 = cpu_seconds();
    rc = fr_vk_sequence_run(seq, err);
    double w = (wall_seconds() - w0) * 1e3, c = (cpu_seconds() - c0) * 1e3;
    *wall_ms = w < *wall_ms ? w : *wall_ms;
    *cpu_ms = c < *cpu_ms ? c : *cpu_ms;
  }
  fr_vk_sequence_destroy(seq);
  return rc;
}

int fr_ops_bench_layers(fr_vk_context *ctx, int batch, int runs, FILE *out, fr_ops_bench_summary *summary,
                        fr_error *err)
{
  memset(summary, 0, sizeof(*summary));
  if (batch <= 0 || runs <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "ops bench: batch %d, runs %d", batch, runs);
  bench_net net;
  mobilefacenet(&net, batch);
  fr_ops *ops = NULL;
  bench_bufs *b = calloc(1, sizeof(*b));
  if (!b) {
    return fr_error_set(err, FR_ERR_NOMEM, "ops bench: out of memory");
  }
  int rc = fr_ops_create(ctx, &ops, err);
  size_t max_floats = 0;
  for (int i = 0; i < net.n; i++) {
    const fr_conv_params *p = &net.p[i];
    size_t fi = tensor_floats(p->batch, p->in_h, p->in_w, p->in_c);
    size_t fo = tensor_floats(p->batch, p->out_h, p->out_w, p->out_c);
    max_floats = fi > max_floats ? fi : max_floats;
    max_floats = fo > max_floats ? fo : max_floats;
  }
  unsigned state = 2024u;
  float *host = rc ? NULL : malloc(max_floats * sizeof(float));
  if (!rc && !host)
    rc = fr_error_set(err, FR_ERR_NOMEM, "ops bench: out of memory for a %zu-float tensor", max_floats);
  for (int i = 0; !rc && i < 3; i++) {
    fill_random(host, max_floats, 1.0f, &state);
    rc = upload_new(ctx, host, max_floats, &b->act[i], err);
  }
  free(host);
  for (int i = 0; !rc && i < net.n; i++)
    rc = upload_layer(ctx, ops, &net.p[i], b, i, &state, err);
  int in_buf[MAX_LAYERS], out_buf[MAX_LAYERS], res_buf[MAX_LAYERS];
  plan_buffers(&net, in_buf, out_buf, res_buf);
  /* Cores the device may use: CPU time / this is the uncontended wall time. */
  double cores = fr_vk_context_device(ctx)->type == VK_PHYSICAL_DEVICE_TYPE_CPU ? (double)sysconf(_SC_NPROCESSORS_ONLN)
                                                                               : 0.0;
  double total_wall = 0, total_cpu = 0, total_macs = 0;
  if (!rc && out)
    fprintf(out, "%-30s %-14s %9s %8s %9s %8s\n", "layer", "kernel", "wall ms", "GFLOP/s", "cpu ms", "GF/cpu-s");
  for (int i = 0; !rc && i < net.n; i++) {
    const fr_conv_params *p = &net.p[i];
    double wall_ms, cpu_ms, macs = conv_macs(p);
    rc = time_layer(ctx, ops, p, b, i, in_buf[i], out_buf[i], res_buf[i], runs, &wall_ms, &cpu_ms, err);
    if (rc) {
      fr_error_prefix(err, "ops bench layer %d", i);
      break;
    }
    total_wall += wall_ms, total_cpu += cpu_ms, total_macs += macs;
    if (out)
      fprintf(out, "%02d %-4s %3dx%-3d %3d->%-3d k%d s%d  %-14s %9.3f %8.2f %9.3f %8.2f\n", i,
              p->depthwise ? "dw" : "conv", p->in_h, p->in_w, p->in_c, p->out_c, p->kernel_h, p->stride_h,
              fr_ops_conv_kernel_name(ops, p), wall_ms, 2 * macs / (wall_ms * 1e6), cpu_ms,
              2 * macs / (cpu_ms * 1e6));
  }
  if (!rc) {
    /* On a CPU device, report the uncontended estimate (CPU time spread over every core). */
    double est_ms = cores > 0 ? total_cpu / cores : total_wall;
    summary->total_ms = est_ms;
    summary->images_per_s = batch / (est_ms * 1e-3);
    summary->gflops = 2 * total_macs / (est_ms * 1e6);
    summary->layers = net.n;
    if (out) {
      fprintf(out, "wall: %.1f ms for %d images: %.1f images/s, %.2f GFLOP/s (%.3f GMAC/image)\n", total_wall,
              batch, batch / (total_wall * 1e-3), 2 * total_macs / (total_wall * 1e6), total_macs / batch * 1e-9);
      if (cores > 0)
        fprintf(out, "cpu: %.1f ms = %.1f ms on %.0f idle cores: %.1f images/s, %.2f GFLOP/s\n", total_cpu, est_ms,
                cores, summary->images_per_s, summary->gflops);
    }
  }
  free_bufs(ctx, b);
  free(b);
  fr_ops_destroy(ops);
  return rc;
}
