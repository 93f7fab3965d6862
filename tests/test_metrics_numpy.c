/* Cross-check of every evaluation metric against an independent NumPy
 * implementation (scripts/metrics_reference.py) on a synthetic but realistic
 * set: 2000 items of 100 identities, 64-d embeddings from cluster centres plus
 * noise of varying strength, a quality column that follows the noise (with
 * ties and NaN), a 10-fold LFW-style pairs.txt with a few missing images, a
 * gallery of 80 identities (so 400 probes are non-mated). Both sides read the
 * same raw little-endian files; every figure must agree to 1e-9 relative. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faceri/metrics.h"
#include "faceri/pairs_file.h"
#include "faceri/verification.h"
#include "test_util.h"

#define N_ITEMS 2000
#define N_IDS 100
#define PER_ID (N_ITEMS / N_IDS)
#define DIM 64
#define N_GALLERY 80
#define ALLPAIRS_ITEMS 400
#define FOLDS 10
#define PER_FOLD 300
#define MAX_RANK 20
#define OPEN_RANK 20
#define PAUC_LIMIT 0.2
#define EDC_FMR 1e-3
#define EDC_FNMR 0.1
#define PYTHON "/usr/bin/python3"

static const double fars[] = {1e-3, 1e-4, 1e-2, 1e-1, 0};
static const double fpirs[] = {0.3, 0.2, 0.1, 0.01};
static const double erc_fmrs[] = {1e-2, 1e-3, 1e-4};

/* ---------- data ---------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double uniform(void)
{
  rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
  return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}
static double normal(void)
{
  double u = uniform(), v = uniform();
  return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

typedef struct dataset {
  float emb[N_ITEMS * DIM];
  int labels[N_ITEMS];
  double quality[N_ITEMS];
} dataset;

/* Item i is identity i % 100, its (i / 100 + 1)-th image: interleaved, so
 * the item order is not the identity order. */
static void make_dataset(dataset *d)
{
  static double centres[N_IDS][DIM];
  for (int c = 0; c < N_IDS; c++) {
    double n2 = 0;
    for (int k = 0; k < DIM; k++) {
      centres[c][k] = normal();
      n2 += centres[c][k] * centres[c][k];
    }
    for (int k = 0; k < DIM; k++)
      centres[c][k] /= sqrt(n2);
  }
  for (int i = 0; i < N_ITEMS; i++) {
    int id = i % N_IDS;
    double sigma = 0.3 + 1.7 * uniform(), v[DIM], n2 = 0;
    for (int k = 0; k < DIM; k++) {
      v[k] = centres[id][k] + sigma * normal() / sqrt(DIM);
      n2 += v[k] * v[k];
    }
    for (int k = 0; k < DIM; k++)
      d->emb[(size_t)i * DIM + k] = (float)(v[k] / sqrt(n2));
    d->labels[i] = id;
    /* Quality follows the noise, rounded to steps of .05 so that many items tie. */
    d->quality[i] = uniform() < 0.02 ? NAN : round((2.0 - sigma + 0.15 * normal()) * 20) / 20;
  }
  /* One image filed under two names: item 79 (first image of id 79, a gallery
   * template) is item 78's embedding. Scores then tie exactly: probes of ids
   * 78 and 79 score their mate and the other template alike, and the pairs
   * below give impostor scores equal to genuine ones. */
  memcpy(d->emb + 79 * DIM, d->emb + 78 * DIM, DIM * sizeof(float));
}

static int lookup(void *ctx, const char *name, int image, int64_t *index, fr_error *err)
{
  (void)ctx;
  int id;
  char extra;
  if (sscanf(name, "id%d%c", &id, &extra) != 1 || id < 0 || id >= N_IDS)
    return fr_error_set(err, FR_ERR_INVALID, "unknown name %s", name);
  if (image > PER_ID)
    return FR_ERR_NOT_FOUND;
  *index = id + (int64_t)N_IDS * (image - 1);
  return FR_OK;
}

static int write_file(const char *dir, const char *name, const void *data, size_t bytes)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t n = fwrite(data, 1, bytes, f);
  return fclose(f) == 0 && n == bytes ? 0 : -1;
}

static void list_text(char *buf, size_t size, const double *v, int n)
{
  size_t at = 0;
  for (int i = 0; i < n; i++)
    at += (size_t)snprintf(buf + at, size - at, "%s%.17g", i ? "," : "", v[i]);
}

static int write_inputs(const char *dir, const dataset *d)
{
  int64_t gallery[N_GALLERY], probes[N_ITEMS - N_GALLERY];
  for (int i = 0; i < N_GALLERY; i++)
    gallery[i] = i; /* first image of identities 0..79 */
  for (int i = N_GALLERY; i < N_ITEMS; i++)
    probes[i - N_GALLERY] = i;
  char fl[256], fp[256], ef[256], params[2048];
  list_text(fl, sizeof(fl), fars, 5);
  list_text(fp, sizeof(fp), fpirs, 4);
  list_text(ef, sizeof(ef), erc_fmrs, 3);
  int n = snprintf(params, sizeof(params),
                   "n_items %d\ndim %d\nallpairs_items %d\nmax_rank %d\nopen_rank %d\nfars %s\nfpirs %s\n"
                   "edc_fmr %.17g\nedc_fnmr %.17g\npauc_limit %.17g\nerc_step 0.05\nerc_max 0.95\nerc_fmrs %s\n",
                   N_ITEMS, DIM, ALLPAIRS_ITEMS, MAX_RANK, OPEN_RANK, fl, fp, EDC_FMR, EDC_FNMR, PAUC_LIMIT, ef);
  /* pairs.txt: per fold 300 matched then 300 mismatched; 5 matched pairs name
   * a 21st image that does not exist, so both sides must skip them. */
  size_t cap = 64 + (size_t)FOLDS * 2 * PER_FOLD * 40, at = 0;
  char *pairs = malloc(cap);
  if (!pairs)
    return -1;
  at += (size_t)snprintf(pairs, cap, "%d\t%d\n", FOLDS, PER_FOLD);
  for (int f = 0; f < FOLDS; f++) {
    for (int k = 0; k < PER_FOLD; k++) {
      int id = (int)(uniform() * N_IDS), i = 1 + (int)(uniform() * PER_ID), j = 1 + (int)(uniform() * (PER_ID - 1));
      j += j >= i;
      if (f == 3 && k < 5)
        j = PER_ID + 1;
      if (f == 0 && k < 6) /* id078 1 vs id078 k+2: the same scores as the impostors below */
        id = 78, i = 1, j = k + 2;
      at += (size_t)snprintf(pairs + at, cap - at, "id%03d\t%d\t%d\n", id, i, j);
    }
    for (int k = 0; k < PER_FOLD; k++) {
      int a = (int)(uniform() * N_IDS), b = (int)(uniform() * (N_IDS - 1));
      b += b >= a;
      if (f == 0 && k < 6) { /* id079 1 is id078 1: impostor scores tie genuine ones at the top */
        at += (size_t)snprintf(pairs + at, cap - at, "id079 1 id078 %d\n", k + 2);
        continue;
      }
      at += (size_t)snprintf(pairs + at, cap - at, "id%03d\t%d\tid%03d\t%d\n", a, 1 + (int)(uniform() * PER_ID), b,
                             1 + (int)(uniform() * PER_ID));
    }
  }
  int rc = write_file(dir, "params.txt", params, (size_t)n) || write_file(dir, "embeddings.f32", d->emb, sizeof(d->emb)) ||
           write_file(dir, "labels.i32", d->labels, sizeof(d->labels)) ||
           write_file(dir, "quality.f64", d->quality, sizeof(d->quality)) ||
           write_file(dir, "gallery.i64", gallery, sizeof(gallery)) ||
           write_file(dir, "probes.i64", probes, sizeof(probes)) || write_file(dir, "pairs.txt", pairs, at);
  free(pairs);
  return rc;
}

/* ---------- figures ---------- */

typedef struct figure {
  char key[48];
  double value;
} figure;

typedef struct figures {
  figure *v;
  int n, cap;
} figures;

static void put(figures *fs, double value, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(figures *fs, double value, const char *fmt, ...)
{
  if (fs->n == fs->cap) {
    fs->cap = fs->cap ? 2 * fs->cap : 256;
    fs->v = realloc(fs->v, (size_t)fs->cap * sizeof(figure));
    if (!fs->v)
      abort();
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(fs->v[fs->n].key, sizeof(fs->v[fs->n].key), fmt, ap);
  va_end(ap);
  fs->v[fs->n++].value = value;
}

static const figure *find(const figures *fs, const char *key)
{
  for (int i = 0; i < fs->n; i++)
    if (strcmp(fs->v[i].key, key) == 0)
      return &fs->v[i];
  return NULL;
}

static void put_verification(figures *fs, const char *p, const fr_verification *v)
{
  put(fs, (double)v->genuine, "%s.genuine", p);
  put(fs, (double)v->impostor, "%s.impostor", p);
  put(fs, v->accuracy, "%s.accuracy", p);
  put(fs, v->threshold, "%s.threshold", p);
  put(fs, v->genuine_mean, "%s.genuine_mean", p);
  put(fs, v->impostor_mean, "%s.impostor_mean", p);
  put(fs, v->tpr_at_far_1e3, "%s.tpr_far[0]", p); /* fars[0] = 1e-3 */
  put(fs, v->tpr_at_far_1e4, "%s.tpr_far[1]", p); /* fars[1] = 1e-4 */
}

static void put_edc(figures *fs, const char *p, const fr_edc *e)
{
  put(fs, e->threshold, "%s.threshold", p);
  put(fs, (double)e->n_points, "%s.n_points", p);
  for (int64_t k = 0; k < e->n_points; k++) {
    put(fs, e->discard[k], "%s.discard[%lld]", p, (long long)k);
    put(fs, e->fnmr[k], "%s.fnmr[%lld]", p, (long long)k);
  }
  put(fs, e->pauc, "%s.pauc", p);
  put(fs, e->pauc_relative, "%s.pauc_relative", p);
}

/* Everything the C library says about the data set. */
static int c_figures(const char *dir, const dataset *d, figures *fs, fr_error *err)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/pairs.txt", dir);
  fr_pairs pairs;
  int rc = fr_pairs_read_file(path, lookup, NULL, &pairs, err);
  if (rc)
    return rc;
  put(fs, (double)pairs.n_skipped, "pairs.skipped");
  fr_verification v;
  double tpr[5], thr[5];
  int64_t n = pairs.n;
  double *scores = malloc((size_t)n * sizeof(double)), *pq = malloc((size_t)n * sizeof(double));
  double *gen = malloc((size_t)n * sizeof(double)), *gq = malloc((size_t)n * sizeof(double));
  double *imp = malloc((size_t)n * sizeof(double)), *iq = malloc((size_t)n * sizeof(double));
  int64_t *a = malloc((size_t)n * sizeof(int64_t)), *b = malloc((size_t)n * sizeof(int64_t));
  float *gal = malloc((size_t)N_GALLERY * DIM * sizeof(float));
  fr_probe_outcome *o = malloc((size_t)(N_ITEMS - N_GALLERY) * sizeof(fr_probe_outcome));
  fr_edc edc = {0};
  fr_erc erc = {0};
  if (!scores || !pq || !gen || !gq || !imp || !iq || !a || !b || !gal || !o) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "test: out of memory");
    goto done;
  }
  if ((rc = fr_pairs_verification(d->emb, N_ITEMS, DIM, &pairs, fars, 5, &v, tpr, err)))
    goto done;
  put_verification(fs, "pairs", &v);
  if ((rc = fr_pairs_scores(d->emb, N_ITEMS, DIM, pairs.pairs, n, scores, err)))
    goto done;
  int64_t ng = 0, ni = 0;
  for (int64_t i = 0; i < n; i++)
    if (pairs.pairs[i].genuine)
      gen[ng++] = scores[i];
    else
      imp[ni++] = scores[i];
  if ((rc = fr_verification_tpr_at_fars(gen, ng, imp, ni, fars, 5, tpr, thr, err)))
    goto done;
  for (int k = 2; k < 5; k++) /* 0 and 1 came through put_verification */
    put(fs, tpr[k], "pairs.tpr_far[%d]", k);
  for (int k = 0; k < 5; k++)
    put(fs, thr[k], "pairs.thr_far[%d]", k);

  if ((rc = fr_verification_all_pairs(d->emb, d->labels, ALLPAIRS_ITEMS, DIM, &v, err)))
    goto done;
  put_verification(fs, "allpairs", &v);

  /* Identification in small tiles (gallery 80 = 32 + 32 + 16), so the tiling is exercised. */
  memcpy(gal, d->emb, (size_t)N_GALLERY * DIM * sizeof(float));
  fr_search_options so = {.probe_block = 128, .gallery_block = 32};
  int64_t np = N_ITEMS - N_GALLERY, nm;
  if ((rc = fr_identification_search(gal, d->labels, N_GALLERY, d->emb + (size_t)N_GALLERY * DIM,
                                     d->labels + N_GALLERY, np, DIM, &so, o, err)))
    goto done;
  double cmc[MAX_RANK], tpir[4], tthr[4];
  if ((rc = fr_identification_cmc(o, np, MAX_RANK, cmc, &nm, err)) ||
      (rc = fr_identification_tpir_at_fpir(o, np, OPEN_RANK, fpirs, 4, tpir, tthr, err)))
    goto done;
  int64_t rank_sum = 0;
  for (int64_t i = 0; i < np; i++)
    rank_sum += o[i].rank;
  put(fs, (double)(np - nm), "ident.n_mated");
  put(fs, (double)nm, "ident.n_nonmated");
  put(fs, (double)rank_sum, "ident.rank_sum");
  for (int r = 0; r < MAX_RANK; r++)
    put(fs, cmc[r], "ident.cmc[%d]", r);
  for (int k = 0; k < 4; k++) {
    int64_t above = 0;
    for (int64_t i = 0; i < np; i++)
      above += o[i].rank == 0 && o[i].top_score > tthr[k];
    put(fs, tpir[k], "ident.tpir[%d]", k);
    put(fs, tthr[k], "ident.tpir_thr[%d]", k);
    put(fs, (double)above / (double)nm, "ident.fpir_achieved[%d]", k);
  }

  for (int64_t i = 0; i < n; i++)
    a[i] = pairs.pairs[i].a, b[i] = pairs.pairs[i].b;
  if ((rc = fr_pair_quality_min(d->quality, N_ITEMS, a, b, n, pq, err)))
    goto done;
  ng = ni = 0;
  for (int64_t i = 0; i < n; i++)
    if (pairs.pairs[i].genuine)
      gq[ng++] = pq[i];
    else
      iq[ni++] = pq[i];
  fr_edc_options eo = {.mode = FR_EDC_AT_FMR, .value = EDC_FMR, .pauc_limit = PAUC_LIMIT};
  if ((rc = fr_edc_compute(gen, gq, ng, imp, ni, &eo, &edc, err)))
    goto done;
  put_edc(fs, "edc_fmr", &edc);
  fr_edc_free(&edc);
  eo = (fr_edc_options){.mode = FR_EDC_AT_FNMR, .value = EDC_FNMR, .pauc_limit = PAUC_LIMIT};
  if ((rc = fr_edc_compute(gen, gq, ng, NULL, 0, &eo, &edc, err)))
    goto done;
  put_edc(fs, "edc_fnmr", &edc);
  fr_erc_options ro = {.step = 0.05, .max_discard = 0.95, .fmrs = erc_fmrs, .n_fmr = 3};
  if ((rc = fr_erc_compute(gen, gq, ng, imp, iq, ni, &ro, &erc, err)))
    goto done;
  put(fs, erc.n_steps, "erc.n_steps");
  for (int s = 0; s < erc.n_steps; s++) {
    put(fs, (double)erc.genuine_left[s], "erc.genuine_left[%d]", s);
    put(fs, (double)erc.impostor_left[s], "erc.impostor_left[%d]", s);
    for (int f = 0; f < 3; f++) {
      put(fs, erc.fnmr[s * 3 + f], "erc.fnmr[%d][%d]", s, f);
      put(fs, erc.threshold[s * 3 + f], "erc.thr[%d][%d]", s, f);
    }
  }
done:
  fr_edc_free(&edc);
  fr_erc_free(&erc);
  fr_pairs_free(&pairs);
  free(scores), free(pq), free(gen), free(gq), free(imp), free(iq), free(a), free(b), free(gal), free(o);
  return rc;
}

static int python_figures(const char *dir, figures *fs)
{
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s %s/scripts/metrics_reference.py %s 2>%s/python.err", PYTHON, FACERI_SOURCE_DIR, dir,
           dir);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  char line[256], key[64];
  double value;
  while (fgets(line, sizeof(line), p))
    if (sscanf(line, "%63s %lf", key, &value) == 2)
      put(fs, value, "%s", key);
  int status = pclose(p);
  if (status != 0) {
    snprintf(cmd, sizeof(cmd), "cat %s/python.err", dir);
    if (system(cmd) != 0)
      printf("(no stderr)\n");
  }
  return status;
}

static int same(double x, double y)
{
  if (isnan(x) || isnan(y))
    return isnan(x) && isnan(y);
  if (x == y)
    return 1;
  /* Scores differ only by summation order (~1e-16); counts and fractions are exact. */
  return fabs(x - y) <= 1e-9 * fmax(fabs(x), fabs(y)) + 1e-14;
}

static void remove_dir(const char *dir)
{
  static const char *names[] = {"params.txt", "embeddings.f32", "labels.i32", "quality.f64", "gallery.i64",
                                "probes.i64", "pairs.txt",      "python.err"};
  char path[512];
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

static void test_against_numpy(void)
{
  const uint16_t one = 1;
  if (*(const uint8_t *)&one != 1)
    TEST_SKIP("big-endian host: the raw files are little-endian");
  if (access(PYTHON, X_OK) != 0)
    TEST_SKIP("%s not found: install python3 and python3-numpy", PYTHON);
  if (system(PYTHON " -c 'import numpy' >/dev/null 2>&1") != 0)
    TEST_SKIP("%s has no numpy: install python3-numpy", PYTHON);
  static dataset d;
  make_dataset(&d);
  char dir[] = "/tmp/faceri-metrics-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  CU_ASSERT_EQUAL_FATAL(write_inputs(dir, &d), 0);
  figures c = {0}, py = {0};
  fr_error err = {0};
  int rc = c_figures(dir, &d, &c, &err);
  if (rc)
    printf("\n    C metrics failed: %s", err.message);
  CU_ASSERT_EQUAL(rc, FR_OK);
  CU_ASSERT_EQUAL(python_figures(dir, &py), 0);
  int compared = 0, wrong = 0;
  for (int i = 0; i < c.n; i++) {
    const figure *f = find(&py, c.v[i].key);
    if (!f) {
      printf("\n    %s: missing from the NumPy output", c.v[i].key);
      wrong++;
      continue;
    }
    compared++;
    if (!same(c.v[i].value, f->value)) {
      if (wrong < 20)
        printf("\n    %s: C %.17g, NumPy %.17g", c.v[i].key, c.v[i].value, f->value);
      wrong++;
    }
  }
  CU_ASSERT_EQUAL(wrong, 0);
  CU_ASSERT(compared > 300);
  const figure *r1 = find(&c, "ident.cmc[0]"), *t20 = find(&c, "ident.tpir[2]"), *tpr = find(&c, "pairs.tpr_far[0]"),
               *pauc = find(&c, "edc_fmr.pauc_relative"), *skip = find(&c, "pairs.skipped");
  if (r1 && t20 && tpr && pauc && skip)
    printf("\n    %d figures agree with NumPy (%d differ): rank-1 %.4f, TPIR@FPIR=0.1 (rank 20) %.4f, "
           "pairs TPR@FAR=1e-3 %.4f (%g pairs skipped), EDC pAUC(20%%) relative %.4f",
           compared - wrong, wrong, r1->value, t20->value, tpr->value, skip->value, pauc->value);
  free(c.v);
  free(py.v);
  remove_dir(dir);
}

int main(void)
{
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("metrics vs NumPy", NULL, NULL);
  CU_add_test(s, "every metric against scripts/metrics_reference.py", test_against_numpy);
  return test_run_all();
}
