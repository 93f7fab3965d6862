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

/* The same, plus the learned recognizability index xi^ per image (ri[batch]) when the
 * model has RI heads (docs/RI_HEADS.md): they run on the feature layer's output in the
 * same device submission. Without heads (or ri NULL) ri is filled with NaN / untouched. */
int fr_engine_run_ri(fr_engine *engine, const float *input, int batch, float *embeddings, float *norms, float *raw,
                     float *ri, fr_error *err);
/* 1 when the engine computes the learned RI (the model has feature-map RI heads). */
int fr_engine_has_ri(const fr_engine *engine);

int fr_engine_chunk_size(const fr_engine *engine);       /* images per device submission */
uint64_t fr_engine_activation_bytes(const fr_engine *engine);
uint64_t fr_engine_weight_bytes(const fr_engine *engine);

/* Per-layer device time summed over every run since the last reset (timing on). */
int fr_engine_timing_count(const fr_engine *engine);
void fr_engine_timing(const fr_engine *engine, int i, const char **label, const char **kernel, double *total_ms);
void fr_engine_reset_timings(fr_engine *engine);

#endif
