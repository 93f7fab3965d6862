/* Evaluation metrics on hand-computed cases: TPR at any FAR, pairs.txt parsing,
 * closed/open-set identification, EDC and ERC. Every expected number has its
 * arithmetic next to it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/metrics.h"
#include "faceri/pairs_file.h"
#include "faceri/verification.h"
#include "test_util.h"

#define EPS 1e-12

/* ---------- verification at arbitrary FAR ---------- */

static void test_tpr_at_fars(void)
{
  /* Impostors sorted: .1 .2 .3 .4 .5 .6 .65 .75 .85 .95 (n = 10). */
  double im[] = {0.95, 0.1, 0.85, 0.2, 0.75, 0.3, 0.65, 0.4, 0.5, 0.6};
  double g[] = {0.9, 0.8, 0.7, 0.6};
  double fars[] = {0.0, 0.1, 0.29, 0.3, 1.0};
  double tpr[5], thr[5];
  CU_ASSERT_EQUAL_FATAL(fr_verification_tpr_at_fars(g, 4, im, 10, fars, 5, tpr, thr, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(thr[0], 0.95, EPS); /* floor(0)=0 allowed: 1st largest; no genuine > .95 */
  CU_ASSERT_DOUBLE_EQUAL(tpr[0], 0.0, EPS);
  CU_ASSERT_DOUBLE_EQUAL(thr[1], 0.85, EPS); /* floor(1)=1: 2nd largest; genuine > .85: .9 -> 1/4 */
  CU_ASSERT_DOUBLE_EQUAL(tpr[1], 0.25, EPS);
  CU_ASSERT_DOUBLE_EQUAL(thr[2], 0.75, EPS); /* floor(2.9)=2: 3rd largest; .9 .8 -> 2/4 */
  CU_ASSERT_DOUBLE_EQUAL(tpr[2], 0.5, EPS);
  CU_ASSERT_DOUBLE_EQUAL(thr[3], 0.65, EPS); /* floor(3)=3: 4th largest; .9 .8 .7 -> 3/4 */
  CU_ASSERT_DOUBLE_EQUAL(tpr[3], 0.75, EPS);
  CU_ASSERT(isinf(thr[4]) && thr[4] < 0);    /* floor(10) >= 10: accept all -> 4/4 */
  CU_ASSERT_DOUBLE_EQUAL(tpr[4], 1.0, EPS);

  /* A genuine score equal to the threshold is rejected: t = .65 at FAR .3. */
  double tie[] = {0.65};
  CU_ASSERT_EQUAL(fr_verification_tpr_at_fars(tie, 1, im, 10, &fars[3], 1, tpr, NULL, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(tpr[0], 0.0, EPS);
}

static void test_tpr_errors(void)
{
  fr_error err = {0};
  double g[] = {0.5, NAN}, im[] = {0.1}, bad_far = 1.5, far = 0.1, tpr;
  CU_ASSERT_EQUAL(fr_verification_tpr_at_fars(g, 1, im, 1, &bad_far, 1, &tpr, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "1.5"));
  CU_ASSERT_EQUAL(fr_verification_tpr_at_fars(g, 2, im, 1, &far, 1, &tpr, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "NaN"));
  CU_ASSERT_EQUAL(fr_verification_tpr_at_fars(g, 1, im, 0, &far, 1, &tpr, NULL, &err), FR_ERR_INVALID);
  fr_verification v;
  CU_ASSERT_EQUAL(fr_verification_from_scores(g, 2, im, 1, &v, &err), FR_ERR_INVALID);
}

/* ---------- pairs.txt ---------- */

/* Names A, B, C own items 0.., 10.., 20..; images above 5 are "not found";
 * the name "Bad" makes the lookup fail outright. */
static int lookup(void *ctx, const char *name, int image, int64_t *index, fr_error *err)
{
  int *calls = ctx;
  (*calls)++;
  if (strcmp(name, "Bad") == 0)
    return fr_error_set(err, FR_ERR_INVALID, "identity %s is banned", name);
  if (strlen(name) != 1 || name[0] < 'A' || name[0] > 'C')
    return FR_ERR_NOT_FOUND;
  if (image > 5)
    return FR_ERR_NOT_FOUND;
  *index = (name[0] - 'A') * 10 + image - 1;
  return FR_OK;
}

static const char good_pairs[] = "2\t2\r\n"
                                 "A 1 2\r\n"
                                 "B 1 3\n"
                                 "A 1\tB 2\n"
                                 "  C 4 A 5  \n"
                                 "\n"
                                 "A 2 3\n"
                                 "C 1 9\n" /* image 9 not found: skipped */
                                 "A 3 C 1\n"
                                 "B 4 C 5\n"
                                 "\n";

static void check_good_pairs(const fr_pairs *p)
{
  CU_ASSERT_EQUAL(p->n_folds, 2);
  CU_ASSERT_EQUAL(p->per_fold, 2);
  CU_ASSERT_EQUAL_FATAL(p->n, 7);
  CU_ASSERT_EQUAL(p->n_skipped, 1);
  CU_ASSERT_EQUAL(p->n_genuine, 3);
  CU_ASSERT_EQUAL(p->n_impostor, 4);
  /* "C 4 A 5" on line 5: C -> 20 + 4 - 1 = 23, A -> 0 + 5 - 1 = 4; 4th pair: fold 0. */
  CU_ASSERT_EQUAL(p->pairs[3].a, 23);
  CU_ASSERT_EQUAL(p->pairs[3].b, 4);
  CU_ASSERT_EQUAL(p->pairs[3].genuine, 0);
  CU_ASSERT_EQUAL(p->pairs[3].fold, 0);
  CU_ASSERT_EQUAL(p->pairs[3].line, 5);
  /* "A 2 3" is the 5th pair line: fold 1 (pairs 4..7). */
  CU_ASSERT_EQUAL(p->pairs[4].a, 1);
  CU_ASSERT_EQUAL(p->pairs[4].b, 2);
  CU_ASSERT_EQUAL(p->pairs[4].genuine, 1);
  CU_ASSERT_EQUAL(p->pairs[4].fold, 1);
  CU_ASSERT_EQUAL(p->pairs[6].a, 13); /* B 4 -> 13, C 5 -> 24 */
  CU_ASSERT_EQUAL(p->pairs[6].b, 24);
  CU_ASSERT_EQUAL(p->pairs[6].line, 10);
}

static void test_pairs_parse_good(void)
{
  int calls = 0;
  fr_pairs p;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_pairs_parse(good_pairs, strlen(good_pairs), "mem", lookup, &calls, &p, &err), FR_OK);
  check_good_pairs(&p);
  fr_pairs_free(&p);

  /* Same through a file; and the one-number header of pairsDevTrain.txt. */
  char dir[] = "/tmp/faceri-pairs-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof(path), "%s/pairs.txt", dir);
  FILE *f = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs(good_pairs, f);
  fclose(f);
  CU_ASSERT_EQUAL_FATAL(fr_pairs_read_file(path, lookup, &calls, &p, &err), FR_OK);
  check_good_pairs(&p);
  fr_pairs_free(&p);
  unlink(path);
  rmdir(dir);
  CU_ASSERT_EQUAL(fr_pairs_read_file(path, lookup, &calls, &p, &err), FR_ERR_NOT_FOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, path));

  const char one[] = "1\nA 1 2\nA 1 B 1";  /* no final newline */
  CU_ASSERT_EQUAL_FATAL(fr_pairs_parse(one, strlen(one), "one", lookup, &calls, &p, &err), FR_OK);
  CU_ASSERT_EQUAL(p.n_folds, 1);
  CU_ASSERT_EQUAL(p.n, 2);
  CU_ASSERT_EQUAL(p.pairs[1].b, 10);
  fr_pairs_free(&p);
}

static void expect_parse_error(const char *text, size_t len, const char *needle)
{
  int calls = 0;
  fr_pairs p;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_pairs_parse(text, len, "t.txt", lookup, &calls, &p, &err) != FR_OK, 1);
  CU_ASSERT_PTR_NULL(p.pairs);
  if (!strstr(err.message, needle))
    printf("\n    message \"%s\" lacks \"%s\"", err.message, needle);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, needle));
}

static void test_pairs_parse_malformed(void)
{
#define BAD(text, needle) expect_parse_error(text, sizeof(text) - 1, needle)
  BAD("", "no header");
  BAD("\n\n", "no header");
  BAD("x y\n", "t.txt:1: expected a header");
  BAD("1 2 3\n", "t.txt:1: expected a header");
  BAD("0\n", "t.txt:1: expected a header");
  BAD("1000 1000000\n", "too many");
  BAD("1 2000000000\n", "t.txt:1: expected a header");
  BAD("2 2\nA 1\n", "t.txt:2: expected \"name i j\"");
  BAD("1\nA 1 B 2 C\n", "found 5 fields");
  BAD("1\nA 1 B 2 C 3 4\n", "more than 5");
  BAD("1\nA x 2\nA 1 B 1\n", "t.txt:2: image number \"x\"");
  BAD("1\nA 0 2\nA 1 B 1\n", "t.txt:2: image number \"0\"");
  BAD("1\nA 1 -2\nA 1 B 1\n", "t.txt:2: image number \"-2\"");
  BAD("1\nA 1 99999999999\nA 1 B 1\n", "not a positive integer");
  BAD("1\nA 1 2x\nA 1 B 1\n", "\"2x\"");
  BAD("1\nA 1 2\n", "announces 2 pairs");
  BAD("1\nA 1 2\nA 1 B 1\nA 2 3\n", "t.txt:4: more pairs than the 2");
  BAD("1\nA 1 2\nBad 1 A 1\n", "t.txt:3: identity Bad is banned");
  BAD("1\nA 1 2\nA 1 B\0 1\n", "t.txt:3: NUL byte");
#undef BAD
}

static void test_pairs_verification(void)
{
  /* Items 0..3 on the unit circle; genuine (0,1): cos = .8, (2,3): cos = .6;
   * impostor (0,2): 0, (1,3): .8*.. see below. */
  float e[] = {1, 0, 0.8f, 0.6f, 0, 1, 0.6f, 0.8f};
  fr_pairs p = {0};
  fr_pair list[] = {{0, 1, 1, 0, 1}, {2, 3, 1, 0, 2}, {0, 2, 0, 0, 3}, {1, 2, 0, 0, 4}};
  p.pairs = list;
  p.n = 4;
  double s[4];
  CU_ASSERT_EQUAL_FATAL(fr_pairs_scores(e, 4, 2, list, 4, s, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(s[0], 0.8, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(s[1], 0.8, 1e-6); /* 0*.6 + 1*.8 */
  CU_ASSERT_DOUBLE_EQUAL(s[2], 0.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(s[3], 0.6, 1e-6);
  fr_verification v;
  double far = 0.0, tpr;
  CU_ASSERT_EQUAL_FATAL(fr_pairs_verification(e, 4, 2, &p, &far, 1, &v, &tpr, NULL), FR_OK);
  CU_ASSERT_EQUAL(v.genuine, 2);
  CU_ASSERT_EQUAL(v.impostor, 2);
  CU_ASSERT_DOUBLE_EQUAL(v.accuracy, 1.0, EPS);
  CU_ASSERT_DOUBLE_EQUAL(tpr, 1.0, EPS); /* t = .6 (largest impostor), both genuine .8 > .6 */
  fr_error err = {0};
  list[3].b = 4;
  CU_ASSERT_EQUAL(fr_pairs_scores(e, 4, 2, list, 4, s, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "line 4"));
  p.n = 2; /* genuine only */
  CU_ASSERT_EQUAL(fr_pairs_verification(e, 4, 2, &p, &far, 1, &v, &tpr, &err), FR_ERR_INVALID);
}

/* ---------- identification ---------- */

static const float gallery[] = {1, 0, 0, 1, -1, 0};
static const int gallery_labels[] = {10, 20, 30};
#define NP 7
static const float probes[NP * 2] = {
    0.8f, 0.6f,        /* p0 id 10: scores .8 .6 -.8 -> rank 1 */
    0.8f, 0.6f,        /* p1 id 20: mate .6, g10 .8 >= -> rank 2 */
    0.6f, 0.8f,        /* p2 id 30: mate -.6, g10 .6 and g20 .8 -> rank 3 */
    0.70710678f, 0.70710678f, /* p3 id 20: exact tie with g10 -> rank 2 (a tie is not a win) */
    0, -1,             /* p4 id 99 non-mated: top 0 */
    0.6f, -0.8f,       /* p5 id 98 non-mated: top .6 */
    -0.28f, 0.96f};    /* p6 id 97 non-mated: top .96 */
static const int probe_labels[NP] = {10, 20, 30, 20, 99, 98, 97};

static int tile_calls;
static int counting_tile(void *ctx, const float *p, int64_t np, const float *g, int64_t ng, int dim, double *s,
                         fr_error *err)
{
  (void)ctx;
  tile_calls++;
  for (int64_t i = 0; i < np; i++)
    for (int64_t j = 0; j < ng; j++) {
      double acc = 0;
      for (int k = 0; k < dim; k++)
        acc += (double)p[i * dim + k] * g[j * dim + k];
      s[i * ng + j] = acc;
    }
  return FR_OK;
}

static void test_identification(void)
{
  fr_probe_outcome o[NP], small[NP];
  CU_ASSERT_EQUAL_FATAL(fr_identification_search(gallery, gallery_labels, 3, probes, probe_labels, NP, 2, NULL, o, NULL),
                        FR_OK);
  const int64_t ranks[NP] = {1, 2, 3, 2, 0, 0, 0};
  for (int i = 0; i < NP; i++)
    CU_ASSERT_EQUAL(o[i].rank, ranks[i]);
  CU_ASSERT_DOUBLE_EQUAL(o[1].mated_score, 0.6, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(o[1].top_score, 0.8, 1e-6);
  CU_ASSERT(isnan(o[4].mated_score));
  CU_ASSERT_DOUBLE_EQUAL(o[4].top_score, 0.0, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(o[6].top_score, 0.96, 1e-6);

  /* Tiles of 2 x 2 through a custom scorer: the same outcomes. 4 probe blocks
   * x (1 mate tile + 2 gallery tiles) = 12 calls. */
  fr_search_options opts = {.probe_block = 2, .gallery_block = 2, .score_tile = counting_tile};
  tile_calls = 0;
  CU_ASSERT_EQUAL_FATAL(
      fr_identification_search(gallery, gallery_labels, 3, probes, probe_labels, NP, 2, &opts, small, NULL), FR_OK);
  CU_ASSERT_EQUAL(tile_calls, 12);
  for (int i = 0; i < NP; i++) {
    CU_ASSERT_EQUAL(small[i].rank, o[i].rank);
    CU_ASSERT_EQUAL(small[i].top_score, o[i].top_score);
  }

  /* CMC over the 4 mated probes (ranks 1, 2, 3, 2): rank 1: 1/4; rank 2: 3/4; rank 3: 4/4. */
  double cmc[4];
  int64_t nm;
  CU_ASSERT_EQUAL_FATAL(fr_identification_cmc(o, NP, 4, cmc, &nm, NULL), FR_OK);
  CU_ASSERT_EQUAL(nm, 3);
  CU_ASSERT_DOUBLE_EQUAL(cmc[0], 0.25, EPS);
  CU_ASSERT_DOUBLE_EQUAL(cmc[1], 0.75, EPS);
  CU_ASSERT_DOUBLE_EQUAL(cmc[2], 1.0, EPS);
  CU_ASSERT_DOUBLE_EQUAL(cmc[3], 1.0, EPS);

  /* Open set. Non-mated tops sorted: 0, .6f, .96f (N_nm = 3).
   * FPIR 0:    floor(0) = 0 allowed  -> t = .96f: no mate above -> 0
   * FPIR .34:  floor(1.02) = 1       -> t = .6f: p0 (.8, r1) and p3 (.707, r2) pass at R=20; p1's .6f equals t:
   *                                     rejected -> 2/4; at R = 1 only p0 -> 1/4
   * FPIR .67:  floor(2.01) = 2       -> t = 0: p0, p1, p3 -> 3/4 (p2 scores -.6)
   * FPIR 1:    -inf                  -> every mate within rank R: 4/4 at R=20, 1/4 at R=1 */
  double fpir[] = {0, 0.34, 0.67, 1}, tpir[4], thr[4];
  CU_ASSERT_EQUAL_FATAL(fr_identification_tpir_at_fpir(o, NP, 20, fpir, 4, tpir, thr, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(thr[0], 0.96, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(thr[1], 0.6, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(thr[2], 0.0, EPS);
  CU_ASSERT(isinf(thr[3]) && thr[3] < 0);
  CU_ASSERT_DOUBLE_EQUAL(tpir[0], 0.0, EPS);
  CU_ASSERT_DOUBLE_EQUAL(tpir[1], 0.5, EPS);
  CU_ASSERT_DOUBLE_EQUAL(tpir[2], 0.75, EPS);
  CU_ASSERT_DOUBLE_EQUAL(tpir[3], 1.0, EPS);
  CU_ASSERT_EQUAL_FATAL(fr_identification_tpir_at_fpir(o, NP, 1, fpir, 4, tpir, NULL, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(tpir[1], 0.25, EPS);
  CU_ASSERT_DOUBLE_EQUAL(tpir[3], 0.25, EPS);
}

static void test_identification_errors(void)
{
  fr_error err = {0};
  fr_probe_outcome o[NP];
  int dup[] = {10, 20, 10};
  CU_ASSERT_EQUAL(fr_identification_search(gallery, dup, 3, probes, probe_labels, NP, 2, NULL, o, &err),
                  FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "share label 10"));
  float bad[NP * 2];
  memcpy(bad, probes, sizeof(bad));
  bad[9] = NAN;
  CU_ASSERT_EQUAL(fr_identification_search(gallery, gallery_labels, 3, bad, probe_labels, NP, 2, NULL, o, &err),
                  FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "probe row 4"));
  CU_ASSERT_EQUAL(fr_identification_search(gallery, gallery_labels, 0, probes, probe_labels, NP, 2, NULL, o, &err),
                  FR_ERR_INVALID);
  CU_ASSERT_EQUAL_FATAL(
      fr_identification_search(gallery, gallery_labels, 3, probes, probe_labels, NP, 2, NULL, o, NULL), FR_OK);
  double cmc[1], fpir = 0.1, tpir;
  CU_ASSERT_EQUAL(fr_identification_cmc(o, NP, 0, cmc, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_identification_cmc(o + 4, 3, 1, cmc, NULL, &err), FR_ERR_INVALID); /* non-mated only */
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "none of the 3 probes"));
  CU_ASSERT_EQUAL(fr_identification_tpir_at_fpir(o, 4, 20, &fpir, 1, &tpir, NULL, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_identification_tpir_at_fpir(o, NP, 0, &fpir, 1, &tpir, NULL, &err), FR_ERR_INVALID);
  fpir = -0.1;
  CU_ASSERT_EQUAL(fr_identification_tpir_at_fpir(o, NP, 20, &fpir, 1, &tpir, NULL, &err), FR_ERR_INVALID);
}

/* ---------- quality: EDC and ERC ---------- */

static void test_pair_quality(void)
{
  double q[] = {0.5, NAN, 0.2, 0.9}, out[3];
  int64_t a[] = {0, 1, 2}, b[] = {3, 3, 0};
  CU_ASSERT_EQUAL_FATAL(fr_pair_quality_min(q, 4, a, b, 3, out, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(out[0], 0.5, EPS);
  CU_ASSERT(isinf(out[1]) && out[1] < 0); /* NaN counts as lowest */
  CU_ASSERT_DOUBLE_EQUAL(out[2], 0.2, EPS);
  b[2] = 4;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_pair_quality_min(q, 4, a, b, 3, out, &err), FR_ERR_INVALID);
}

/* Genuine pairs (score, quality); with threshold .5, .2 .3 .25 fail (3 of 10). */
static const double edc_g[] = {0.2, 0.9, 0.3, 0.8, 0.7, 0.25, 0.95, 0.85, 0.6, 0.75};
static const double edc_q[] = {0.1, 0.1, 0.2, 0.3, 0.3, 0.4, 0.5, NAN, 0.6, 0.7};

static void test_edc(void)
{
  fr_edc_options o = {.mode = FR_EDC_GIVEN, .value = 0.5};
  fr_edc e;
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(edc_g, edc_q, 10, NULL, 0, &o, &e, NULL), FR_OK);
  /* Levels in order: NaN{7} .1{0,1} .2{2} .3{3,4} .4{5} .5{6} .6{8}; .7{9} would leave nothing. */
  const double d[] = {0, 0.1, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9};
  const double f[] = {3.0 / 10, 3.0 / 9, 2.0 / 7, 1.0 / 6, 1.0 / 4, 0, 0, 0};
  CU_ASSERT_EQUAL_FATAL(e.n_points, 8);
  for (int k = 0; k < 8; k++) {
    CU_ASSERT_DOUBLE_EQUAL(e.discard[k], d[k], EPS);
    CU_ASSERT_DOUBLE_EQUAL(e.fnmr[k], f[k], EPS);
  }
  CU_ASSERT(isnan(e.cut[0]));
  CU_ASSERT(isinf(e.cut[1]) && e.cut[1] < 0);
  CU_ASSERT_DOUBLE_EQUAL(e.cut[4], 0.3, EPS);
  /* pAUC to .2: [0, .1]: .1 * (3/10 + 1/3) / 2; [.1, .2]: FNMR at .2 interpolated on
   * [.1, .3]: 1/3 + (2/7 - 1/3) / 2 = 13/42, area .1 * (1/3 + 13/42) / 2. */
  double pauc = 0.1 * (0.3 + 1.0 / 3) / 2 + 0.1 * (1.0 / 3 + 13.0 / 42) / 2;
  CU_ASSERT_DOUBLE_EQUAL(e.pauc, pauc, EPS);
  CU_ASSERT_DOUBLE_EQUAL(e.pauc_relative, pauc / (0.3 * 0.2), EPS);
  fr_edc_free(&e);

  /* pAUC over the whole curve (limit 1): segments to .9, then flat at 0 to 1. */
  o.pauc_limit = 1;
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(edc_g, edc_q, 10, NULL, 0, &o, &e, NULL), FR_OK);
  double full = 0.1 * (0.3 + 1.0 / 3) / 2 + 0.2 * (1.0 / 3 + 2.0 / 7) / 2 + 0.1 * (2.0 / 7 + 1.0 / 6) / 2 +
                0.2 * (1.0 / 6 + 1.0 / 4) / 2 + 0.1 * (1.0 / 4 + 0) / 2;
  CU_ASSERT_DOUBLE_EQUAL(e.pauc, full, EPS);
  fr_edc_free(&e);
}

static void test_edc_thresholds(void)
{
  fr_edc e;
  /* Impostors .05 .. .95 (10): FMR .1 -> floor(1) = 1 allowed -> t = 2nd largest = .85;
   * genuine <= .85: all but .9 and .95 -> FNMR 8/10. */
  double im[10];
  for (int i = 0; i < 10; i++)
    im[i] = 0.05 + 0.1 * i;
  fr_edc_options o = {.mode = FR_EDC_AT_FMR, .value = 0.1};
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(edc_g, edc_q, 10, im, 10, &o, &e, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(e.threshold, 0.85, 1e-12);
  CU_ASSERT_DOUBLE_EQUAL(e.fnmr[0], 0.8, EPS);
  CU_ASSERT_EQUAL(e.n_impostor, 10);
  fr_edc_free(&e);

  /* Starting FNMR .3: k = 3; sorted genuine .2 .25 .3 .6 ...: t = largest below .6 = .3 -> 3/10. */
  o = (fr_edc_options){.mode = FR_EDC_AT_FNMR, .value = 0.3};
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(edc_g, edc_q, 10, NULL, 0, &o, &e, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(e.threshold, 0.3, EPS);
  CU_ASSERT_DOUBLE_EQUAL(e.fnmr[0], 0.3, EPS);
  fr_edc_free(&e);

  /* Ties: genuine .5 .5 .5 .9 at FNMR .5: k = 2, sorted[2] = .5, nothing below it -> t = -inf, FNMR 0 <= .5. */
  double tg[] = {0.5, 0.5, 0.5, 0.9}, tq[] = {1, 2, 3, 4};
  o.value = 0.5;
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(tg, tq, 4, NULL, 0, &o, &e, NULL), FR_OK);
  CU_ASSERT(isinf(e.threshold) && e.threshold < 0);
  CU_ASSERT_DOUBLE_EQUAL(e.fnmr[0], 0.0, EPS);
  CU_ASSERT(isnan(e.pauc_relative)); /* nothing to improve on */
  fr_edc_free(&e);
  o.value = 1; /* every genuine pair rejected */
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(tg, tq, 4, NULL, 0, &o, &e, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(e.fnmr[0], 1.0, EPS);
  fr_edc_free(&e);
}

static void test_edc_edges(void)
{
  /* One quality level: the whole set goes in one step, so only point 0 exists
   * and the pAUC is flat: .2 * FNMR(0); relative 1. g: .2 fails at t = .5 -> 1/3. */
  double g[] = {0.2, 0.7, 0.9}, q[] = {0.5, 0.5, 0.5};
  fr_edc_options o = {.mode = FR_EDC_GIVEN, .value = 0.5};
  fr_edc e;
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(g, q, 3, NULL, 0, &o, &e, NULL), FR_OK);
  CU_ASSERT_EQUAL(e.n_points, 1);
  CU_ASSERT_DOUBLE_EQUAL(e.pauc, 0.2 / 3, EPS);
  CU_ASSERT_DOUBLE_EQUAL(e.pauc_relative, 1.0, EPS);
  fr_edc_free(&e);
  /* All NaN: same, NaN ties with NaN. */
  double qn[] = {NAN, NAN, NAN};
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(g, qn, 3, NULL, 0, &o, &e, NULL), FR_OK);
  CU_ASSERT_EQUAL(e.n_points, 1);
  fr_edc_free(&e);
  /* A single step exactly at the limit: q .1 .2 .3 .4 .5: point 1 at discard .2. */
  double g5[] = {0.1, 0.9, 0.9, 0.9, 0.9}, q5[] = {0.1, 0.2, 0.3, 0.4, 0.5};
  CU_ASSERT_EQUAL_FATAL(fr_edc_compute(g5, q5, 5, NULL, 0, &o, &e, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(e.fnmr[1], 0.0, EPS);   /* the failing .1 was the lowest quality */
  CU_ASSERT_DOUBLE_EQUAL(e.pauc, 0.2 * 0.2 / 2, EPS); /* triangle from .2 down to 0 over [0, .2] */
  fr_edc_free(&e);

  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_edc_compute(g, q, 0, NULL, 0, &o, &e, &err), FR_ERR_INVALID);
  o.mode = FR_EDC_AT_FMR;
  CU_ASSERT_EQUAL(fr_edc_compute(g, q, 3, NULL, 0, &o, &e, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "needs impostor"));
  o = (fr_edc_options){.mode = FR_EDC_GIVEN, .value = 0.5, .pauc_limit = 1.5};
  CU_ASSERT_EQUAL(fr_edc_compute(g, q, 3, NULL, 0, &o, &e, &err), FR_ERR_INVALID);
  o.pauc_limit = 0;
  o.value = NAN;
  CU_ASSERT_EQUAL(fr_edc_compute(g, q, 3, NULL, 0, &o, &e, &err), FR_ERR_INVALID);
  double gnan[] = {0.2, NAN, 0.9};
  o.value = 0.5;
  CU_ASSERT_EQUAL(fr_edc_compute(gnan, q, 3, NULL, 0, &o, &e, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "genuine score 1 is NaN"));
}

static void test_erc(void)
{
  /* Pooled indices: g0..g3 = 0..3, i0..i5 = 4..9. Stable quality order:
   *   i2(NaN) g1(.1) i5(.1) i0(.2) g2(.3) g3(.3) i4(.3) i1(.4) g0(.5) i3(.6)
   * Steps of .25 up to .75 drop floor(0, 2.5, 5, 7.5) = 0, 2, 5, 7 pairs. */
  double g[] = {0.25, 0.4, 0.7, 0.6}, gq[] = {0.5, 0.1, 0.3, 0.3};
  double im[] = {0.5, 0.3, 0.65, 0.1, 0.2, 0.8}, iq[] = {0.2, 0.4, NAN, 0.6, 0.3, 0.1};
  double fmrs[] = {0.2, 0.5};
  fr_erc_options o = {.step = 0.25, .max_discard = 0.75, .fmrs = fmrs, .n_fmr = 2};
  fr_erc e;
  CU_ASSERT_EQUAL_FATAL(fr_erc_compute(g, gq, 4, im, iq, 6, &o, &e, NULL), FR_OK);
  CU_ASSERT_EQUAL_FATAL(e.n_steps, 4);
  /* step 0: all; impostors .8 .65 .5 .3 .2 .1
   *   FMR .2: floor(1.2)=1 -> t = .65: g .25 .4 .6 fail -> 3/4;  FMR .5: floor(3)=3 -> t = .3: .25 -> 1/4
   * step 1: drop i2 g1; genuine .25 .7 .6; impostors .8 .5 .3 .2 .1
   *   FMR .2: floor(1)=1 -> t = .5: .25 -> 1/3;  FMR .5: floor(2.5)=2 -> t = .3: .25 -> 1/3
   * step 2: drop i5 i0 g2 too; genuine .6 .25; impostors .3 .2 .1 (g3 and i4 survive the .3 tie)
   *   FMR .2: floor(.6)=0 -> t = .3: .25 -> 1/2;  FMR .5: floor(1.5)=1 -> t = .2: 0/2
   * step 3: drop g3 i4; genuine .25; impostors .3 .1
   *   FMR .2: floor(.4)=0 -> t = .3: 1/1;  FMR .5: floor(1)=1 -> t = .1: 0/1 */
  const double fnmr[] = {0.75, 0.25, 1.0 / 3, 1.0 / 3, 0.5, 0, 1, 0};
  const double thr[] = {0.65, 0.3, 0.5, 0.3, 0.3, 0.2, 0.3, 0.1};
  const int64_t gl[] = {4, 3, 2, 1}, il[] = {6, 5, 3, 2};
  for (int s = 0; s < 4; s++) {
    CU_ASSERT_DOUBLE_EQUAL(e.discard[s], 0.25 * s, EPS);
    CU_ASSERT_EQUAL(e.genuine_left[s], gl[s]);
    CU_ASSERT_EQUAL(e.impostor_left[s], il[s]);
    for (int f = 0; f < 2; f++) {
      CU_ASSERT_DOUBLE_EQUAL(e.fnmr[s * 2 + f], fnmr[s * 2 + f], EPS);
      CU_ASSERT_DOUBLE_EQUAL(e.threshold[s * 2 + f], thr[s * 2 + f], EPS);
    }
  }
  fr_erc_free(&e);

  /* Defaults: 20 steps (0 .. .95) and three FMRs. */
  CU_ASSERT_EQUAL_FATAL(fr_erc_compute(g, gq, 4, im, iq, 6, NULL, &e, NULL), FR_OK);
  CU_ASSERT_EQUAL(e.n_steps, 20);
  CU_ASSERT_EQUAL(e.n_fmr, 3);
  CU_ASSERT_DOUBLE_EQUAL(e.fmrs[2], 1e-4, EPS);
  fr_erc_free(&e);
}

static void test_erc_edges(void)
{
  /* Impostors all of lowest quality: at step .5 both are gone -> NaN. */
  double g[] = {0.9, 0.1}, gq[] = {1, 1}, im[] = {0.5, 0.4}, iq[] = {0, 0};
  fr_erc_options o = {.step = 0.5, .max_discard = 0.5};
  fr_erc e;
  CU_ASSERT_EQUAL_FATAL(fr_erc_compute(g, gq, 2, im, iq, 2, &o, &e, NULL), FR_OK);
  CU_ASSERT_EQUAL_FATAL(e.n_steps, 2);
  /* step 0, FMR 1e-2: floor(.02) = 0 -> t = .5: .1 fails -> 1/2 */
  CU_ASSERT_DOUBLE_EQUAL(e.fnmr[0], 0.5, EPS);
  CU_ASSERT_EQUAL(e.impostor_left[1], 0);
  CU_ASSERT(isnan(e.fnmr[3]) && isnan(e.threshold[3]));
  fr_erc_free(&e);

  /* A genuine score equal to the threshold is a non-match: FMR 0 -> t = .5 (largest), g .5 fails -> 1/2. */
  double tg[] = {0.5, 0.9}, ti[] = {0.5, 0.1}, zero = 0;
  o = (fr_erc_options){.step = 0.5, .max_discard = 0.5, .fmrs = &zero, .n_fmr = 1};
  CU_ASSERT_EQUAL_FATAL(fr_erc_compute(tg, gq, 2, ti, gq, 2, &o, &e, NULL), FR_OK);
  CU_ASSERT_DOUBLE_EQUAL(e.threshold[0], 0.5, EPS);
  CU_ASSERT_DOUBLE_EQUAL(e.fnmr[0], 0.5, EPS);
  fr_erc_free(&e);

  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_erc_compute(g, gq, 2, im, iq, 0, NULL, &e, &err), FR_ERR_INVALID);
  o.step = -1;
  CU_ASSERT_EQUAL(fr_erc_compute(g, gq, 2, im, iq, 2, &o, &e, &err), FR_ERR_INVALID);
  double bad_fmr = 2;
  o = (fr_erc_options){.fmrs = &bad_fmr, .n_fmr = 1};
  CU_ASSERT_EQUAL(fr_erc_compute(g, gq, 2, im, iq, 2, &o, &e, &err), FR_ERR_INVALID);
  double imnan[] = {0.5, NAN};
  CU_ASSERT_EQUAL(fr_erc_compute(g, gq, 2, imnan, iq, 2, NULL, &e, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "impostor score 1"));
}

int main(void)
{
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("metrics", NULL, NULL);
  CU_add_test(s, "TPR at arbitrary FAR", test_tpr_at_fars);
  CU_add_test(s, "TPR errors", test_tpr_errors);
  CU_add_test(s, "pairs.txt: good", test_pairs_parse_good);
  CU_add_test(s, "pairs.txt: malformed", test_pairs_parse_malformed);
  CU_add_test(s, "pairs: scores and verification", test_pairs_verification);
  CU_add_test(s, "identification: CMC and TPIR@FPIR", test_identification);
  CU_add_test(s, "identification: errors", test_identification_errors);
  CU_add_test(s, "pair quality", test_pair_quality);
  CU_add_test(s, "EDC", test_edc);
  CU_add_test(s, "EDC thresholds", test_edc_thresholds);
  CU_add_test(s, "EDC edges", test_edc_edges);
  CU_add_test(s, "ERC", test_erc);
  CU_add_test(s, "ERC edges", test_erc_edges);
  return test_run_all();
}
