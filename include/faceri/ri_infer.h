#ifndef FACERI_RI_INFER_H
#define FACERI_RI_INFER_H
/* The learned RI at inference (issue 6 item 5): the RI heads of a model trained by
 * `faceri train --ri`, read from the model file's /heads/ri tensors
 * (docs/MODEL_FORMAT.md §4.2), run on the feature map F of the model's feature layer
 * (layer 48 of MobileFaceNet, after its PReLU) and, for the CR-FIQA-style option,
 * the raw embedding v. Outputs: xi^ per image (for /quality/ri) and, with the
 * attention head, v_attn [dim] per image (for /embedding_attn). Inference semantics:
 * no dropout, the spatial attention's batch norm with its running statistics, no
 * coupling between images (any chunking gives the same numbers).
 *
 * Worker use: create once per model; for every chunk, after the engine has written F
 * (NHWC [nb, h, w, c]) and v into device buffers, record fr_ri_infer_record into the
 * same sequence (it puts barriers around its own dispatches), or its two parts where F
 * and v live at different times (the engine: fr_engine_run_outputs), run, then read
 * fr_ri_infer_read. fr_ri_infer_run does all of it from host arrays. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/model.h"
#include "faceri/ri_heads.h"
#include "faceri/vk_context.h"

/* /heads/ri/config: float32 [FR_RI_CONFIG_FLOATS], fields in this order. */
enum {
  FR_RI_CFG_VERSION, FR_RI_CFG_FEATURE_LAYER, FR_RI_CFG_H, FR_RI_CFG_W, FR_RI_CFG_C, FR_RI_CFG_DIM,
  FR_RI_CFG_REG_INPUT, FR_RI_CFG_ATTENTION, FR_RI_CFG_REDUCTION, FR_RI_CFG_KERNEL, FR_RI_CFG_BN_EPS,
  FR_RI_CFG_BN_MOMENTUM, FR_RI_CFG_DROPOUT, FR_RI_CFG_ALPHA, FR_RI_CFG_BETA, FR_RI_CFG_GAMMA, FR_RI_CFG_L1_BETA,
  FR_RI_CFG_TAU, FR_RI_CFG_DETACH_VPROJ, FR_RI_CFG_PROJECT_NORMALIZED, FR_RI_CFG_MSE_SUM_DIM, FR_RI_CFG_UI_TERMS,
  FR_RI_CONFIG_FLOATS
};
#define FR_RI_TENSOR_ROOT "heads/ri/"

/* The config tensor of heads trained on feature_layer. */
void fr_ri_config_encode(const fr_ri_heads_config *cfg, int feature_layer, float out[FR_RI_CONFIG_FLOATS]);
/* 1: the model has /heads/ri (config and every tensor); 0: none. */
int fr_model_has_ri_heads(const fr_model *m);
/* The heads' config (max_batch as given) and feature layer from the model's config
 * tensor, checked against the model's layers. */
int fr_ri_config_from_model(const fr_model *m, int max_batch, fr_ri_heads_config *cfg, int *feature_layer,
                            fr_error *err);
/* Writes every tensor of /heads/ri into h (a missing or mis-sized one is an error naming it). */
int fr_ri_heads_load_from_model(fr_ri_heads *h, const fr_model *m, fr_error *err);
/* The reverse: h's config (with the feature layer it sits on) and every tensor into m's
 * /heads/ri, as `faceri train --ri` checkpoints them. */
int fr_ri_heads_store_in_model(fr_ri_heads *h, int feature_layer, fr_model *m, fr_error *err);

typedef struct fr_ri_infer fr_ri_infer;

int fr_ri_infer_create(fr_vk_context *ctx, const fr_model *m, int max_batch, fr_ri_infer **out, fr_error *err);
void fr_ri_infer_destroy(fr_ri_infer *r);
/* The layer whose output F is; the heads' config. */
int fr_ri_infer_feature_layer(const fr_ri_infer *r);
const fr_ri_heads_config *fr_ri_infer_config(const fr_ri_infer *r);
/* Rows [row0, row0 + nb) of the batch buffers; F [nb, h, w, c]; v [nb, dim] (read only
 * for the embedding regression; may be {0} otherwise). */
int fr_ri_infer_record(fr_ri_infer *r, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                       fr_error *err);
/* The same in parts (FR_RI_INFER_FEATURES: what reads F, right after the feature layer;
 * FR_RI_INFER_EMBEDDING: the embedding regression, once the raw embedding exists), for
 * an engine that reuses F's buffer before v is computed. */
int fr_ri_infer_record_parts(fr_ri_infer *r, fr_vk_sequence *seq, int row0, int nb, fr_vk_arg F, fr_vk_arg v,
                             int parts, fr_error *err);
/* xi^ [n] and (attention only, else pass NULL) v_attn [n, dim] of rows [0, n). */
int fr_ri_infer_read(fr_ri_infer *r, int n, float *xi_hat, float *v_attn, fr_error *err);
/* Host arrays in, host arrays out: F [n, h, w, c], v [n, dim] (may be NULL unless the
 * embedding regression), n <= max_batch. */
int fr_ri_infer_run(fr_ri_infer *r, const float *F, const float *v, int n, float *xi_hat, float *v_attn,
                    fr_error *err);

#endif
