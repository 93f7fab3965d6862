/* The recognizability index on the CPU, in double: the reference the shaders are
 * tested against, and what the commands use on host embeddings (conventions in ri.h). */
#include "faceri/ri.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Clamp that keeps NaN (fmin/fmax would turn NaN into the bound). */
static double clamp_unit(double c)
{
  if (c > 1.0)
    return 1.0;
  if (c < -1.0)
    return -1.0;
  return c;
}

static double norm_of(const float *a, int dim)
{
  double ss = 0;
  for (int d = 0; d < dim; d++)
    ss += (double)a[d] * a[d];
  double n = sqrt(ss);
  return n > FR_RI_NORM_FLOOR || isnan(n) ? n : FR_RI_NORM_FLOOR;
}

static double dot(const float *a, const float *b, int dim)
{
  double s = 0;
  for (int d = 0; d < dim; d++)
    s += (double)a[d] * b[d];
  return s;
}

double fr_ri_cosine(const float *a, const float *b, int dim)
{
  return clamp_unit(dot(a, b, dim) / (norm_of(a, dim) * norm_of(b, dim)));
}

double fr_ri_xi(double d_ui, double d_n, double d_p) { return d_ui * d_n / (d_p + FR_RI_EPS); }

void fr_ri_ui_distances(const float *v, int n, int dim, const float *centre, double *d_ui)
{
  for (int i = 0; i < n; i++)
    d_ui[i] = 1.0 - fr_ri_cosine(v + (size_t)i * dim, centre, dim);
}

int fr_ri_index(const float *v, int n, int dim, const float *w, int classes, const int32_t *labels,
                const float *centre, double *d_p, double *d_n, double *d_ui, double *xi, int *nearest)
{
  int extreme = 0;
  for (int i = 0; i < n; i++) {
    const float *vi = v + (size_t)i * dim;
    int y = labels[i];
    double p = NAN, neg = NAN, u = centre ? 1.0 - fr_ri_cosine(vi, centre, dim) : NAN;
    int near = -1;
    if (y >= 0 && y < classes) {
      p = 1.0 - fr_ri_cosine(vi, w + (size_t)y * dim, dim);
      double best = -INFINITY; /* the masked true class; also the empty max when C = 1 */
      for (int j = 0; j < classes; j++) {
        if (j == y)
          continue;
        double c = fr_ri_cosine(vi, w + (size_t)j * dim, dim);
        if (isnan(c)) {
          best = NAN;
          near = j;
          break;
        }
        if (c > best) {
          best = c;
          near = j;
        }
      }
      neg = 1.0 - clamp_unit(best);
      extreme += p < FR_RI_EXTREME_DP;
    }
    if (d_p)
      d_p[i] = p;
    if (d_n)
      d_n[i] = neg;
    if (d_ui)
      d_ui[i] = u;
    if (xi)
      xi[i] = fr_ri_xi(u, neg, p);
    if (nearest)
      nearest[i] = near;
  }
  return extreme;
}

void fr_ri_project(const float *v, int n, int dim, const float *centre, double *out)
{
  double cn = sqrt(dot(centre, centre, dim));
  for (int i = 0; i < n; i++) {
    const float *vi = v + (size_t)i * dim;
    double k = cn > FR_RI_NORM_FLOOR ? dot(vi, centre, dim) / (cn * cn) : 0.0;
    for (int d = 0; d < dim; d++)
      out[(size_t)i * dim + d] = (double)vi[d] - k * centre[d];
  }
}

int fr_ri_ui_centre(const float *emb, int n, int dim, float *centre, double *resultant, fr_error *err)
{
  if (n <= 0 || dim <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "UI centre: no embeddings (%d rows of %d)", n, dim);
  double *sum = calloc((size_t)dim, sizeof(double));
  if (!sum)
    return fr_error_set(err, FR_ERR_NOMEM, "UI centre: out of memory");
  for (int i = 0; i < n; i++) {
    const float *r = emb + (size_t)i * dim;
    double len = sqrt(dot(r, r, dim));
    if (!(len > FR_RI_NORM_FLOOR) || !isfinite(len)) {
      free(sum);
      return fr_error_set(err, FR_ERR_INVALID, "UI centre: embedding %d has length %g (zero or not finite)", i, len);
    }
    for (int d = 0; d < dim; d++)
      sum[d] += r[d] / len;
  }
  double ss = 0;
  for (int d = 0; d < dim; d++) {
    sum[d] /= n;
    ss += sum[d] * sum[d];
  }
  double len = sqrt(ss);
  if (resultant)
    *resultant = len;
  if (!(len > 1e-6)) {
    free(sum);
    return fr_error_set(err, FR_ERR_INVALID,
                        "UI centre: the %d embeddings cancel out (mean length %g): no cluster to take a centre of", n,
                        len);
  }
  for (int d = 0; d < dim; d++)
    centre[d] = (float)(sum[d] / len);
  free(sum);
  return FR_OK;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double percentile(const double *sorted, int n, double q)
{
  double pos = q * (n - 1);
  int lo = (int)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

int fr_ri_stats_of(const double *x, int n, fr_ri_stats *out, fr_error *err)
{
  fr_ri_stats s = {.mean = NAN, .std = NAN, .min = NAN, .p5 = NAN, .p25 = NAN, .p50 = NAN, .p75 = NAN,
                   .p95 = NAN, .max = NAN};
  double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  if (!v)
    return fr_error_set(err, FR_ERR_NOMEM, "statistics of %d values: out of memory", n);
  int m = 0;
  for (int i = 0; i < n; i++)
    if (isfinite(x[i]))
      v[m++] = x[i];
  s.n = m;
  if (m > 0) {
    qsort(v, (size_t)m, sizeof(double), cmp_double);
    double sum = 0, ss = 0;
    for (int i = 0; i < m; i++)
      sum += v[i];
    s.mean = sum / m;
    for (int i = 0; i < m; i++)
      ss += (v[i] - s.mean) * (v[i] - s.mean);
    s.std = m > 1 ? sqrt(ss / (m - 1)) : 0.0;
    s.min = v[0];
    s.max = v[m - 1];
    s.p5 = percentile(v, m, 0.05);
    s.p25 = percentile(v, m, 0.25);
    s.p50 = percentile(v, m, 0.50);
    s.p75 = percentile(v, m, 0.75);
    s.p95 = percentile(v, m, 0.95);
  }
  free(v);
  *out = s;
  return FR_OK;
}

double fr_ri_auc(const double *pos, int n_pos, const double *neg, int n_neg)
{
  if (n_pos <= 0 || n_neg <= 0)
    return NAN;
  /* O(n_pos n_neg): the samples here are thousands, not millions. */
  double u = 0;
  for (int i = 0; i < n_pos; i++)
    for (int j = 0; j < n_neg; j++)
      u += pos[i] > neg[j] ? 1.0 : pos[i] == neg[j] ? 0.5 : 0.0;
  return u / ((double)n_pos * n_neg);
}
