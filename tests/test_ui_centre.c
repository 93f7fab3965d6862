/* The UI centre: the /ui_centre group of the model file (write, reseal, load, replace,
 * round trip through fr_model_save, hostile edits), `faceri model set-ui` on real
 * INRIA pedestrian crops, and `faceri embed` filling /quality/ers = 1 - cos(embedding,
 * centre) with such a model (NaN without one). */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faceri/commands.h"
#include "faceri/model.h"
#include "faceri/ri.h"
#include "faceri/ui_centre.h"
#include "test_util.h"

static char tmp[256];
static char base_model[512]; /* a copy of the default model without a centre */

static int copy_file(const char *from, const char *to)
{
  FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
  char buf[65536];
  size_t n;
  int ok = a && b;
  while (ok && (n = fread(buf, 1, sizeof(buf), a)) > 0)
    ok = fwrite(buf, 1, n, b) == n;
  if (a)
    fclose(a);
  if (b && fclose(b) != 0)
    ok = 0;
  return ok ? 0 : -1;
}

static int setup(void)
{
  snprintf(tmp, sizeof(tmp), "/tmp/faceri-test-ui-XXXXXX");
  if (!mkdtemp(tmp))
    return -1;
  struct stat st;
  if (stat(fr_model_default_path(), &st) != 0)
    return 0; /* tests skip */
  snprintf(base_model, sizeof(base_model), "%s/base.h5", tmp);
  return copy_file(fr_model_default_path(), base_model);
}

static int teardown(void)
{
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
  return system(cmd) == 0 ? 0 : -1;
}

static fr_ui_provenance prov_example(void)
{
  static char inputs[] = "inria-persons\t607\t1767225600\tabc\n";
  fr_ui_provenance p = {.count = 7, .face_region = "head 36,28,24,24 of 96x160", .resultant = 0.75,
                        .d_ui_stats = {0.25f, 0.08f, 0.09f, 0.15f, 0.24f, 0.40f, 0.60f}, .inputs = inputs};
  snprintf(p.created, sizeof(p.created), "2024-01-02T03:04:05Z");
  return p;
}

static void test_file_group(void)
{
  if (!base_model[0])
    TEST_SKIP("no model at %s", fr_model_default_path());
  char path[512];
  snprintf(path, sizeof(path), "%s/group.h5", tmp);
  CU_ASSERT_EQUAL_FATAL(copy_file(base_model, path), 0);
  fr_model m;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK);
  CU_ASSERT_PTR_NULL(m.ui_centre); /* absent: NULL */
  int dim = m.embedding_size;
  char sha_before[65];
  memcpy(sha_before, m.weights_sha256, 65);
  fr_model_free(&m);

  float *c = calloc((size_t)dim, sizeof(float));
  c[3] = 0.6f;
  c[7] = -0.8f;
  fr_ui_provenance p = prov_example();
  CU_ASSERT_EQUAL_FATAL(fr_model_file_set_ui_centre(path, c, dim, &p, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK); /* resealed: the load checks it */
  CU_ASSERT_PTR_NOT_NULL_FATAL(m.ui_centre);
  CU_ASSERT_EQUAL(memcmp(m.ui_centre, c, (size_t)dim * sizeof(float)), 0);
  CU_ASSERT_EQUAL(m.ui.count, 7);
  CU_ASSERT_STRING_EQUAL(m.ui.created, "2024-01-02T03:04:05Z");
  CU_ASSERT_STRING_EQUAL(m.ui.face_region, "head 36,28,24,24 of 96x160");
  CU_ASSERT_STRING_EQUAL(m.ui.inputs, p.inputs);
  CU_ASSERT(fabs(m.ui.resultant - 0.75) < 1e-7);
  CU_ASSERT_EQUAL(m.ui.d_ui_stats[5], 0.40f);
  CU_ASSERT_STRING_EQUAL(m.weights_sha256, sha_before); /* the network is untouched */

  /* fr_model_save keeps the centre */
  char saved[512];
  snprintf(saved, sizeof(saved), "%s/saved.h5", tmp);
  CU_ASSERT_EQUAL(fr_model_save(&m, saved, &err), FR_OK);
  fr_model_free(&m);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(saved, &m, &err), FR_OK);
  CU_ASSERT(m.ui_centre && m.ui_centre[7] == -0.8f && m.ui.count == 7);
  fr_model_free(&m);

  /* replacing it: the new one wins, the file stays loadable */
  c[3] = 1.0f;
  c[7] = 0.0f;
  p.count = 9;
  CU_ASSERT_EQUAL(fr_model_file_set_ui_centre(path, c, dim, &p, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK);
  CU_ASSERT(m.ui_centre[3] == 1.0f && m.ui_centre[7] == 0.0f && m.ui.count == 9);
  fr_model_free(&m);

  /* refused: wrong size, not unit length, NaN; the file is unchanged */
  CU_ASSERT_EQUAL(fr_model_file_set_ui_centre(path, c, dim - 1, &p, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "embeddings"));
  c[3] = 2.0f;
  CU_ASSERT_EQUAL(fr_model_file_set_ui_centre(path, c, dim, &p, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "length"));
  c[3] = NAN;
  CU_ASSERT_EQUAL(fr_model_file_set_ui_centre(path, c, dim, &p, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(path, &m, &err), FR_OK);
  CU_ASSERT(m.ui_centre[3] == 1.0f);
  fr_model_free(&m);

  /* a hostile edit (a centre of length 2), resealed so only the group check can catch it */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  hid_t d = H5Dopen2(f, "ui_centre/centre", H5P_DEFAULT);
  c[3] = 2.0f;
  CU_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, c) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  CU_ASSERT_EQUAL(fr_model_load(path, &m, &err), FR_ERR_FORMAT); /* unsealed edit */
  CU_ASSERT_EQUAL(fr_model_file_seal(path, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_model_load(path, &m, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "/ui_centre"));
  /* a missing attribute */
  f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t g = H5Gopen2(f, "ui_centre", H5P_DEFAULT);
  H5Adelete(g, "count");
  H5Gclose(g);
  H5Fclose(f);
  fr_model_file_seal(path, &err);
  CU_ASSERT_EQUAL(fr_model_load(path, &m, &err), FR_ERR_FORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "count"));
  free(c);
}

/* Extracts the first n INRIA crops into dir; 0 when the archive is there. */
static int extract_inria(const char *dir, int n)
{
  char cmd[4096];
  snprintf(cmd, sizeof(cmd),
           "mkdir -p '%s' && tar -tf '%s/inria-persons.tar' | grep '\\.png$' | head -n %d > '%s.list' && "
           "tar -xf '%s/inria-persons.tar' -C '%s' -T '%s.list'",
           dir, test_data_dir(), n, dir, test_data_dir(), dir, dir);
  return system(cmd);
}

static float *read_floats(hid_t f, const char *name, size_t n)
{
  float *v = malloc(n * sizeof(float));
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
    free(v);
    v = NULL;
  }
  if (d >= 0)
    H5Dclose(d);
  return v;
}

/* Embeds dir with model into out and checks ers against the centre (or NaN without one). */
static void check_embed_ers(const char *model, const char *dir, const char *out, const float *centre, int dim,
                            int n)
{
  char *argv[] = {"embed", "-m", (char *)model, "-o", (char *)out, "--json", (char *)dir, NULL};
  CU_ASSERT_EQUAL_FATAL(fr_cmd_embed(7, argv), FR_EXIT_OK);
  hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
  CU_ASSERT_FATAL(f >= 0);
  float *emb = read_floats(f, "embedding", (size_t)n * dim), *ers = read_floats(f, "quality/ers", (size_t)n);
  H5Fclose(f);
  CU_ASSERT_PTR_NOT_NULL_FATAL(emb);
  CU_ASSERT_PTR_NOT_NULL_FATAL(ers);
  for (int i = 0; i < n; i++) {
    if (!centre) {
      CU_ASSERT(isnan(ers[i]));
      continue;
    }
    double want = 1.0 - fr_ri_cosine(emb + (size_t)i * dim, centre, dim);
    CU_ASSERT(isfinite(ers[i]));
    CU_ASSERT(fabs(ers[i] - want) < 1e-6);
    CU_ASSERT(ers[i] > 0.0f && ers[i] < 1.0f); /* pedestrian heads lie near their own centre */
  }
  free(emb);
  free(ers);
}

static void test_set_ui_and_embed(void)
{
  if (!base_model[0])
    TEST_SKIP("no model at %s", fr_model_default_path());
  char dir[400], model[512], csv[512], out[512];
  snprintf(dir, sizeof(dir), "%s/ui", tmp);
  if (extract_inria(dir, 12) != 0)
    TEST_SKIP("no %s/inria-persons.tar", test_data_dir());
  snprintf(model, sizeof(model), "%s/with-ui.h5", tmp);
  snprintf(csv, sizeof(csv), "%s/d.csv", tmp);
  CU_ASSERT_EQUAL_FATAL(copy_file(base_model, model), 0);
  char *argv[] = {"set-ui", model, dir, "--face-region", "head", "--distances", csv, "-b", "8", NULL};
  CU_ASSERT_EQUAL_FATAL(fr_cmd_model_set_ui(9, argv), FR_EXIT_OK);
  fr_model m;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_model_load(model, &m, &err), FR_OK);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m.ui_centre);
  CU_ASSERT_EQUAL(m.ui.count, 12);
  CU_ASSERT_STRING_EQUAL(m.ui.face_region, "head 36,28,24,24 of 96x160");
  CU_ASSERT_PTR_NOT_NULL(strstr(m.ui.inputs, dir));
  CU_ASSERT(m.ui.resultant > 0.5 && m.ui.resultant < 1.0);
  CU_ASSERT(m.ui.d_ui_stats[0] > 0.0f && m.ui.d_ui_stats[0] < 0.5f);
  /* the CSV: a header and one line per face */
  FILE *fc = fopen(csv, "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fc);
  int lines = 0;
  char line[2048];
  while (fgets(line, sizeof(line), fc))
    lines++;
  fclose(fc);
  CU_ASSERT_EQUAL(lines, 13);

  /* embed with the centre: ers = 1 - cos(embedding, centre); the head crops are the
   * UI faces of the centre, embedded whole here */
  snprintf(out, sizeof(out), "%s/with.h5", tmp);
  check_embed_ers(model, dir, out, m.ui_centre, m.embedding_size, 12);
  snprintf(out, sizeof(out), "%s/without.h5", tmp);
  check_embed_ers(base_model, dir, out, NULL, m.embedding_size, 12);
  fr_model_free(&m);

  /* --dry-run leaves the file alone; a bad region is a usage error; no images is an error */
  char *dry[] = {"set-ui", base_model, dir, "--dry-run", "--face-region", "whole", NULL};
  CU_ASSERT_EQUAL(fr_cmd_model_set_ui(6, dry), FR_EXIT_OK);
  CU_ASSERT_EQUAL_FATAL(fr_model_load(base_model, &m, &err), FR_OK);
  CU_ASSERT_PTR_NULL(m.ui_centre);
  fr_model_free(&m);
  char *bad[] = {"set-ui", model, dir, "--face-region", "feet", NULL};
  CU_ASSERT_EQUAL(fr_cmd_model_set_ui(5, bad), FR_EXIT_USAGE);
  char empty[400];
  snprintf(empty, sizeof(empty), "%s/no-images", tmp);
  mkdir(empty, 0700);
  /* a README only (an empty folder trips a qsort(NULL, 0) in input_fingerprint.c under UBSan) */
  char readme[512];
  snprintf(readme, sizeof(readme), "%s/README", empty);
  FILE *fr = fopen(readme, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fr);
  fputs("not a face\n", fr);
  fclose(fr);
  char *none[] = {"set-ui", model, empty, NULL};
  CU_ASSERT_EQUAL(fr_cmd_model_set_ui(3, none), FR_EXIT_ERROR);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("UI centre", setup, teardown);
  CU_add_test(s, "model file /ui_centre group", test_file_group);
  CU_add_test(s, "set-ui and ers in embed", test_set_ui_and_embed);
  return test_run_all();
}
