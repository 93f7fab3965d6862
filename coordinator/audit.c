/* faceri audit: identity prototypes, Eq. 1-3 per item against them, flags, and
 * the /audit group (include/faceri/audit.h; docs/FORMAT.md). Three streamed
 * passes over the embeddings: prototype sums, duplicates, per-item figures. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "audit_internal.h"
#include "faceri/cli_util.h"
#include "faceri/log.h"
#include "faceri/model.h"
#include "faceri/ri.h"
#include "faceri/similarity.h"
#include "faceri/vk_context.h"
#include "results_hdf5.h"

typedef struct audit_state {
  fr_results_reader *r;
  const fr_audit_options *o;
  eval_items it;
  int dim, L;
  int ers_q, unrec_q;  /* quality columns in it (-1 none) */
  double *sum;         /* [L, dim] prototype sums */
  double *sum2;        /* [L] |sum|^2 */
  int64_t *count;      /* [L] */
  float *proto;        /* [L, dim] unit prototypes (zero rows for empty identities) */
  float *centre;       /* model UI centre or NULL */
  uint8_t *flags;      /* [used] */
  /* per identity */
  int64_t *n_mislabel, *n_dup, *n_unrec;
  double *q_sum, *q_sum2, *ri_sum;
  int64_t *q_n, *ri_n;
} audit_state;

static void state_free(audit_state *s)
{
  eval_items_free(&s->it);
  void *ptrs[] = {s->sum, s->sum2, s->count, s->proto, s->centre, s->flags, s->n_mislabel, s->n_dup,
                  s->n_unrec, s->q_sum, s->q_sum2, s->ri_sum, s->q_n, s->ri_n};
  for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++)
    free(ptrs[i]);
}

/* Global rows per block so the [rows, L] score tile stays near 16 MiB. */
static int64_t block_rows(int L)
{
  int64_t rows = (4 << 20) / (L > 0 ? L : 1);
  return rows < 64 ? 64 : rows > 8192 ? 8192 : rows;
}

static int prototypes(audit_state *s, fr_error *err)
{
  int64_t B = 8192, items = fr_results_reader_items(s->r);
  float *rows = malloc((size_t)B * s->dim * sizeof(float));
  if (!rows)
    return fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for a block of rows");
  int rc = FR_OK;
  int64_t p = 0;
  for (int64_t g0 = 0; !rc && g0 < items && p < s->it.n; g0 += B) {
    int64_t n = items - g0 < B ? items - g0 : B;
    if (s->it.index[p] >= g0 + n)
      continue;
    if ((rc = fr_results_read_embedding(s->r, g0, n, rows, err)))
      break;
    for (; p < s->it.n && s->it.index[p] < g0 + n; p++) {
      const float *v = rows + (size_t)(s->it.index[p] - g0) * s->dim;
      double *acc = s->sum + (size_t)s->it.label[p] * s->dim;
      for (int k = 0; k < s->dim; k++) {
        if (!isfinite(v[k])) {
          rc = fr_error_set(err, FR_ERR_FORMAT, "%s: item %lld has status ok but a non-finite embedding",
                            fr_results_reader_path(s->r), (long long)s->it.index[p]);
          break;
        }
        acc[k] += v[k];
      }
      s->count[s->it.label[p]]++;
    }
  }
  free(rows);
  for (int l = 0; !rc && l < s->L; l++) {
    double n2 = 0;
    for (int k = 0; k < s->dim; k++)
      n2 += s->sum[(size_t)l * s->dim + k] * s->sum[(size_t)l * s->dim + k];
    s->sum2[l] = n2;
    double inv = n2 > 0 ? 1 / sqrt(n2) : 0;
    for (int k = 0; k < s->dim; k++)
      s->proto[(size_t)l * s->dim + k] = (float)(s->sum[(size_t)l * s->dim + k] * inv);
  }
  return rc;
}

/* d_UI from /quality/ers, else the model's centre, else 1 (says which in src). */
static void choose_ui(audit_state *s, fr_audit_summary *sum)
{
  int64_t finite = 0;
  for (int64_t i = 0; s->ers_q >= 0 && i < s->it.n; i++)
    finite += isfinite(s->it.quality[s->ers_q][i]);
  if (finite > 0) {
    snprintf(sum->d_ui_source, sizeof(sum->d_ui_source), "quality/ers (the model's UI centre, at embedding time)");
    return;
  }
  s->ers_q = -1;
  char path[1024] = "", sha[80] = "";
  if (s->o->model_path)
    snprintf(path, sizeof(path), "%s", s->o->model_path);
  else
    fr_results_reader_attr(s->r, "model_path", path, sizeof(path));
  fr_results_reader_attr(s->r, "model_sha256", sha, sizeof(sha));
  fr_model m = {0};
  fr_error merr = {0};
  if (path[0] && fr_model_load(path, &m, &merr) == FR_OK) {
    if (m.ui_centre && m.embedding_size == s->dim && (!sha[0] || !strcmp(sha, m.file_sha256))) {
      s->centre = m.ui_centre;
      m.ui_centre = NULL;
      snprintf(sum->d_ui_source, sizeof(sum->d_ui_source), "UI centre of %.100s", path);
    } else {
      snprintf(sum->d_ui_source, sizeof(sum->d_ui_source), "none (%.80s: %s): d_UI taken as 1", path,
               !m.ui_centre ? "no UI centre" : "not the results' model");
    }
    fr_model_free(&m);
  } else {
    snprintf(sum->d_ui_source, sizeof(sum->d_ui_source), "none (no model file): d_UI taken as 1");
  }
}

typedef struct out_sets {
  hid_t d_p, d_n, d_ui, ri, nearest, flags;
} out_sets;

static int per_item(audit_state *s, out_sets *ds, fr_audit_summary *sum, fr_error *err)
{
  int64_t B = block_rows(s->L), items = fr_results_reader_items(s->r);
  int dim = s->dim, L = s->L;
  float *rows = malloc((size_t)B * dim * sizeof(float)), *tile = malloc((size_t)B * L * sizeof(float));
  float *o_dp = malloc((size_t)B * sizeof(float)), *o_dn = malloc((size_t)B * sizeof(float));
  float *o_ui = malloc((size_t)B * sizeof(float)), *o_ri = malloc((size_t)B * sizeof(float));
  int32_t *o_near = malloc((size_t)B * sizeof(int32_t));
  uint8_t *o_flags = malloc((size_t)B);
  int rc = !rows || !tile || !o_dp || !o_dn || !o_ui || !o_ri || !o_near || !o_flags
               ? fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for a block of %lld rows", (long long)B)
               : FR_OK;
  double thr = sum->unrec_threshold;
  int64_t p = 0;
  for (int64_t g0 = 0; !rc && g0 < items; g0 += B) {
    int64_t n = items - g0 < B ? items - g0 : B;
    for (int64_t i = 0; i < n; i++) {
      o_dp[i] = o_dn[i] = o_ui[i] = o_ri[i] = NAN;
      o_near[i] = -1;
      o_flags[i] = 0;
    }
    int64_t p0 = p;
    while (p < s->it.n && s->it.index[p] < g0 + n)
      p++;
    if (p > p0) {
      if ((rc = fr_results_read_embedding(s->r, g0, n, rows, err)))
        break;
      fr_similarity_cpu(rows, n, s->proto, L, dim, tile, L);
    }
    for (int64_t q = p0; q < p; q++) {
      int64_t i = s->it.index[q] - g0;
      int y = s->it.label[q];
      const float *v = rows + (size_t)i * dim;
      const double *S = s->sum + (size_t)y * dim;
      double vs = 0, vv = 0;
      for (int k = 0; k < dim; k++) {
        vs += v[k] * S[k];
        vv += (double)v[k] * v[k];
      }
      /* Leave-one-out: cos(v, S_y - v) from <v, S_y>, |S_y|^2 and |v|^2. */
      double d_p = NAN;
      if (s->count[y] > 1) {
        double n2 = s->sum2[y] - 2 * vs + vv, c = n2 > 1e-24 ? (vs - vv) / sqrt(n2 * (vv > 0 ? vv : 1)) : 0;
        d_p = 1 - (c > 1 ? 1 : c < -1 ? -1 : c);
      }
      double best = -INFINITY;
      int nearest = -1;
      const float *t = tile + (size_t)i * L;
      for (int j = 0; j < L; j++)
        if (j != y && s->count[j] > 0 && t[j] > best) {
          best = t[j];
          nearest = j;
        }
      double d_n = 1 - (nearest < 0 ? -1 : best > 1 ? 1 : best < -1 ? -1 : best);
      double d_ui = s->ers_q >= 0 ? s->it.quality[s->ers_q][q] : s->centre ? 1 - fr_ri_cosine(v, s->centre, dim) : 1;
      double xi = fr_ri_xi(d_ui, d_n, d_p);
      uint8_t f = s->flags[q];
      if (d_p - d_n > sum->margin)
        f |= FR_AUDIT_MISLABEL;
      double qv = s->unrec_q >= 0 ? s->it.quality[s->unrec_q][q] : NAN;
      if (s->unrec_q >= 0 && qv < thr)
        f |= FR_AUDIT_UNRECOGNIZABLE;
      o_dp[i] = (float)d_p;
      o_dn[i] = (float)d_n;
      o_ui[i] = (float)d_ui;
      o_ri[i] = (float)xi;
      o_near[i] = nearest;
      o_flags[i] = f;
      s->n_mislabel[y] += !!(f & FR_AUDIT_MISLABEL);
      s->n_dup[y] += !!(f & FR_AUDIT_DUPLICATE);
      s->n_unrec[y] += !!(f & FR_AUDIT_UNRECOGNIZABLE);
      sum->mislabel += !!(f & FR_AUDIT_MISLABEL);
      sum->duplicate_items += !!(f & FR_AUDIT_DUPLICATE);
      sum->unrecognizable += !!(f & FR_AUDIT_UNRECOGNIZABLE);
      if (isfinite(qv)) {
        s->q_sum[y] += qv;
        s->q_sum2[y] += qv * qv;
        s->q_n[y]++;
      }
      if (isfinite(xi)) {
        s->ri_sum[y] += xi;
        s->ri_n[y]++;
      }
    }
    if (fr_h5_write_rows(ds->d_p, H5T_NATIVE_FLOAT, g0, (int)n, 0, o_dp) < 0 ||
        fr_h5_write_rows(ds->d_n, H5T_NATIVE_FLOAT, g0, (int)n, 0, o_dn) < 0 ||
        fr_h5_write_rows(ds->d_ui, H5T_NATIVE_FLOAT, g0, (int)n, 0, o_ui) < 0 ||
        fr_h5_write_rows(ds->ri, H5T_NATIVE_FLOAT, g0, (int)n, 0, o_ri) < 0 ||
        fr_h5_write_rows(ds->nearest, H5T_NATIVE_INT32, g0, (int)n, 0, o_near) < 0 ||
        fr_h5_write_rows(ds->flags, H5T_NATIVE_UINT8, g0, (int)n, 0, o_flags) < 0)
      rc = fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to write /audit rows %lld..%lld",
                        fr_results_reader_path(s->r), (long long)g0, (long long)(g0 + n));
  }
  free(rows);
  free(tile);
  free(o_dp);
  free(o_dn);
  free(o_ui);
  free(o_ri);
  free(o_near);
  free(o_flags);
  return rc;
}

static hid_t rows_set(hid_t f, const char *name, hid_t type, const void *fill, const char *desc)
{
  return fr_h5_create_rows(f, name, type, 0, 4096, fill, desc);
}

static int create_outputs(audit_state *s, out_sets *ds, fr_error *err)
{
  hid_t f = (hid_t)fr_results_reader_hid(s->r);
  float nan = NAN;
  int32_t none = -1;
  uint8_t zero = 0;
  if (H5Lexists(f, "audit", H5P_DEFAULT) > 0 && H5Ldelete(f, "audit", H5P_DEFAULT) < 0)
    return fr_error_set(err, FR_ERR_HDF5, "%s: cannot replace the old /audit", fr_results_reader_path(s->r));
  if (fr_h5_group(f, "audit") < 0 || fr_h5_group(f, "audit/duplicates") < 0 || fr_h5_group(f, "audit/identity") < 0)
    return fr_error_set(err, FR_ERR_HDF5, "%s: cannot create /audit", fr_results_reader_path(s->r));
  ds->d_p = rows_set(f, "audit/d_p", H5T_IEEE_F32LE, &nan, "1 - cos(embedding, own identity prototype without the item)");
  ds->d_n = rows_set(f, "audit/d_n", H5T_IEEE_F32LE, &nan, "1 - max cos(embedding, other identities' prototypes)");
  ds->d_ui = rows_set(f, "audit/d_ui", H5T_IEEE_F32LE, &nan, "d_UI used for Eq. 3 (see the d_ui_source attribute)");
  ds->ri = rows_set(f, "audit/ri", H5T_IEEE_F32LE, &nan, "Eq. 3 RI: d_ui * d_n / (d_p + 1e-7)");
  ds->nearest = rows_set(f, "audit/nearest", H5T_STD_I32LE, &none, "label id of the nearest other identity");
  ds->flags = rows_set(f, "audit/flags", H5T_STD_U8LE, &zero, "1 suspected mislabel, 2 near-duplicate, 4 unrecognizable");
  if (ds->d_p < 0 || ds->d_n < 0 || ds->d_ui < 0 || ds->ri < 0 || ds->nearest < 0 || ds->flags < 0)
    return fr_error_set(err, FR_ERR_HDF5, "%s: cannot create the /audit datasets", fr_results_reader_path(s->r));
  return FR_OK;
}

static void close_outputs(out_sets *ds)
{
  hid_t ids[] = {ds->d_p, ds->d_n, ds->d_ui, ds->ri, ds->nearest, ds->flags};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if (ids[i] > 0)
      H5Dclose(ids[i]);
}

static int write_vector(hid_t f, const char *name, hid_t ftype, hid_t mtype, int64_t n, const void *data,
                        const char *desc)
{
  hid_t ds = rows_set(f, name, ftype, NULL, desc);
  int rc = ds < 0 || fr_h5_write_rows(ds, mtype, 0, (int)n, 0, data) < 0 ? -1 : 0;
  if (ds >= 0)
    H5Dclose(ds);
  return rc;
}

static int set_double_attr(hid_t obj, const char *name, double v)
{
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = space >= 0 ? H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
  int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0 ? 0 : -1;
  if (a >= 0)
    H5Aclose(a);
  if (space >= 0)
    H5Sclose(space);
  return rc;
}

static int finish_outputs(audit_state *s, const audit_dups *d, const fr_audit_summary *sum, fr_error *err)
{
  hid_t f = (hid_t)fr_results_reader_hid(s->r);
  int64_t L = s->L;
  float *qm = malloc((size_t)(L ? L : 1) * sizeof(float)), *qs = malloc((size_t)(L ? L : 1) * sizeof(float));
  float *rm = malloc((size_t)(L ? L : 1) * sizeof(float));
  int bad = !qm || !qs || !rm;
  for (int64_t l = 0; !bad && l < L; l++) {
    double m = s->q_n[l] ? s->q_sum[l] / s->q_n[l] : NAN;
    double var = s->q_n[l] > 1 ? (s->q_sum2[l] - s->q_n[l] * m * m) / (s->q_n[l] - 1) : NAN;
    qm[l] = (float)m;
    qs[l] = (float)(var > 0 ? sqrt(var) : s->q_n[l] > 1 ? 0 : NAN);
    rm[l] = (float)(s->ri_n[l] ? s->ri_sum[l] / s->ri_n[l] : NAN);
  }
  hid_t g = bad ? -1 : H5Gopen2(f, "audit", H5P_DEFAULT);
  bad = bad || g < 0 ||
        write_vector(f, "audit/duplicates/a", H5T_STD_I64LE, H5T_NATIVE_INT64, d->n, d->a, "first item (row) of a near-duplicate pair") ||
        write_vector(f, "audit/duplicates/b", H5T_STD_I64LE, H5T_NATIVE_INT64, d->n, d->b, "second item (row), b > a") ||
        write_vector(f, "audit/duplicates/cosine", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, d->n, d->cos, "their cosine") ||
        write_vector(f, "audit/identity/count", H5T_STD_I64LE, H5T_NATIVE_INT64, L, s->count, "used items (status ok) per label id") ||
        write_vector(f, "audit/identity/quality_mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, L, qm, "mean of the quality column (attribute quality_column)") ||
        write_vector(f, "audit/identity/quality_std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, L, qs, "sample standard deviation of the quality column") ||
        write_vector(f, "audit/identity/ri_mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, L, rm, "mean Eq. 3 RI") ||
        write_vector(f, "audit/identity/mislabel", H5T_STD_I64LE, H5T_NATIVE_INT64, L, s->n_mislabel, "items flagged as suspected mislabels") ||
        write_vector(f, "audit/identity/duplicate", H5T_STD_I64LE, H5T_NATIVE_INT64, L, s->n_dup, "items in a near-duplicate pair") ||
        write_vector(f, "audit/identity/unrecognizable", H5T_STD_I64LE, H5T_NATIVE_INT64, L, s->n_unrec, "items below the quality threshold");
  if (!bad) {
    hid_t ds = fr_h5_create_rows(f, "audit/identity/prototype", H5T_IEEE_F32LE, (hsize_t)s->dim, 256, NULL,
                                 "normalised mean embedding per label id (all its items)");
    bad = ds < 0 || fr_h5_write_rows(ds, H5T_NATIVE_FLOAT, 0, (int)L, (hsize_t)s->dim, s->proto) < 0;
    if (ds >= 0)
      H5Dclose(ds);
  }
  if (!bad)
    bad = set_double_attr(g, "mislabel_margin", sum->margin) || set_double_attr(g, "duplicate_threshold", sum->dup_threshold) ||
          set_double_attr(g, "unrecognizable_threshold", sum->unrec_threshold) ||
          fr_h5_set_string_attr(g, "unrecognizable_column", sum->unrec_column) < 0 ||
          fr_h5_set_string_attr(g, "quality_column", sum->unrec_column) < 0 ||
          fr_h5_set_string_attr(g, "duplicate_scope", sum->dup_scope) < 0 ||
          fr_h5_set_string_attr(g, "d_ui_source", sum->d_ui_source) < 0 ||
          fr_h5_set_string_attr(g, "prototype", "normalised mean embedding; leave-one-out for the item's own identity") < 0 ||
          fr_h5_set_int_attr(g, "mislabel_items", sum->mislabel) < 0 ||
          fr_h5_set_int_attr(g, "duplicate_pairs", sum->duplicate_pairs) < 0 ||
          fr_h5_set_int_attr(g, "duplicate_pairs_recorded", d->n) < 0 ||
          fr_h5_set_int_attr(g, "duplicate_items", sum->duplicate_items) < 0 ||
          fr_h5_set_int_attr(g, "unrecognizable_items", sum->unrec_column[0] ? sum->unrecognizable : -1) < 0;
  if (g >= 0)
    H5Gclose(g);
  free(qm);
  free(qs);
  free(rm);
  if (!bad && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
    bad = 1;
  return bad ? fr_error_set(err, FR_ERR_HDF5, "%s: HDF5 failed to write the /audit summary", fr_results_reader_path(s->r))
             : FR_OK;
}

int fr_audit_run(fr_results_reader *r, const fr_audit_options *opts, fr_audit_summary *sum, fr_error *err)
{
  double t0 = fr_now_seconds();
  fr_audit_options o = opts ? *opts : (fr_audit_options){.margin = -1, .unrec_threshold = NAN};
  memset(sum, 0, sizeof(*sum));
  sum->margin = o.margin >= 0 ? o.margin : 0.05;
  sum->dup_threshold = o.dup_threshold > 0 ? o.dup_threshold : 0.95;
  audit_state s = {.r = r, .o = &o, .dim = fr_results_reader_dim(r), .L = fr_results_reader_n_labels(r),
                   .ers_q = -1, .unrec_q = -1};
  const char *cols[2];
  int nc = 0;
  if (fr_results_reader_has_column(r, "quality/ers"))
    s.ers_q = nc, cols[nc++] = "quality/ers";
  char unrec[64] = "";
  if (o.unrec_column) {
    fr_eval_column_name(o.unrec_column, unrec, sizeof(unrec));
    if (!fr_results_reader_has_column(r, unrec))
      return fr_error_set(err, FR_ERR_INVALID, "%s: no quality column /%s", fr_results_reader_path(r), unrec);
    if (!isfinite(o.unrec_threshold))
      return fr_error_set(err, FR_ERR_INVALID, "--unrecognizable %s needs a threshold (COLUMN:THRESHOLD)", unrec);
    if (s.ers_q >= 0 && !strcmp(unrec, "quality/ers"))
      s.unrec_q = s.ers_q;
    else
      s.unrec_q = nc, cols[nc++] = unrec;
    sum->unrec_threshold = o.unrec_threshold;
  }
  int rc = eval_items_load(r, cols, nc, &s.it, err);
  if (rc)
    return rc;
  if (!o.unrec_column && s.ers_q >= 0) {
    for (int64_t i = 0; i < s.it.n && s.unrec_q < 0; i++)
      if (isfinite(s.it.quality[s.ers_q][i]))
        s.unrec_q = s.ers_q;
    sum->unrec_threshold = isfinite(o.unrec_threshold) ? o.unrec_threshold : 0.6;
  }
  if (s.unrec_q >= 0)
    snprintf(sum->unrec_column, sizeof(sum->unrec_column), "%s", s.it.columns[s.unrec_q]);
  else
    sum->unrec_threshold = NAN;
  sum->items = s.it.items;
  sum->used = s.it.n;
  size_t L = (size_t)(s.L ? s.L : 1), D = (size_t)s.dim;
  s.sum = calloc(L * D, sizeof(double));
  s.proto = calloc(L * D, sizeof(float));
  s.sum2 = calloc(L, sizeof(double));
  s.count = calloc(L, sizeof(int64_t));
  s.flags = calloc((size_t)(s.it.n ? s.it.n : 1), 1);
  s.n_mislabel = calloc(L, sizeof(int64_t));
  s.n_dup = calloc(L, sizeof(int64_t));
  s.n_unrec = calloc(L, sizeof(int64_t));
  s.q_sum = calloc(L, sizeof(double));
  s.q_sum2 = calloc(L, sizeof(double));
  s.ri_sum = calloc(L, sizeof(double));
  s.q_n = calloc(L, sizeof(int64_t));
  s.ri_n = calloc(L, sizeof(int64_t));
  if (!s.sum || !s.proto || !s.sum2 || !s.count || !s.flags || !s.n_mislabel || !s.n_dup || !s.n_unrec ||
      !s.q_sum || !s.q_sum2 || !s.ri_sum || !s.q_n || !s.ri_n)
    rc = fr_error_set(err, FR_ERR_NOMEM, "audit: out of memory for %d identities", s.L);
  if (!rc)
    rc = prototypes(&s, err);
  for (int l = 0; !rc && l < s.L; l++) {
    sum->identities += s.count[l] > 0;
    sum->singletons += s.count[l] == 1;
  }
  if (!rc)
    choose_ui(&s, sum);
  fr_dup_scope scope = o.dup_scope;
  if (scope == FR_DUP_AUTO)
    scope = s.it.n <= (o.dup_all_limit > 0 ? o.dup_all_limit : 200000) ? FR_DUP_ALL : FR_DUP_LABEL;
  snprintf(sum->dup_scope, sizeof(sum->dup_scope), "%s",
           scope == FR_DUP_ALL ? "all" : scope == FR_DUP_LABEL ? "identity" : "off");
  audit_dups dups = {.max = o.max_dup_pairs > 0 ? o.max_dup_pairs : 1000000};
  fr_vk_context *ctx = NULL;
  fr_similarity_device *dev = NULL;
  if (!rc)
    rc = audit_open_device(&o, scope, s.it.n, &ctx, &dev, err);
  snprintf(sum->dup_path, sizeof(sum->dup_path), "%s", ctx ? fr_vk_context_device(ctx)->name : "cpu");
  if (!rc)
    rc = audit_find_duplicates(r, &s.it, scope, sum->dup_threshold, s.flags, &dups, dev, err);
  fr_similarity_device_destroy(dev);
  fr_vk_context_destroy(ctx);
  sum->duplicate_pairs = dups.total;
  sum->duplicates_truncated = dups.truncated;
  out_sets ds = {-1, -1, -1, -1, -1, -1};
  if (!rc)
    rc = create_outputs(&s, &ds, err);
  if (!rc)
    rc = per_item(&s, &ds, sum, err);
  close_outputs(&ds);
  if (!rc)
    rc = finish_outputs(&s, &dups, sum, err);
  audit_dups_free(&dups);
  state_free(&s);
  sum->seconds = fr_now_seconds() - t0;
  return rc;
}
