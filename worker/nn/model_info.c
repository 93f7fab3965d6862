/* `faceri model info` after the layer table (fr_model_print_info): where the UI centre
 * came from, which heads the model carries and how they were configured, and where
 * training left it. Everything is read from the loaded model; nothing is recomputed
 * but a fingerprint of the UI input list, so two centres can be compared at a glance. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/model.h"
#include "faceri/ri_infer.h"
#include "model_file_internal.h"

#define UI_INPUT_LINES 5     /* input lines shown; the rest are counted */
#define CLASS_NAMES_SHOWN 3

static void sha256_hex(const char *s, size_t n, char out[65])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_Digest(s, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
    snprintf(out, 65, "unavailable");
    return;
  }
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void fr_mf_print_ui(const fr_model *m, FILE *out)
{
  if (!m->ui_centre) {
    fprintf(out, "\nUI centre       none (faceri model set-ui adds one)\n");
    return;
  }
  const float *s = m->ui.d_ui_stats;
  fprintf(out, "\nUI centre       %d-d, mean of %d UI faces (%s), made %s, resultant length %.4f\n", m->embedding_size,
          m->ui.count, m->ui.face_region, m->ui.created, m->ui.resultant);
  fprintf(out, "UI set d_UI     mean %.4f std %.4f min %.4f p5 %.4f p50 %.4f p95 %.4f max %.4f\n", s[0], s[1], s[2],
          s[3], s[4], s[5], s[6]);
  const char *in = m->ui.inputs ? m->ui.inputs : "";
  size_t len = strlen(in);
  int lines = 0;
  for (const char *p = in; *p; p++)
    lines += *p == '\n' || (p[1] == '\0' && *p != '\n');
  char hex[65];
  sha256_hex(in, len, hex);
  fprintf(out, "UI inputs       %d listed (path, size, mtime, sha256), fingerprint sha256 %s\n", lines, hex);
  const char *p = in;
  for (int i = 0; i < UI_INPUT_LINES && *p; i++) {
    const char *e = strchr(p, '\n');
    int n = e ? (int)(e - p) : (int)strlen(p);
    fprintf(out, "                %.*s\n", n, p);
    p = e ? e + 1 : p + n;
  }
  if (lines > UI_INPUT_LINES)
    fprintf(out, "                ... and %d more\n", lines - UI_INPUT_LINES);
}

static size_t tensor_size(const fr_model_tensor *t)
{
  size_t n = 1;
  for (int k = 0; k < t->rank; k++)
    n *= (size_t)t->dims[k];
  return n;
}

/* Floats of the model's tensors whose path starts with prefix. */
static size_t floats_under(const fr_model *m, const char *prefix)
{
  size_t n = 0;
  for (int i = 0; i < m->n_tensors; i++)
    if (!strncmp(m->tensors[i].path, prefix, strlen(prefix)))
      n += tensor_size(&m->tensors[i]);
  return n;
}

static float first_value(const fr_model *m, const char *path)
{
  const fr_model_tensor *t = fr_model_find_tensor(m, path);
  return t ? t->data[0] : 0.0f;
}

static void print_heads(const fr_model *m, FILE *out)
{
  fr_ri_heads_config k;
  int feature = -1;
  fr_error err = {0};
  if (fr_ri_config_from_model(m, 1, &k, &feature, &err) != FR_OK) {
    fprintf(out, "RI heads        unreadable: %s\n", err.message);
    return;
  }
  fprintf(out, "RI heads        regression%s, on layer %d (%s, %dx%dx%d), dim %d, %zu parameters\n",
          k.attention ? " and attention" : " only", feature, m->layers[feature].name, k.h, k.w, k.c, k.dim,
          floats_under(m, FR_RI_TENSOR_ROOT "regression/") + floats_under(m, FR_RI_TENSOR_ROOT "attention/"));
  fprintf(out, "  regression    on the %s (%zu parameters), dropout %g in training\n",
          k.reg_input == FR_RI_REG_EMBEDDING ? "raw embedding (CR-FIQA style)" : "flattened feature map",
          floats_under(m, FR_RI_TENSOR_ROOT "regression/"), (double)k.dropout);
  if (k.attention)
    fprintf(out,
            "  attention     CBAM (reduction %d, %dx%d spatial conv, BN eps %g momentum %g, running mean %.4g var %.4g) "
            "-> v_attn [%d], %zu parameters\n",
            k.reduction, k.spatial_kernel, k.spatial_kernel, (double)k.bn_eps, (double)k.bn_momentum,
            (double)first_value(m, FR_RI_TENSOR_ROOT "attention/spatial_bn_running_mean"),
            (double)first_value(m, FR_RI_TENSOR_ROOT "attention/spatial_bn_running_var"), k.dim,
            floats_under(m, FR_RI_TENSOR_ROOT "attention/"));
  else
    fprintf(out, "  attention     none (no v_attn, no MSE term)\n");
  fprintf(out,
          "  losses        alpha %g, beta %g, gamma %g; tau %g, smooth-L1 beta %g; v' from %s, %s; MSE %s; UI rows "
          "in%s%s%s%s\n",
          (double)k.alpha, (double)k.beta, (double)k.gamma, (double)k.tau, (double)k.l1_beta,
          k.project_normalized ? "v/|v|" : "the raw v", k.detach_vproj ? "detached" : "not detached",
          k.mse_sum_dim ? "summed over dim" : "mean over rows x dim", k.ui_terms ? "" : " none",
          k.ui_terms & FR_RI_TERM_L1 ? " L1" : "", k.ui_terms & FR_RI_TERM_ID ? " ID" : "",
          k.ui_terms & FR_RI_TERM_MSE ? " MSE" : "");
  const fr_model_tensor *u = fr_model_find_tensor(m, FR_RI_TENSOR_ROOT "ui_stats");
  if (u && tensor_size(u) >= 3)
    fprintf(out, "  UI xi^        %.0f samples, mean %.5g, variance %.5g (the state of --mu-sigma estimate)\n",
            (double)u->data[0], (double)u->data[1], (double)u->data[2]);
}

/* The value of "key": in a one-line JSON object (the first match; string quotes
 * dropped), or "" when absent. Enough for the flat config faceri train writes. */
static void json_value(const char *json, const char *key, char *out, size_t cap)
{
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  const char *p = json ? strstr(json, pat) : NULL;
  out[0] = '\0';
  if (!p)
    return;
  p += strlen(pat);
  int quoted = *p == '"';
  p += quoted;
  size_t n = 0;
  while (p[n] && n + 1 < cap && (quoted ? p[n] != '"' : p[n] != ',' && p[n] != '}'))
    n++;
  memcpy(out, p, n);
  out[n] = '\0';
}

static void print_training(const fr_model *m, FILE *out)
{
  const fr_model_training *t = &m->training;
  if (!t->present) {
    fprintf(out, "training        none\n");
    return;
  }
  char images[32], batch[32];
  json_value(t->config, "images", images, sizeof(images));
  json_value(t->config, "batch", batch, sizeof(batch));
  long long spe = atoll(batch) > 0 ? atoll(images) / atoll(batch) : 0;
  fprintf(out, "training        step %lld", (long long)t->step);
  if (spe > 0)
    fprintf(out, " = %.2f epochs of %lld steps (%s images, batch %s)", (double)t->step / (double)spe, spe, images,
            batch);
  fprintf(out, "\n  classes       %d", t->n_classes);
  const char *name = t->class_names;
  for (int i = 0; name && i < t->n_classes && i < CLASS_NAMES_SHOWN; i++, name += strlen(name) + 1)
    fprintf(out, "%s%s", i ? ", " : ": ", name);
  fprintf(out, "%s\n", t->n_classes > CLASS_NAMES_SHOWN ? ", ..." : "");
  fprintf(out, "  loss history  %lld values", (long long)(t->loss ? t->step : 0));
  if (t->loss && t->step > 0)
    fprintf(out, ", %.5f at the first step, %.5f at the last", (double)t->loss[0], (double)t->loss[t->step - 1]);
  fprintf(out, "\n  optimizer     %zu bytes of state\n", t->optimizer_state_size);
  static const char *const keys[] = {"data", "loss", "optim", "lr", "schedule", "train_from", "seed", "alpha",
                                     "reg_input", "attention", "ui_images", "ui_per_batch", "mu_sigma", "degrade"};
  fprintf(out, "  config        ");
  int shown = 0;
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    char v[80];
    json_value(t->config, keys[i], v, sizeof(v));
    if (!v[0])
      continue;
    if (!strcmp(keys[i], "data") && strlen(v) > 16)
      v[16] = '\0'; /* a fingerprint: its start tells two apart */
    fprintf(out, "%s%s %s", shown++ ? ", " : "", keys[i], v);
  }
  fprintf(out, "%s\n  config JSON   %s\n", shown ? "" : "(no known fields)", t->config ? t->config : "");
}

void fr_mf_print_extras(const fr_model *m, FILE *out)
{
  fprintf(out, "\n");
  if (m->n_tensors == 0)
    fprintf(out, "heads           none (faceri train writes /prototypes; with --ri also /heads/ri)\n");
  for (int i = 0; i < m->n_tensors; i++) {
    const fr_model_tensor *t = &m->tensors[i];
    char shape[96] = "";
    size_t at = 0;
    for (int k = 0; k < t->rank && at < sizeof(shape); k++)
      at += (size_t)snprintf(shape + at, sizeof(shape) - at, "%s%lld", k ? "x" : "", (long long)t->dims[k]);
    fprintf(out, "%-15s /%s [%s]\n", i ? "" : "tensors", t->path, shape);
  }
  if (fr_model_has_ri_heads(m))
    print_heads(m, out);
  else if (m->n_tensors)
    fprintf(out, "RI heads        none (faceri train --ri adds them)\n");
  print_training(m, out);
}
