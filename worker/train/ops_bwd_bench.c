/* Timing harness for the convolution backward kernels on MobileFaceNet's layer shapes.
 * Shapes that repeat (the bottleneck blocks) are timed once and counted as often as
 * the network has them. */
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faceri/train_ops.h"
#include "faceri/train_ops_bench.h"

#define MAX_SHAPES 64

typedef struct bench_shape {
  fr_conv_params p;
  int count;
  int first; /* the network's first layer: no input gradient */
  char label[48];
} bench_shape;

typedef struct bench_net {
  bench_shape s[MAX_SHAPES];
  int n, layers;
} bench_net;

static void add(bench_net *net, int batch, int h, int cin, int cout, int k, int s, int dw)
{
  fr_conv_params p = {.batch = batch, .in_h = h, .in_w = h, .in_c = cin, .out_c = cout, .kernel_h = k,
                      .kernel_w = k, .stride_h = s, .stride_w = s, .depthwise = dw};
  if (k == 7) { /* the global depthwise conv: VALID */
    p.out_h = p.out_w = 1;
  } else { /* TF SAME: the extra padding goes bottom/right */
    p.out_h = p.out_w = (h + s - 1) / s;
    int total = (p.out_h - 1) * s + k - h;
    p.pad_top = p.pad_left = total > 0 ? total / 2 : 0;
  }
  int first = net->layers++ == 0;
  for (int i = 0; i < net->n; i++)
    if (!memcmp(&net->s[i].p, &p, sizeof(p)) && net->s[i].first == first) {
      net->s[i].count++;
      return;
    }
  bench_shape *b = &net->s[net->n++];
  b->p = p;
  b->count = 1;
  b->first = first;
  if (dw)
    snprintf(b->label, sizeof(b->label), "dw %dx%d s%d %d %d%s", k, k, s, h, cin, k == 7 ? " valid" : "");
  else
    snprintf(b->label, sizeof(b->label), "conv %dx%d s%d %d %d->%d", k, k, s, h, cin, cout);
}

static void bottleneck(bench_net *net, int batch, int h, int cin, int expand, int cout, int s, int repeats)
{
  for (int r = 0; r < repeats; r++) {
    int stride = r == 0 ? s : 1, in = r == 0 ? cin : cout;
    add(net, batch, h, in, expand, 1, 1, 0);
    add(net, batch, h, expand, expand, 3, stride, 1);
    h = (h + stride - 1) / stride;
    add(net, batch, h, expand, cout, 1, 1, 0);
  }
}

/* The same layer list as fr_ops_bench_layers (worker/nn/ops_bench.c). */
static void mobilefacenet(bench_net *net, int batch)
{
  memset(net, 0, sizeof(*net));
  add(net, batch, 112, 3, 64, 3, 2, 0);
  add(net, batch, 56, 64, 64, 3, 1, 1);
  add(net, batch, 56, 64, 64, 1, 1, 0);
  bottleneck(net, batch, 56, 64, 128, 64, 2, 5);
  bottleneck(net, batch, 28, 64, 256, 128, 2, 1);
  bottleneck(net, batch, 14, 128, 256, 128, 1, 6);
  bottleneck(net, batch, 14, 128, 512, 128, 2, 1);
  bottleneck(net, batch, 7, 128, 256, 128, 1, 2);
  add(net, batch, 7, 128, 512, 1, 1, 0);
  add(net, batch, 7, 512, 512, 7, 1, 1);
  add(net, batch, 1, 512, 512, 1, 1, 0);
  add(net, batch, 1, 512, 192, 1, 1, 0);
}

static double conv_macs(const fr_conv_params *p)
{
  double per_out = (double)p->kernel_h * p->kernel_w * (p->depthwise ? 1 : p->in_c);
  return per_out * p->batch * p->out_h * p->out_w * p->out_c;
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

enum { B_X, B_DY, B_W, B_DX, B_DW, B_SCRATCH, B_Z, B_SLOPE, B_DZ, B_DB, B_DSLOPE, B_SCRATCH2, B_COUNT };

static int make_buffers(fr_vk_context *ctx, const fr_conv_params *p, fr_vk_buffer *b, fr_error *err)
{
  size_t wn = p->depthwise ? (size_t)p->kernel_h * p->kernel_w * p->out_c
                           : (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
  size_t rows = (size_t)p->batch * p->out_h * p->out_w, c = (size_t)p->out_c;
  size_t n[B_COUNT] = {(size_t)p->batch * p->in_h * p->in_w * p->in_c,
                       rows * c,
                       wn,
                       (size_t)p->batch * p->in_h * p->in_w * p->in_c,
                       wn,
                       fr_train_conv_filter_scratch_floats(p),
                       rows * c,
                       c,
                       rows * c,
                       c,
                       c,
                       fr_train_reduce_scratch_floats((int)rows, (int)c)};
  int rc = FR_OK;
  unsigned state = 77u;
  for (int i = 0; i < B_COUNT && !rc; i++) {
    uint64_t bytes = ((uint64_t)n[i] * sizeof(float) + 255) & ~(uint64_t)255;
    rc = fr_vk_buffer_create(ctx, bytes, &b[i], err);
    if (rc || (i > B_W && i != B_Z && i != B_SLOPE))
      continue;
    float *host = malloc(n[i] * sizeof(float));
    if (!host)
      return fr_error_set(err, FR_ERR_NOMEM, "train ops bench: out of memory for %zu floats", n[i]);
    for (size_t j = 0; j < n[i]; j++) {
      state = state * 1664525u + 1013904223u;
      host[j] = (float)(state >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
    rc = fr_vk_buffer_upload(ctx, &b[i], 0, host, n[i] * sizeof(float), err);
    free(host);
  }
  return rc;
}

/* Records one op alone and times it: 0 the input gradient, 1 the weight gradient, 2
 * the epilogue's backward (PReLU's input and slope gradients, then the bias gradient). */
static int time_op(fr_vk_context *ctx, fr_train_ops *t, const fr_conv_params *p, const fr_vk_buffer *b, int op,
                   int runs, double *wall_ms, double *cpu_ms, fr_error *err)
{
  fr_vk_sequence *seq = NULL;
  fr_vk_arg a[B_COUNT];
  for (int i = 0; i < B_COUNT; i++)
    a[i] = (fr_vk_arg){&b[i], 0, 0};
  int rc = fr_vk_sequence_create(ctx, 0, &seq, err);
  if (!rc)
    rc = fr_vk_sequence_begin(seq, err);
  int rows = p->batch * p->out_h * p->out_w;
  if (!rc && op == 2) {
    rc = fr_train_record_act_bwd(t, seq, FR_TRAIN_PRELU, rows, p->out_c, a[B_Z], a[B_DY], a[B_SLOPE], a[B_DZ],
                                 a[B_SCRATCH2], a[B_DSLOPE], err);
    fr_vk_sequence_barrier(seq);
    if (!rc)
      rc = fr_train_record_bias_bwd(t, seq, rows, p->out_c, a[B_DZ], a[B_SCRATCH2], a[B_DB], err);
  } else if (!rc) {
    rc = op ? fr_train_record_conv_bwd_filter(t, seq, p, a[B_X], a[B_DY], a[B_SCRATCH], a[B_DW], err)
            : fr_train_record_conv_bwd_data(t, seq, p, a[B_DY], a[B_W], a[B_DX], err);
  }
  if (!rc)
    rc = fr_vk_sequence_end(seq, err);
  if (!rc)
    rc = fr_vk_sequence_run(seq, err);
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

int fr_train_ops_bench(fr_vk_context *ctx, int batch, int runs, const char *filter, FILE *out,
                       fr_train_ops_bench_summary *summary, fr_error *err)
{
  memset(summary, 0, sizeof(*summary));
  if (batch <= 0 || runs <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "train ops bench: batch %d, runs %d", batch, runs);
  bench_net *net = malloc(sizeof(*net));
  if (!net)
    return fr_error_set(err, FR_ERR_NOMEM, "train ops bench: out of memory");
  mobilefacenet(net, batch);
  fr_train_ops *t = NULL;
  int rc = fr_train_ops_create(ctx, &t, err);
  double cores = fr_vk_context_device(ctx)->type == VK_PHYSICAL_DEVICE_TYPE_CPU ? (double)sysconf(_SC_NPROCESSORS_ONLN)
                                                                               : 0.0;
  double macs_data = 0, macs_filter = 0, ms[3] = {0, 0, 0};
  if (!rc && out)
    fprintf(out, "%-24s %2s | %-22s %8s %7s | %-22s %8s %7s | %8s %8s\n", "shape", "n", "bwd data", "wall ms",
            "GF/cpus", "bwd filter", "wall ms", "GF/cpus", "epi ms", "epi cpu");
  for (int i = 0; i < net->n && !rc; i++) {
    bench_shape *s = &net->s[i];
    if (filter && !strstr(s->label, filter))
      continue;
    fr_vk_buffer b[B_COUNT];
    memset(b, 0, sizeof(b));
    rc = make_buffers(ctx, &s->p, b, err);
    double macs = conv_macs(&s->p), wall[3] = {0, 0, 0}, cpu[3] = {0, 0, 0};
    for (int f = 0; f < 3 && !rc; f++)
      if (f || !s->first)
        rc = time_op(ctx, t, &s->p, b, f, runs, &wall[f], &cpu[f], err);
    for (int k = 0; k < B_COUNT; k++)
      fr_vk_buffer_destroy(ctx, &b[k]);
    if (rc) {
      fr_error_prefix(err, "train ops bench, %s", s->label);
      break;
    }
    for (int f = 0; f < 3; f++)
      ms[f] += s->count * (cores > 0 ? cpu[f] / cores : wall[f]);
    macs_filter += s->count * macs;
    if (!s->first)
      macs_data += s->count * macs;
    summary->shapes++;
    summary->layers += s->count;
    if (!out)
      continue;
    fprintf(out, "%-24s %2d | ", s->label, s->count);
    if (s->first)
      fprintf(out, "%-22s %8s %7s | ", "-", "", "");
    else
      fprintf(out, "%-22s %8.3f %7.2f | ", fr_train_conv_bwd_kernel_name(t, &s->p, 0), wall[0],
              2 * macs / (cpu[0] * 1e6));
    fprintf(out, "%-22s %8.3f %7.2f | %8.3f %8.3f\n", fr_train_conv_bwd_kernel_name(t, &s->p, 1), wall[1],
            2 * macs / (cpu[1] * 1e6), wall[2], cpu[2]);
  }
  if (!rc) {
    summary->data_ms = ms[0];
    summary->filter_ms = ms[1];
    summary->epilogue_ms = ms[2];
    summary->data_gflops = ms[0] > 0 ? 2 * macs_data / (ms[0] * 1e6) : 0;
    summary->filter_gflops = ms[1] > 0 ? 2 * macs_filter / (ms[1] * 1e6) : 0;
    if (out)
      fprintf(out, "network (%d layers, batch %d, %s): bwd data %.1f ms (%.2f GFLOP/s), bwd filter %.1f ms "
                   "(%.2f GFLOP/s), PReLU + bias backward %.1f ms\n",
              summary->layers, batch, cores > 0 ? "cpu ms / cores" : "wall ms", ms[0], summary->data_gflops, ms[1],
              summary->filter_gflops, ms[2]);
  }
  fr_train_ops_destroy(t);
  free(net);
  return rc;
}
