/* Error-versus-discard curves for a quality measure: the ISO/IEC 29794-1 EDC
 * (threshold fixed once) and the FIQA-paper ERC (threshold recomputed per step). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/metrics.h"
#include "faceri/verification.h"

/* Unknown quality sorts first, so it is discarded first. */
static double quality_key(double q) { return isnan(q) ? -INFINITY : q; }

int fr_pair_quality_min(const double *item_quality, int64_t n_items, const int64_t *a, const int64_t *b,
                        int64_t n_pairs, double *pair_quality, fr_error *err)
{
  for (int64_t i = 0; i < n_pairs; i++) {
    if (a[i] < 0 || a[i] >= n_items || b[i] < 0 || b[i] >= n_items)
      return fr_error_set(err, FR_ERR_INVALID, "pair quality: pair %lld refers to item %lld or %lld, outside 0..%lld",
                          (long long)i, (long long)a[i], (long long)b[i], (long long)n_items - 1);
    double qa = quality_key(item_quality[a[i]]), qb = quality_key(item_quality[b[i]]);
    pair_quality[i] = qa < qb ? qa : qb;
  }
  return FR_OK;
}

static int compare_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct keyed {
  double key;
  int64_t index;
} keyed;

/* By key, then by index: a stable order that a NumPy argsort(kind="stable") reproduces. */
static int compare_keyed(const void *a, const void *b)
{
  const keyed *x = a, *y = b;
  if (x->key != y->key)
    return (x->key > y->key) - (x->key < y->key);
  return (x->index > y->index) - (x->index < y->index);
}

static int check_scores(const double *s, int64_t n, const char *what, fr_error *err)
{
  for (int64_t i = 0; i < n; i++)
    if (isnan(s[i]))
      return fr_error_set(err, FR_ERR_INVALID, "%s score %lld is NaN", what, (long long)i);
  return FR_OK;
}

static int sorted_copy(const double *s, int64_t n, double **out, fr_error *err)
{
  *out = malloc((size_t)n * sizeof(double));
  if (!*out)
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory for %lld scores", (long long)n);
  memcpy(*out, s, (size_t)n * sizeof(double));
  qsort(*out, (size_t)n, sizeof(double), compare_double);
  return FR_OK;
}

static int edc_threshold(const double *genuine, int64_t ng, const double *impostor, int64_t ni,
                         const fr_edc_options *o, double *t, fr_error *err)
{
  double *sorted = NULL;
  int rc;
  switch (o->mode) {
  case FR_EDC_GIVEN:
    if (isnan(o->value))
      return fr_error_set(err, FR_ERR_INVALID, "EDC: the given threshold is NaN");
    *t = o->value;
    return FR_OK;
  case FR_EDC_AT_FMR: {
    double fmr = o->value == 0 ? 1e-3 : o->value;
    if (!(fmr >= 0 && fmr <= 1))
      return fr_error_set(err, FR_ERR_INVALID, "EDC: FMR %g is not in [0, 1]", fmr);
    if (ni <= 0 || !impostor)
      return fr_error_set(err, FR_ERR_INVALID, "EDC: a threshold at FMR %g needs impostor scores (got %lld)", fmr,
                          (long long)ni);
    if ((rc = check_scores(impostor, ni, "EDC: impostor", err)) || (rc = sorted_copy(impostor, ni, &sorted, err)))
      return rc;
    *t = fr_threshold_at_false_rate(sorted, ni, fmr);
    break;
  }
  case FR_EDC_AT_FNMR: {
    if (!(o->value >= 0 && o->value <= 1))
      return fr_error_set(err, FR_ERR_INVALID, "EDC: starting FNMR %g is not in [0, 1]", o->value);
    if ((rc = sorted_copy(genuine, ng, &sorted, err)))
      return rc;
    /* At most floor(value*n) genuine scores may be <= t: t sits just below the
     * next genuine score, i.e. at the largest score strictly below it. */
    double k_d = floor(o->value * (double)ng + 1e-9);
    if (k_d >= (double)ng) {
      *t = INFINITY;
    } else {
      int64_t k = (int64_t)k_d, i = k - 1;
      while (i >= 0 && sorted[i] == sorted[k])
        i--;
      *t = i >= 0 ? sorted[i] : -INFINITY;
    }
    break;
  }
  default:
    return fr_error_set(err, FR_ERR_INVALID, "EDC: unknown threshold mode %d", (int)o->mode);
  }
  free(sorted);
  return FR_OK;
}

/* Trapezoid area under (x, y) from x[0] to limit; flat past the last point. */
static double partial_area(const double *x, const double *y, int64_t n, double limit)
{
  double area = 0;
  for (int64_t k = 0; k + 1 < n; k++) {
    if (x[k + 1] <= limit) {
      area += (x[k + 1] - x[k]) * (y[k] + y[k + 1]) / 2;
      continue;
    }
    double y_at = y[k] + (y[k + 1] - y[k]) * (limit - x[k]) / (x[k + 1] - x[k]);
    return area + (limit - x[k]) * (y[k] + y_at) / 2;
  }
  return area + (limit - x[n - 1]) * y[n - 1];
}

void fr_edc_free(fr_edc *edc)
{
  if (!edc)
    return;
  free(edc->discard);
  free(edc->fnmr);
  free(edc->cut);
  memset(edc, 0, sizeof(*edc));
}

int fr_edc_compute(const double *genuine, const double *genuine_quality, int64_t ng, const double *impostor,
                   int64_t ni, const fr_edc_options *opts, fr_edc *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  fr_edc_options o = opts ? *opts : (fr_edc_options){0};
  double limit = o.pauc_limit == 0 ? 0.2 : o.pauc_limit;
  if (ng <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "EDC needs genuine pairs (got %lld)", (long long)ng);
  if (!(limit > 0 && limit <= 1))
    return fr_error_set(err, FR_ERR_INVALID, "EDC: pAUC limit %g is not in (0, 1]", limit);
  int rc;
  if ((rc = check_scores(genuine, ng, "EDC: genuine", err)))
    return rc;
  double t = 0.0; /* set by edc_threshold on success */
  if ((rc = edc_threshold(genuine, ng, impostor, ni, &o, &t, err)))
    return rc;

  keyed *order = malloc((size_t)ng * sizeof(keyed));
  out->discard = malloc((size_t)(ng + 1) * sizeof(double));
  out->fnmr = malloc((size_t)(ng + 1) * sizeof(double));
  out->cut = malloc((size_t)(ng + 1) * sizeof(double));
  if (!order || !out->discard || !out->fnmr || !out->cut) {
    free(order);
    fr_edc_free(out);
    return fr_error_set(err, FR_ERR_NOMEM, "EDC: out of memory for %lld genuine pairs", (long long)ng);
  }
  int64_t fails = 0;
  for (int64_t i = 0; i < ng; i++) {
    order[i] = (keyed){quality_key(genuine_quality[i]), i};
    fails += genuine[i] <= t;
  }
  qsort(order, (size_t)ng, sizeof(keyed), compare_keyed);
  int64_t n = 0;
  out->discard[n] = 0;
  out->fnmr[n] = (double)fails / (double)ng;
  out->cut[n++] = NAN;
  for (int64_t i = 0; i < ng;) {
    double level = order[i].key;
    int64_t j = i;
    for (; j < ng && order[j].key == level; j++)
      fails -= genuine[order[j].index] <= t;
    if (j == ng)
      break; /* nothing left: FNMR undefined */
    out->discard[n] = (double)j / (double)ng;
    out->fnmr[n] = (double)fails / (double)(ng - j);
    out->cut[n++] = level;
    i = j;
  }
  free(order);
  out->threshold = t;
  out->n_genuine = ng;
  out->n_impostor = o.mode == FR_EDC_AT_FMR ? ni : 0;
  out->n_points = n;
  out->pauc_limit = limit;
  out->pauc = partial_area(out->discard, out->fnmr, n, limit);
  out->pauc_relative = out->fnmr[0] > 0 ? out->pauc / (out->fnmr[0] * limit) : NAN;
  return FR_OK;
}

void fr_erc_free(fr_erc *erc)
{
  if (!erc)
    return;
  free(erc->fmrs);
  free(erc->discard);
  free(erc->fnmr);
  free(erc->threshold);
  free(erc->genuine_left);
  free(erc->impostor_left);
  memset(erc, 0, sizeof(*erc));
}

static int compare_keyed_desc(const void *a, const void *b) { return compare_keyed(b, a); }

int fr_erc_compute(const double *genuine, const double *genuine_quality, int64_t ng, const double *impostor,
                   const double *impostor_quality, int64_t ni, const fr_erc_options *opts, fr_erc *out,
                   fr_error *err)
{
  static const double default_fmrs[3] = {1e-2, 1e-3, 1e-4};
  memset(out, 0, sizeof(*out));
  fr_erc_options o = opts ? *opts : (fr_erc_options){0};
  double step = o.step == 0 ? 0.05 : o.step, max_discard = o.max_discard == 0 ? 0.95 : o.max_discard;
  const double *fmrs = o.fmrs ? o.fmrs : default_fmrs;
  int n_fmr = o.fmrs ? o.n_fmr : 3;
  if (ng <= 0 || ni <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "ERC needs genuine and impostor pairs (got %lld and %lld)",
                        (long long)ng, (long long)ni);
  if (!(step > 0 && step <= 1) || !(max_discard >= 0 && max_discard < 1))
    return fr_error_set(err, FR_ERR_INVALID, "ERC: step %g must be in (0, 1] and maximum discard %g in [0, 1)", step,
                        max_discard);
  if (n_fmr < 1)
    return fr_error_set(err, FR_ERR_INVALID, "ERC: no FMR values (%d)", n_fmr);
  for (int f = 0; f < n_fmr; f++)
    if (!(fmrs[f] >= 0 && fmrs[f] <= 1))
      return fr_error_set(err, FR_ERR_INVALID, "ERC: FMR %g (entry %d) is not in [0, 1]", fmrs[f], f);
  int rc;
  if ((rc = check_scores(genuine, ng, "ERC: genuine", err)) || (rc = check_scores(impostor, ni, "ERC: impostor", err)))
    return rc;

  int n_steps = 0;
  while ((double)n_steps * step <= max_discard + 1e-9)
    n_steps++;
  int64_t n = ng + ni;
  keyed *order = malloc((size_t)n * sizeof(keyed));
  int64_t *position = malloc((size_t)n * sizeof(int64_t));
  keyed *imp = malloc((size_t)ni * sizeof(keyed)); /* key = score, index = position in quality order */
  out->fmrs = malloc((size_t)n_fmr * sizeof(double));
  out->discard = malloc((size_t)n_steps * sizeof(double));
  out->fnmr = malloc((size_t)n_steps * (size_t)n_fmr * sizeof(double));
  out->threshold = malloc((size_t)n_steps * (size_t)n_fmr * sizeof(double));
  out->genuine_left = malloc((size_t)n_steps * sizeof(int64_t));
  out->impostor_left = malloc((size_t)n_steps * sizeof(int64_t));
  if (!order || !position || !imp || !out->fmrs || !out->discard || !out->fnmr || !out->threshold ||
      !out->genuine_left || !out->impostor_left) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "ERC: out of memory for %lld pairs", (long long)n);
    goto done;
  }
  out->n_steps = n_steps;
  out->n_fmr = n_fmr;
  memcpy(out->fmrs, fmrs, (size_t)n_fmr * sizeof(double));
  for (int64_t i = 0; i < ng; i++)
    order[i] = (keyed){quality_key(genuine_quality[i]), i};
  for (int64_t i = 0; i < ni; i++)
    order[ng + i] = (keyed){quality_key(impostor_quality[i]), ng + i};
  qsort(order, (size_t)n, sizeof(keyed), compare_keyed);
  for (int64_t k = 0; k < n; k++)
    position[order[k].index] = k;
  for (int64_t i = 0; i < ni; i++)
    imp[i] = (keyed){impostor[i], position[ng + i]};
  /* Highest score first: a threshold for a small FMR is found after a few entries. */
  qsort(imp, (size_t)ni, sizeof(keyed), compare_keyed_desc);

  for (int s = 0; s < n_steps; s++) {
    double nominal = (double)s * step;
    int64_t dropped = (int64_t)floor(nominal * (double)n + 1e-9);
    if (dropped > n)
      dropped = n;
    int64_t g_left = 0, i_left = 0;
    for (int64_t i = 0; i < ng; i++)
      g_left += position[i] >= dropped;
    i_left = (n - dropped) - g_left;
    out->discard[s] = nominal;
    out->genuine_left[s] = g_left;
    out->impostor_left[s] = i_left;
    for (int f = 0; f < n_fmr; f++) {
      double *t = &out->threshold[s * n_fmr + f], *fnmr = &out->fnmr[s * n_fmr + f];
      if (g_left == 0 || i_left == 0) {
        *t = *fnmr = NAN;
        continue;
      }
      double allowed = floor(fmrs[f] * (double)i_left + 1e-9);
      *t = -INFINITY;
      if (allowed < (double)i_left) {
        int64_t want = (int64_t)allowed + 1, seen = 0;
        for (int64_t i = 0; i < ni; i++)
          if (imp[i].index >= dropped && ++seen == want) {
            *t = imp[i].key;
            break;
          }
      }
      int64_t fails = 0;
      for (int64_t i = 0; i < ng; i++)
        fails += position[i] >= dropped && genuine[i] <= *t;
      *fnmr = (double)fails / (double)g_left;
    }
  }
  rc = FR_OK;
done:
  free(order);
  free(position);
  free(imp);
  if (rc)
    fr_erc_free(out);
  return rc;
}
