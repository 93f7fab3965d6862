#include "faceri/verification.h"

#include <math.h>
#include <stdlib.h>

static int compare_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double fr_threshold_at_false_rate(const double *sorted, int64_t n, double rate)
{
  /* rate * n can land just below the integer the caller meant (0.29 * 100 =
   * 28.999999999999996): the 1e-9 guard takes that as 29. */
  double allowed_d = floor(rate * (double)n + 1e-9);
  if (allowed_d >= (double)n)
    return -INFINITY;
  int64_t allowed = (int64_t)allowed_d;
  return sorted[n - 1 - allowed];
}

/* Number of sorted scores strictly above t. */
static int64_t count_above(const double *sorted, int64_t n, double t)
{
  int64_t lo = 0, hi = n; /* first score > t */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] > t)
      hi = mid;
    else
      lo = mid + 1;
  }
  return n - lo;
}

static int copy_sorted(const double *src, int64_t n, const char *what, double **out, fr_error *err)
{
  double *d = malloc((size_t)n * sizeof(double));
  if (!d)
    return fr_error_set(err, FR_ERR_NOMEM, "verification: out of memory for %lld %s scores", (long long)n, what);
  for (int64_t i = 0; i < n; i++) {
    if (isnan(src[i])) {
      free(d);
      return fr_error_set(err, FR_ERR_INVALID, "verification: %s score %lld is NaN", what, (long long)i);
    }
    d[i] = src[i];
  }
  qsort(d, (size_t)n, sizeof(double), compare_double);
  *out = d;
  return FR_OK;
}

static int check_sizes(int64_t ng, int64_t ni, fr_error *err)
{
  if (ng <= 0 || ni <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "verification needs genuine and impostor pairs (got %lld and %lld)",
                        (long long)ng, (long long)ni);
  return FR_OK;
}

int fr_verification_tpr_at_fars(const double *genuine, int64_t ng, const double *impostor, int64_t ni,
                                const double *fars, int n_far, double *tpr, double *thresholds, fr_error *err)
{
  int rc = check_sizes(ng, ni, err);
  if (rc)
    return rc;
  for (int k = 0; k < n_far; k++)
    if (!(fars[k] >= 0 && fars[k] <= 1))
      return fr_error_set(err, FR_ERR_INVALID, "verification: FAR %g (entry %d) is not in [0, 1]", fars[k], k);
  double *g = NULL, *im = NULL;
  if ((rc = copy_sorted(genuine, ng, "genuine", &g, err)) || (rc = copy_sorted(impostor, ni, "impostor", &im, err))) {
    free(g);
    return rc;
  }
  for (int k = 0; k < n_far; k++) {
    double t = fr_threshold_at_false_rate(im, ni, fars[k]);
    tpr[k] = (double)count_above(g, ng, t) / (double)ng;
    if (thresholds)
      thresholds[k] = t;
  }
  free(g);
  free(im);
  return FR_OK;
}

int fr_verification_from_scores(const double *genuine, int64_t ng, const double *impostor, int64_t ni,
                                fr_verification *out, fr_error *err)
{
  int rc = check_sizes(ng, ni, err);
  if (rc)
    return rc;
  double *g = NULL, *im = NULL;
  if ((rc = copy_sorted(genuine, ng, "genuine", &g, err)) || (rc = copy_sorted(impostor, ni, "impostor", &im, err))) {
    free(g);
    return rc;
  }
  double gs = 0, is = 0;
  for (int64_t i = 0; i < ng; i++)
    gs += genuine[i];
  for (int64_t i = 0; i < ni; i++)
    is += impostor[i];
  /* Sweep thresholds at every distinct score: below the threshold -> "different". */
  double best = 0, best_t = 0;
  int64_t gi = 0, ii = 0; /* counts of genuine / impostor scores <= t */
  while (gi < ng || ii < ni) {
    double t = gi < ng && (ii >= ni || g[gi] <= im[ii]) ? g[gi] : im[ii];
    while (gi < ng && g[gi] <= t)
      gi++;
    while (ii < ni && im[ii] <= t)
      ii++;
    double acc = 0.5 * ((double)(ng - gi) / (double)ng + (double)ii / (double)ni);
    if (acc > best) {
      best = acc;
      best_t = t;
    }
  }
  out->genuine = ng;
  out->impostor = ni;
  out->accuracy = best;
  out->threshold = best_t;
  out->tpr_at_far_1e3 = (double)count_above(g, ng, fr_threshold_at_false_rate(im, ni, 1e-3)) / (double)ng;
  out->tpr_at_far_1e4 = (double)count_above(g, ng, fr_threshold_at_false_rate(im, ni, 1e-4)) / (double)ng;
  out->genuine_mean = gs / (double)ng;
  out->impostor_mean = is / (double)ni;
  free(g);
  free(im);
  return FR_OK;
}

int fr_verification_all_pairs(const float *emb, const int *labels, int n, int dim, fr_verification *out,
                              fr_error *err)
{
  if (n < 2 || dim <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "verification: need at least 2 items and a positive dimension (got %d, %d)",
                        n, dim);
  int64_t ng = 0, ni = 0;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      if (labels[i] == labels[j])
        ng++;
      else
        ni++;
    }
  double *g = malloc((size_t)(ng ? ng : 1) * sizeof(double)), *im = malloc((size_t)(ni ? ni : 1) * sizeof(double));
  if (!g || !im) {
    free(g);
    free(im);
    return fr_error_set(err, FR_ERR_NOMEM, "verification: out of memory for %d items", n);
  }
  int64_t a = 0, b = 0;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      double s = 0;
      for (int k = 0; k < dim; k++)
        s += (double)emb[(size_t)i * dim + k] * emb[(size_t)j * dim + k];
      if (labels[i] == labels[j])
        g[a++] = s;
      else
        im[b++] = s;
    }
  int rc = fr_verification_from_scores(g, ng, im, ni, out, err);
  free(g);
  free(im);
  return rc;
}
