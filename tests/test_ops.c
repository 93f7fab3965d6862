/* Every device op against its naive C reference on random inputs in [-1.2, 1.2],
 * including odd sizes and the real MobileFaceNet shapes; relative error <= 1e-4 (max abs
 * error / max abs reference). Activation tensors are allocated with exactly
 * fr_ops_tensor_bytes, so a kernel reading past that contract shows up here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/ops.h"
#include "test_util.h"

static fr_vk_context *ctx;
static fr_ops *ops;
static unsigned rng_state = 12345u;

static float frand(void)
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return ((float)(rng_state >> 8) / 16777216.0f) * 2.4f - 1.2f;
}

static float *random_array(size_t n)
{
  float *a = malloc(n * sizeof(float) + 16);
  for (size_t i = 0; i < n; i++)
    a[i] = frand();
  return a;
}

static fr_vk_buffer upload(const float *data, size_t n)
{
  fr_vk_buffer b;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, n * sizeof(float) + 16, &b, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &b, 0, data, n * sizeof(float), &err), FR_OK);
  return b;
}

/* An activation tensor sized by the ops contract, not by the test's convenience. */
static fr_vk_buffer upload_tensor(const float *data, const fr_conv_params *p, int out)
{
  fr_vk_buffer b;
  fr_error err = {0};
  size_t bytes = out ? fr_ops_tensor_bytes(ops, p->batch, p->out_h, p->out_w, p->out_c)
                     : fr_ops_tensor_bytes(ops, p->batch, p->in_h, p->in_w, p->in_c);
  size_t n = out ? (size_t)p->batch * p->out_h * p->out_w * p->out_c : (size_t)p->batch * p->in_h * p->in_w * p->in_c;
  CU_ASSERT_FATAL(bytes >= n * sizeof(float));
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, bytes, &b, &err), FR_OK);
  if (data)
    CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &b, 0, data, n * sizeof(float), &err), FR_OK);
  return b;
}

static double relative_error(const float *got, const float *want, size_t n)
{
  double max_err = 0, max_ref = 1e-6;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    if (!(e <= max_err))
      max_err = isnan(e) ? INFINITY : e;
    if (fabs(want[i]) > max_ref)
      max_ref = fabs(want[i]);
  }
  return max_err / max_ref;
}

/* Runs one conv on the device and on the CPU and returns the relative error. */
static double run_conv_case(fr_conv_params p)
{
  fr_error err = {0};
  size_t in_n = (size_t)p.batch * p.in_h * p.in_w * p.in_c;
  size_t out_n = (size_t)p.batch * p.out_h * p.out_w * p.out_c;
  size_t w_n = p.depthwise ? (size_t)p.kernel_h * p.kernel_w * p.out_c
                           : (size_t)p.out_c * p.kernel_h * p.kernel_w * p.in_c;
  float *x = random_array(in_n), *w = random_array(w_n), *b = random_array((size_t)p.out_c);
  float *s = random_array((size_t)p.out_c), *r = random_array(out_n);
  float *want = malloc(out_n * sizeof(float)), *got = malloc(out_n * sizeof(float));
  fr_ref_conv(&p, x, w, b, s, r, want);

  float *wp = malloc(fr_ops_packed_weight_count(ops, &p) * sizeof(float));
  float *bp = malloc(fr_ops_packed_channel_count(&p) * sizeof(float));
  float *sp = malloc(fr_ops_packed_channel_count(&p) * sizeof(float));
  fr_ops_pack_conv_weights(ops, &p, w, wp);
  fr_ops_pack_channels(&p, b, bp);
  fr_ops_pack_channels(&p, s, sp);
  fr_vk_buffer bx = upload_tensor(x, &p, 0), bw = upload(wp, fr_ops_packed_weight_count(ops, &p));
  fr_vk_buffer bb = upload(bp, fr_ops_packed_channel_count(&p)), bs = upload(sp, fr_ops_packed_channel_count(&p));
  fr_vk_buffer br = upload_tensor(r, &p, 1), bo = upload_tensor(NULL, &p, 1);
  fr_vk_sequence *seq;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  int rc = fr_ops_record_conv(ops, seq, &p, (fr_vk_arg){&bx, 0, 0}, (fr_vk_arg){&bw, 0, 0}, (fr_vk_arg){&bb, 0, 0},
                              (fr_vk_arg){&bs, 0, 0}, (fr_vk_arg){&br, 0, 0}, (fr_vk_arg){&bo, 0, 0}, NULL, &err);
  CU_ASSERT_EQUAL(rc, FR_OK);
  if (rc)
    fprintf(stderr, "record_conv: %s\n", err.message);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &bo, 0, got, out_n * sizeof(float), &err), FR_OK);
  double rel = relative_error(got, want, out_n);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer *bufs[] = {&bx, &bw, &bb, &bs, &br, &bo};
  for (int i = 0; i < 6; i++)
    fr_vk_buffer_destroy(ctx, bufs[i]);
  free(x), free(w), free(b), free(s), free(r), free(want), free(got), free(wp), free(bp), free(sp);
  return rel;
}

static void check_conv(const char *what, fr_conv_params p)
{
  double rel = run_conv_case(p);
  printf("\n    %-44s %-16s rel err %.2e", what, fr_ops_conv_kernel_name(ops, &p), rel);
  CU_ASSERT(rel <= 1e-4);
}

/* Where the device has RGBA32F texel buffers, the network's shapes must not fall back
 * to the naive kernel (a 100x slowdown that no accuracy test would notice). */
static void check_fast_conv(const char *what, fr_conv_params p)
{
  check_conv(what, p);
  if (fr_vk_context_device(ctx)->has_texel_rgba32f && fr_vk_context_device(ctx)->subgroup_size >= 8)
    CU_ASSERT_STRING_NOT_EQUAL(fr_ops_conv_kernel_name(ops, &p), "conv_direct");
}

/* TF SAME output size and leading pad. */
static void same_pads(int in, int k, int s, int *out, int *pad_before)
{
  *out = (in + s - 1) / s;
  int total = (*out - 1) * s + k - in;
  *pad_before = total > 0 ? total / 2 : 0;
}

static fr_conv_params conv(int batch, int h, int w, int cin, int cout, int k, int s, int depthwise, int valid,
                           fr_activation act, int residual)
{
  fr_conv_params p = {.batch = batch, .in_h = h, .in_w = w, .in_c = cin, .out_c = cout, .kernel_h = k,
                      .kernel_w = k, .stride_h = s, .stride_w = s, .depthwise = depthwise, .activation = act,
                      .has_residual = residual};
  if (valid) {
    p.out_h = (h - k) / s + 1;
    p.out_w = (w - k) / s + 1;
  } else {
    same_pads(h, k, s, &p.out_h, &p.pad_top);
    same_pads(w, k, s, &p.out_w, &p.pad_left);
  }
  return p;
}

static void test_stem_conv(void)
{
  check_conv("3x3 s2 3->16 even (asymmetric pad)", conv(2, 16, 16, 3, 16, 3, 2, 0, 0, FR_ACT_PRELU, 0));
  check_conv("3x3 s2 3->5 odd sizes", conv(3, 13, 11, 3, 5, 3, 2, 0, 0, FR_ACT_NONE, 0));
  check_conv("3x3 s1 7->9 relu", conv(1, 9, 7, 7, 9, 3, 1, 0, 0, FR_ACT_RELU, 0));
}

static void test_pointwise_conv(void)
{
  check_conv("1x1 64->128 prelu", conv(2, 8, 8, 64, 128, 1, 1, 0, 0, FR_ACT_PRELU, 0));
  check_conv("1x1 13->7 odd residual", conv(3, 5, 3, 13, 7, 1, 1, 0, 0, FR_ACT_NONE, 1));
  check_conv("1x1 as linear 37->19, 5 rows", conv(5, 1, 1, 37, 19, 1, 1, 0, 0, FR_ACT_NONE, 0));
  check_conv("1x1 512->192 head", conv(4, 1, 1, 512, 192, 1, 1, 0, 0, FR_ACT_NONE, 0));
}

static void test_depthwise_conv(void)
{
  check_conv("dw 3x3 s1 prelu", conv(2, 9, 9, 24, 24, 3, 1, 1, 0, FR_ACT_PRELU, 0));
  check_conv("dw 3x3 s2 even (asymmetric)", conv(2, 14, 14, 16, 16, 3, 2, 1, 0, FR_ACT_PRELU, 0));
  check_conv("dw 3x3 s2 odd channels/sizes", conv(1, 7, 9, 5, 5, 3, 2, 1, 0, FR_ACT_NONE, 0));
  check_conv("dw 7x7 valid (global)", conv(3, 7, 7, 40, 40, 7, 1, 1, 1, FR_ACT_NONE, 0));
  check_conv("dw 3x3 residual", conv(2, 6, 5, 12, 12, 3, 1, 1, 0, FR_ACT_NONE, 1));
}

static void test_gemm_edges(void)
{
  /* Rows not a multiple of a workgroup's tile, a partial column tile, odd N (scalar
   * stores), K = 4 (a single k-step), and N < 4. */
  check_conv("1x1 64->36, 105 rows, residual", conv(3, 5, 7, 64, 36, 1, 1, 0, 0, FR_ACT_NONE, 1));
  check_conv("1x1 16->10 odd N residual prelu", conv(2, 3, 3, 16, 10, 1, 1, 0, 0, FR_ACT_PRELU, 1));
  check_conv("1x1 4->3 relu", conv(1, 7, 5, 4, 3, 1, 1, 0, 0, FR_ACT_RELU, 0));
  check_conv("1x1 s2 (strided 1x1 is implicit GEMM)", conv(2, 9, 9, 8, 12, 1, 2, 0, 0, FR_ACT_NONE, 0));
  check_conv("5x5 s1 6->20 (implicit GEMM)", conv(1, 11, 10, 6, 20, 5, 1, 0, 0, FR_ACT_PRELU, 0));
  check_conv("dw 5x5 s1 (generic depthwise)", conv(2, 8, 9, 16, 16, 5, 1, 1, 0, FR_ACT_PRELU, 1));
  check_conv("dw 3x3 s3 (generic stride)", conv(1, 10, 10, 8, 8, 3, 3, 1, 0, FR_ACT_NONE, 0));
}

/* The MobileFaceNet layer shapes, at small batches so the C reference stays fast. */
static void test_mobilefacenet_shapes(void)
{
  check_fast_conv("stem 3x3 s2 3->64 @112", conv(1, 112, 112, 3, 64, 3, 2, 0, 0, FR_ACT_PRELU, 0));
  check_fast_conv("dw 3x3 s1 64 @56", conv(1, 56, 56, 64, 64, 3, 1, 1, 0, FR_ACT_PRELU, 0));
  check_fast_conv("1x1 64->128 @56 prelu", conv(1, 56, 56, 64, 128, 1, 1, 0, 0, FR_ACT_PRELU, 0));
  check_fast_conv("dw 3x3 s2 128 56->28", conv(1, 56, 56, 128, 128, 3, 2, 1, 0, FR_ACT_PRELU, 0));
  check_fast_conv("1x1 128->64 @28 residual", conv(2, 28, 28, 128, 64, 1, 1, 0, 0, FR_ACT_NONE, 1));
  check_fast_conv("dw 3x3 s2 256 28->14", conv(2, 28, 28, 256, 256, 3, 2, 1, 0, FR_ACT_PRELU, 0));
  check_fast_conv("1x1 256->128 @14 residual", conv(2, 14, 14, 256, 128, 1, 1, 0, 0, FR_ACT_NONE, 1));
  check_fast_conv("dw 3x3 s2 512 14->7", conv(2, 14, 14, 512, 512, 3, 2, 1, 0, FR_ACT_PRELU, 0));
  check_fast_conv("1x1 512->128 @7", conv(3, 7, 7, 512, 128, 1, 1, 0, 0, FR_ACT_NONE, 0));
  check_fast_conv("dw 3x3 s1 256 @7", conv(3, 7, 7, 256, 256, 3, 1, 1, 0, FR_ACT_PRELU, 0));
  check_fast_conv("1x1 128->512 @7 prelu", conv(3, 7, 7, 128, 512, 1, 1, 0, 0, FR_ACT_PRELU, 0));
  check_fast_conv("dw 7x7 valid 512", conv(5, 7, 7, 512, 512, 7, 1, 1, 1, FR_ACT_NONE, 0));
  check_fast_conv("linear 512->512", conv(5, 1, 1, 512, 512, 1, 1, 0, 0, FR_ACT_NONE, 0));
  check_fast_conv("linear 512->192", conv(33, 1, 1, 512, 192, 1, 1, 0, 0, FR_ACT_NONE, 0));
}

static void test_small_binding_rejected(void)
{
  /* A tensor smaller than fr_ops_tensor_bytes must be refused, not read past. */
  fr_error err = {0};
  fr_conv_params p = conv(1, 3, 3, 8, 8, 1, 1, 0, 0, FR_ACT_NONE, 0);
  if (strcmp(fr_ops_conv_kernel_name(ops, &p), "conv_direct") == 0)
    TEST_SKIP("no texel-fed kernels on this device");
  fr_vk_buffer small, big;
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, 64, &small, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, 4096, &big, &err), FR_OK);
  fr_vk_sequence *seq;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  fr_vk_arg s = {&small, 0, 0}, b = {&big, 0, 0};
  CU_ASSERT_EQUAL(fr_ops_record_conv(ops, seq, &p, s, b, b, b, b, b, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "fr_ops_tensor_bytes"));
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  /* Run it: destroying a recorded, never-submitted sequence waits out the fence timeout. */
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &small), fr_vk_buffer_destroy(ctx, &big);
}

static void test_l2norm(void)
{
  fr_error err = {0};
  int rows = 7, dim = 193;
  float *x = random_array((size_t)rows * dim);
  memset(x + 3 * dim, 0, dim * sizeof(float)); /* a zero row: the clamp keeps it finite */
  float *want = malloc((size_t)rows * dim * 4), *got = malloc((size_t)rows * dim * 4), wn[7], gn[7];
  fr_ref_l2norm(rows, dim, x, want, wn);
  fr_vk_buffer bx = upload(x, (size_t)rows * dim), bo, bn;
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, (size_t)rows * dim * 4, &bo, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, (size_t)rows * 4, &bn, &err), FR_OK);
  fr_vk_sequence *seq;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_ops_record_l2norm(ops, seq, rows, dim, (fr_vk_arg){&bx, 0, 0}, (fr_vk_arg){&bo, 0, 0},
                                       (fr_vk_arg){&bn, 0, 0}, NULL, &err),
                  FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  fr_vk_buffer_download(ctx, &bo, 0, got, (size_t)rows * dim * 4, &err);
  fr_vk_buffer_download(ctx, &bn, 0, gn, sizeof(gn), &err);
  CU_ASSERT(relative_error(got, want, (size_t)rows * dim) <= 1e-5);
  CU_ASSERT(relative_error(gn, wn, (size_t)rows) <= 1e-5);
  CU_ASSERT_EQUAL(gn[3], 0.0f);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &bx), fr_vk_buffer_destroy(ctx, &bo), fr_vk_buffer_destroy(ctx, &bn);
  free(x), free(want), free(got);
}

static void test_bad_params(void)
{
  fr_error err = {0};
  fr_conv_params p = conv(1, 4, 4, 3, 4, 3, 1, 1, 0, FR_ACT_NONE, 0); /* depthwise with in_c != out_c */
  fr_vk_sequence *seq;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  fr_vk_arg none = {0};
  CU_ASSERT_EQUAL(fr_ops_record_conv(ops, seq, &p, none, none, none, none, none, none, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  /* Run it: destroying a recorded, never-submitted sequence waits out the fence timeout. */
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  fr_vk_sequence_destroy(seq);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) || fr_ops_create(ctx, &ops, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("ops", NULL, NULL);
  CU_add_test(s, "stem conv (direct)", test_stem_conv);
  CU_add_test(s, "1x1 conv / linear", test_pointwise_conv);
  CU_add_test(s, "depthwise conv", test_depthwise_conv);
  CU_add_test(s, "GEMM and generic-kernel edges", test_gemm_edges);
  CU_add_test(s, "MobileFaceNet layer shapes", test_mobilefacenet_shapes);
  CU_add_test(s, "undersized tensor binding rejected", test_small_binding_rejected);
  CU_add_test(s, "l2 normalisation with norms", test_l2norm);
  CU_add_test(s, "bad parameters", test_bad_params);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_ops_destroy(ops);
  fr_vk_context_destroy(ctx);
  return rc;
}
