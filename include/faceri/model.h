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

/* Where a model's UI centre came from (the /ui_centre group, docs/MODEL_FORMAT.md §4.1). */
typedef struct fr_ui_provenance {
  int count;              /* UI faces averaged */
  char created[32];       /* ISO-8601 UTC */
  char face_region[64];   /* how the face was taken from each UI input (docs/UI_CENTRE.md) */
  double resultant;       /* length of the mean of the unit embeddings before normalising */
  /* d_UI of the UI faces themselves: mean, std, min, p5, p50, p95, max */
  float d_ui_stats[7];
  char *inputs;           /* one line per UI input: "path<TAB>size<TAB>mtime<TAB>sha256" (malloc'd) */
} fr_ui_provenance;

/* An optional named float32 tensor stored with the model: a classification head's
 * prototypes, the RI heads' parameters (docs/MODEL_FORMAT.md §4.2). Kept generic so
 * a new head needs no new file code, only names. */
#define FR_MODEL_TENSOR_PATH 96
#define FR_MODEL_MAX_TENSORS 256
typedef struct fr_model_tensor {
  char path[FR_MODEL_TENSOR_PATH]; /* HDF5 path without the leading '/', under "prototypes/" or "heads/" */
  int rank;                        /* 1..4 */
  int64_t dims[4];
  float *data;                     /* malloc'd, finite */
} fr_model_tensor;

/* Where training left a model (the /training group, docs/MODEL_FORMAT.md §4.3): what
 * `faceri train --resume` needs to go on exactly where a run stopped. */
typedef struct fr_model_training {
  int present;
  int64_t step;               /* optimizer steps taken */
  char *config;               /* the run's options and data fingerprint, one line of JSON (malloc'd) */
  uint8_t *optimizer_state;   /* fr_optimizer_export's blob (malloc'd) */
  size_t optimizer_state_size;
  float *loss;                /* the mean loss of every step taken, in order [step] (malloc'd) */
  int n_classes;
  char *class_names;          /* n_classes names, each NUL-terminated, back to back (malloc'd) */
  size_t class_names_size;
} fr_model_training;

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
  /* The unrecognisable-identities centre v_UI [embedding_size], unit length, or NULL
   * when the model has none (malloc'd; fr_model_free releases it and ui.inputs). */
  float *ui_centre;
  fr_ui_provenance ui;
  int n_tensors;              /* optional tensors (fr_model_tensor), freed by fr_model_free */
  fr_model_tensor *tensors;
  fr_model_training training;
} fr_model;

/* Bounds every loader and importer enforces, so a hostile file cannot make
 * the process allocate unbounded memory or overflow an int index. */
#define FR_MODEL_MAX_LAYERS 1024
#define FR_MODEL_MAX_DIM 16384               /* height or width of any activation */
#define FR_MODEL_MAX_CHANNELS 65536
#define FR_MODEL_MAX_KERNEL 64
#define FR_MODEL_MAX_LAYER_ACTIVATION (64LL << 20) /* floats per image in one layer output */
#define FR_MODEL_MAX_PARAMS (256LL << 20)    /* floats in all weights, biases, slopes */

/* Number of floats in a layer's weight tensor. */
int64_t fr_layer_weight_count(const fr_layer *layer);
/* Multiply-accumulates per image for the whole model. */
int64_t fr_model_macs(const fr_model *model);
/* Checks shapes, indices, padding and pointers; names the first bad layer. */
int fr_model_validate(const fr_model *model, fr_error *err);
void fr_model_free(fr_model *model); /* frees layers and arrays; the struct itself is the caller's */
/* Floats in all weights, biases and slopes. */
int64_t fr_model_param_count(const fr_model *model);
/* Hex SHA-256 over every layer's weights, bias and slope (if any), in layer
 * order, as little-endian float32: the identity of the numbers, whatever file
 * they came in. */
int fr_model_weights_sha256(const fr_model *model, char out[65], fr_error *err);
/* The optional tensor at path, or NULL. */
const fr_model_tensor *fr_model_find_tensor(const fr_model *model, const char *path);
/* Adds or replaces the tensor at path (copies data); checks the path, shape and values. */
int fr_model_set_tensor(fr_model *model, const char *path, int rank, const int64_t *dims, const float *data,
                        fr_error *err);
/* Frees and clears model->training. */
void fr_model_training_clear(fr_model_training *t);
/* Index of the layer with that name, or -1. */
int fr_model_find_layer(const fr_model *model, const char *name);
/* "conv"/"depthwise" and "none"/"prelu"/"relu"; parse returns -1 on an unknown name. */
const char *fr_layer_kind_name(fr_layer_kind kind);
const char *fr_activation_name(fr_activation act);
int fr_layer_kind_parse(const char *s);
int fr_activation_parse(const char *s);

/* TFLite flatbuffer -> fr_model (worker/nn/tflite_import.c). Bounds-checked:
 * a corrupt, truncated or foreign file gets FR_ERR_FORMAT naming the file. */
int fr_model_import_tflite(const char *path, fr_model *out, fr_error *err);
int fr_model_import_tflite_buffer(const uint8_t *data, size_t size, const char *name, fr_model *out,
                                  fr_error *err);

/* HDF5 model file (worker/nn/model_file.c, schema in docs/MODEL_FORMAT.md).
 * save writes a temporary file next to path and renames it over path, so a
 * crash never leaves a half-written model. The file carries a 512-byte user
 * block with a SHA-256 of the HDF5 part; load checks it before HDF5 parses a
 * single byte, then validates every attribute and dataset. */
int fr_model_save(const fr_model *model, const char *path, fr_error *err);
int fr_model_load(const char *path, fr_model *out, fr_error *err);
/* Recomputes the user-block checksum after a deliberate in-place edit of a
 * model file with HDF5 (e.g. adding an optional group); load rejects edited
 * files that were not resealed. */
int fr_model_file_seal(const char *path, fr_error *err);
/* Replaces (or adds) the /ui_centre group of an existing model file: copies the file,
 * edits the copy with HDF5 (every other group, known or not, is kept), reseals it and
 * renames it over path. centre: embedding_size floats, unit length (checked). */
int fr_model_file_set_ui_centre(const char *path, const float *centre, int dim, const fr_ui_provenance *prov,
                                fr_error *err);
/* Human-readable summary of a model file (for `faceri model info`): attributes,
 * layer table, MACs, SHA-256s. */
int fr_model_print_info(const char *path, FILE *out, fr_error *err);

/* Where commands look when --model is not given: $FACERI_MODEL, else
 * ./models/mobilefacenet.h5, else models/mobilefacenet.h5 in the source checkout. */
const char *fr_model_default_path(void);

#endif
