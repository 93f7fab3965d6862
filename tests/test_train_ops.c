/* Training ops, in three layers of evidence (ggml's test-backend-ops habit):
 *  1. every CPU reference backward against central finite differences of its CPU
 *     reference forward, in double (relative error <= 1e-6);
 *  2. every device kernel against the CPU reference on random inputs in [-1.2, 1.2]
 *     (relative error <= 1e-4: max abs error / max abs reference), odd sizes included;
 *  3. bit-identical results when the same step runs twice (no float atomics). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/train_ops.h"
#include "test_numeric.h"
#include "test_util.h"

static fr_vk_context *ctx;
static fr_train_ops *tops;
static unsigned rng_state = 4242u;


static double *random_d(size_t n) { return test_random_d(&rng_state, n); }

/* ---------------- 1. references against finite differences ---------------- */

#define FD_MAX_IN 3
typedef void (*fwd_fn)(const void *c, double *const *in, double *out);
typedef void (*bwd_fn)(const void *c, double *const *in, const double *dout, double *const *grad);

/* L = sum(f(inputs) * r) for a random r, so dL/doutput = r; each input element is
 * moved by +-h and the central difference compared with the analytic gradient. */
static void fd_check(const char *name, const void *c, int n_in, const size_t *in_n, size_t out_n, fwd_fn f,
                     bwd_fn b)
{
  const double h = 1e-6;
  double *in[FD_MAX_IN], *grad[FD_MAX_IN];
  for (int k = 0; k < n_in; k++) {
    in[k] = random_d(in_n[k]);
    grad[k] = calloc(in_n[k], sizeof(double));
  }
  double *r = random_d(out_n), *out = malloc(out_n * sizeof(double));
  b(c, in, r, grad);
  double worst = 0;
  for (int k = 0; k < n_in; k++) {
    double *fd = malloc(in_n[k] * sizeof(double));
    for (size_t j = 0; j < in_n[k]; j++) {
      double keep = in[k][j], lp = 0, lm = 0;
      in[k][j] = keep + h;
      f(c, in, out);
      for (size_t i = 0; i < out_n; i++)
        lp += out[i] * r[i];
      in[k][j] = keep - h;
      f(c, in, out);
      for (size_t i = 0; i < out_n; i++)
        lm += out[i] * r[i];
      in[k][j] = keep;
      fd[j] = (lp - lm) / (2 * h);
    }
    double e = test_rel_err_d(grad[k], fd, in_n[k]);
    if (e > worst)
      worst = e;
    free(fd);
  }
  printf("\n    %-46s finite-difference rel err %.2e", name, worst);
  CU_ASSERT(worst <= 1e-6);
  for (int k = 0; k < n_in; k++)
    free(in[k]), free(grad[k]);
  free(r), free(out);
}

static void conv_f(const void *c, double *const *in, double *out) { fr_ref_train_conv_fwd(c, in[0], in[1], in[2], out); }
static void conv_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  fr_ref_train_conv_bwd(c, in[0], in[1], dy, g[0], g[1], g[2]);
}

/* TF SAME (or VALID) conv shapes, as the importer produces them. */
static fr_conv_params conv(int batch, int h, int w, int cin, int cout, int k, int s, int depthwise, int valid)
{
  fr_conv_params p = {.batch = batch, .in_h = h, .in_w = w, .in_c = cin, .out_c = cout, .kernel_h = k,
                      .kernel_w = k, .stride_h = s, .stride_w = s, .depthwise = depthwise};
  if (valid) {
    p.out_h = (h - k) / s + 1;
    p.out_w = (w - k) / s + 1;
  } else {
    p.out_h = (h + s - 1) / s;
    p.out_w = (w + s - 1) / s;
    int th = (p.out_h - 1) * s + k - h, tw = (p.out_w - 1) * s + k - w;
    p.pad_top = th > 0 ? th / 2 : 0;
    p.pad_left = tw > 0 ? tw / 2 : 0;
  }
  return p;
}

static size_t conv_in_n(const fr_conv_params *p) { return (size_t)p->batch * p->in_h * p->in_w * p->in_c; }
static size_t conv_out_n(const fr_conv_params *p) { return (size_t)p->batch * p->out_h * p->out_w * p->out_c; }
static size_t conv_w_n(const fr_conv_params *p)
{
  return p->depthwise ? (size_t)p->kernel_h * p->kernel_w * p->out_c
                      : (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
}

static void fd_conv(const char *name, fr_conv_params p)
{
  size_t n[3] = {conv_in_n(&p), conv_w_n(&p), (size_t)p.out_c};
  fd_check(name, &p, 3, n, conv_out_n(&p), conv_f, conv_b);
}

typedef struct act_case {
  fr_train_act act;
  size_t rows;
  int channels;
} act_case;
static void act_f(const void *c, double *const *in, double *out)
{
  const act_case *a = c;
  fr_ref_train_act_fwd(a->act, a->rows, a->channels, in[0], in[1], out);
}
static void act_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  const act_case *a = c;
  double *y = malloc(a->rows * a->channels * sizeof(double));
  fr_ref_train_act_fwd(a->act, a->rows, a->channels, in[0], in[1], y);
  fr_ref_train_act_bwd(a->act, a->rows, a->channels, a->act == FR_TRAIN_SIGMOID ? y : in[0], dy, in[1], g[0],
                       a->act == FR_TRAIN_PRELU ? g[1] : NULL);
  free(y);
}

typedef struct shape3 {
  int a, b, c; /* l2norm: rows, dim; bn: rows, channels; pool: outer, len, inner; concat: rows, ca, cb */
  int mode;
} shape3;
static void l2_f(const void *c, double *const *in, double *out)
{
  const shape3 *s = c;
  fr_ref_train_l2norm_fwd(s->a, s->b, in[0], out, NULL);
}
static void l2_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  const shape3 *s = c;
  double *y = malloc((size_t)s->a * s->b * sizeof(double)), *norms = malloc((size_t)s->a * sizeof(double));
  fr_ref_train_l2norm_fwd(s->a, s->b, in[0], y, norms);
  fr_ref_train_l2norm_bwd(s->a, s->b, y, norms, dy, g[0]);
  free(y), free(norms);
}
static void drop_f(const void *c, double *const *in, double *out)
{
  fr_ref_train_dropout((size_t)((const shape3 *)c)->a, 0.3f, 7, 11, in[0], out);
}
static void drop_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  fr_ref_train_dropout((size_t)((const shape3 *)c)->a, 0.3f, 7, 11, dy, g[0]);
}
static void bn_f(const void *c, double *const *in, double *out)
{
  const shape3 *s = c;
  fr_ref_train_bn_fwd(s->a, s->b, 1e-3, 0.1, in[0], in[1], in[2], out, NULL, NULL, NULL, NULL, NULL);
}
static void bn_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  const shape3 *s = c;
  fr_ref_train_bn_bwd(s->a, s->b, 1e-3, in[0], in[1], dy, g[0], g[1], g[2]);
}
static void pool_f(const void *c, double *const *in, double *out)
{
  const shape3 *s = c;
  fr_ref_train_pool_fwd((fr_train_pool)s->mode, s->a, s->b, s->c, in[0], out);
}
static void pool_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  const shape3 *s = c;
  fr_ref_train_pool_bwd((fr_train_pool)s->mode, s->a, s->b, s->c, in[0], dy, g[0]);
}
static void bmul_f(const void *c, double *const *in, double *out)
{
  const shape3 *s = c;
  fr_ref_train_bcast_mul_fwd(s->a, s->b, s->c, in[0], in[1], out);
}
static void bmul_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  const shape3 *s = c;
  fr_ref_train_bcast_mul_bwd(s->a, s->b, s->c, in[0], in[1], dy, g[0], g[1]);
}
static void cat_f(const void *c, double *const *in, double *out)
{
  const shape3 *s = c;
  fr_ref_train_concat_fwd(s->a, s->b, s->c, in[0], in[1], out);
}
static void cat_b(const void *c, double *const *in, const double *dy, double *const *g)
{
  const shape3 *s = c;
  fr_ref_train_concat_bwd(s->a, s->b, s->c, dy, g[0], g[1]);
}

static void test_fd_conv(void)
{
  fd_conv("conv 3x3 s2 SAME 3->4 even (asym pad)", conv(2, 6, 6, 3, 4, 3, 2, 0, 0));
  fd_conv("conv 3x3 s2 SAME 3->5 odd", conv(1, 7, 5, 3, 5, 3, 2, 0, 0));
  fd_conv("conv 1x1 7->3 (GEMM)", conv(2, 3, 2, 7, 3, 1, 1, 0, 0));
  fd_conv("linear 9->4", conv(3, 1, 1, 9, 4, 1, 1, 0, 0));
  fd_conv("conv 7x7 SAME 2->1 (CBAM spatial)", conv(1, 5, 6, 2, 1, 7, 1, 0, 0));
  fd_conv("dw 3x3 s1 SAME", conv(2, 5, 4, 3, 3, 3, 1, 1, 0));
  fd_conv("dw 3x3 s2 SAME even", conv(1, 6, 6, 3, 3, 3, 2, 1, 0));
  fd_conv("dw 7x7 VALID (global)", conv(2, 7, 7, 3, 3, 7, 1, 1, 1));
}

static void test_fd_elementwise(void)
{
  const char *names[3] = {"relu", "prelu (x and slope)", "sigmoid"};
  for (int a = 0; a < 3; a++) {
    act_case c = {(fr_train_act)a, 9, 5};
    size_t n[2] = {45, 5};
    fd_check(names[a], &c, a == FR_TRAIN_PRELU ? 2 : 1, n, 45, act_f, act_b);
  }
  shape3 l2 = {3, 17, 0, 0};
  size_t nl = 51;
  fd_check("l2 normalisation", &l2, 1, &nl, 51, l2_f, l2_b);
  shape3 dr = {40, 0, 0, 0};
  size_t nd = 40;
  fd_check("dropout 0.3", &dr, 1, &nd, 40, drop_f, drop_b);
}

static void test_fd_bn_pool_concat(void)
{
  shape3 bn = {13, 4, 0, 0};
  size_t nb[3] = {52, 4, 4};
  fd_check("batch norm, training (x, gamma, beta)", &bn, 3, nb, 52, bn_f, bn_b);
  const char *pools[4] = {"avg pool over space", "max pool over space", "avg pool over channels",
                          "max pool over channels"};
  for (int i = 0; i < 4; i++) {
    shape3 s = i < 2 ? (shape3){2, 6, 5, i} : (shape3){6, 7, 1, i - 2};
    size_t n = (size_t)s.a * s.b * s.c;
    fd_check(pools[i], &s, 1, &n, (size_t)s.a * s.c, pool_f, pool_b);
  }
  shape3 bm = {2, 6, 5, 0};
  size_t nm[2] = {60, 10};
  fd_check("broadcast multiply (x and scale)", &bm, 2, nm, 60, bmul_f, bmul_b);
  shape3 cat = {5, 3, 2, 0};
  size_t nc[2] = {15, 10};
  fd_check("concat along channels", &cat, 2, nc, 25, cat_f, cat_b);
}

/* ---------------- 2. device kernels against the references ---------------- */

typedef struct dev {
  fr_vk_buffer b;
  size_t n;
} dev;

static dev dev_new(const double *data, size_t n)
{
  dev d = {.n = n};
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, (n ? n : 1) * sizeof(float), &d.b, &err), FR_OK);
  float *f = calloc(n ? n : 1, sizeof(float));
  for (size_t i = 0; data && i < n; i++)
    f[i] = (float)data[i];
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &d.b, 0, f, (n ? n : 1) * sizeof(float), &err), FR_OK);
  free(f);
  return d;
}

static fr_vk_arg A(dev *d) { return (fr_vk_arg){&d->b, 0, 0}; }

static double *dev_read(dev *d)
{
  fr_error err = {0};
  float *f = malloc(d->n * sizeof(float));
  double *out = malloc(d->n * sizeof(double));
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &d->b, 0, f, d->n * sizeof(float), &err), FR_OK);
  for (size_t i = 0; i < d->n; i++)
    out[i] = f[i];
  free(f);
  return out;
}

static void dev_free(dev *d) { fr_vk_buffer_destroy(ctx, &d->b); }

/* Compares a device tensor with the reference; returns the relative error. */
static double expect(const char *what, dev *d, const double *want)
{
  double *got = dev_read(d);
  double e = test_rel_err_d(got, want, d->n);
  free(got);
  printf("\n    %-46s rel err %.2e", what, e);
  CU_ASSERT(e <= 1e-4);
  return e;
}

static fr_vk_sequence *seq_start(void)
{
  fr_error err = {0};
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  return seq;
}

static void seq_finish(fr_vk_sequence *seq)
{
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  int rc = fr_vk_sequence_run(seq, &err);
  CU_ASSERT_EQUAL(rc, FR_OK);
  if (rc)
    fprintf(stderr, "run: %s\n", err.message);
  fr_vk_sequence_destroy(seq);
}

#define OK(call)                                                                                                 \
  do {                                                                                                           \
    fr_error err_ = {0};                                                                                         \
    int rc_ = (call);                                                                                            \
    CU_ASSERT_EQUAL(rc_, FR_OK);                                                                                 \
    if (rc_)                                                                                                     \
      fprintf(stderr, "%s: %s\n", #call, err_.message);                                                         \
  } while (0)
#define E (&err_)

static void gpu_conv(const char *name, fr_conv_params p)
{
  double *x = random_d(conv_in_n(&p)), *w = random_d(conv_w_n(&p)), *dy = random_d(conv_out_n(&p));
  double *dx = malloc(conv_in_n(&p) * sizeof(double)), *dw = malloc(conv_w_n(&p) * sizeof(double));
  double *db = malloc((size_t)p.out_c * sizeof(double));
  fr_ref_train_conv_bwd(&p, x, w, dy, dx, dw, db);
  dev gx = dev_new(x, conv_in_n(&p)), gw = dev_new(w, conv_w_n(&p)), gdy = dev_new(dy, conv_out_n(&p));
  dev gdx = dev_new(NULL, conv_in_n(&p)), gdw = dev_new(NULL, conv_w_n(&p)), gdb = dev_new(NULL, (size_t)p.out_c);
  dev s1 = dev_new(NULL, fr_train_conv_filter_scratch_floats(&p));
  dev s2 = dev_new(NULL, fr_train_reduce_scratch_floats(p.batch * p.out_h * p.out_w, p.out_c));
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_conv_bwd_data(tops, seq, &p, A(&gdy), A(&gw), A(&gdx), E));
  OK(fr_train_record_conv_bwd_filter(tops, seq, &p, A(&gx), A(&gdy), A(&s1), A(&gdw), E));
  OK(fr_train_record_bias_bwd(tops, seq, p.batch * p.out_h * p.out_w, p.out_c, A(&gdy), A(&s2), A(&gdb), E));
  seq_finish(seq);
  printf("\n    %s", name);
  expect("  dx", &gdx, dx);
  expect("  dw", &gdw, dw);
  expect("  db", &gdb, db);
  dev *all[] = {&gx, &gw, &gdy, &gdx, &gdw, &gdb, &s1, &s2};
  for (int i = 0; i < 8; i++)
    dev_free(all[i]);
  free(x), free(w), free(dy), free(dx), free(dw), free(db);
}

static void test_gpu_conv(void)
{
  gpu_conv("stem 3x3 s2 3->16 even (asymmetric pad)", conv(2, 16, 16, 3, 16, 3, 2, 0, 0));
  gpu_conv("3x3 s2 3->5 odd sizes", conv(3, 13, 11, 3, 5, 3, 2, 0, 0));
  gpu_conv("1x1 13->7 odd (GEMM)", conv(3, 5, 3, 13, 7, 1, 1, 0, 0));
  gpu_conv("1x1 64->32 @14, 784 rows (13 chunks)", conv(4, 14, 14, 64, 32, 1, 1, 0, 0));
  gpu_conv("linear 37->19, 5 rows", conv(5, 1, 1, 37, 19, 1, 1, 0, 0));
  gpu_conv("1x1 s2", conv(2, 9, 9, 8, 12, 1, 2, 0, 0));
  gpu_conv("5x5 s1 6->20", conv(1, 11, 10, 6, 20, 5, 1, 0, 0));
  gpu_conv("7x7 SAME 2->1 (CBAM spatial)", conv(2, 7, 7, 2, 1, 7, 1, 0, 0));
  gpu_conv("dw 3x3 s1 SAME, 1568 rows", conv(2, 28, 28, 8, 8, 3, 1, 1, 0));
  gpu_conv("dw 3x3 s2 even (asymmetric)", conv(2, 14, 14, 16, 16, 3, 2, 1, 0));
  gpu_conv("dw 3x3 s2 odd channels/sizes", conv(1, 7, 9, 5, 5, 3, 2, 1, 0));
  gpu_conv("dw 7x7 VALID (global) 40", conv(3, 7, 7, 40, 40, 7, 1, 1, 1));
}

static void test_gpu_elementwise(void)
{
  int rows = 131, ch = 7;
  size_t n = (size_t)rows * ch;
  double *x = random_d(n), *dy = random_d(n), *slope = random_d((size_t)ch), *b = random_d(n);
  double *y = malloc(n * sizeof(double)), *dx = malloc(n * sizeof(double)), ds[7];
  dev gx = dev_new(x, n), gdy = dev_new(dy, n), gs = dev_new(slope, (size_t)ch), gb = dev_new(b, n);
  dev gy = dev_new(NULL, n), gdx = dev_new(NULL, n), gds = dev_new(NULL, (size_t)ch);
  dev scratch = dev_new(NULL, fr_train_reduce_scratch_floats(rows, ch));
  const char *names[3] = {"relu", "prelu", "sigmoid"};
  for (int a = 0; a < 3; a++) {
    fr_train_act act = (fr_train_act)a;
    fr_ref_train_act_fwd(act, (size_t)rows, ch, x, slope, y);
    fr_vk_sequence *seq = seq_start();
    OK(fr_train_record_act(tops, seq, act, rows, ch, A(&gx), A(&gs), A(&gy), E));
    fr_vk_sequence_barrier(seq);
    fr_vk_arg saved = act == FR_TRAIN_SIGMOID ? A(&gy) : A(&gx);
    fr_vk_arg dsl = act == FR_TRAIN_PRELU ? A(&gds) : (fr_vk_arg){0};
    OK(fr_train_record_act_bwd(tops, seq, act, rows, ch, saved, A(&gdy), A(&gs), A(&gdx), A(&scratch), dsl, E));
    seq_finish(seq);
    printf("\n    %s", names[a]);
    expect("  forward", &gy, y);
    fr_ref_train_act_bwd(act, (size_t)rows, ch, act == FR_TRAIN_SIGMOID ? y : x, dy, slope, dx, ds);
    expect("  dx", &gdx, dx);
    if (act == FR_TRAIN_PRELU)
      expect("  dslope", &gds, ds);
  }
  /* bias, residual add (its gradient is dy routed to both inputs, summed where paths
   * meet) and multiply */
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_bias(tops, seq, rows, ch, A(&gx), A(&gs), A(&gy), E));
  OK(fr_train_record_add(tops, seq, n, A(&gx), A(&gb), A(&gdx), E));
  seq_finish(seq);
  for (size_t i = 0; i < n; i++)
    y[i] = x[i] + slope[i % ch], dx[i] = x[i] + b[i];
  expect("bias", &gy, y);
  expect("add", &gdx, dx);
  seq = seq_start();
  OK(fr_train_record_mul(tops, seq, n, A(&gx), A(&gb), A(&gy), E));
  seq_finish(seq);
  for (size_t i = 0; i < n; i++)
    y[i] = x[i] * b[i];
  expect("multiply", &gy, y);
  dev *all[] = {&gx, &gdy, &gs, &gb, &gy, &gdx, &gds, &scratch};
  for (int i = 0; i < 8; i++)
    dev_free(all[i]);
  free(x), free(dy), free(slope), free(b), free(y), free(dx);
}

static void test_gpu_dropout(void)
{
  size_t n = 10007;
  double *x = random_d(n), *want = malloc(n * sizeof(double));
  dev gx = dev_new(x, n), gy = dev_new(NULL, n);
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_dropout(tops, seq, n, 0.3f, 1234u, 5u, A(&gx), A(&gy), E));
  seq_finish(seq);
  fr_ref_train_dropout(n, 0.3f, 1234u, 5u, x, want);
  double *got = dev_read(&gy);
  size_t kept = 0, same_mask = 0;
  for (size_t i = 0; i < n; i++) {
    kept += want[i] != 0.0;
    same_mask += (got[i] != 0.0) == (want[i] != 0.0);
  }
  printf("\n    dropout 0.3: kept %.4f, masks agree on %zu of %zu", (double)kept / n, same_mask, n);
  CU_ASSERT_EQUAL(same_mask, n);
  CU_ASSERT(fabs((double)kept / n - 0.7) < 0.02);
  expect("dropout", &gy, want);
  /* another step draws another mask */
  size_t differ = 0;
  for (uint32_t i = 0; i < 1000; i++)
    differ += fr_train_dropout_keep(0.3f, 1234u, 5u, i) != fr_train_dropout_keep(0.3f, 1234u, 6u, i);
  CU_ASSERT(differ > 300);
  free(got), free(x), free(want);
  dev_free(&gx), dev_free(&gy);
}

static void test_gpu_l2norm_bwd(void)
{
  int rows = 5, dim = 193;
  size_t n = (size_t)rows * dim;
  double *x = random_d(n), *dy = random_d(n), *y = malloc(n * sizeof(double)), norms[5];
  double *dx = malloc(n * sizeof(double));
  for (int i = 0; i < dim; i++)
    x[2 * dim + i] *= 1e-7; /* a row under the clamp */
  fr_ref_train_l2norm_fwd(rows, dim, x, y, norms);
  fr_ref_train_l2norm_bwd(rows, dim, y, norms, dy, dx);
  dev gy = dev_new(y, n), gn = dev_new(norms, (size_t)rows), gdy = dev_new(dy, n), gdx = dev_new(NULL, n);
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_l2norm_bwd(tops, seq, rows, dim, A(&gy), A(&gn), A(&gdy), A(&gdx), E));
  seq_finish(seq);
  /* the clamped row's gradient is 1e5 dy: compare the unclamped rows on their own scale */
  double *got = dev_read(&gdx);
  double e_rows = test_rel_err_d(got, dx, 2 * (size_t)dim), e_clamped = test_rel_err_d(got + 2 * dim, dx + 2 * dim, dim);
  printf("\n    l2norm backward rel err %.2e, clamped row %.2e", e_rows, e_clamped);
  CU_ASSERT(e_rows <= 1e-4 && e_clamped <= 1e-4);
  CU_ASSERT(test_rel_err_d(got + 3 * dim, dx + 3 * dim, 2 * (size_t)dim) <= 1e-4);
  free(got), free(x), free(dy), free(y), free(dx);
  dev_free(&gy), dev_free(&gn), dev_free(&gdy), dev_free(&gdx);
}

/* Forward then backward batch norm against the references. */
static void gpu_bn(int rows, int ch, double offset)
{
  size_t n = (size_t)rows * ch;
  double *x = random_d(n), *dy = random_d(n), *gamma = random_d((size_t)ch), *beta = random_d((size_t)ch);
  for (size_t i = 0; i < n; i++)
    x[i] += offset; /* a large mean: the two-pass variance must not cancel */
  double *rm = random_d((size_t)ch), *rv = random_d((size_t)ch);
  for (int c = 0; c < ch; c++)
    rv[c] = fabs(rv[c]) + 0.5;
  dev gx = dev_new(x, n), gdy = dev_new(dy, n), gg = dev_new(gamma, (size_t)ch), gbt = dev_new(beta, (size_t)ch);
  dev grm = dev_new(rm, (size_t)ch), grv = dev_new(rv, (size_t)ch), gy = dev_new(NULL, n), gdx = dev_new(NULL, n);
  dev gm = dev_new(NULL, (size_t)ch), gv = dev_new(NULL, (size_t)ch), gi = dev_new(NULL, (size_t)ch);
  dev gdg = dev_new(NULL, (size_t)ch), gdb = dev_new(NULL, (size_t)ch);
  dev scratch = dev_new(NULL, fr_train_reduce_scratch_floats(rows, ch));
  fr_train_bn bn = {rows, ch, 1e-3f, 0.1f, A(&gg), A(&gbt), A(&gm), A(&gv), A(&gi), A(&grm), A(&grv), A(&gdg),
                    A(&gdb)};
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_bn_fwd(tops, seq, &bn, A(&gx), A(&gy), A(&scratch), E));
  fr_vk_sequence_barrier(seq);
  OK(fr_train_record_bn_bwd(tops, seq, &bn, A(&gx), A(&gdy), A(&gdx), A(&scratch), E));
  seq_finish(seq);
  double *y = malloc(n * sizeof(double)), *dx = malloc(n * sizeof(double));
  double *m = malloc(ch * sizeof(double)), *v = malloc(ch * sizeof(double)), *is = malloc(ch * sizeof(double));
  double *dg = malloc(ch * sizeof(double)), *dbt = malloc(ch * sizeof(double));
  fr_ref_train_bn_fwd(rows, ch, 1e-3, 0.1f, x, gamma, beta, y, m, v, is, rm, rv);
  fr_ref_train_bn_bwd(rows, ch, 1e-3, x, gamma, dy, dx, dg, dbt);
  printf("\n    batch norm %d rows x %d channels, mean offset %g", rows, ch, offset);
  expect("  y", &gy, y);
  expect("  mean", &gm, m);
  expect("  var", &gv, v);
  expect("  invstd", &gi, is);
  expect("  running mean", &grm, rm);
  expect("  running var", &grv, rv);
  expect("  dx", &gdx, dx);
  expect("  dgamma", &gdg, dg);
  expect("  dbeta", &gdb, dbt);
  dev *all[] = {&gx, &gdy, &gg, &gbt, &grm, &grv, &gy, &gdx, &gm, &gv, &gi, &gdg, &gdb, &scratch};
  for (int i = 0; i < 14; i++)
    dev_free(all[i]);
  free(x), free(dy), free(gamma), free(beta), free(rm), free(rv), free(y), free(dx), free(m), free(v), free(is);
  free(dg), free(dbt);
}

static void test_gpu_bn(void)
{
  gpu_bn(2 * 5 * 7, 5, 0.0);
  gpu_bn(3001, 3, 0.0);      /* several chunks, a ragged last one */
  gpu_bn(4 * 7 * 7, 16, 3.0);
}

static void test_gpu_pool_concat(void)
{
  /* CBAM's shapes in miniature: [2, 5x7, 12] over space and over channels */
  struct {
    const char *name;
    int outer, len, inner;
  } shapes[2] = {{"over space", 2, 35, 12}, {"over channels", 70, 12, 1}};
  for (int s = 0; s < 2; s++) {
    int o = shapes[s].outer, l = shapes[s].len, in = shapes[s].inner;
    size_t full = (size_t)o * l * in, red = (size_t)o * in;
    double *x = random_d(full), *dy = random_d(red), *sc = random_d(red), *dyf = random_d(full);
    double *y = malloc(red * sizeof(double)), *dx = malloc(full * sizeof(double));
    dev gx = dev_new(x, full), gdy = dev_new(dy, red), gs = dev_new(sc, red), gdyf = dev_new(dyf, full);
    dev gy = dev_new(NULL, red), gdx = dev_new(NULL, full);
    for (int mode = 0; mode < 2; mode++) {
      fr_vk_sequence *seq = seq_start();
      OK(fr_train_record_pool(tops, seq, (fr_train_pool)mode, o, l, in, A(&gx), A(&gy), E));
      OK(fr_train_record_pool_bwd(tops, seq, (fr_train_pool)mode, o, l, in, A(&gx), A(&gdy), A(&gdx), E));
      seq_finish(seq);
      printf("\n    %s pool %s", mode ? "max" : "avg", shapes[s].name);
      fr_ref_train_pool_fwd((fr_train_pool)mode, o, l, in, x, y);
      fr_ref_train_pool_bwd((fr_train_pool)mode, o, l, in, x, dy, dx);
      expect("  forward", &gy, y);
      expect("  backward", &gdx, dx);
    }
    fr_vk_sequence *seq = seq_start();
    OK(fr_train_record_bcast_mul(tops, seq, o, l, in, A(&gx), A(&gs), A(&gdx), E));
    OK(fr_train_record_bcast_mul_bwd_scale(tops, seq, o, l, in, A(&gx), A(&gdyf), A(&gy), E));
    seq_finish(seq);
    printf("\n    broadcast multiply %s", shapes[s].name);
    fr_ref_train_bcast_mul_fwd(o, l, in, x, sc, dx);
    fr_ref_train_bcast_mul_bwd(o, l, in, x, sc, dyf, NULL, y);
    expect("  forward (and the x gradient)", &gdx, dx);
    expect("  scale gradient", &gy, y);
    dev *all[] = {&gx, &gdy, &gs, &gdyf, &gy, &gdx};
    for (int i = 0; i < 6; i++)
      dev_free(all[i]);
    free(x), free(dy), free(sc), free(dyf), free(y), free(dx);
  }
  /* [max, mean] maps of CBAM's spatial branch: two 1-channel parts into 2 channels */
  int rows = 37, ca = 3, cb = 2;
  double *a = random_d((size_t)rows * ca), *b = random_d((size_t)rows * cb), *y = malloc(rows * 5 * sizeof(double));
  fr_ref_train_concat_fwd(rows, ca, cb, a, b, y);
  dev ga = dev_new(a, (size_t)rows * ca), gb = dev_new(b, (size_t)rows * cb), gy = dev_new(NULL, (size_t)rows * 5);
  dev ga2 = dev_new(NULL, (size_t)rows * ca), gb2 = dev_new(NULL, (size_t)rows * cb);
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_concat(tops, seq, rows, ca, 5, 0, 0, A(&ga), A(&gy), E));
  OK(fr_train_record_concat(tops, seq, rows, cb, 5, ca, 0, A(&gb), A(&gy), E));
  fr_vk_sequence_barrier(seq);
  OK(fr_train_record_concat(tops, seq, rows, ca, 5, 0, 1, A(&ga2), A(&gy), E));
  OK(fr_train_record_concat(tops, seq, rows, cb, 5, ca, 1, A(&gb2), A(&gy), E));
  seq_finish(seq);
  expect("concat", &gy, y);
  expect("concat backward (split) a", &ga2, a);
  expect("concat backward (split) b", &gb2, b);
  dev_free(&ga), dev_free(&gb), dev_free(&gy), dev_free(&ga2), dev_free(&gb2);
  free(a), free(b), free(y);
}

/* ---------------- 3. determinism ---------------- */

static void test_determinism(void)
{
  /* Multi-chunk reductions of every kind, recorded once and run twice, then recorded
   * again in a new sequence: all three results must be the same bytes. */
  fr_conv_params p = conv(4, 14, 14, 32, 24, 3, 2, 0, 0);
  /* and the depthwise and 1x1 weight gradients on the same input */
  fr_conv_params pd = conv(4, 14, 14, 32, 32, 3, 1, 1, 0), pp = conv(4, 14, 14, 32, 24, 1, 1, 0, 0);
  int rows = 3001, ch = 6;
  size_t bn_n = (size_t)rows * ch;
  double *x = random_d(conv_in_n(&p)), *dy = random_d(conv_out_n(&p)), *bx = random_d(bn_n), *bdy = random_d(bn_n);
  double *ones = malloc(ch * sizeof(double));
  for (int c = 0; c < ch; c++)
    ones[c] = 1.0;
  dev gx = dev_new(x, conv_in_n(&p)), gdy = dev_new(dy, conv_out_n(&p)), gdw = dev_new(NULL, conv_w_n(&p));
  dev s1 = dev_new(NULL, fr_train_conv_filter_scratch_floats(&p)), gbx = dev_new(bx, bn_n), gbdy = dev_new(bdy, bn_n);
  dev g1 = dev_new(ones, (size_t)ch), g0 = dev_new(NULL, (size_t)ch), rm = dev_new(NULL, (size_t)ch),
      rv = dev_new(ones, (size_t)ch);
  dev m = dev_new(NULL, (size_t)ch), v = dev_new(NULL, (size_t)ch), is = dev_new(NULL, (size_t)ch);
  dev dg = dev_new(NULL, (size_t)ch), db = dev_new(NULL, (size_t)ch), gdx = dev_new(NULL, bn_n);
  dev s2 = dev_new(NULL, fr_train_reduce_scratch_floats(rows, ch));
  double *dyd = random_d(conv_out_n(&pd)), *dyp = random_d(conv_out_n(&pp));
  dev gdyd = dev_new(dyd, conv_out_n(&pd)), gdwd = dev_new(NULL, conv_w_n(&pd));
  dev sd = dev_new(NULL, fr_train_conv_filter_scratch_floats(&pd));
  dev gdyp = dev_new(dyp, conv_out_n(&pp)), gdwp = dev_new(NULL, conv_w_n(&pp));
  dev sp = dev_new(NULL, fr_train_conv_filter_scratch_floats(&pp));
  fr_train_bn bn = {rows, ch, 1e-5f, 0.1f, A(&g1), A(&g0), A(&m), A(&v), A(&is), A(&rm), A(&rv), A(&dg), A(&db)};
  enum { NOUT = 6 };
  dev *outs[NOUT] = {&gdw, &gdx, &dg, &db, &gdwd, &gdwp};
  float *first[NOUT] = {0};
  int identical = 1;
  fr_vk_sequence *seq = NULL;
  for (int run = 0; run < 3; run++) {
    fr_error err = {0};
    if (run != 1) {
      if (seq)
        fr_vk_sequence_destroy(seq);
      CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
      CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
      OK(fr_train_record_conv_bwd_filter(tops, seq, &p, A(&gx), A(&gdy), A(&s1), A(&gdw), E));
      OK(fr_train_record_conv_bwd_filter(tops, seq, &pd, A(&gx), A(&gdyd), A(&sd), A(&gdwd), E));
      OK(fr_train_record_conv_bwd_filter(tops, seq, &pp, A(&gx), A(&gdyp), A(&sp), A(&gdwp), E));
      OK(fr_train_record_bn_fwd(tops, seq, &bn, A(&gbx), A(&gdx), A(&s2), E));
      fr_vk_sequence_barrier(seq);
      OK(fr_train_record_bn_bwd(tops, seq, &bn, A(&gbx), A(&gbdy), A(&gdx), A(&s2), E));
      CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
    }
    /* scrub the outputs so a stale result cannot pass */
    for (int k = 0; k < NOUT; k++) {
      float *junk = calloc(outs[k]->n, sizeof(float));
      fr_vk_buffer_upload(ctx, &outs[k]->b, 0, junk, outs[k]->n * sizeof(float), &err);
      free(junk);
    }
    CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
    for (int k = 0; k < NOUT; k++) {
      float *got = malloc(outs[k]->n * sizeof(float));
      fr_vk_buffer_download(ctx, &outs[k]->b, 0, got, outs[k]->n * sizeof(float), &err);
      if (!first[k])
        first[k] = got;
      else {
        identical &= memcmp(first[k], got, outs[k]->n * sizeof(float)) == 0;
        free(got);
      }
    }
    if (run == 2) {
      fr_vk_sequence_destroy(seq);
      seq = NULL;
    }
  }
  printf("\n    conv (im2col, depthwise, 1x1) weight gradients + batch norm backward, 3 runs: %s",
         identical ? "bit-identical" : "DIFFER");
  CU_ASSERT(identical);
  for (int k = 0; k < NOUT; k++)
    free(first[k]);
  dev *all[] = {&gx, &gdy, &gdw, &s1, &gbx, &gbdy, &g1, &g0, &rm, &rv, &m, &v, &is, &dg, &db, &gdx, &s2,
                &gdyd, &gdwd, &sd, &gdyp, &gdwp, &sp};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    dev_free(all[i]);
  free(x), free(dy), free(bx), free(bdy), free(ones), free(dyd), free(dyp);
}

static void test_bad_params(void)
{
  fr_error err = {0};
  dev small = dev_new(NULL, 4), big = dev_new(NULL, 4096);
  fr_vk_sequence *seq = seq_start();
  fr_conv_params p = conv(1, 4, 4, 3, 4, 3, 1, 1, 0); /* depthwise with in_c != out_c */
  CU_ASSERT_EQUAL(fr_train_record_conv_bwd_data(tops, seq, &p, A(&big), A(&big), A(&big), &err), FR_ERR_INVALID);
  p = conv(2, 8, 8, 4, 4, 3, 1, 0, 0);
  CU_ASSERT_EQUAL(fr_train_record_conv_bwd_filter(tops, seq, &p, A(&big), A(&big), A(&small), A(&big), &err),
                  FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "scratch"));
  CU_ASSERT_EQUAL(fr_train_record_dropout(tops, seq, 16, 1.0f, 0, 0, A(&big), A(&big), &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_train_record_concat(tops, seq, 4, 3, 5, 3, 0, A(&big), A(&big), &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_train_record_pool(tops, seq, FR_POOL_MAX, 4, 0, 3, A(&big), A(&big), &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_train_record_add(tops, seq, 100, A(&big), (fr_vk_arg){0}, A(&big), &err), FR_ERR_INVALID);
  fr_train_bn bn = {10, 5, 1e-5f, 0.1f, A(&big), A(&big), A(&big), A(&big), A(&small), A(&big), A(&big), A(&big), A(&big)};
  CU_ASSERT_EQUAL(fr_train_record_bn_fwd(tops, seq, &bn, A(&big), A(&big), A(&big), &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "invstd"));
  /* Run it: destroying a recorded, never-submitted sequence waits out the fence timeout. */
  seq_finish(seq);
  dev_free(&small), dev_free(&big);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) || fr_train_ops_create(ctx, &tops, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("train ops", NULL, NULL);
  CU_add_test(s, "references: conv backward vs finite differences", test_fd_conv);
  CU_add_test(s, "references: element-wise, l2norm, dropout vs finite differences", test_fd_elementwise);
  CU_add_test(s, "references: batch norm, pooling, concat vs finite differences", test_fd_bn_pool_concat);
  CU_add_test(s, "device: conv input, weight and bias gradients", test_gpu_conv);
  CU_add_test(s, "device: activations, bias, add, multiply", test_gpu_elementwise);
  CU_add_test(s, "device: dropout mask and scale", test_gpu_dropout);
  CU_add_test(s, "device: l2 normalisation backward", test_gpu_l2norm_bwd);
  CU_add_test(s, "device: batch norm training forward and backward", test_gpu_bn);
  CU_add_test(s, "device: pooling, broadcast multiply, concat", test_gpu_pool_concat);
  CU_add_test(s, "determinism: bit-identical reruns", test_determinism);
  CU_add_test(s, "bad parameters", test_bad_params);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_train_ops_destroy(tops);
  fr_vk_context_destroy(ctx);
  return rc;
}
