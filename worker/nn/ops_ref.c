/* Naive C references for the device ops: the ground truth every kernel test and
 * the engine's self-checks compare against. Clarity over speed; double accumulation. */
#include <math.h>

#include "faceri/ops.h"

void fr_conv_params_from_layer(const fr_layer *l, int batch, fr_conv_params *p)
{
  *p = (fr_conv_params){.batch = batch,
                        .in_h = l->in_h, .in_w = l->in_w, .in_c = l->in_c,
                        .out_h = l->out_h, .out_w = l->out_w, .out_c = l->out_c,
                        .kernel_h = l->kernel_h, .kernel_w = l->kernel_w,
                        .stride_h = l->stride_h, .stride_w = l->stride_w,
                        .pad_top = l->pad_top, .pad_left = l->pad_left,
                        .depthwise = l->kind == FR_LAYER_DEPTHWISE,
                        .activation = l->activation,
                        .has_residual = l->residual != FR_NO_LAYER};
}

static float activate(double v, fr_activation act, float slope)
{
  if (act == FR_ACT_PRELU)
    return (float)(v > 0 ? v : v * slope);
  if (act == FR_ACT_RELU)
    return (float)(v > 0 ? v : 0.0);
  return (float)v;
}

void fr_ref_conv(const fr_conv_params *p, const float *input, const float *weights, const float *bias,
                 const float *slope, const float *residual, float *output)
{
  for (int n = 0; n < p->batch; n++)
    for (int oy = 0; oy < p->out_h; oy++)
      for (int ox = 0; ox < p->out_w; ox++)
        for (int oc = 0; oc < p->out_c; oc++) {
          double acc = 0.0;
          for (int ky = 0; ky < p->kernel_h; ky++) {
            int iy = oy * p->stride_h + ky - p->pad_top;
            if (iy < 0 || iy >= p->in_h)
              continue;
            for (int kx = 0; kx < p->kernel_w; kx++) {
              int ix = ox * p->stride_w + kx - p->pad_left;
              if (ix < 0 || ix >= p->in_w)
                continue;
              const float *px = input + (((size_t)n * p->in_h + iy) * p->in_w + ix) * p->in_c;
              if (p->depthwise) {
                acc += (double)px[oc] * weights[((size_t)ky * p->kernel_w + kx) * p->out_c + oc];
              } else {
                const float *w = weights + (((size_t)oc * p->kernel_h + ky) * p->kernel_w + kx) * p->in_c;
                for (int ic = 0; ic < p->in_c; ic++)
                  acc += (double)px[ic] * w[ic];
              }
            }
          }
          size_t o = (((size_t)n * p->out_h + oy) * p->out_w + ox) * p->out_c + oc;
          float v = activate(acc + bias[oc], p->activation, slope ? slope[oc] : 0.0f);
          if (p->has_residual)
            v += residual[o];
          output[o] = v;
        }
}

void fr_ref_l2norm(int rows, int dim, const float *input, float *output, float *norms)
{
  for (int r = 0; r < rows; r++) {
    double s = 0.0;
    for (int i = 0; i < dim; i++)
      s += (double)input[(size_t)r * dim + i] * input[(size_t)r * dim + i];
    double inv = 1.0 / sqrt(s > 1e-10 ? s : 1e-10);
    for (int i = 0; i < dim; i++)
      output[(size_t)r * dim + i] = (float)(input[(size_t)r * dim + i] * inv);
    if (norms)
      norms[r] = (float)sqrt(s);
  }
}
