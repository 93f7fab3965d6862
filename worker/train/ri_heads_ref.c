/* The heads and loss terms of faceri/ri_heads.h in double on the CPU: the ground truth
 * for the device, itself checked against central finite differences. Written for
 * clarity (naive loops, everything materialised), not speed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/ops.h"
#include "faceri/train_ops.h"
#include "ri_heads_internal.h"

/* ---- the tensor layout, shared with the device module ---- */

static const char *const tensor_names[T_COUNT] = {
    "regression/fc_weight",         "regression/fc_bias",          "attention/mlp_fc1_weight",
    "attention/mlp_fc1_bias",       "attention/mlp_fc2_weight",    "attention/mlp_fc2_bias",
    "attention/spatial_conv_weight", "attention/spatial_bn_gamma", "attention/spatial_bn_beta",
    "attention/fc_weight",          "attention/fc_bias",           "attention/spatial_bn_running_mean",
    "attention/spatial_bn_running_var"};

static int hidden(const fr_ri_heads_config *c) { return c->c / c->reduction > 0 ? c->c / c->reduction : 1; }

/* Without attention only the regression head's tensors exist. */
int fr_ri_ref_tensor_count(const fr_ri_heads_config *cfg) { return cfg->attention ? T_COUNT : T_MLP1_W; }

size_t fr_ri_ref_tensor_size(const fr_ri_heads_config *cfg, int i)
{
  size_t hwc = (size_t)cfg->h * cfg->w * cfg->c, c = (size_t)cfg->c, r = (size_t)hidden(cfg);
  size_t k = (size_t)cfg->spatial_kernel;
  switch (i) {
  case T_REG_W: return cfg->reg_input == FR_RI_REG_EMBEDDING ? (size_t)cfg->dim : hwc;
  case T_REG_B: return 1;
  case T_MLP1_W: return r * c;
  case T_MLP1_B: return r;
  case T_MLP2_W: return c * r;
  case T_MLP2_B: return c;
  case T_CONV_W: return k * k * 2;
  case T_BN_G: case T_BN_B: case T_BN_RM: case T_BN_RV: return 1;
  case T_ATT_W: return (size_t)cfg->dim * hwc;
  case T_ATT_B: return (size_t)cfg->dim;
  default: return 0;
  }
}

const char *fr_ri_ref_tensor_name(const fr_ri_heads_config *cfg, int i)
{
  return i >= 0 && i < fr_ri_ref_tensor_count(cfg) ? tensor_names[i] : NULL;
}

int fr_ri_ref_tensor_trainable(const fr_ri_heads_config *cfg, int i)
{
  return i >= 0 && i < fr_ri_ref_tensor_count(cfg) && i != T_BN_RM && i != T_BN_RV;
}

/* ---- forward and backward ---- */

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static void spatial_conv_params(const fr_ri_heads_config *cfg, int batch, fr_conv_params *p)
{
  memset(p, 0, sizeof(*p));
  p->batch = batch;
  p->in_h = p->out_h = cfg->h;
  p->in_w = p->out_w = cfg->w;
  p->in_c = 2;
  p->out_c = 1;
  p->kernel_h = p->kernel_w = cfg->spatial_kernel;
  p->stride_h = p->stride_w = 1;
  p->pad_top = p->pad_left = cfg->spatial_kernel / 2;
}

typedef struct rows_sel {
  int l1, id, mse;
} rows_sel;

static rows_sel row_terms(const fr_ri_heads_config *cfg, const fr_ri_ref_inputs *in, int r)
{
  int ui = in->flags && (in->flags[r] & 1);
  rows_sel s;
  s.l1 = (ui ? (cfg->ui_terms & FR_RI_TERM_L1) != 0 : 1) && isfinite(in->xi[r]);
  s.id = ui ? (cfg->ui_terms & FR_RI_TERM_ID) != 0 : 1;
  s.mse = cfg->attention && (ui ? (cfg->ui_terms & FR_RI_TERM_MSE) != 0 : 1);
  return s;
}

/* Everything the backward needs from the forward. */
typedef struct ref_ws {
  double *xr;                  /* regression input after dropout [B, K] */
  double *x2, *hpre, *z;       /* MLP rows: 2b = avg path, 2b + 1 = max path */
  double *mc, *f1, *P, *S, *Sn, *ms, *f2;
  double *va, *dF;             /* stand-ins for outputs the caller did not ask for */
} ref_ws;

static void free_ws(ref_ws *w)
{
  double *p[] = {w->xr, w->x2, w->hpre, w->z, w->mc, w->f1, w->P, w->S, w->Sn, w->ms, w->f2, w->va, w->dF};
  for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
    free(p[i]);
}

static void attention_forward(const fr_ri_heads_config *cfg, double *const *prm, const fr_ri_ref_inputs *in,
                              ref_ws *w, double *v_attn, int update_running)
{
  int B = in->batch, HW = cfg->h * cfg->w, C = cfg->c, R = hidden(cfg), D = cfg->dim;
  size_t hwc = (size_t)HW * C;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++) {
      double s = 0, m = -INFINITY;
      for (int p = 0; p < HW; p++) {
        double x = in->F[(size_t)b * hwc + (size_t)p * C + c];
        s += x;
        if (x > m)
          m = x;
      }
      w->x2[(size_t)(2 * b) * C + c] = s / HW;
      w->x2[(size_t)(2 * b + 1) * C + c] = m;
    }
  for (int r = 0; r < 2 * B; r++) {
    for (int j = 0; j < R; j++) {
      double s = prm[T_MLP1_B][j];
      for (int c = 0; c < C; c++)
        s += prm[T_MLP1_W][(size_t)j * C + c] * w->x2[(size_t)r * C + c];
      w->hpre[(size_t)r * R + j] = s;
    }
    for (int c = 0; c < C; c++) {
      double s = prm[T_MLP2_B][c];
      for (int j = 0; j < R; j++)
        s += prm[T_MLP2_W][(size_t)c * R + j] * fmax(w->hpre[(size_t)r * R + j], 0.0);
      w->z[(size_t)r * C + c] = s;
    }
  }
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      w->mc[(size_t)b * C + c] = sigmoid(w->z[(size_t)(2 * b) * C + c] + w->z[(size_t)(2 * b + 1) * C + c]);
  for (int b = 0; b < B; b++)
    for (int p = 0; p < HW; p++) {
      double m = -INFINITY, s = 0;
      for (int c = 0; c < C; c++) {
        size_t i = (size_t)b * hwc + (size_t)p * C + c;
        double x = in->F[i] * w->mc[(size_t)b * C + c];
        w->f1[i] = x;
        s += x;
        if (x > m)
          m = x;
      }
      w->P[((size_t)b * HW + p) * 2] = m;
      w->P[((size_t)b * HW + p) * 2 + 1] = s / C;
    }
  fr_conv_params cp;
  spatial_conv_params(cfg, B, &cp);
  fr_ref_train_conv_fwd(&cp, w->P, prm[T_CONV_W], NULL, w->S);
  int rows = B * HW;
  if (in->training) {
    fr_ref_train_bn_fwd(rows, 1, cfg->bn_eps, cfg->bn_momentum, w->S, prm[T_BN_G], prm[T_BN_B], w->Sn, NULL, NULL,
                        NULL, update_running ? prm[T_BN_RM] : NULL, update_running ? prm[T_BN_RV] : NULL);
  } else {
    double is = 1.0 / sqrt(prm[T_BN_RV][0] + (double)cfg->bn_eps);
    for (int i = 0; i < rows; i++)
      w->Sn[i] = prm[T_BN_G][0] * (w->S[i] - prm[T_BN_RM][0]) * is + prm[T_BN_B][0];
  }
  for (int i = 0; i < rows; i++)
    w->ms[i] = sigmoid(w->Sn[i]);
  for (int b = 0; b < B; b++)
    for (int p = 0; p < HW; p++)
      for (int c = 0; c < C; c++) {
        size_t i = (size_t)b * hwc + (size_t)p * C + c;
        w->f2[i] = w->f1[i] * w->ms[b * HW + p];
      }
  for (int b = 0; b < B; b++)
    for (int d = 0; d < D; d++) {
      double s = prm[T_ATT_B][d];
      for (size_t k = 0; k < hwc; k++)
        s += prm[T_ATT_W][(size_t)d * hwc + k] * w->f2[(size_t)b * hwc + k];
      v_attn[(size_t)b * D + d] = s;
    }
}

static void attention_backward(const fr_ri_heads_config *cfg, double *const *prm, const fr_ri_ref_inputs *in,
                               const ref_ws *w, const double *dva, double *const *g, double *dF)
{
  int B = in->batch, HW = cfg->h * cfg->w, C = cfg->c, R = hidden(cfg), D = cfg->dim;
  size_t hwc = (size_t)HW * C, n = (size_t)B * hwc;
  double *df1 = calloc(n, sizeof(double)), *dms = calloc((size_t)B * HW, sizeof(double));
  double *dsn = calloc((size_t)B * HW, sizeof(double)), *dS = calloc((size_t)B * HW, sizeof(double));
  double *dP = calloc((size_t)B * HW * 2, sizeof(double)), *dx2 = calloc((size_t)2 * B * C, sizeof(double));
  double *dz = calloc((size_t)B * C, sizeof(double)), *dh = calloc((size_t)R, sizeof(double));
  if (!df1 || !dms || !dsn || !dS || !dP || !dx2 || !dz || !dh)
    goto out;
  for (int d = 0; d < D; d++) {
    for (int b = 0; b < B; b++)
      g[T_ATT_B][d] += dva[(size_t)b * D + d];
    for (size_t k = 0; k < hwc; k++) {
      double s = 0;
      for (int b = 0; b < B; b++)
        s += dva[(size_t)b * D + d] * w->f2[(size_t)b * hwc + k];
      g[T_ATT_W][(size_t)d * hwc + k] += s;
    }
  }
  for (int b = 0; b < B; b++)
    for (int p = 0; p < HW; p++)
      for (int c = 0; c < C; c++) {
        size_t i = (size_t)b * hwc + (size_t)p * C + c;
        double df2 = 0;
        for (int d = 0; d < D; d++)
          df2 += dva[(size_t)b * D + d] * prm[T_ATT_W][(size_t)d * hwc + (size_t)p * C + c];
        df1[i] = df2 * w->ms[b * HW + p];
        dms[b * HW + p] += df2 * w->f1[i];
      }
  int rows = B * HW;
  for (int i = 0; i < rows; i++)
    dsn[i] = dms[i] * w->ms[i] * (1 - w->ms[i]);
  fr_ref_train_bn_bwd(rows, 1, cfg->bn_eps, w->S, prm[T_BN_G], dsn, dS, g[T_BN_G], g[T_BN_B]);
  fr_conv_params cp;
  spatial_conv_params(cfg, B, &cp);
  fr_ref_train_conv_bwd(&cp, w->P, prm[T_CONV_W], dS, dP, g[T_CONV_W], NULL);
  /* Channel pools: the max to the first maximum, the mean to every channel. */
  for (int b = 0; b < B; b++)
    for (int p = 0; p < HW; p++) {
      size_t base = (size_t)b * hwc + (size_t)p * C;
      int am = 0;
      for (int c = 1; c < C; c++)
        if (w->f1[base + c] > w->f1[base + am])
          am = c;
      for (int c = 0; c < C; c++)
        df1[base + c] += (c == am ? dP[(b * HW + p) * 2] : 0.0) + dP[(b * HW + p) * 2 + 1] / C;
    }
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int p = 0; p < HW; p++) {
        size_t i = (size_t)b * hwc + (size_t)p * C + c;
        s += df1[i] * in->F[i];
        dF[i] += df1[i] * w->mc[(size_t)b * C + c];
      }
      double m = w->mc[(size_t)b * C + c];
      dz[(size_t)b * C + c] = s * m * (1 - m);
    }
  for (int r = 0; r < 2 * B; r++) {
    const double *dzr = dz + (size_t)(r / 2) * C;
    for (int c = 0; c < C; c++) {
      g[T_MLP2_B][c] += dzr[c];
      for (int j = 0; j < R; j++)
        g[T_MLP2_W][(size_t)c * R + j] += dzr[c] * fmax(w->hpre[(size_t)r * R + j], 0.0);
    }
    for (int j = 0; j < R; j++) {
      double s = 0;
      for (int c = 0; c < C; c++)
        s += dzr[c] * prm[T_MLP2_W][(size_t)c * R + j];
      dh[j] = w->hpre[(size_t)r * R + j] > 0 ? s : 0.0;
      g[T_MLP1_B][j] += dh[j];
      for (int c = 0; c < C; c++)
        g[T_MLP1_W][(size_t)j * C + c] += dh[j] * w->x2[(size_t)r * C + c];
    }
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int j = 0; j < R; j++)
        s += dh[j] * prm[T_MLP1_W][(size_t)j * C + c];
      dx2[(size_t)r * C + c] = s;
    }
  }
  /* Spatial pools: the mean to every position, the max to the first maximum. */
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++) {
      int am = 0;
      for (int p = 1; p < HW; p++)
        if (in->F[(size_t)b * hwc + (size_t)p * C + c] > in->F[(size_t)b * hwc + (size_t)am * C + c])
          am = p;
      for (int p = 0; p < HW; p++)
        dF[(size_t)b * hwc + (size_t)p * C + c] +=
            dx2[(size_t)(2 * b) * C + c] / HW + (p == am ? dx2[(size_t)(2 * b + 1) * C + c] : 0.0);
    }
out:
  free(df1), free(dms), free(dsn), free(dS), free(dP), free(dx2), free(dz), free(dh);
}

/* The loss terms and their gradients with respect to xi^, v_attn, v and xi. */
static void losses(const fr_ri_heads_config *cfg, const fr_ri_ref_inputs *in, const double *xh, const double *va,
                   fr_ri_ref_outputs *out, double *dxh, double *dva, double *dv, double *dxi)
{
  int B = in->batch, D = cfg->dim;
  double s1 = 0, sid = 0, smse = 0, us = 0, uss = 0;
  int n1 = 0, nid = 0, nmse = 0, nui = 0;
  double cn = 0;
  for (int d = 0; d < D; d++)
    cn += in->centre[d] * in->centre[d];
  cn = fmax(sqrt(cn), 1e-12);
  for (int r = 0; r < B; r++) {
    rows_sel s = row_terms(cfg, in, r);
    if (in->flags && (in->flags[r] & 1)) {
      nui++;
      us += xh[r];
    }
    if (s.l1) {
      double e = fabs(xh[r] - in->xi[r]);
      s1 += e < cfg->l1_beta ? 0.5 * e * e / cfg->l1_beta : e - 0.5 * cfg->l1_beta;
      n1++;
    }
    if (s.id) {
      sid += fmax(0.0, cfg->tau - (xh[r] - in->mu_ui) / in->sigma_ui);
      nid++;
    }
    if (s.mse) {
      nmse++;
    }
  }
  double umean = nui ? us / nui : 0;
  for (int r = 0; r < B; r++)
    if (in->flags && (in->flags[r] & 1))
      uss += (xh[r] - umean) * (xh[r] - umean);
  double nm = (double)nmse * (cfg->mse_sum_dim ? 1 : D);
  double *u = malloc((size_t)D * sizeof(double)), *e = malloc((size_t)D * sizeof(double));
  if (!u || !e)
    goto out;
  for (int r = 0; r < B; r++) {
    rows_sel s = row_terms(cfg, in, r);
    double g = 0;
    if (s.l1) {
      double d = xh[r] - in->xi[r];
      double gd = fabs(d) < cfg->l1_beta ? d / cfg->l1_beta : (d > 0 ? 1.0 : -1.0);
      g += cfg->alpha * gd / n1;
      if (dxi)
        dxi[r] = -cfg->alpha * gd / n1;
    } else if (dxi) {
      dxi[r] = 0;
    }
    if (s.id && cfg->tau - (xh[r] - in->mu_ui) / in->sigma_ui > 0)
      g -= cfg->beta / in->sigma_ui / nid;
    if (dxh)
      dxh[r] = g;
    if (!va)
      continue;
    const double *v = in->v + (size_t)r * D;
    double vn = 0;
    for (int d = 0; d < D; d++)
      vn += v[d] * v[d];
    vn = fmax(sqrt(vn), 1e-12);
    double uc = 0;
    for (int d = 0; d < D; d++) {
      u[d] = cfg->project_normalized ? v[d] / vn : v[d];
      uc += u[d] * in->centre[d] / cn;
    }
    double ec = 0, eu = 0;
    for (int d = 0; d < D; d++) {
      e[d] = va[(size_t)r * D + d] - (u[d] - uc * in->centre[d] / cn);
      if (s.mse)
        smse += e[d] * e[d];
      ec += e[d] * in->centre[d] / cn;
    }
    for (int d = 0; d < D; d++) {
      double k = s.mse ? cfg->gamma * 2.0 / nm : 0.0;
      if (dva)
        dva[(size_t)r * D + d] = k * e[d];
      /* dL/du = P dL/dv' = -k (e - c^ <c^, e>) */
      e[d] = -k * (e[d] - ec * in->centre[d] / cn);
      eu += e[d] * u[d];
    }
    if (dv && !cfg->detach_vproj && s.mse)
      for (int d = 0; d < D; d++)
        dv[(size_t)r * D + d] += cfg->project_normalized ? (e[d] - u[d] * eu) / vn : e[d];
  }
out:
  free(u), free(e);
  out->l1 = n1 ? s1 / n1 : 0;
  out->id = nid ? sid / nid : 0;
  out->mse = nmse ? smse / nm : 0;
  out->total = cfg->alpha * out->l1 + cfg->beta * out->id + cfg->gamma * out->mse;
  out->loss = (fr_ri_loss_values){(float)out->total, (float)out->l1, (float)out->id, (float)out->mse, n1, nid, nmse,
                                  nui, (float)umean, (float)(nui > 1 ? uss / (nui - 1) : 0)};
}

int fr_ri_ref_run(const fr_ri_heads_config *cfg, double *const *params, const fr_ri_ref_inputs *in,
                  fr_ri_ref_outputs *out, double *const *grads, double *dF, double *dv, double *dxi, fr_error *err)
{
  int B = in->batch, D = cfg->dim, HW = cfg->h * cfg->w;
  int emb = cfg->reg_input == FR_RI_REG_EMBEDDING;
  size_t K = fr_ri_ref_tensor_size(cfg, T_REG_W), hwc = (size_t)HW * cfg->c, n = (size_t)B * hwc;
  const double *xin = emb ? in->v : in->F;
  ref_ws w = {0};
  double *dxh = calloc((size_t)B, sizeof(double)), *dva = calloc((size_t)B * D, sizeof(double));
  w.xr = malloc((size_t)B * K * sizeof(double));
  w.va = malloc((size_t)B * D * sizeof(double));
  w.dF = malloc(n * sizeof(double));
  int ok = dxh && dva && w.xr && w.va && w.dF;
  if (cfg->attention) {
    w.x2 = malloc((size_t)2 * B * cfg->c * sizeof(double));
    w.hpre = malloc((size_t)2 * B * hidden(cfg) * sizeof(double));
    w.z = malloc((size_t)2 * B * cfg->c * sizeof(double));
    w.mc = malloc((size_t)B * cfg->c * sizeof(double));
    w.f1 = malloc(n * sizeof(double));
    w.f2 = malloc(n * sizeof(double));
    w.P = malloc((size_t)B * HW * 2 * sizeof(double));
    w.S = malloc((size_t)B * HW * sizeof(double));
    w.Sn = malloc((size_t)B * HW * sizeof(double));
    w.ms = malloc((size_t)B * HW * sizeof(double));
    ok = ok && w.x2 && w.hpre && w.z && w.mc && w.f1 && w.f2 && w.P && w.S && w.Sn && w.ms;
  }
  if (!ok) {
    free_ws(&w), free(dxh), free(dva);
    return fr_error_set(err, FR_ERR_NOMEM, "RI heads reference: out of memory (batch %d)", B);
  }
  double scale = in->training ? 1.0 / (1.0 - (double)cfg->dropout) : 1.0;
  for (int b = 0; b < B; b++) {
    double s = params[T_REG_B][0];
    for (size_t k = 0; k < K; k++) {
      size_t i = (size_t)b * K + k;
      int keep = !in->training || fr_train_dropout_keep(cfg->dropout, cfg->seed, in->step, (uint32_t)i);
      w.xr[i] = keep ? xin[i] * scale : 0.0;
      s += w.xr[i] * params[T_REG_W][k];
    }
    out->xi_hat[b] = s;
  }
  double *va = out->v_attn ? out->v_attn : w.va;
  if (cfg->attention)
    attention_forward(cfg, params, in, &w, va, in->update_running);
  double *dFt = dF ? dF : w.dF;
  if (in->training && grads) {
    for (int i = 0; i < fr_ri_ref_tensor_count(cfg); i++)
      if (fr_ri_ref_tensor_trainable(cfg, i))
        memset(grads[i], 0, fr_ri_ref_tensor_size(cfg, i) * sizeof(double));
    memset(dFt, 0, n * sizeof(double));
    if (dv)
      memset(dv, 0, (size_t)B * D * sizeof(double));
  }
  if (in->training) {
    losses(cfg, in, out->xi_hat, cfg->attention ? va : NULL, out, dxh, dva, dv, dxi);
    if (!cfg->attention)
      memset(dva, 0, (size_t)B * D * sizeof(double));
  }
  if (in->training && grads) {
    double *dreg = emb ? dv : dFt;
    for (int b = 0; b < B; b++) {
      grads[T_REG_B][0] += dxh[b];
      for (size_t k = 0; k < K; k++) {
        size_t i = (size_t)b * K + k;
        grads[T_REG_W][k] += dxh[b] * w.xr[i];
        int keep = fr_train_dropout_keep(cfg->dropout, cfg->seed, in->step, (uint32_t)i);
        if (dreg)
          dreg[i] += keep ? dxh[b] * params[T_REG_W][k] * scale : 0.0;
      }
    }
    if (cfg->attention)
      attention_backward(cfg, params, in, &w, dva, grads, dFt);
  }
  free_ws(&w), free(dxh), free(dva);
  return FR_OK;
}
