#ifndef FACERI_TEST_EMBEDDING_H
#define FACERI_TEST_EMBEDDING_H
/* What a run's /embedding holds (--test-embedding) and the optional
 * /embedding_attn (--embedding-attn), from the engine's v and v_attn
 * (docs/RI_HEADS.md "Test-time embedding"). One place computes the rows, so
 * `faceri embed` and the fleet's workers give the same bytes. */
#include "faceri/error.h"
#include "faceri/model.h"

typedef enum fr_test_embedding {
  FR_TEST_EMBEDDING_V = 0,     /* the backbone embedding v (ArcFace's): the default */
  FR_TEST_EMBEDDING_ATTN = 1,  /* v_attn / |v_attn| */
  FR_TEST_EMBEDDING_CONCAT = 2 /* normalize([v/|v|, v_attn/|v_attn|]): 2 D floats */
} fr_test_embedding;

/* "v", "attn", "concat" -> kind; FR_ERR_INVALID naming the text otherwise. */
int fr_test_embedding_parse(const char *text, fr_test_embedding *out, fr_error *err);
const char *fr_test_embedding_name(int kind); /* "v", "attn", "concat"; "unknown" */
/* Floats per /embedding row for a model of embedding size d. */
int fr_test_embedding_dim(fr_test_embedding kind, int d);
/* 1 when the kind or --embedding-attn needs the model's attention head. */
int fr_test_embedding_needs_attention(fr_test_embedding kind, int want_attn);

/* 1 when the model's RI heads include the attention head (what
 * fr_engine_has_attention says once an engine runs it). */
int fr_model_has_attention(const fr_model *m);
/* Refuses (FR_ERR_INVALID, naming model_path and the option) a choice the
 * model cannot give: --embedding-attn or a kind other than v without an
 * attention head. Needs no device: the coordinator checks before any worker. */
int fr_test_embedding_check(const fr_model *m, const char *model_path, fr_test_embedding kind, int want_attn,
                            fr_error *err);

/* One image: v_unit [d] (L2-normalised v), v_attn [d] (raw, from the engine).
 * out [fr_test_embedding_dim] gets the /embedding row; attn_unit [d] (may be
 * NULL) the /embedding_attn row. A zero or non-finite v_attn gives NaN rows. */
void fr_test_embedding_rows(fr_test_embedding kind, const float *v_unit, const float *v_attn, int d, float *out,
                            float *attn_unit);

#endif
