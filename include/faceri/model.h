#ifndef FACERI_MODEL_H
#define FACERI_MODEL_H
/* The in-memory network: a list of fused layers in execution order, plus the
 * preprocessing a model expects. Importers build it from foreign formats, the
 * model file (HDF5, DESIGN §4 and docs/FORMAT.md) stores it, the engine runs it. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"

#define FR_MODEL_FORMAT_VERSION 1
#define FR_LAYER_INPUT (-1) /* layer index meaning "the network input" */
#define FR_NO_LAYER (-2)    /* "no residual" */

typedef enum fr_layer_kind {
  FR_LAYER_CONV = 1,      /* dense conv: weights [out_c][kh][kw][in_c] (TFLite OHWI) */
  FR_LAYER_DEPTHWISE = 2, /* depthwise conv, multiplier 1: weights [kh][kw][c] */
} fr_layer_kind;

typedef enum fr_activation {
  FR_ACT_NONE = 0,
  FR_ACT_PRELU = 1, /* y = x > 0 ? x : slope[c] * x; slope is the true slope (TFLite's 2m) */
  FR_ACT_RELU = 2,
} fr_activation;

/* One fused layer: y = act(conv(x) + bias) and then, if residual >= 0 or
 * FR_LAYER_INPUT, y += output of that layer (the residual is added after the
 * activation, which MobileFaceNet never combines: its projections are linear). */
typedef struct fr_layer {
  char name[160];        /* source op name, for errors and per-layer timings */
  fr_layer_kind kind;
  int input;             /* producing layer index or FR_LAYER_INPUT */
  int residual;          /* layer index, FR_LAYER_INPUT, or FR_NO_LAYER */
  int in_h, in_w, in_c;
  int out_h, out_w, out_c;
  int kernel_h, kernel_w;
  int stride_h, stride_w;
  int pad_top, pad_left, pad_bottom, pad_right; /* explicit: TF SAME is asymmetric */
  fr_activation activation;
  float *weights;        /* see fr_layer_kind for layout */
  float *bias;           /* [out_c], never NULL (zeros when the source has none) */
  float *slope;          /* [out_c] for FR_ACT_PRELU, else NULL */
} fr_layer;

typedef struct fr_model {
  char architecture[64];   /* "mobilefacenet" */
  int input_h, input_w, input_c;
  char channel_order[8];   /* "RGB" */
  float mean[3], std[3];   /* x = (pixel - mean) / std per channel */
  int embedding_size;      /* = out_c of the output layer */
  int output_layer;        /* index of the layer whose output is the raw embedding */
  int n_layers;
  fr_layer *layers;
  char source_name[256];   /* file the model was imported from */
  char source_sha256[65];  /* hex SHA-256 of that file */
  char weights_sha256[65]; /* hex SHA-256 over all weights, biases, slopes in layer order */
  char file_sha256[65];    /* hex SHA-256 of the model file it was loaded from ("" if built in memory) */
} fr_model;

/* Number of floats in a layer's weight tensor. */
int64_t fr_layer_weight_count(const fr_layer *layer);
/* Multiply-accumulates per image for the whole model. */
int64_t fr_model_macs(const fr_model *model);
/* Checks shapes, indices, padding and pointers; names the first bad layer. */
int fr_model_validate(const fr_model *model, fr_error *err);
void fr_model_free(fr_model *model); /* frees layers and arrays; the struct itself is the caller's */

/* TFLite flatbuffer -> fr_model (worker/nn/tflite_import.c). Bounds-checked:
 * a corrupt, truncated or foreign file gets FR_ERR_FORMAT naming the file. */
int fr_model_import_tflite(const char *path, fr_model *out, fr_error *err);
int fr_model_import_tflite_buffer(const uint8_t *data, size_t size, const char *name, fr_model *out,
                                  fr_error *err);

/* HDF5 model file (worker/nn/model_file.c). */
int fr_model_save(const fr_model *model, const char *path, fr_error *err);
int fr_model_load(const char *path, fr_model *out, fr_error *err);
/* Human-readable summary of a model file (for `faceri model info`): attributes,
 * layer table, MACs, SHA-256s. */
int fr_model_print_info(const char *path, FILE *out, fr_error *err);

/* Where commands look when --model is not given: $FACERI_MODEL, else
 * ./models/mobilefacenet.h5, else models/mobilefacenet.h5 in the source checkout. */
const char *fr_model_default_path(void);

#endif
