/* The test-time embedding choice (include/faceri/test_embedding.h). */
#include "faceri/test_embedding.h"

#include <math.h>
#include <string.h>

#include "faceri/ri_infer.h"

static const char *const names[] = {"v", "attn", "concat"};

int fr_test_embedding_parse(const char *text, fr_test_embedding *out, fr_error *err)
{
  for (int i = 0; i < 3; i++)
    if (text && strcmp(text, names[i]) == 0) {
      *out = (fr_test_embedding)i;
      return FR_OK;
    }
  return fr_error_set(err, FR_ERR_INVALID, "--test-embedding %s: expected v, attn or concat", text ? text : "(none)");
}

const char *fr_test_embedding_name(int kind) { return kind >= 0 && kind < 3 ? names[kind] : "unknown"; }

int fr_test_embedding_dim(fr_test_embedding kind, int d) { return kind == FR_TEST_EMBEDDING_CONCAT ? 2 * d : d; }

int fr_test_embedding_needs_attention(fr_test_embedding kind, int want_attn)
{
  return want_attn || kind != FR_TEST_EMBEDDING_V;
}

int fr_model_has_attention(const fr_model *m)
{
  fr_ri_heads_config cfg;
  int feature_layer;
  fr_error e = {0};
  return fr_model_has_ri_heads(m) && fr_ri_config_from_model(m, 1, &cfg, &feature_layer, &e) == FR_OK && cfg.attention;
}

int fr_test_embedding_check(const fr_model *m, const char *model_path, fr_test_embedding kind, int want_attn,
                            fr_error *err)
{
  if (!fr_test_embedding_needs_attention(kind, want_attn) || fr_model_has_attention(m))
    return FR_OK;
  return fr_error_set(err, FR_ERR_INVALID, "%s has no attention head: %s needs a model trained with `faceri train --ri` "
                      "(attention on)", model_path, want_attn ? "--embedding-attn" : "--test-embedding attn/concat");
}

/* Writes x / |x| (in double), or NaN when |x| is 0 or not finite; returns |x|. */
static double unit(const float *x, int d, float *out)
{
  double s = 0;
  for (int i = 0; i < d; i++)
    s += (double)x[i] * x[i];
  double n = sqrt(s);
  for (int i = 0; i < d && out; i++)
    out[i] = n > 0 && isfinite(n) ? (float)(x[i] / n) : NAN;
  return n;
}

void fr_test_embedding_rows(fr_test_embedding kind, const float *v_unit, const float *v_attn, int d, float *out,
                            float *attn_unit)
{
  if (attn_unit)
    unit(v_attn, d, attn_unit);
  switch (kind) {
  case FR_TEST_EMBEDDING_ATTN: unit(v_attn, d, out); break;
  case FR_TEST_EMBEDDING_CONCAT:
    /* Each half unit length first, so neither dominates; then the whole renormalised. */
    unit(v_unit, d, out);
    unit(v_attn, d, out + d);
    unit(out, 2 * d, out);
    break;
  default: memcpy(out, v_unit, (size_t)d * sizeof(float)); break;
  }
}
