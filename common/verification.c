#include "faceri/verification.h"

#include <math.h>
#include <stdlib.h>

static int compare_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* TPR at the threshold that accepts at most far * n_impostor impostor pairs. */
static double tpr_at_far(const double *gen_sorted, int64_t ng, const double *imp_sorted, int64_t ni, double far)
{
  int64_t allowed = (int64_t)floor(far * (double)ni);
  /* Threshold t = the (allowed+1)-th largest impostor score: scores > t are accepted. */
  double t = imp_sorted[ni - 1 - allowed];
  int64_t lo = 0, hi = ng; /* first genuine score > t */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (gen_sorted[mid] > t)
      hi = mid;
    else
      lo = mid + 1;
  }
  return (double)(ng - lo) / (double)ng;
}

int fr_verification_from_scores(const double *genuine, int64_t ng, const double *impostor, int64_t ni,
                                fr_verification *out, fr_error *err)
{
  if (ng <= 0 || ni <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "verification needs genuine and impostor pairs (got %lld and %lld)",
                        (long long)ng, (long long)ni);
  double *g = malloc((size_t)ng * sizeof(double)), *im = malloc((size_t)ni * sizeof(double));
  if (!g || !im) {
    free(g);
    free(im);
    return fr_error_set(err, FR_ERR_NOMEM, "verification: out of memory for %lld pairs", (long long)(ng + ni));
  }
  double gs = 0, is = 0;
  for (int64_t i = 0; i < ng; i++)
    gs += g[i] = genuine[i];
  for (int64_t i = 0; i < ni; i++)
    is += im[i] = impostor[i];
  qsort(g, (size_t)ng, sizeof(double), compare_double);
  qsort(im, (size_t)ni, sizeof(double), compare_double);
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
  out->tpr_at_far_1e3 = tpr_at_far(g, ng, im, ni, 1e-3);
  out->tpr_at_far_1e4 = tpr_at_far(g, ng, im, ni, 1e-4);
  out->genuine_mean = gs / (double)ng;
  out->impostor_mean = is / (double)ni;
  free(g);
  free(im);
  return FR_OK;
}

int fr_verification_all_pairs(const float *emb, const int *labels, int n, int dim, fr_verification *out,
                              fr_error *err)
{
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
