/* The recognizability index (ri.h): the double reference on hand-computed cases (the
 * arithmetic is in the comments), the edge cases the paper leaves open (d_P -> 0, the
 * true class as the nearest prototype, identical vectors, C = 1, unlabelled rows,
 * NaN), the UI centre and the statistics; then the device kernels against the
 * reference (relative error <= 1e-4: max abs error / max abs reference, per output)
 * and no validation messages. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/ri.h"
#include "test_util.h"

#define CLOSE(got, want, tol) CU_ASSERT(fabs((got) - (want)) <= (tol) * fmax(1.0, fabs(want)))

static fr_vk_context *ctx;
static fr_ri_device *ridev;

/* ---------------- CPU reference, by hand ---------------- */

static void test_hand_general(void)
{
  /* v = (3, 4), |v| = 5, v^ = (0.6, 0.8). Prototypes (not unit length):
   *   w0 = (1, 0): cos = 3/5 = 0.6                  (the true class, y = 0)
   *   w1 = (0, 2): cos = 8/(5*2) = 0.8
   *   w2 = (1, 1): cos = 7/(5*sqrt 2) = 0.98994949...
   * d_P = 1 - 0.6 = 0.4; d_N = 1 - 0.98994949 = 0.01005051;
   * centre (1, 0): d_UI = 1 - 0.6 = 0.4; xi = 0.4 * 0.01005051 / (0.4 + 1e-7). */
  float v[2] = {3, 4}, w[6] = {1, 0, 0, 2, 1, 1}, c[2] = {1, 0};
  int32_t y = 0;
  double dp, dn, du, xi;
  int near;
  CU_ASSERT_EQUAL(fr_ri_index(v, 1, 2, w, 3, &y, c, &dp, &dn, &du, &xi, &near), 0);
  double dn_want = 1.0 - 7.0 / (5.0 * sqrt(2.0));
  CLOSE(dp, 0.4, 1e-12);
  CLOSE(dn, dn_want, 1e-12);
  CLOSE(du, 0.4, 1e-12);
  CLOSE(xi, 0.4 * dn_want / (0.4 + 1e-7), 1e-12);
  CU_ASSERT_EQUAL(near, 2);
  CLOSE(fr_ri_xi(0.4, dn_want, 0.4), xi, 1e-15);
}

static void test_hand_true_class_nearest(void)
{
  /* v^ = (0.6, 0.8); w0 = (0, 1): cos 0.8; w1 = (1, 0): cos 0.6; centre (-1, 0): cos -0.6.
   * y = 0 (the nearest prototype is the true one): d_P = 0.2; the mask leaves w1, so
   *   d_N = 1 - 0.6 = 0.4 (unmasked it would be 1 - 0.8 = 0.2); d_UI = 1.6;
   *   xi = 1.6 * 0.4 / 0.2000001 = 3.19999840...
   * y = 1: d_P = 0.4, d_N = 0.2, xi = 1.6 * 0.2 / 0.4000001 = 0.79999980... */
  float v[4] = {0.6f, 0.8f, 0.6f, 0.8f}, w[4] = {0, 1, 1, 0}, c[2] = {-1, 0};
  int32_t y[2] = {0, 1};
  double dp[2], dn[2], du[2], xi[2];
  int near[2];
  fr_ri_index(v, 2, 2, w, 2, y, c, dp, dn, du, xi, near);
  /* 0.6f, 0.8f are not exact: |v| = 1 within 3e-8, so 1e-6 is the tolerance */
  CLOSE(dp[0], 0.2, 1e-6);
  CLOSE(dn[0], 0.4, 1e-6);
  CLOSE(du[0], 1.6, 1e-6);
  CLOSE(xi[0], 1.6 * 0.4 / 0.2000001, 1e-6);
  CU_ASSERT_EQUAL(near[0], 1);
  CLOSE(dp[1], 0.4, 1e-6);
  CLOSE(dn[1], 0.2, 1e-6);
  CLOSE(xi[1], 1.6 * 0.2 / 0.4000001, 1e-6);
  CU_ASSERT_EQUAL(near[1], 0);
}

static void test_hand_dp_zero(void)
{
  /* v = w_y = (1, 0): cos = 1 exactly, d_P = 0. w1 = (0, 1): d_N = 1; w2 = (-1, 0): cos -1,
   * not the max. centre (0, 1): d_UI = 1. xi = 1 * 1 / (0 + 1e-7) = 1e7: the largest xi
   * with d_N = d_UI = 1; the cap over all inputs is 2 * 2 / 1e-7 = 4e7 (cosines clamped). */
  float v[2] = {1, 0}, w[6] = {1, 0, 0, 1, -1, 0}, c[2] = {0, 1};
  int32_t y = 0;
  double dp, dn, du, xi;
  CU_ASSERT_EQUAL(fr_ri_index(v, 1, 2, w, 3, &y, c, &dp, &dn, &du, &xi, NULL), 1); /* one extreme row */
  CU_ASSERT_EQUAL(dp, 0.0);
  CLOSE(dn, 1.0, 1e-15);
  CLOSE(du, 1.0, 1e-15);
  CLOSE(xi, 1e7, 1e-12);
  CU_ASSERT(isfinite(xi));
  /* The cap: v opposite to the UI centre and to every negative: d_UI = 2, d_N = 2. */
  float v2[2] = {1, 0}, w2[4] = {1, 0, -1, 0}, c2[2] = {-1, 0};
  fr_ri_index(v2, 1, 2, w2, 2, &y, c2, &dp, &dn, &du, &xi, NULL);
  CLOSE(xi, 4e7, 1e-12);
  /* d_P just above 0: (1, 1e-3) against (1, 0): cos = 1/sqrt(1 + 1e-6), d_P = 5e-7 - ..., so
   * xi = d_UI d_N / (~5e-7 + 1e-7): the epsilon is a sixth of the denominator here. */
  float v3[2] = {1, 1e-3f};
  fr_ri_index(v3, 1, 2, w, 3, &y, c, &dp, &dn, &du, &xi, NULL);
  double cy = 1.0 / sqrt(1.0 + (double)1e-3f * 1e-3f);
  CLOSE(dp, 1.0 - cy, 1e-6);
  CLOSE(xi, du * dn / (1.0 - cy + 1e-7), 1e-9);
}

static void test_hand_identical(void)
{
  /* v = w_y = centre = (1, 2, 2): |v| = 3, <v, v> = 9, cos = 9 / 9 = 1 exactly.
   * d_P = 0, d_UI = 0: xi = 0 * d_N / 1e-7 = 0 (on the UI centre beats on the prototype).
   * w1 = (2, 2, 1): cos = (2 + 4 + 2) / 9 = 8/9, d_N = 1/9. */
  float v[3] = {1, 2, 2}, w[6] = {1, 2, 2, 2, 2, 1};
  int32_t y = 0;
  double dp, dn, du, xi;
  fr_ri_index(v, 1, 3, w, 2, &y, v, &dp, &dn, &du, &xi, NULL);
  CU_ASSERT_EQUAL(dp, 0.0);
  CU_ASSERT_EQUAL(du, 0.0);
  CLOSE(dn, 1.0 / 9.0, 1e-15);
  CU_ASSERT_EQUAL(xi, 0.0);
  /* identical to a negative prototype: w1 = v, y = 0 = (2, 2, 1): d_N = 0, xi = 0. */
  float w2[6] = {2, 2, 1, 1, 2, 2}, c[3] = {1, 0, 0};
  fr_ri_index(v, 1, 3, w2, 2, &y, c, &dp, &dn, &du, &xi, NULL);
  CU_ASSERT_EQUAL(dn, 0.0);
  CLOSE(dp, 1.0 / 9.0, 1e-15);
  CU_ASSERT_EQUAL(xi, 0.0);
}

static void test_hand_one_class(void)
{
  /* C = 1: the masked max runs over no class: -inf, clamped to -1, d_N = 2.
   * v = (1, 0), w0 = (0, 1): d_P = 1; centre (0, 1): d_UI = 1; xi = 1 * 2 / (1 + 1e-7). */
  float v[2] = {1, 0}, w[2] = {0, 1}, c[2] = {0, 1};
  int32_t y = 0;
  double dp, dn, du, xi;
  int near;
  fr_ri_index(v, 1, 2, w, 1, &y, c, &dp, &dn, &du, &xi, &near);
  CLOSE(dp, 1.0, 1e-15);
  CU_ASSERT_EQUAL(dn, 2.0);
  CLOSE(xi, 2.0 / (1.0 + 1e-7), 1e-15);
  CU_ASSERT_EQUAL(near, -1);
}

static void test_hand_unlabelled_zero_nan(void)
{
  float w[4] = {1, 0, 0, 1}, c[2] = {0, 1};
  double dp[4], dn[4], du[4], xi[4];
  /* row 0: label -1 (unlabelled): d_P, d_N, xi NaN; d_UI = 1 - cos((1,0),(0,1)) = 1.
   * row 1: label 2 >= C: the same.
   * row 2: zero vector: every cosine is 0 / 1e-12 = 0: d_P = d_N = d_UI = 1, xi = 1/(1+1e-7).
   * row 3: NaN in v: everything NaN. */
  float v[8] = {1, 0, 1, 0, 0, 0, NAN, 0};
  int32_t y[4] = {-1, 2, 0, 0};
  fr_ri_index(v, 4, 2, w, 2, y, c, dp, dn, du, xi, NULL);
  for (int i = 0; i < 2; i++) {
    CU_ASSERT(isnan(dp[i]) && isnan(dn[i]) && isnan(xi[i]));
    CLOSE(du[i], 1.0, 1e-15);
  }
  CLOSE(dp[2], 1.0, 1e-15);
  CLOSE(dn[2], 1.0, 1e-15);
  CLOSE(du[2], 1.0, 1e-15);
  CLOSE(xi[2], 1.0 / (1.0 + 1e-7), 1e-15);
  CU_ASSERT(isnan(dp[3]) && isnan(dn[3]) && isnan(du[3]) && isnan(xi[3]));
  /* a NaN negative prototype makes d_N NaN (not silently skipped); d_P stays finite */
  float wn[4] = {1, 0, NAN, 1}, v1[2] = {1, 0};
  int32_t y0 = 0;
  fr_ri_index(v1, 1, 2, wn, 2, &y0, c, dp, dn, du, xi, NULL);
  CU_ASSERT_EQUAL(dp[0], 0.0);
  CU_ASSERT(isnan(dn[0]) && isnan(xi[0]));
  /* no centre: d_UI and xi NaN */
  fr_ri_index(v1, 1, 2, w, 2, &y0, NULL, dp, dn, du, xi, NULL);
  CU_ASSERT(isnan(du[0]) && isnan(xi[0]) && dn[0] == 1.0);
}

static void test_hand_projection(void)
{
  /* v = (3, 4); centre (2, 0) (not unit: c^ = (1, 0)): <v, c^> = 3, v' = (3, 4) - 3 (1, 0) = (0, 4).
   * centre (0.6, 0.8) = v^: <v, c^> = 5, v' = (3, 4) - 5 (0.6, 0.8) = (0, 0).
   * zero centre: v unchanged. v' is orthogonal to the centre in every case. */
  float v[2] = {3, 4}, c1[2] = {2, 0}, c2[2] = {0.6f, 0.8f}, c0[2] = {0, 0};
  double o[2];
  fr_ri_project(v, 1, 2, c1, o);
  CLOSE(o[0], 0.0, 1e-15);
  CLOSE(o[1], 4.0, 1e-15);
  fr_ri_project(v, 1, 2, c2, o);
  CU_ASSERT(fabs(o[0]) < 1e-6 && fabs(o[1]) < 1e-6);
  fr_ri_project(v, 1, 2, c0, o);
  CU_ASSERT(o[0] == 3.0 && o[1] == 4.0);
}

static void test_ui_centre(void)
{
  /* rows (2, 0) and (0, 3) normalise to (1, 0), (0, 1); mean (0.5, 0.5), length sqrt(0.5);
   * centre (1/sqrt 2, 1/sqrt 2), resultant 0.70710678. */
  float e[4] = {2, 0, 0, 3}, c[2];
  double res;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_ri_ui_centre(e, 2, 2, c, &res, &err), FR_OK);
  CLOSE(c[0], M_SQRT1_2, 1e-7);
  CLOSE(c[1], M_SQRT1_2, 1e-7);
  CLOSE(res, M_SQRT1_2, 1e-12);
  /* (1, 0) and (-1, 0) cancel: no centre */
  float bad[4] = {1, 0, -1, 0};
  CU_ASSERT_EQUAL(fr_ri_ui_centre(bad, 2, 2, c, &res, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "cancel"));
  float nanrow[4] = {1, 0, NAN, 1};
  CU_ASSERT_EQUAL(fr_ri_ui_centre(nanrow, 2, 2, c, &res, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "embedding 1"));
  float zero[2] = {0, 0};
  CU_ASSERT_EQUAL(fr_ri_ui_centre(zero, 1, 2, c, &res, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_ri_ui_centre(e, 0, 2, c, &res, &err), FR_ERR_INVALID);
}

static void test_stats_auc(void)
{
  /* {1, 2, 3, 4} (NaN ignored): mean 2.5, sample std sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3)
   * = sqrt(5/3); p5 at position 0.05 * 3 = 0.15: 1.15; p50: 2.5; p95 at 2.85: 3.85. */
  double x[5] = {4, NAN, 2, 1, 3};
  fr_ri_stats s;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_ri_stats_of(x, 5, &s, &err), FR_OK);
  CU_ASSERT_EQUAL(s.n, 4);
  CLOSE(s.mean, 2.5, 1e-15);
  CLOSE(s.std, sqrt(5.0 / 3.0), 1e-15);
  CLOSE(s.p5, 1.15, 1e-12);
  CLOSE(s.p50, 2.5, 1e-15);
  CLOSE(s.p95, 3.85, 1e-12);
  CU_ASSERT(s.min == 1 && s.max == 4);
  double none[1] = {NAN};
  CU_ASSERT_EQUAL(fr_ri_stats_of(none, 1, &s, &err), FR_OK);
  CU_ASSERT(s.n == 0 && isnan(s.mean));
  /* pos {3, 4} vs neg {1, 3}: 3>1, 3=3 (half), 4>1, 4>3: 3.5 / 4 = 0.875 */
  double pos[2] = {3, 4}, neg[2] = {1, 3};
  CLOSE(fr_ri_auc(pos, 2, neg, 2), 0.875, 1e-15);
  CU_ASSERT(isnan(fr_ri_auc(pos, 2, neg, 0)));
}

/* ---------------- device against the reference ---------------- */

static unsigned rng = 12345u;
static float frand(void)
{
  rng = rng * 1664525u + 1013904223u;
  return ((float)(rng >> 8) / 16777216.0f) * 2.4f - 1.2f;
}

static int upload(fr_vk_buffer *b, const void *data, size_t bytes)
{
  fr_error err = {0};
  if (fr_vk_buffer_create(ctx, bytes ? bytes : 4, b, &err))
    return -1;
  return data ? fr_vk_buffer_upload(ctx, b, 0, data, bytes, &err) : 0;
}

static double rel_err_col(const float *got, int stride, int col, const double *want, int n)
{
  double max_err = 0, max_ref = 1e-12;
  for (int i = 0; i < n; i++) {
    double g = got[(size_t)i * stride + col], w = want[i];
    if (isnan(w) || isnan(g)) {
      if (isnan(w) != isnan(g))
        return INFINITY;
      continue;
    }
    max_err = fmax(max_err, fabs(g - w));
    max_ref = fmax(max_ref, fabs(w));
  }
  return max_err / max_ref;
}

/* Runs the three recordings on v [n, dim], w [classes, dim] and compares every output. */
static void device_case(const char *name, int n, int dim, int classes, const float *v, const float *w,
                        const int32_t *y, const float *c)
{
  fr_error err = {0};
  fr_vk_buffer bv, bw, by, bc, bws, bout, bui, bproj;
  size_t nv = (size_t)n * dim;
  CU_ASSERT_EQUAL_FATAL(upload(&bv, v, nv * 4), 0);
  CU_ASSERT_EQUAL_FATAL(upload(&bw, w, (size_t)classes * dim * 4), 0);
  CU_ASSERT_EQUAL_FATAL(upload(&by, y, (size_t)n * 4), 0);
  CU_ASSERT_EQUAL_FATAL(upload(&bc, c, (size_t)dim * 4), 0);
  CU_ASSERT_EQUAL_FATAL(upload(&bws, NULL, fr_ri_workspace_floats(n, classes) * 4), 0);
  CU_ASSERT_EQUAL_FATAL(upload(&bout, NULL, (size_t)n * 16), 0);
  CU_ASSERT_EQUAL_FATAL(upload(&bui, NULL, (size_t)n * 4), 0);
  CU_ASSERT_EQUAL_FATAL(upload(&bproj, NULL, nv * 4), 0);
  fr_vk_sequence *seq;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  fr_vk_arg av = {&bv, 0, 0}, aw = {&bw, 0, 0}, ay = {&by, 0, 0}, ac = {&bc, 0, 0}, aws = {&bws, 0, 0},
            aout = {&bout, 0, 0}, aui = {&bui, 0, 0}, aproj = {&bproj, 0, 0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_ri_record_index(ridev, seq, n, dim, classes, av, aw, ay, ac, aws, aout, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_ri_record_ui(ridev, seq, n, dim, av, ac, aui, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_ri_record_project(ridev, seq, n, dim, av, ac, aproj, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_run(seq, &err), FR_OK);
  float *out = malloc((size_t)n * 16), *ui = malloc((size_t)n * 4), *proj = malloc(nv * 4);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &bout, 0, out, (size_t)n * 16, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &bui, 0, ui, (size_t)n * 4, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &bproj, 0, proj, nv * 4, &err), FR_OK);

  double *ref[4], *rproj = malloc(nv * sizeof(double));
  for (int k = 0; k < 4; k++)
    ref[k] = malloc((size_t)n * sizeof(double));
  fr_ri_index(v, n, dim, w, classes, y, c, ref[0], ref[1], ref[2], ref[3], NULL);
  fr_ri_project(v, n, dim, c, rproj);
  const char *names[4] = {"d_P", "d_N", "d_UI", "xi"};
  for (int k = 0; k < 4; k++) {
    double e = rel_err_col(out, 4, k, ref[k], n);
    if (!(e <= 1e-4))
      printf("\n  %s: %s relative error %g\n", name, names[k], e);
    CU_ASSERT(e <= 1e-4);
  }
  double e_ui = rel_err_col(ui, 1, 0, ref[2], n);
  CU_ASSERT(e_ui <= 1e-4);
  double max_err = 0, max_ref = 1e-12;
  int nan_mismatch = 0;
  for (size_t i = 0; i < nv; i++) {
    if (isnan(rproj[i]) || isnan(proj[i])) {
      nan_mismatch += isnan(rproj[i]) != isnan(proj[i]);
      continue;
    }
    max_err = fmax(max_err, fabs(proj[i] - rproj[i]));
    max_ref = fmax(max_ref, fabs(rproj[i]));
  }
  CU_ASSERT(max_err / max_ref <= 1e-4);
  CU_ASSERT_EQUAL(nan_mismatch, 0);
  printf("\n  %s: n %d dim %d C %d: rel err xi %.2g, d_UI %.2g, v' %.2g", name, n, dim, classes,
         rel_err_col(out, 4, 3, ref[3], n), e_ui, max_err / max_ref);

  for (int k = 0; k < 4; k++)
    free(ref[k]);
  free(rproj);
  free(out);
  free(ui);
  free(proj);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer *all[] = {&bv, &bw, &by, &bc, &bws, &bout, &bui, &bproj};
  for (int i = 0; i < 8; i++)
    fr_vk_buffer_destroy(ctx, all[i]);
}

static void test_device_random(void)
{
  int shapes[][3] = {{37, 64, 50}, {8, 192, 300}, {65, 7, 3}};
  for (int s = 0; s < 3; s++) {
    int n = shapes[s][0], dim = shapes[s][1], classes = shapes[s][2];
    float *v = malloc((size_t)n * dim * 4), *w = malloc((size_t)classes * dim * 4), *c = malloc((size_t)dim * 4);
    int32_t *y = malloc((size_t)n * 4);
    for (int i = 0; i < n * dim; i++)
      v[i] = frand();
    for (int i = 0; i < classes * dim; i++)
      w[i] = frand() * 3.0f; /* prototypes are not unit length */
    for (int i = 0; i < dim; i++)
      c[i] = frand();
    for (int i = 0; i < n; i++)
      y[i] = i % 11 == 5 ? -1 : (int32_t)((unsigned)(i * 7) % (unsigned)classes);
    device_case("random", n, dim, classes, v, w, y, c);
    free(v);
    free(w);
    free(c);
    free(y);
  }
}

static void test_device_edges(void)
{
  /* the hand cases on the device: d_P = 0 (xi = 1e7), identical vectors (xi = 0),
   * a NaN row, an unlabelled row, a zero row */
  float v[10] = {1, 0, 1, 0, NAN, 0, 0, 0, 0.6f, 0.8f};
  float w[6] = {1, 0, 0, 1, -1, 0}, c[2] = {0, 1};
  int32_t y[5] = {0, -1, 0, 1, 1};
  device_case("edges", 5, 2, 3, v, w, y, c);
  float vi[3] = {1, 2, 2}, wi[6] = {1, 2, 2, 2, 2, 1};
  int32_t y0 = 0;
  device_case("identical", 1, 3, 2, vi, wi, &y0, vi);
  /* C = 1: d_N = 2 on the device too */
  float v1[4] = {1, 0, 0.6f, 0.8f}, w1[2] = {0, 1};
  int32_t y1[2] = {0, 0};
  device_case("one class", 2, 2, 1, v1, w1, y1, c);
}

static void test_device_bad_args(void)
{
  fr_error err = {0};
  fr_vk_buffer small;
  CU_ASSERT_EQUAL_FATAL(upload(&small, NULL, 16), 0);
  fr_vk_sequence *seq;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  fr_vk_arg a = {&small, 0, 0};
  CU_ASSERT_EQUAL(fr_ri_record_ui(ridev, seq, 4, 8, a, a, a, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "needs"));
  CU_ASSERT_EQUAL(fr_ri_record_index(ridev, seq, 1, 70000, 1, a, a, a, a, a, a, &err), FR_ERR_UNSUPPORTED);
  CU_ASSERT_EQUAL(fr_ri_record_project(ridev, seq, 0, 2, a, a, a, &err), FR_ERR_INVALID);
  fr_vk_sequence_end(seq, &err);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &small);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("RI reference", NULL, NULL);
  CU_add_test(s, "general case by hand", test_hand_general);
  CU_add_test(s, "true class is the nearest prototype", test_hand_true_class_nearest);
  CU_add_test(s, "d_P -> 0 and the cap", test_hand_dp_zero);
  CU_add_test(s, "identical vectors", test_hand_identical);
  CU_add_test(s, "C = 1", test_hand_one_class);
  CU_add_test(s, "unlabelled, zero and NaN rows", test_hand_unlabelled_zero_nan);
  CU_add_test(s, "projection away from the centre", test_hand_projection);
  CU_add_test(s, "UI centre", test_ui_centre);
  CU_add_test(s, "statistics and AUC", test_stats_auc);
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) || fr_ri_device_create(ctx, &ridev, &err)) {
    printf("no Vulkan device (%s): device tests not run\n", err.message);
  } else {
    CU_pSuite d = CU_add_suite("RI device", NULL, NULL);
    CU_add_test(d, "random against the reference", test_device_random);
    CU_add_test(d, "edge cases against the reference", test_device_edges);
    CU_add_test(d, "bad arguments", test_device_bad_args);
    CU_add_test(d, "no validation messages", test_no_validation_messages);
  }
  int rc = test_run_all();
  fr_ri_device_destroy(ridev);
  fr_vk_context_destroy(ctx);
  return rc;
}
