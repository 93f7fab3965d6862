/* Numeric helpers of the kernel tests (test_numeric.h). */
#include "test_numeric.h"

#include <math.h>
#include <stdlib.h>

double test_frand(unsigned *state)
{
  *state = *state * 1664525u + 1013904223u;
  return (double)(float)(((float)(*state >> 8) / 16777216.0f) * 2.4f - 1.2f);
}

double *test_random_d(unsigned *state, size_t n)
{
  double *a = malloc((n ? n : 1) * sizeof(double));
  for (size_t i = 0; a && i < n; i++)
    a[i] = test_frand(state);
  return a;
}

double test_rel_err_d(const double *got, const double *want, size_t n)
{
  double max_err = 0, max_ref = 1e-12;
  for (size_t i = 0; i < n; i++) {
    double e = fabs(got[i] - want[i]);
    if (!(e <= max_err))
      max_err = isnan(e) ? INFINITY : e;
    if (fabs(want[i]) > max_ref)
      max_ref = fabs(want[i]);
  }
  return max_err / max_ref;
}
