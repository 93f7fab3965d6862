/* CPU reference of the classification losses in double, written for clarity: the
 * ground truth the kernels are compared with, itself checked against central finite
 * differences. Same formulas as train_loss.h states, same clamps as the device. */
#include <math.h>
#include <stdlib.h>

#include "faceri/train_loss.h"

/* The target's margin and its derivative with respect to the cosine. */
static double margin_target(const fr_loss_params *p, double c, double *dc)
{
  double m = p->m;
  double cc = c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c;
  double sn = sqrt(1.0 - cc * cc);
  double with_margin = c * cos(m) - sn * sin(m);
  double d_margin = cos(m) + sin(m) * c / (sn > 1e-6 ? sn : 1e-6);
  if (p->easy_margin ? c > 0.0 : c > cos(M_PI - m)) {
    *dc = d_margin;
    return with_margin;
  }
  *dc = 1.0;
  return p->easy_margin ? c : c - sin(M_PI - m) * m;
}

double fr_ref_loss(const fr_loss_params *p, const double *x, const double *w, const int32_t *labels,
                   double *row_loss, double *cos_out, double *dx, double *dw)
{
  int B = p->batch, D = p->dim, C = p->classes;
  int arc = p->kind == FR_LOSS_ARCFACE;
  double *norm = calloc((size_t)C, sizeof(double));
  double *c = calloc((size_t)B * C, sizeof(double));
  double *g = calloc((size_t)B * C, sizeof(double));
  double *dwn = calloc((size_t)C * D, sizeof(double));
  double *z = calloc((size_t)C, sizeof(double));
  if (!norm || !c || !g || !dwn || !z) {
    free(norm), free(c), free(g), free(dwn), free(z);
    return NAN;
  }
  for (int j = 0; j < C; j++) {
    double ss = 0;
    for (int d = 0; d < D; d++)
      ss += w[(size_t)j * D + d] * w[(size_t)j * D + d];
    /* The device clamps the norm at 1e-12 (a zero row has zero cosines). */
    norm[j] = arc ? fmax(sqrt(ss), 1e-12) : 1.0;
  }
  for (int b = 0; b < B; b++)
    for (int j = 0; j < C; j++) {
      double acc = 0;
      for (int d = 0; d < D; d++)
        acc += x[(size_t)b * D + d] * w[(size_t)j * D + d];
      c[(size_t)b * C + j] = acc / norm[j];
    }
  double total = 0;
  for (int b = 0; b < B; b++) {
    int y = labels[b];
    double *cb = c + (size_t)b * C, *gb = g + (size_t)b * C;
    if (y < 0 || y >= C) {
      if (row_loss)
        row_loss[b] = 0;
      continue;
    }
    double dty = 1.0;
    for (int j = 0; j < C; j++)
      z[j] = p->s * cb[j];
    if (arc)
      z[y] = p->s * margin_target(p, cb[y], &dty);
    double mx = z[0];
    for (int j = 1; j < C; j++)
      mx = fmax(mx, z[j]);
    double se = 0;
    for (int j = 0; j < C; j++)
      se += exp(z[j] - mx);
    double l = mx + log(se) - z[y];
    if (row_loss)
      row_loss[b] = l;
    total += l;
    for (int j = 0; j < C; j++)
      gb[j] = (exp(z[j] - mx) / se - (j == y)) * p->s / B;
    gb[y] *= dty;
  }
  if (cos_out)
    for (size_t i = 0; i < (size_t)B * C; i++)
      cos_out[i] = c[i];
  if (dx)
    for (int b = 0; b < B; b++)
      for (int d = 0; d < D; d++) {
        double acc = 0;
        for (int j = 0; j < C; j++)
          acc += g[(size_t)b * C + j] * w[(size_t)j * D + d] / norm[j];
        dx[(size_t)b * D + d] = acc;
      }
  if (dw) {
    /* d/d w_j of the normalised row: (I - w^ w^T) / ||w_j|| applied to dL/dw^_j. */
    for (int j = 0; j < C; j++) {
      double dot = 0;
      for (int d = 0; d < D; d++) {
        double acc = 0;
        for (int b = 0; b < B; b++)
          acc += g[(size_t)b * C + j] * x[(size_t)b * D + d];
        dwn[(size_t)j * D + d] = acc;
        dot += acc * w[(size_t)j * D + d] / norm[j];
      }
      for (int d = 0; d < D; d++) {
        double v = dwn[(size_t)j * D + d];
        dw[(size_t)j * D + d] = arc ? (v - dot * w[(size_t)j * D + d] / norm[j]) / norm[j] : v;
      }
    }
  }
  free(norm), free(c), free(g), free(dwn), free(z);
  return total / B;
}
