/* Gallery: the CPU score tile against the double reference, top-k lists against
 * a brute-force sort (ties by lower index), templates (mean, quality-weighted,
 * min-quality) checked by hand, search results file and CSV, CLI errors. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/gallery.h"
#include "faceri/similarity.h"
#include "faceri/vk_context.h"
#include "results_fixture.h"
#include "test_util.h"

static char dir[] = "/tmp/faceri-test-gallery-XXXXXX";
static char tiny[300], synth[300];

static const float emb[][2] = {{1, 0}, {0.6f, 0.8f}, {0, 1}, {-0.6f, 0.8f}, {-1, 0}};
static const float ers[] = {1.0f, 0.5f, 0.8f, 0.2f, 0.9f};

static int setup(void)
{
  if (!mkdtemp(dir))
    return -1;
  snprintf(tiny, sizeof(tiny), "%s/tiny.h5", dir);
  snprintf(synth, sizeof(synth), "%s/synth.h5", dir);
  const char *keys[] = {"A/1", "A/2", "B/1", "B/2", "C/1"}, *labels[] = {"A", "A", "B", "B", "C"};
  fixture_item it[5];
  for (int i = 0; i < 5; i++)
    it[i] = (fixture_item){.key = keys[i], .label = labels[i], .embedding = emb[i], .norm = 1, .ers = ers[i], .ri = NAN};
  fr_error err = {0};
  return fixture_write(tiny, it, 5, 2, &err) || fixture_write_synthetic(synth, 30, 6, 24, 3, &err) ? -1 : 0;
}

static int teardown(void)
{
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_tile_and_topk(void)
{
  enum { NA = 37, NB = 53, D = 45, K = 5 };
  static float a[NA * D], b[NB * D], c[NA * NB];
  static double ref[NA * NB];
  unsigned s = 1;
  for (int i = 0; i < NA * D; i++)
    a[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (1 << 24) * 2.4f - 1.2f;
  for (int i = 0; i < NB * D; i++)
    b[i] = (float)((s = s * 1103515245u + 12345u) >> 8) / (1 << 24) * 2.4f - 1.2f;
  memcpy(b + 7 * D, b + 3 * D, D * sizeof(float)); /* a tie: columns 3 and 7 */
  fr_similarity_cpu(a, NA, b, NB, D, c, NB);
  fr_similarity_ref(a, NA, b, NB, D, ref, NB);
  double worst = 0;
  for (int i = 0; i < NA * NB; i++) {
    double e = fabs(c[i] - ref[i]) / (1 + fabs(ref[i]));
    worst = e > worst ? e : worst;
  }
  CU_ASSERT(worst < 1e-5);
  fr_topk t;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_topk_init(&t, NA, K, &err), FR_OK);
  fr_topk_merge(&t, 0, NA, 0, 20, c, NB); /* two column tiles */
  fr_topk_merge(&t, 0, NA, 20, NB - 20, c + 20, NB);
  for (int i = 0; i < NA; i++) {
    /* Brute force: selection of the K best with the lower index winning ties. */
    int used[NB] = {0};
    for (int r = 0; r < K; r++) {
      int best = -1;
      for (int j = 0; j < NB; j++)
        if (!used[j] && (best < 0 || c[i * NB + j] > c[i * NB + best]))
          best = j;
      used[best] = 1;
      CU_ASSERT_EQUAL(t.index[i * K + r], best);
      CU_ASSERT_EQUAL(t.score[i * K + r], c[i * NB + best]);
    }
  }
  fr_topk_free(&t);
  CU_ASSERT_EQUAL(fr_topk_init(&t, 3, 0, &err), FR_ERR_INVALID);
}

static void test_build_by_hand(void)
{
  fr_results_reader *r = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(tiny, 0, &r, &err), FR_OK);
  fr_gallery g;
  int64_t dropped = 0;
  fr_gallery_build_options o = {.min_quality = NAN};
  CU_ASSERT_EQUAL_FATAL(fr_gallery_build(r, &o, &g, &dropped, &err), FR_OK);
  CU_ASSERT_EQUAL(g.n, 3);
  CU_ASSERT_STRING_EQUAL(g.names[0], "A");
  /* A: (1,0) + (.6,.8) = (1.6,.8) -> (.8944, .4472) */
  CU_ASSERT_DOUBLE_EQUAL(g.templates[0], 1.6 / sqrt(3.2), 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(g.templates[1], 0.8 / sqrt(3.2), 1e-6);
  fr_gallery_free(&g);
  /* Quality weights (d_UI): A = 1 (1,0) + .5 (.6,.8) = (1.3,.4). */
  o = (fr_gallery_build_options){.weighting = FR_WEIGHT_QUALITY, .min_quality = NAN};
  CU_ASSERT_EQUAL_FATAL(fr_gallery_build(r, &o, &g, &dropped, &err), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(g.templates[0], 1.3 / hypot(1.3, 0.4), 1e-6);
  fr_gallery_free(&g);
  /* min quality .6 drops A/2 and B/2: their templates are the remaining item. */
  o = (fr_gallery_build_options){.min_quality = 0.6};
  CU_ASSERT_EQUAL_FATAL(fr_gallery_build(r, &o, &g, &dropped, &err), FR_OK);
  CU_ASSERT_EQUAL(dropped, 2);
  CU_ASSERT_EQUAL(g.count[1], 1);
  CU_ASSERT_DOUBLE_EQUAL(g.templates[2], 0, 1e-7);
  CU_ASSERT_DOUBLE_EQUAL(g.templates[3], 1, 1e-7);
  char gpath[320];
  snprintf(gpath, sizeof(gpath), "%s/g.h5", dir);
  CU_ASSERT_EQUAL(fr_gallery_save(&g, gpath, tiny, &o, &err), FR_OK);
  fr_gallery h;
  CU_ASSERT_EQUAL_FATAL(fr_gallery_load(gpath, &h, &err), FR_OK);
  CU_ASSERT_EQUAL(h.n, 3);
  CU_ASSERT_STRING_EQUAL(h.names[2], "C");
  CU_ASSERT_EQUAL(memcmp(h.templates, g.templates, 6 * sizeof(float)), 0);
  fr_gallery_free(&h);
  fr_gallery_free(&g);
  CU_ASSERT_EQUAL(fr_gallery_load(tiny, &h, &err), FR_ERR_FORMAT); /* a results file is not a gallery */
  fr_results_reader_close(r);
}

static void test_search_file_and_cli(void)
{
  char cmd[4096], gpath[320], mpath[320], cpath[320];
  snprintf(gpath, sizeof(gpath), "%s/sg.h5", dir);
  snprintf(mpath, sizeof(mpath), "%s/m.h5", dir);
  snprintf(cpath, sizeof(cpath), "%s/m.csv", dir);
  snprintf(cmd, sizeof(cmd), "%s/faceri gallery build %s -o %s >/dev/null && %s/faceri gallery search %s %s --top-k 3 -o %s --csv %s >/dev/null",
           FACERI_BINARY_DIR, synth, gpath, FACERI_BINARY_DIR, gpath, synth, mpath, cpath);
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  /* Every probe's best template, by brute force over the gallery file. */
  fr_gallery g;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_gallery_load(gpath, &g, &err), FR_OK);
  fr_results_reader *r = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(synth, 0, &r, &err), FR_OK);
  int64_t n = fr_results_reader_items(r);
  float *e = malloc((size_t)n * 24 * sizeof(float));
  fr_results_read_embedding(r, 0, n, e, &err);
  fr_results_reader_close(r);
  int32_t *tm = malloc((size_t)n * 3 * sizeof(int32_t));
  hid_t f = H5Fopen(mpath, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "match/template", H5P_DEFAULT);
  CU_ASSERT(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tm) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  int mismatches = 0;
  double *sc = malloc((size_t)g.n * sizeof(double));
  for (int64_t i = 0; i < n; i++) {
    fr_similarity_ref(e + i * 24, 1, g.templates, g.n, 24, sc, g.n);
    int best = 0;
    for (int j = 1; j < g.n; j++)
      best = sc[j] > sc[best] ? j : best;
    mismatches += tm[i * 3] != best;
  }
  CU_ASSERT_EQUAL(mismatches, 0);
  FILE *c = fopen(cpath, "r");
  char line[512];
  int lines = 0;
  while (c && fgets(line, sizeof(line), c))
    lines++;
  if (c)
    fclose(c);
  CU_ASSERT_EQUAL(lines, 1 + n * 3);
  free(e);
  free(tm);
  free(sc);
  fr_gallery_free(&g);
  snprintf(cmd, sizeof(cmd), "%s/faceri gallery search %s %s -o %s 2>/dev/null", FACERI_BINARY_DIR, synth, synth, mpath);
  CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 1); /* not a gallery */
  snprintf(cmd, sizeof(cmd), "%s/faceri gallery build %s 2>/dev/null", FACERI_BINARY_DIR, synth);
  CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 2);
}

/* A dataset's raw bytes (n values of `size` bytes). */
static void *read_all(const char *path, const char *name, hid_t type, size_t size, int64_t n)
{
  void *buf = calloc((size_t)n, size);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = f < 0 ? -1 : H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0 || !buf || H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    free(buf);
    buf = NULL;
  }
  if (d >= 0)
    H5Dclose(d);
  if (f >= 0)
    H5Fclose(f);
  return buf;
}

static int same_file(const char *a, const char *b)
{
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb, ca, cb;
  while (same && ((ca = fgetc(fa)) != EOF) | ((cb = fgetc(fb)) != EOF))
    same = ca == cb;
  if (fa)
    fclose(fa);
  if (fb)
    fclose(fb);
  return same;
}

/* The device path (forced) and the CPU path write the same matches, ties included:
 * the synthetic gallery is searched with itself duplicated as probes, k > templates. */
static void test_search_device_equals_cpu(void)
{
  fr_vk_context *ctx = NULL;
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err))
    TEST_SKIP("no Vulkan device: %s", err.message);
  int usable = fr_similarity_device_usable(ctx);
  fr_vk_context_destroy(ctx);
  if (!usable)
    TEST_SKIP("the device lacks what the similarity kernels need");
  char cmd[4096], gpath[320], m1[320], m2[320], c1[320], c2[320];
  snprintf(gpath, sizeof(gpath), "%s/dg.h5", dir);
  snprintf(m1, sizeof(m1), "%s/m_cpu.h5", dir);
  snprintf(m2, sizeof(m2), "%s/m_dev.h5", dir);
  snprintf(c1, sizeof(c1), "%s/m_cpu.csv", dir);
  snprintf(c2, sizeof(c2), "%s/m_dev.csv", dir);
  const char *bin = FACERI_BINARY_DIR;
  snprintf(cmd, sizeof(cmd),
           "%s/faceri gallery build %s -o %s >/dev/null && %s/faceri gallery search %s %s --top-k 40 -o %s --csv %s "
           "--cpu | grep -q '\"path\":\"cpu\"' && %s/faceri gallery search %s %s --top-k 40 -o %s --csv %s --device "
           "| grep -q '\"path\":\"device\"'",
           bin, synth, gpath, bin, gpath, synth, m1, c1, bin, gpath, synth, m2, c2);
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  int64_t n = 30 * 6; /* at most the synthetic file's rows; k = 40 > 30 templates */
  int32_t *t1 = read_all(m1, "match/template", H5T_NATIVE_INT32, 4, n * 40);
  int32_t *t2 = read_all(m2, "match/template", H5T_NATIVE_INT32, 4, n * 40);
  float *s1 = read_all(m1, "match/score", H5T_NATIVE_FLOAT, 4, n * 40);
  float *s2 = read_all(m2, "match/score", H5T_NATIVE_FLOAT, 4, n * 40);
  CU_ASSERT_FATAL(t1 && t2 && s1 && s2);
  CU_ASSERT_EQUAL(memcmp(t1, t2, (size_t)n * 40 * 4), 0);
  CU_ASSERT_EQUAL(memcmp(s1, s2, (size_t)n * 40 * 4), 0);
  CU_ASSERT(same_file(c1, c2));
  free(t1);
  free(t2);
  free(s1);
  free(s2);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("gallery", setup, teardown);
  CU_add_test(s, "CPU score tile vs double reference; top-k vs brute force", test_tile_and_topk);
  CU_add_test(s, "templates: mean, quality-weighted, min quality; save/load", test_build_by_hand);
  CU_add_test(s, "search file and CSV vs brute force; CLI errors", test_search_file_and_cli);
  CU_add_test(s, "search: device path writes what the CPU path writes", test_search_device_equals_cpu);
  return test_run_all();
}
