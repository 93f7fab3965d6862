/* The texel-fed backward kernels (worker/train/ops_bwd_conv.c, ops_bwd_dw.c,
 * ops_bwd_eltwise.c) at shapes that cut their tiles and strips, against the double-precision
 * references of worker/train/ops_bwd_ref.c, which are themselves checked here against
 * central finite differences at some of the same shapes. test_train_ops.c covers the
 * other ops, the MobileFaceNet-like shapes and determinism. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/train_ops.h"
#include "test_numeric.h"
#include "test_util.h"

static fr_vk_context *ctx;
static fr_train_ops *tops;
static unsigned rng_state = 977u;


static double *random_d(size_t n) { return test_random_d(&rng_state, n); }

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

/* ---------------- the references against finite differences ---------------- */

/* L = sum(conv(x, w, b) * r) for a random r; every input element moved by +-h. */
static void fd_conv(const char *name, fr_conv_params p)
{
  const double h = 1e-6;
  size_t n[3] = {conv_in_n(&p), conv_w_n(&p), (size_t)p.out_c}, out_n = conv_out_n(&p);
  double *in[3], *grad[3];
  for (int k = 0; k < 3; k++) {
    in[k] = random_d(n[k]);
    grad[k] = calloc(n[k], sizeof(double));
  }
  double *r = random_d(out_n), *out = malloc(out_n * sizeof(double));
  fr_ref_train_conv_bwd(&p, in[0], in[1], r, grad[0], grad[1], grad[2]);
  double worst = 0;
  for (int k = 0; k < 3; k++) {
    double *fd = malloc(n[k] * sizeof(double));
    for (size_t j = 0; j < n[k]; j++) {
      double keep = in[k][j], lp = 0, lm = 0;
      in[k][j] = keep + h;
      fr_ref_train_conv_fwd(&p, in[0], in[1], in[2], out);
      for (size_t i = 0; i < out_n; i++)
        lp += out[i] * r[i];
      in[k][j] = keep - h;
      fr_ref_train_conv_fwd(&p, in[0], in[1], in[2], out);
      for (size_t i = 0; i < out_n; i++)
        lm += out[i] * r[i];
      in[k][j] = keep;
      fd[j] = (lp - lm) / (2 * h);
    }
    double e = test_rel_err_d(grad[k], fd, n[k]);
    worst = e > worst ? e : worst;
    free(fd);
  }
  printf("\n    %-46s finite-difference rel err %.2e", name, worst);
  CU_ASSERT(worst <= 1e-6);
  for (int k = 0; k < 3; k++)
    free(in[k]), free(grad[k]);
  free(r), free(out);
}

static void test_fd_edges(void)
{
  fd_conv("conv 1x1 36->20, 45 rows (GEMM tile edges)", conv(3, 5, 3, 36, 20, 1, 1, 0, 0));
  fd_conv("conv 3x3 s2 3->12 odd sizes (im2col)", conv(2, 17, 15, 3, 12, 3, 2, 0, 0));
  fd_conv("dw 3x3 s2 13x11 (pad 1, strip edges)", conv(2, 13, 11, 8, 8, 3, 2, 1, 0));
  fd_conv("dw 3x3 s1 5x7, 3 images", conv(3, 5, 7, 4, 4, 3, 1, 1, 0));
  fr_conv_params uneq = conv(2, 9, 8, 4, 4, 3, 1, 1, 0);
  uneq.stride_w = 2, uneq.out_w = 4, uneq.pad_left = 0;
  fd_conv("dw 3x3 strides 1x2", uneq);
}

/* ---------------- device kernels against the references ---------------- */

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

static void expect(const char *what, dev *d, const double *want)
{
  double *got = dev_read(d);
  double e = test_rel_err_d(got, want, d->n);
  free(got);
  printf("\n    %-46s rel err %.2e", what, e);
  CU_ASSERT(e <= 1e-4);
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

/* A device tensor of n floats that starts `off` floats into its buffer. */
static dev dev_new_at(const double *data, size_t n, size_t off)
{
  double *padded = calloc(n + off ? n + off : 1, sizeof(double));
  for (size_t i = 0; data && i < n; i++)
    padded[off + i] = data[i];
  dev out = dev_new(padded, n + off);
  free(padded);
  return out;
}

static fr_vk_arg A_at(dev *d, size_t off) { return (fr_vk_arg){&d->b, off * sizeof(float), 0}; }

static void expect_at(const char *what, dev *d, size_t off, const double *want)
{
  double *got = dev_read(d);
  double e = test_rel_err_d(got + off, want, d->n - off);
  free(got);
  printf("\n    %-46s rel err %.2e", what, e);
  CU_ASSERT(e <= 1e-4);
}

/* All three gradients of a conv on the device against the reference, every tensor
 * bound `off` floats into its buffer (a multiple of the storage offset alignment). */
static void gpu_conv_at(const char *name, fr_conv_params p, size_t off)
{
  double *x = random_d(conv_in_n(&p)), *w = random_d(conv_w_n(&p)), *dy = random_d(conv_out_n(&p));
  double *dx = malloc(conv_in_n(&p) * sizeof(double)), *dw = malloc(conv_w_n(&p) * sizeof(double));
  double *db = malloc((size_t)p.out_c * sizeof(double));
  fr_ref_train_conv_bwd(&p, x, w, dy, dx, dw, db);
  dev gx = dev_new_at(x, conv_in_n(&p), off), gw = dev_new_at(w, conv_w_n(&p), off);
  dev gdy = dev_new_at(dy, conv_out_n(&p), off), gdx = dev_new_at(NULL, conv_in_n(&p), off);
  dev gdw = dev_new_at(NULL, conv_w_n(&p), off), gdb = dev_new_at(NULL, (size_t)p.out_c, off);
  dev s1 = dev_new_at(NULL, fr_train_conv_filter_scratch_floats(&p), off);
  dev s2 = dev_new_at(NULL, fr_train_reduce_scratch_floats(p.batch * p.out_h * p.out_w, p.out_c), off);
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_conv_bwd_data(tops, seq, &p, A_at(&gdy, off), A_at(&gw, off), A_at(&gdx, off), E));
  OK(fr_train_record_conv_bwd_filter(tops, seq, &p, A_at(&gx, off), A_at(&gdy, off), A_at(&s1, off),
                                     A_at(&gdw, off), E));
  OK(fr_train_record_bias_bwd(tops, seq, p.batch * p.out_h * p.out_w, p.out_c, A_at(&gdy, off), A_at(&s2, off),
                              A_at(&gdb, off), E));
  seq_finish(seq);
  printf("\n    %s [%s, %s]", name, fr_train_conv_bwd_kernel_name(tops, &p, 0),
         fr_train_conv_bwd_kernel_name(tops, &p, 1));
  expect_at("  dx", &gdx, off, dx);
  expect_at("  dw", &gdw, off, dw);
  expect_at("  db", &gdb, off, db);
  dev *all[] = {&gx, &gw, &gdy, &gdx, &gdw, &gdb, &s1, &s2};
  for (int i = 0; i < 8; i++)
    dev_free(all[i]);
  free(x), free(w), free(dy), free(dx), free(dw), free(db);
}

static void gpu_conv(const char *name, fr_conv_params p) { gpu_conv_at(name, p, 0); }

/* Whether this device runs the texel-fed kernels (the GPU paths' test device is lavapipe). */
static int fast_kernels(void)
{
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  return info->has_texel_rgba32f && info->subgroup_size >= 8 && (info->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
}

static void expect_kernel(fr_conv_params p, int filter, const char *want)
{
  const char *got = fr_train_conv_bwd_kernel_name(tops, &p, filter);
  if (fast_kernels())
    CU_ASSERT_PTR_NOT_NULL(strstr(got, want));
}

/* The texel-fed GEMMs at shapes that cut their tiles: 4 rows x 8 lanes of dx, 8 input
 * channels per column tile, 32 output channels x 8 k's per weight-gradient group, rows
 * in fours; the fixed-K variants (out_c 64, 128, 256); one chunk (written straight to
 * dw) and many; tensors that start inside their buffers. */
static void test_gpu_conv_gemm(void)
{
  fr_conv_params edge = conv(3, 5, 3, 36, 20, 1, 1, 0, 0);
  expect_kernel(edge, 0, "gemm");
  expect_kernel(edge, 1, "gemm");
  gpu_conv("1x1 36->20, 45 rows (every tile edge)", edge);
  gpu_conv("1x1 12->64 (fixed K 64), 70 rows", conv(2, 7, 5, 12, 64, 1, 1, 0, 0));
  gpu_conv("1x1 128->128 @9 (fixed K 128), 6 chunks", conv(5, 9, 9, 128, 128, 1, 1, 0, 0));
  gpu_conv("1x1 20->256 (fixed K 256), 27 rows", conv(3, 3, 3, 20, 256, 1, 1, 0, 0));
  gpu_conv("1x1 4->36 (one k texel)", conv(2, 3, 5, 4, 36, 1, 1, 0, 0));
  gpu_conv("linear 64->8, 3 rows (one chunk)", conv(3, 1, 1, 64, 8, 1, 1, 0, 0));
  gpu_conv("linear 40->516, 7 rows", conv(7, 1, 1, 40, 516, 1, 1, 0, 0));
  fr_conv_params stem = conv(2, 17, 15, 3, 12, 3, 2, 0, 0);
  expect_kernel(stem, 1, "i2c");
  gpu_conv("3x3 s2 3->12 odd sizes (im2col, K 27)", stem);
  gpu_conv("3x3 s1 5->8 (im2col, K 45)", conv(2, 6, 7, 5, 8, 3, 1, 0, 0));
  gpu_conv("1x1 s2 8->12 (im2col)", conv(2, 9, 9, 8, 12, 1, 2, 0, 0));
  gpu_conv_at("1x1 36->20, tensors 16 bytes into their buffers", edge, 4);
  gpu_conv_at("3x3 s2 3->12, tensors 256 bytes into their buffers", stem, 64);
}

/* The depthwise kernels at shapes that cut their strips (4 pixels along x, strips of
 * rows, stride-2 row pairs), fewer channel texels than a subgroup has lanes, several
 * images per weight-gradient chunk, odd paddings, and the per-tap kernels for other
 * shapes (5x5, unequal strides, the 7x7 global conv). */
static void test_gpu_conv_dw(void)
{
  fr_conv_params s1 = conv(3, 5, 7, 12, 12, 3, 1, 1, 0), s2 = conv(2, 13, 11, 8, 8, 3, 2, 1, 0);
  expect_kernel(s1, 0, "dw_bwd_data_s1");
  expect_kernel(s1, 1, "dw_bwd_filter_s1");
  expect_kernel(s2, 0, "dw_bwd_data_s2");
  expect_kernel(s2, 1, "dw_bwd_filter_s2");
  gpu_conv("dw 3x3 s1 5x7 12 ch, 3 images", s1);
  gpu_conv("dw 3x3 s2 13x11 (pad 1) 8 ch", s2);
  gpu_conv("dw 3x3 s2 12x10 (pad 0/1) 4 ch", conv(3, 12, 10, 4, 4, 3, 2, 1, 0));
  gpu_conv("dw 3x3 s1 23x9 (several row strips) 36 ch", conv(2, 23, 9, 36, 36, 3, 1, 1, 0));
  gpu_conv("dw 3x3 s2 2x3 tiny", conv(5, 2, 3, 4, 4, 3, 2, 1, 0));
  gpu_conv("dw 3x3 s1 VALID 6x6", conv(2, 6, 6, 8, 8, 3, 1, 1, 1));
  gpu_conv("dw 3x3 s1, 64 images (many chunks)", conv(64, 6, 5, 8, 8, 3, 1, 1, 0));
  gpu_conv("dw 5x5 s1 SAME (per-tap kernels)", conv(2, 7, 6, 8, 8, 5, 1, 1, 0));
  fr_conv_params uneq = conv(2, 9, 8, 8, 8, 3, 1, 1, 0);
  uneq.stride_w = 2;
  uneq.out_w = 4;
  uneq.pad_left = 0;
  gpu_conv("dw 3x3 strides 1x2 (per-tap kernels)", uneq);
  fr_conv_params glob = conv(3, 7, 7, 16, 16, 7, 1, 1, 1);
  expect_kernel(glob, 0, "dw_bwd_data");
  gpu_conv("dw 7x7 VALID global 16 ch", glob);
  gpu_conv_at("dw 3x3 s2, tensors 16 bytes into their buffers", s2, 4);
}

/* The texel-fed element-wise backward ops (channels % 4 == 0): activations and their
 * gradients, the PReLU slope gradient fused with dx, the bias gradient, gradient sums;
 * one chunk and many (3001 rows, a ragged last chunk); a second run gives the same bits. */
static void gpu_eltwise(int rows, int ch)
{
  size_t n = (size_t)rows * ch;
  double *x = random_d(n), *dy = random_d(n), *slope = random_d((size_t)ch), *b = random_d(n);
  double *y = malloc(n * sizeof(double)), *dx = malloc(n * sizeof(double)), *ds = malloc(ch * sizeof(double));
  double *db = calloc((size_t)ch, sizeof(double));
  dev gx = dev_new(x, n), gdy = dev_new(dy, n), gs = dev_new(slope, (size_t)ch), gb = dev_new(b, n);
  dev gy = dev_new(NULL, n), gdx = dev_new(NULL, n), gds = dev_new(NULL, (size_t)ch), gdb = dev_new(NULL, (size_t)ch);
  dev scratch = dev_new(NULL, fr_train_reduce_scratch_floats(rows, ch));
  printf("\n    %d rows x %d channels", rows, ch);
  for (int a = 0; a < 2; a++) {
    fr_train_act act = a ? FR_TRAIN_PRELU : FR_TRAIN_RELU;
    float *first = NULL;
    for (int run = 0; run < 2; run++) {
      fr_vk_sequence *seq = seq_start();
      OK(fr_train_record_act(tops, seq, act, rows, ch, (fr_vk_arg){&gx.b, 0, 0}, (fr_vk_arg){&gs.b, 0, 0},
                             (fr_vk_arg){&gy.b, 0, 0}, E));
      OK(fr_train_record_act_bwd(tops, seq, act, rows, ch, (fr_vk_arg){&gx.b, 0, 0}, (fr_vk_arg){&gdy.b, 0, 0},
                                 (fr_vk_arg){&gs.b, 0, 0}, (fr_vk_arg){&gdx.b, 0, 0}, (fr_vk_arg){&scratch.b, 0, 0},
                                 a ? (fr_vk_arg){&gds.b, 0, 0} : (fr_vk_arg){0}, E));
      seq_finish(seq);
      float *got = malloc(ch * sizeof(float));
      fr_error err = {0};
      fr_vk_buffer_download(ctx, &gds.b, 0, got, ch * sizeof(float), &err);
      if (first) {
        CU_ASSERT(memcmp(first, got, ch * sizeof(float)) == 0);
        free(got);
      } else {
        first = got;
      }
    }
    free(first);
    fr_ref_train_act_fwd(act, (size_t)rows, ch, x, slope, y);
    fr_ref_train_act_bwd(act, (size_t)rows, ch, x, dy, slope, dx, ds);
    expect(a ? "  prelu forward" : "  relu forward", &gy, y);
    expect(a ? "  prelu dx" : "  relu dx", &gdx, dx);
    if (a)
      expect("  prelu slope gradient (fused)", &gds, ds);
  }
  fr_vk_sequence *seq = seq_start();
  OK(fr_train_record_bias_bwd(tops, seq, rows, ch, (fr_vk_arg){&gdy.b, 0, 0}, (fr_vk_arg){&scratch.b, 0, 0},
                              (fr_vk_arg){&gdb.b, 0, 0}, E));
  OK(fr_train_record_add(tops, seq, n, (fr_vk_arg){&gx.b, 0, 0}, (fr_vk_arg){&gb.b, 0, 0}, (fr_vk_arg){&gdx.b, 0, 0},
                         E));
  seq_finish(seq);
  for (size_t i = 0; i < n; i++)
    db[i % ch] += dy[i], dx[i] = x[i] + b[i];
  expect("  bias gradient", &gdb, db);
  expect("  add", &gdx, dx);
  dev *all[] = {&gx, &gdy, &gs, &gb, &gy, &gdx, &gds, &gdb, &scratch};
  for (int i = 0; i < 9; i++)
    dev_free(all[i]);
  free(x), free(dy), free(slope), free(b), free(y), free(dx), free(ds), free(db);
}

static void test_gpu_eltwise(void)
{
  gpu_eltwise(131, 12);
  gpu_eltwise(3001, 8);
  gpu_eltwise(7, 4);
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
  CU_pSuite s = CU_add_suite("train conv kernels", NULL, NULL);
  CU_add_test(s, "references at the edge shapes vs finite differences", test_fd_edges);
  CU_add_test(s, "device: texel-fed conv GEMMs at tile edges", test_gpu_conv_gemm);
  CU_add_test(s, "device: texel-fed depthwise kernels at strip edges", test_gpu_conv_dw);
  CU_add_test(s, "device: texel-fed element-wise backward ops", test_gpu_eltwise);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_train_ops_destroy(tops);
  fr_vk_context_destroy(ctx);
  return rc;
}
