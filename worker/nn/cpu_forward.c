/* Reference forward pass: written to be obviously right, not fast. */
#include "faceri/cpu_forward.h"

#include <stdlib.h>
#include <string.h>

static double activate(const fr_layer *l, int c, double v)
{
  switch (l->activation) {
  case FR_ACT_RELU: return v > 0 ? v : 0;
  case FR_ACT_PRELU: return v > 0 ? v : (double)l->slope[c] * v;
  case FR_ACT_NONE: break;
  }
  return v;
}

/* Input pixel (y, x) of image b, or NULL when it lies in the zero padding. */
static const float *pixel(const fr_layer *l, const float *in, int b, int y, int x)
{
  if (y < 0 || y >= l->in_h || x < 0 || x >= l->in_w)
    return NULL;
  return in + (((size_t)b * l->in_h + y) * l->in_w + x) * l->in_c;
}

static double conv_at(const fr_layer *l, const float *in, int b, int oy, int ox, int oc)
{
  double acc = l->bias[oc];
  for (int ky = 0; ky < l->kernel_h; ky++)
    for (int kx = 0; kx < l->kernel_w; kx++) {
      const float *p = pixel(l, in, b, oy * l->stride_h - l->pad_top + ky, ox * l->stride_w - l->pad_left + kx);
      if (!p)
        continue;
      if (l->kind == FR_LAYER_DEPTHWISE) {
        acc += (double)p[oc] * l->weights[((size_t)ky * l->kernel_w + kx) * l->out_c + oc];
      } else {
        const float *w = l->weights + (((size_t)oc * l->kernel_h + ky) * l->kernel_w + kx) * l->in_c;
        for (int ic = 0; ic < l->in_c; ic++)
          acc += (double)p[ic] * w[ic];
      }
    }
  return acc;
}

void fr_cpu_layer_forward(const fr_layer *l, const float *in, const float *residual, int batch, float *out)
{
  for (int b = 0; b < batch; b++)
    for (int oy = 0; oy < l->out_h; oy++)
      for (int ox = 0; ox < l->out_w; ox++) {
        size_t base = (((size_t)b * l->out_h + oy) * l->out_w + ox) * l->out_c;
        for (int oc = 0; oc < l->out_c; oc++) {
          double v = activate(l, oc, conv_at(l, in, b, oy, ox, oc));
          if (residual)
            v += residual[base + oc];
          out[base + oc] = (float)v;
        }
      }
}

static size_t layer_floats(const fr_layer *l, int batch)
{
  return (size_t)batch * l->out_h * l->out_w * l->out_c;
}

int fr_cpu_forward_capture(const fr_model *m, const float *input, int batch, float *out,
                           float *const *layer_outputs, fr_error *err)
{
  if (!m || !input || !out || batch < 1)
    return fr_error_set(err, FR_ERR_INVALID, "CPU forward: NULL argument or batch %d", batch);
  int rc = fr_model_validate(m, err);
  if (rc)
    return rc;
  /* Keep each output only until its last reader has run. */
  int *last_use = malloc((size_t)m->n_layers * sizeof(int));
  float **acts = calloc((size_t)m->n_layers, sizeof(float *));
  if (!last_use || !acts) {
    free(last_use);
    free(acts);
    return fr_error_set(err, FR_ERR_NOMEM, "CPU forward: out of memory");
  }
  for (int i = 0; i < m->n_layers; i++)
    last_use[i] = i == m->output_layer ? m->n_layers : i;
  for (int i = 0; i < m->n_layers; i++) {
    const fr_layer *l = &m->layers[i];
    if (l->input >= 0)
      last_use[l->input] = i;
    if (l->residual >= 0 && last_use[l->residual] < i)
      last_use[l->residual] = i;
  }
  for (int i = 0; i < m->n_layers && !rc; i++) {
    const fr_layer *l = &m->layers[i];
    acts[i] = malloc(layer_floats(l, batch) * sizeof(float));
    if (!acts[i]) {
      rc = fr_error_set(err, FR_ERR_NOMEM, "CPU forward: out of memory at layer %d (%s)", i, l->name);
      break;
    }
    const float *src = l->input == FR_LAYER_INPUT ? input : acts[l->input];
    const float *res = l->residual == FR_NO_LAYER ? NULL : l->residual == FR_LAYER_INPUT ? input : acts[l->residual];
    fr_cpu_layer_forward(l, src, res, batch, acts[i]);
    if (layer_outputs && layer_outputs[i])
      memcpy(layer_outputs[i], acts[i], layer_floats(l, batch) * sizeof(float));
    for (int j = 0; j <= i; j++)
      if (acts[j] && last_use[j] <= i) {
        free(acts[j]);
        acts[j] = NULL;
      }
  }
  if (!rc)
    memcpy(out, acts[m->output_layer], (size_t)batch * m->embedding_size * sizeof(float));
  for (int i = 0; i < m->n_layers; i++)
    free(acts[i]);
  free(acts);
  free(last_use);
  return rc;
}

int fr_cpu_forward(const fr_model *m, const float *input, int batch, float *out, fr_error *err)
{
  return fr_cpu_forward_capture(m, input, batch, out, NULL, err);
}
