/* Naive CPU references for the training ops, forward and backward, in double: the
 * ground truth for the device kernels. The backward functions are checked against
 * central finite differences of the forward ones, so both are written for clarity,
 * straight from the definitions. */
#include <math.h>
#include <string.h>

#include "faceri/train_ops.h"

static size_t in_index(const fr_conv_params *p, int n, int y, int x, int c)
{
  return (((size_t)n * p->in_h + y) * p->in_w + x) * p->in_c + c;
}
static size_t out_index(const fr_conv_params *p, int n, int y, int x, int c)
{
  return (((size_t)n * p->out_h + y) * p->out_w + x) * p->out_c + c;
}
static size_t w_index(const fr_conv_params *p, int oc, int ky, int kx, int ic)
{
  if (p->depthwise)
    return ((size_t)ky * p->kernel_w + kx) * p->out_c + oc;
  return (((size_t)oc * p->kernel_h + ky) * p->kernel_w + kx) * p->in_c + ic;
}

/* Calls visit(x index, w index, y index) for every multiply of the convolution. */
#define CONV_FOR_EACH_TAP(p, BODY)                                                                              \
  for (int n = 0; n < (p)->batch; n++)                                                                          \
    for (int oy = 0; oy < (p)->out_h; oy++)                                                                     \
      for (int ox = 0; ox < (p)->out_w; ox++)                                                                   \
        for (int oc = 0; oc < (p)->out_c; oc++)                                                                 \
          for (int ky = 0; ky < (p)->kernel_h; ky++) {                                                          \
            int iy = oy * (p)->stride_h + ky - (p)->pad_top;                                                    \
            if (iy < 0 || iy >= (p)->in_h)                                                                      \
              continue;                                                                                         \
            for (int kx = 0; kx < (p)->kernel_w; kx++) {                                                        \
              int ix = ox * (p)->stride_w + kx - (p)->pad_left;                                                 \
              if (ix < 0 || ix >= (p)->in_w)                                                                    \
                continue;                                                                                       \
              int ic0 = (p)->depthwise ? oc : 0, ic1 = (p)->depthwise ? oc + 1 : (p)->in_c;                     \
              for (int ic = ic0; ic < ic1; ic++) {                                                              \
                size_t xi = in_index(p, n, iy, ix, ic), wi = w_index(p, oc, ky, kx, ic);                        \
                size_t yi = out_index(p, n, oy, ox, oc);                                                        \
                BODY;                                                                                           \
              }                                                                                                 \
            }                                                                                                   \
          }

void fr_ref_train_conv_fwd(const fr_conv_params *p, const double *x, const double *w, const double *b, double *y)
{
  size_t out_n = (size_t)p->batch * p->out_h * p->out_w * p->out_c;
  for (size_t i = 0; i < out_n; i++)
    y[i] = b ? b[i % p->out_c] : 0.0;
  CONV_FOR_EACH_TAP(p, y[yi] += x[xi] * w[wi]);
}

void fr_ref_train_conv_bwd(const fr_conv_params *p, const double *x, const double *w, const double *dy, double *dx,
                           double *dw, double *db)
{
  size_t in_n = (size_t)p->batch * p->in_h * p->in_w * p->in_c;
  size_t w_n = p->depthwise ? (size_t)p->kernel_h * p->kernel_w * p->out_c
                            : (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
  size_t out_n = (size_t)p->batch * p->out_h * p->out_w * p->out_c;
  if (dx) {
    memset(dx, 0, in_n * sizeof(double));
    CONV_FOR_EACH_TAP(p, dx[xi] += dy[yi] * w[wi]);
  }
  if (dw) {
    memset(dw, 0, w_n * sizeof(double));
    CONV_FOR_EACH_TAP(p, dw[wi] += dy[yi] * x[xi]);
  }
  if (db) {
    memset(db, 0, (size_t)p->out_c * sizeof(double));
    for (size_t i = 0; i < out_n; i++)
      db[i % p->out_c] += dy[i];
  }
}

void fr_ref_train_act_fwd(fr_train_act act, size_t rows, int channels, const double *x, const double *slope, double *y)
{
  for (size_t i = 0; i < rows * channels; i++) {
    double v = x[i];
    if (act == FR_TRAIN_RELU)
      y[i] = v > 0 ? v : 0;
    else if (act == FR_TRAIN_PRELU)
      y[i] = v > 0 ? v : v * slope[i % channels];
    else
      y[i] = 1.0 / (1.0 + exp(-v));
  }
}

void fr_ref_train_act_bwd(fr_train_act act, size_t rows, int channels, const double *saved, const double *dy,
                          const double *slope, double *dx, double *dslope)
{
  if (dslope)
    memset(dslope, 0, (size_t)channels * sizeof(double));
  for (size_t i = 0; i < rows * channels; i++) {
    double s = saved[i];
    if (act == FR_TRAIN_RELU) {
      dx[i] = s > 0 ? dy[i] : 0;
    } else if (act == FR_TRAIN_PRELU) {
      dx[i] = s > 0 ? dy[i] : dy[i] * slope[i % channels];
      if (dslope && s <= 0)
        dslope[i % channels] += dy[i] * s;
    } else {
      dx[i] = dy[i] * s * (1.0 - s);
    }
  }
}

void fr_ref_train_l2norm_fwd(int rows, int dim, const double *x, double *y, double *norms)
{
  for (int r = 0; r < rows; r++) {
    const double *xr = x + (size_t)r * dim;
    double s = 0;
    for (int i = 0; i < dim; i++)
      s += xr[i] * xr[i];
    double inv = 1.0 / sqrt(s > 1e-10 ? s : 1e-10);
    for (int i = 0; i < dim; i++)
      y[(size_t)r * dim + i] = xr[i] * inv;
    if (norms)
      norms[r] = sqrt(s);
  }
}

void fr_ref_train_l2norm_bwd(int rows, int dim, const double *y, const double *norms, const double *dy, double *dx)
{
  for (int r = 0; r < rows; r++) {
    const double *yr = y + (size_t)r * dim, *dyr = dy + (size_t)r * dim;
    double *dxr = dx + (size_t)r * dim;
    int clamped = norms[r] * norms[r] <= 1e-10;
    double dot = 0;
    for (int i = 0; i < dim; i++)
      dot += yr[i] * dyr[i];
    double inv = 1.0 / (clamped ? 1e-5 : norms[r]);
    for (int i = 0; i < dim; i++)
      dxr[i] = clamped ? dyr[i] * inv : (dyr[i] - yr[i] * dot) * inv;
  }
}

static uint32_t pcg_hash(uint32_t v)
{
  uint32_t state = v * 747796405u + 2891336453u;
  uint32_t word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

/* The keep threshold on the 32-bit hash: rate of the hashes fall below it. */
static uint32_t dropout_threshold(float rate)
{
  double t = (double)rate * 4294967296.0;
  return t <= 0 ? 0u : t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}

int fr_train_dropout_keep(float rate, uint32_t seed, uint32_t step, uint32_t index)
{
  return pcg_hash(index ^ pcg_hash(seed ^ pcg_hash(step))) >= dropout_threshold(rate);
}

void fr_ref_train_dropout(size_t n, float rate, uint32_t seed, uint32_t step, const double *x, double *y)
{
  double scale = 1.0 / (1.0 - (double)(float)rate);
  for (size_t i = 0; i < n; i++)
    y[i] = fr_train_dropout_keep(rate, seed, step, (uint32_t)i) ? x[i] * scale : 0.0;
}

void fr_ref_train_bn_fwd(int rows, int channels, double eps, double momentum, const double *x, const double *gamma,
                         const double *beta, double *y, double *mean, double *var, double *invstd,
                         double *running_mean, double *running_var)
{
  for (int c = 0; c < channels; c++) {
    double m = 0, v = 0;
    for (int r = 0; r < rows; r++)
      m += x[(size_t)r * channels + c];
    m /= rows;
    for (int r = 0; r < rows; r++) {
      double d = x[(size_t)r * channels + c] - m;
      v += d * d;
    }
    v /= rows;
    double is = 1.0 / sqrt(v + eps);
    for (int r = 0; r < rows; r++) {
      size_t i = (size_t)r * channels + c;
      y[i] = gamma[c] * (x[i] - m) * is + beta[c];
    }
    if (mean)
      mean[c] = m;
    if (var)
      var[c] = v;
    if (invstd)
      invstd[c] = is;
    if (running_mean)
      running_mean[c] = (1 - momentum) * running_mean[c] + momentum * m;
    if (running_var)
      running_var[c] = (1 - momentum) * running_var[c] + momentum * (rows > 1 ? v * rows / (rows - 1) : v);
  }
}

void fr_ref_train_bn_bwd(int rows, int channels, double eps, const double *x, const double *gamma, const double *dy,
                         double *dx, double *dgamma, double *dbeta)
{
  for (int c = 0; c < channels; c++) {
    double m = 0, v = 0;
    for (int r = 0; r < rows; r++)
      m += x[(size_t)r * channels + c];
    m /= rows;
    for (int r = 0; r < rows; r++) {
      double d = x[(size_t)r * channels + c] - m;
      v += d * d;
    }
    v /= rows;
    double is = 1.0 / sqrt(v + eps), sum_dy = 0, sum_dy_xhat = 0;
    for (int r = 0; r < rows; r++) {
      size_t i = (size_t)r * channels + c;
      sum_dy += dy[i];
      sum_dy_xhat += dy[i] * (x[i] - m) * is;
    }
    for (int r = 0; r < rows; r++) {
      size_t i = (size_t)r * channels + c;
      double xhat = (x[i] - m) * is;
      dx[i] = gamma[c] * is * (dy[i] - (sum_dy + xhat * sum_dy_xhat) / rows);
    }
    if (dgamma)
      dgamma[c] = sum_dy_xhat;
    if (dbeta)
      dbeta[c] = sum_dy;
  }
}

static size_t mid_index(int len, int inner, int o, int r, int i)
{
  return ((size_t)o * len + r) * inner + i;
}

/* The first maximum along the middle axis, as the device picks it. */
static int argmax_mid(int len, int inner, const double *x, int o, int i)
{
  int arg = 0;
  for (int r = 1; r < len; r++)
    if (x[mid_index(len, inner, o, r, i)] > x[mid_index(len, inner, o, arg, i)])
      arg = r;
  return arg;
}

void fr_ref_train_pool_fwd(fr_train_pool mode, int outer, int len, int inner, const double *x, double *y)
{
  for (int o = 0; o < outer; o++)
    for (int i = 0; i < inner; i++) {
      double acc = 0;
      if (mode == FR_POOL_MAX) {
        acc = x[mid_index(len, inner, o, argmax_mid(len, inner, x, o, i), i)];
      } else {
        for (int r = 0; r < len; r++)
          acc += x[mid_index(len, inner, o, r, i)];
        acc /= len;
      }
      y[(size_t)o * inner + i] = acc;
    }
}

void fr_ref_train_pool_bwd(fr_train_pool mode, int outer, int len, int inner, const double *x, const double *dy,
                           double *dx)
{
  for (int o = 0; o < outer; o++)
    for (int i = 0; i < inner; i++) {
      double g = dy[(size_t)o * inner + i];
      int arg = mode == FR_POOL_MAX ? argmax_mid(len, inner, x, o, i) : -1;
      for (int r = 0; r < len; r++)
        dx[mid_index(len, inner, o, r, i)] = mode == FR_POOL_MAX ? (r == arg ? g : 0.0) : g / len;
    }
}

void fr_ref_train_bcast_mul_fwd(int outer, int len, int inner, const double *x, const double *s, double *y)
{
  for (int o = 0; o < outer; o++)
    for (int r = 0; r < len; r++)
      for (int i = 0; i < inner; i++)
        y[mid_index(len, inner, o, r, i)] = x[mid_index(len, inner, o, r, i)] * s[(size_t)o * inner + i];
}

void fr_ref_train_bcast_mul_bwd(int outer, int len, int inner, const double *x, const double *s, const double *dy,
                                double *dx, double *ds)
{
  for (int o = 0; o < outer; o++)
    for (int i = 0; i < inner; i++) {
      double acc = 0, sv = s[(size_t)o * inner + i];
      for (int r = 0; r < len; r++) {
        size_t k = mid_index(len, inner, o, r, i);
        if (dx)
          dx[k] = dy[k] * sv;
        acc += dy[k] * x[k];
      }
      if (ds)
        ds[(size_t)o * inner + i] = acc;
    }
}

void fr_ref_train_concat_fwd(int rows, int ca, int cb, const double *a, const double *b, double *y)
{
  for (int r = 0; r < rows; r++) {
    memcpy(y + (size_t)r * (ca + cb), a + (size_t)r * ca, (size_t)ca * sizeof(double));
    memcpy(y + (size_t)r * (ca + cb) + ca, b + (size_t)r * cb, (size_t)cb * sizeof(double));
  }
}

void fr_ref_train_concat_bwd(int rows, int ca, int cb, const double *dy, double *da, double *db)
{
  for (int r = 0; r < rows; r++) {
    memcpy(da + (size_t)r * ca, dy + (size_t)r * (ca + cb), (size_t)ca * sizeof(double));
    memcpy(db + (size_t)r * cb, dy + (size_t)r * (ca + cb) + ca, (size_t)cb * sizeof(double));
  }
}
