#ifndef FACERI_ENGINE_H
#define FACERI_ENGINE_H
/* Runs a model on a Vulkan device: weights uploaded once, activations in a few
 * reused buffers, one recorded command buffer per batch size, the batch split
 * into chunks so no tensor exceeds the device's storage-buffer range. */
#include "faceri/model.h"
#include "faceri/vk_context.h"

typedef struct fr_engine fr_engine;

typedef struct fr_engine_options {
  int max_batch;  /* largest batch fr_engine_run accepts in one call; chunked on the device as needed */
  int timing;     /* 1: time every layer with timestamp queries (where the device has them) */
} fr_engine_options;

int fr_engine_create(fr_vk_context *ctx, const fr_model *model, const fr_engine_options *opts, fr_engine **out,
                     fr_error *err);
void fr_engine_destroy(fr_engine *engine);

/* input: batch x H x W x C float32, already normalised (NHWC as the model says).
 * embeddings: batch x D, L2-normalised; norms: batch (the raw embedding's norm);
 * raw (may be NULL): batch x D before normalisation. */
int fr_engine_run(fr_engine *engine, const float *input, int batch, float *embeddings, float *norms, float *raw,
                  fr_error *err);

/* Everything one run gives; a NULL pointer is an output not wanted. */
typedef struct fr_engine_outputs {
  float *embeddings; /* [batch, D] L2-normalised */
  float *norms;      /* [batch] the raw embedding's norm */
  float *raw;        /* [batch, D] before normalisation */
  float *ri;         /* [batch] the learned recognizability index xi^ (NaN: the model has no RI heads) */
  float *v_attn;     /* [batch, D] the attention head's embedding (NaN: no attention head; see
                        fr_engine_attention_dim) */
} fr_engine_outputs;

/* The model's RI heads (docs/RI_HEADS.md) run in the same device submission: the
 * attention head and the feature-map regression on the feature layer's output, the
 * embedding regression (CR-FIQA style) on the raw embedding after the last layer. */
int fr_engine_run_outputs(fr_engine *engine, const float *input, int batch, const fr_engine_outputs *out,
                          fr_error *err);
/* fr_engine_run plus ri (may be NULL), as fr_engine_run_outputs. */
int fr_engine_run_ri(fr_engine *engine, const float *input, int batch, float *embeddings, float *norms, float *raw,
                     float *ri, fr_error *err);
/* 1 when the engine computes the learned RI (the model has RI heads it can run). */
int fr_engine_has_ri(const fr_engine *engine);
/* 1 when it also gives v_attn (the heads include the attention head). */
int fr_engine_has_attention(const fr_engine *engine);
/* Floats per image of v_attn (the embedding size), 0 without an attention head. */
int fr_engine_attention_dim(const fr_engine *engine);

int fr_engine_chunk_size(const fr_engine *engine);       /* images per device submission */
uint64_t fr_engine_activation_bytes(const fr_engine *engine);
uint64_t fr_engine_weight_bytes(const fr_engine *engine);

/* Per-layer device time summed over every run since the last reset (timing on). */
int fr_engine_timing_count(const fr_engine *engine);
void fr_engine_timing(const fr_engine *engine, int i, const char **label, const char **kernel, double *total_ms);
void fr_engine_reset_timings(fr_engine *engine);

#endif
