/* faceri eval on results files made here: a tiny 2-D set whose figures are
 * worked out by hand (below), a synthetic set cross-checked against the NumPy
 * reference (scripts/eval_reference.py), the chunked reader, and the CLI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/eval.h"
#include "faceri/results_reader.h"
#include "results_fixture.h"
#include "test_util.h"

#define PYTHON "/usr/bin/python3"

static char dir[] = "/tmp/faceri-test-eval-XXXXXX";
static char tiny_path[300], synth_path[300];

/* Items (2-D unit vectors):
 *   A: a1 (1,0)  a2 (.8,.6)  a3 (.6,.8)      B: b1 (0,1)  b2 (-.6,.8)  b3 (.8,.6) (= a2: a duplicate)
 *   C: c1 (-1,0) c2 (-.96,-.28)               plus one failed and one unlabelled item.
 * Genuine cosines: A .8 .6 .96; B .8 .6 0; C .96 -> 7 pairs; 21 impostor pairs whose
 * three largest are 1.0 (a2 b3), .96 (a3 b3), .8 (a1 b3 and a3 b1).
 * FAR 0.1: floor(2.1) = 2 -> threshold = 3rd largest = .8 -> TPR = #{.96, .96} / 7.
 * Closed set, K = 1: templates a1, b1, c1; probes a2 (rank 1), a3 (.6 < .8: rank 2),
 * b2 (rank 1), b3 (rank 2), c2 (rank 1): CMC = .6, 1, 1, ...
 * Open set: gallery A, C (even ids); non-mated b2 (top .6), b3 (top .8);
 * FPIR .3 -> floor(.6) = 0 -> t = .8: mated scores a2 .8, a3 .6, c2 .96 -> TPIR 1/3. */
static const float tiny_emb[][2] = {{1, 0},   {0.8f, 0.6f},  {0.6f, 0.8f},  {0, 1},       {-0.6f, 0.8f},
                                    {0.8f, 0.6f}, {-1, 0}, {-0.96f, -0.28f}, {0.6f, 0.8f}};

static int setup(void)
{
  if (!mkdtemp(dir))
    return -1;
  snprintf(tiny_path, sizeof(tiny_path), "%s/tiny.h5", dir);
  snprintf(synth_path, sizeof(synth_path), "%s/synth.h5", dir);
  const char *keys[] = {"t:A/A_0001.jpg", "t:A/A_0002.jpg", "t:A/A_0003.jpg", "t:B/B_0001.jpg", "t:B/B_0002.jpg",
                        "t:B/B_0003.jpg", "t:C/C_0001.jpg", "t:C/C_0002.jpg", "t:none.jpg",     "t:bad.jpg"};
  const char *labels[] = {"A", "A", "A", "B", "B", "B", "C", "C", "", "C"};
  const float norms[] = {30, 25, 20, 30, 18, 22, 30, 24, 10, NAN};
  fixture_item items[10];
  for (int i = 0; i < 10; i++)
    items[i] = (fixture_item){.key = keys[i], .label = labels[i], .status = i == 9 ? 1 : 0,
                              .embedding = i < 9 ? tiny_emb[i] : NULL, .norm = norms[i], .ers = NAN, .ri = NAN};
  fr_error err = {0};
  if (fixture_write(tiny_path, items, 10, 2, &err) ||
      fixture_write_synthetic(synth_path, 40, 8, 16, 7, &err)) {
    fprintf(stderr, "fixture: %s\n", err.message);
    return -1;
  }
  return 0;
}

static int teardown(void)
{
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_reader_blocks(void)
{
  fr_results_reader *r = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(tiny_path, 0, &r, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_results_reader_items(r), 10);
  CU_ASSERT_EQUAL(fr_results_reader_dim(r), 2);
  CU_ASSERT_EQUAL(fr_results_reader_n_labels(r), 3);
  CU_ASSERT_STRING_EQUAL(fr_results_reader_label_name(r, 1), "B");
  float e[4], q[3];
  CU_ASSERT_EQUAL(fr_results_read_embedding(r, 4, 2, e, &err), FR_OK);
  CU_ASSERT_EQUAL(e[0], -0.6f);
  CU_ASSERT_EQUAL(e[3], 0.6f);
  CU_ASSERT_EQUAL(fr_results_read_column(r, "quality/norm", 7, 3, q, &err), FR_OK);
  CU_ASSERT_EQUAL(q[0], 24);
  CU_ASSERT(isnan(q[2]));
  CU_ASSERT_EQUAL(fr_results_read_column(r, "audit/ri", 0, 3, q, &err), FR_OK); /* absent: NaN */
  CU_ASSERT(isnan(q[0]) && isnan(q[2]));
  CU_ASSERT_FALSE(fr_results_reader_has_column(r, "audit/ri"));
  char *keys[2];
  CU_ASSERT_EQUAL(fr_results_read_keys(r, 8, 2, keys, &err), FR_OK);
  CU_ASSERT_STRING_EQUAL(keys[0], "t:none.jpg");
  fr_results_free_keys(keys, 2);
  CU_ASSERT_EQUAL(fr_results_read_embedding(r, 9, 2, e, &err), FR_ERR_INVALID); /* past the end */
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, tiny_path));
  fr_results_reader_close(r);
  CU_ASSERT_NOT_EQUAL(fr_results_reader_open("/nonexistent/x.h5", 0, &r, &err), FR_OK);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "/nonexistent/x.h5"));
  char bogus[320];
  snprintf(bogus, sizeof(bogus), "%s/bogus.h5", dir);
  FILE *f = fopen(bogus, "w");
  fputs("not hdf5", f);
  fclose(f);
  CU_ASSERT_EQUAL(fr_results_reader_open(bogus, 0, &r, &err), FR_ERR_FORMAT);
}

static void test_tiny_by_hand(void)
{
  fr_results_reader *r = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(tiny_path, 0, &r, &err), FR_OK);
  fr_eval_options o = {.pairs_mode = FR_PAIRS_ALL};
  fr_eval_result res;
  CU_ASSERT_EQUAL_FATAL(fr_eval_run(r, &o, &res, &err), FR_OK);
  CU_ASSERT_EQUAL(res.items, 10);
  CU_ASSERT_EQUAL(res.items_used, 8);
  CU_ASSERT_EQUAL(res.n_identities, 3);
  CU_ASSERT_EQUAL(res.ver.genuine, 7);
  CU_ASSERT_EQUAL(res.ver.impostor, 21);
  CU_ASSERT_DOUBLE_EQUAL(res.fars[0], 0.1, 0);
  CU_ASSERT_DOUBLE_EQUAL(res.tpr_threshold[0], 0.8, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(res.tpr[0], 2.0 / 7, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(res.tpr[1], 0, 1e-12); /* FAR .01: threshold 1.0 */
  CU_ASSERT_EQUAL(res.n_templates, 3);
  CU_ASSERT_EQUAL(res.n_probes, 5);
  CU_ASSERT_DOUBLE_EQUAL(res.cmc[0], 0.6, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(res.cmc[1], 1.0, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(res.cmc[19], 1.0, 1e-12);
  CU_ASSERT_TRUE(res.has_open_set);
  CU_ASSERT_EQUAL(res.open_mated, 3);
  CU_ASSERT_EQUAL(res.open_nonmated, 2);
  CU_ASSERT_DOUBLE_EQUAL(res.tpir_threshold[0], 0.8, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(res.tpir[0], 1.0 / 3, 1e-12);
  /* Only quality/norm has values; pair quality = min; the EDC starts at FNMR
   * #{genuine <= .8 at FMR 1e-3 (threshold 1.0)} = 7/7. */
  CU_ASSERT_EQUAL_FATAL(res.n_quality, 1);
  CU_ASSERT_STRING_EQUAL(res.quality[0].column, "quality/norm");
  CU_ASSERT_EQUAL(res.quality[0].n_finite, 8);
  CU_ASSERT_TRUE(res.quality[0].has_edc);
  CU_ASSERT_DOUBLE_EQUAL(res.quality[0].edc.fnmr[0], 1.0, 1e-12);
  CU_ASSERT_TRUE(res.quality[0].has_erc);
  fr_eval_result_free(&res);

  /* pairs.txt: names are labels, numbers come from the NAME_000k.jpg file names. */
  char pairs[320];
  snprintf(pairs, sizeof(pairs), "%s/pairs.txt", dir);
  FILE *f = fopen(pairs, "w");
  fputs("1 2\nA 1 3\nB 1 2\nA 1 B 3\nC 2 A 9\n", f); /* A 9 does not exist: skipped */
  fclose(f);
  o = (fr_eval_options){.pairs_mode = FR_PAIRS_FILE, .pairs_path = pairs, .no_identification = 1};
  CU_ASSERT_EQUAL_FATAL(fr_eval_run(r, &o, &res, &err), FR_OK);
  CU_ASSERT_EQUAL(res.pairs_skipped, 1);
  CU_ASSERT_EQUAL(res.ver.genuine, 2);
  CU_ASSERT_EQUAL(res.ver.impostor, 1);
  CU_ASSERT_DOUBLE_EQUAL(res.ver.genuine_mean, (0.6 + 0.8) / 2, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(res.ver.impostor_mean, 0.8, 1e-6);
  CU_ASSERT_FALSE(res.has_identification);
  fr_eval_result_free(&res);

  o = (fr_eval_options){.quality = {"nonexistent"}, .n_quality = 1};
  CU_ASSERT_EQUAL(fr_eval_run(r, &o, &res, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "quality/nonexistent"));
  fr_results_reader_close(r);
}

/* Every figure of the C evaluation against scripts/eval_reference.py. */
static void test_numpy_reference(void)
{
  if (access(PYTHON, X_OK) != 0)
    TEST_SKIP("%s not found", PYTHON);
  char cmd[800];
  snprintf(cmd, sizeof(cmd), "%s %s/scripts/eval_reference.py %s 2 quality/norm quality/ers", PYTHON,
           FACERI_SOURCE_DIR, synth_path);
  FILE *p = popen(cmd, "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  fr_results_reader *r = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(synth_path, 0, &r, &err), FR_OK);
  fr_eval_options o = {.pairs_mode = FR_PAIRS_ALL, .gallery_first = 2, .quality = {"norm", "ers"}, .n_quality = 2};
  fr_eval_result res;
  CU_ASSERT_EQUAL_FATAL(fr_eval_run(r, &o, &res, &err), FR_OK);
  fr_results_reader_close(r);
  char key[160];
  double v;
  int compared = 0, bad = 0;
  while (fscanf(p, "%159s %lf", key, &v) == 2) {
    double c = NAN;
    int i = -1, j = -1;
    char col[64] = "";
    if (!strcmp(key, "items_used"))
      c = (double)res.items_used;
    else if (!strcmp(key, "ver.accuracy"))
      c = res.ver.accuracy;
    else if (!strcmp(key, "ver.genuine"))
      c = (double)res.ver.genuine;
    else if (sscanf(key, "ver.tpr_far[%d]", &i) == 1)
      c = res.tpr[i];
    else if (sscanf(key, "ver.thr_far[%d]", &i) == 1)
      c = res.tpr_threshold[i];
    else if (!strcmp(key, "probes"))
      c = (double)res.n_probes;
    else if (sscanf(key, "cmc[%d]", &i) == 1)
      c = res.cmc[i];
    else if (!strcmp(key, "open_nonmated"))
      c = (double)res.open_nonmated;
    else if (sscanf(key, "tpir[%d]", &i) == 1)
      c = res.tpir[i];
    else if (sscanf(key, "tpir_thr[%d]", &i) == 1)
      c = res.tpir_threshold[i];
    else if (sscanf(key, "quality/%63[a-z].edc.pauc", col) == 1 && strstr(key, ".pauc") && !strstr(key, "relative"))
      c = res.quality[strcmp(col, "norm") ? 1 : 0].edc.pauc;
    else if (sscanf(key, "quality/%63[a-z].edc.fnmr[%d]", col, &i) == 2)
      c = res.quality[strcmp(col, "norm") ? 1 : 0].edc.fnmr[i];
    else if (sscanf(key, "quality/%63[a-z].erc.fnmr[%d][%d]", col, &i, &j) == 3)
      c = res.quality[strcmp(col, "norm") ? 1 : 0].erc.fnmr[i * 3 + j];
    else
      continue;
    compared++;
    int same = (isnan(c) && isnan(v)) || (isinf(c) && c == v) || fabs(c - v) <= 1e-6 * (1 + fabs(v));
    if (!same && bad++ < 10)
      printf("\n  %s: C %.9g NumPy %.9g", key, c, v);
  }
  CU_ASSERT_EQUAL(pclose(p), 0);
  CU_ASSERT(compared > 100);
  CU_ASSERT_EQUAL(bad, 0);
  fr_eval_result_free(&res);
}

static void test_cli(void)
{
  char cmd[800], line[8192];
  snprintf(cmd, sizeof(cmd), "%s/faceri eval %s --all-pairs --json", FACERI_BINARY_DIR, tiny_path);
  FILE *p = popen(cmd, "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  size_t n = fread(line, 1, sizeof(line) - 1, p);
  line[n] = '\0';
  CU_ASSERT_EQUAL(pclose(p), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"cmc\":[0.6,1,1"));
  CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"genuine\":7"));
  snprintf(cmd, sizeof(cmd), "%s/faceri eval %s --all-pairs --pairs x 2>/dev/null", FACERI_BINARY_DIR, tiny_path);
  CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 2);
  snprintf(cmd, sizeof(cmd), "%s/faceri eval %s/missing.h5 2>/dev/null", FACERI_BINARY_DIR, dir);
  CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 1);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("eval", setup, teardown);
  CU_add_test(s, "chunked reader: blocks, absent columns, bad ranges and files", test_reader_blocks);
  CU_add_test(s, "tiny 2-D set: every figure by hand; pairs.txt", test_tiny_by_hand);
  CU_add_test(s, "synthetic set against the NumPy reference", test_numpy_reference);
  CU_add_test(s, "faceri eval CLI: JSON and exit codes", test_cli);
  return test_run_all();
}
