/* Naive CPU references for the MTCNN graphs and their new ops: the ground truth of
 * the device tests. Convolutions and fully connected layers reuse fr_ref_conv (a
 * fully connected layer is a 1x1 conv on a 1x1 input with the flattened channels). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/mtcnn.h"
#include "mtcnn_internal.h"

void fr_ref_maxpool(const fr_pool_params *p, const float *in, float *out)
{
  for (int n = 0; n < p->batch; n++)
    for (int oy = 0; oy < p->out_h; oy++)
      for (int ox = 0; ox < p->out_w; ox++)
        for (int c = 0; c < p->c; c++) {
          float m = -FLT_MAX;
          for (int ky = 0; ky < p->kernel_h; ky++) {
            int iy = oy * p->stride_h + ky - p->pad_top;
            for (int kx = 0; kx < p->kernel_w; kx++) {
              int ix = ox * p->stride_w + kx - p->pad_left;
              if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w)
                continue;
              float v = in[(((size_t)n * p->in_h + iy) * p->in_w + ix) * p->c + c];
              m = v > m ? v : m;
            }
          }
          out[(((size_t)n * p->out_h + oy) * p->out_w + ox) * p->c + c] = m;
        }
}

void fr_ref_im2col(const fr_pool_params *p, const float *in, float *out)
{
  size_t k = (size_t)p->kernel_h * p->kernel_w * p->c, row = 0;
  for (int n = 0; n < p->batch; n++)
    for (int oy = 0; oy < p->out_h; oy++)
      for (int ox = 0; ox < p->out_w; ox++, row++)
        for (int ky = 0; ky < p->kernel_h; ky++)
          for (int kx = 0; kx < p->kernel_w; kx++)
            for (int c = 0; c < p->c; c++) {
              int iy = oy * p->stride_h + ky - p->pad_top, ix = ox * p->stride_w + kx - p->pad_left;
              int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
              out[row * k + ((size_t)ky * p->kernel_w + kx) * p->c + c] =
                  inside ? in[(((size_t)n * p->in_h + iy) * p->in_w + ix) * p->c + c] : 0.0f;
            }
}

void fr_ref_softmax(int rows, int c, const float *in, float *out)
{
  for (int r = 0; r < rows; r++) {
    const float *x = in + (size_t)r * c;
    double m = x[0], s = 0;
    for (int i = 1; i < c; i++)
      m = x[i] > m ? x[i] : m;
    for (int i = 0; i < c; i++)
      s += exp((double)x[i] - m);
    for (int i = 0; i < c; i++)
      out[(size_t)r * c + i] = (float)(exp((double)x[i] - m) / s);
  }
}

void mtcnn_conv_params(const fr_mtcnn_node *nd, int n, int ih, int iw, int ic, int oh, int ow, fr_conv_params *p)
{
  int pad_top = 0, pad_left = 0, o;
  if (nd->op == FR_MTCNN_FC) {
    ih = iw = oh = ow = 1;
    ic = nd->in_c;
  } else {
    fr_tf_padding(ih, nd->kernel_h, nd->stride_h, nd->same, &o, &pad_top);
    fr_tf_padding(iw, nd->kernel_w, nd->stride_w, nd->same, &o, &pad_left);
  }
  *p = (fr_conv_params){.batch = n, .in_h = ih, .in_w = iw, .in_c = ic, .out_h = oh, .out_w = ow,
                        .out_c = nd->out_c, .kernel_h = nd->kernel_h, .kernel_w = nd->kernel_w,
                        .stride_h = nd->stride_h, .stride_w = nd->stride_w, .pad_top = pad_top,
                        .pad_left = pad_left, .activation = nd->activation};
}

void mtcnn_pool_params(const fr_mtcnn_node *nd, int n, int ih, int iw, int c, fr_pool_params *p)
{
  *p = (fr_pool_params){.batch = n, .in_h = ih, .in_w = iw, .c = c, .kernel_h = nd->kernel_h,
                        .kernel_w = nd->kernel_w, .stride_h = nd->stride_h, .stride_w = nd->stride_w};
  fr_tf_padding(ih, nd->kernel_h, nd->stride_h, nd->same, &p->out_h, &p->pad_top);
  fr_tf_padding(iw, nd->kernel_w, nd->stride_w, nd->same, &p->out_w, &p->pad_left);
}

int fr_mtcnn_ref_forward(const fr_mtcnn_graph *g, int n, int h, int w, const float *input, float **outputs,
                         fr_error *err)
{
  if (n < 1)
    return fr_error_set(err, FR_ERR_INVALID, "%s: batch %d", g->source, n);
  int nn = g->n_nodes, rc = FR_OK;
  int *shape = malloc(3 * sizeof(int) * (size_t)nn);
  float **act = calloc((size_t)nn, sizeof(float *));
  if (!shape || !act) {
    free(shape);
    free(act);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory", g->source);
  }
  int *oh = shape, *ow = shape + nn, *oc = shape + 2 * nn;
  rc = fr_mtcnn_shapes(g, h, w, oh, ow, oc, err);
  for (int i = 0; i < nn && !rc; i++) {
    const fr_mtcnn_node *nd = &g->nodes[i];
    act[i] = malloc(sizeof(float) * (size_t)n * oh[i] * ow[i] * oc[i]);
    if (!act[i]) {
      rc = fr_error_set(err, FR_ERR_NOMEM, "%s: out of memory for '%s'", g->source, nd->name);
      break;
    }
    const float *x = nd->input < 0 ? input : act[nd->input];
    int ih = nd->input < 0 ? h : oh[nd->input], iw = nd->input < 0 ? w : ow[nd->input];
    int ic = nd->input < 0 ? g->in_c : oc[nd->input];
    if (nd->op == FR_MTCNN_CONV || nd->op == FR_MTCNN_FC) {
      fr_conv_params p;
      mtcnn_conv_params(nd, n, ih, iw, ic, oh[i], ow[i], &p);
      fr_ref_conv(&p, x, nd->weights, nd->bias, nd->slope, NULL, act[i]);
    } else if (nd->op == FR_MTCNN_MAXPOOL) {
      fr_pool_params p;
      mtcnn_pool_params(nd, n, ih, iw, ic, &p);
      fr_ref_maxpool(&p, x, act[i]);
    } else {
      fr_ref_softmax(n * ih * iw, ic, x, act[i]);
    }
  }
  for (int k = 0; k < g->n_outputs && !rc; k++) {
    int i = g->outputs[k];
    memcpy(outputs[k], act[i], sizeof(float) * (size_t)n * oh[i] * ow[i] * oc[i]);
  }
  for (int i = 0; i < nn; i++)
    free(act[i]);
  free(act);
  free(shape);
  return rc;
}
