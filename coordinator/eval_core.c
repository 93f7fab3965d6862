/* faceri eval: verification, closed- and open-set identification and error
 * versus discard on a results file (protocol choices in include/faceri/eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval_internal.h"
#include "faceri/eval.h"
#include "faceri/log.h"
#include "faceri/similarity.h"

static const double default_fars[FR_EVAL_N_FAR] = {1e-1, 1e-2, 1e-3, 1e-4};
static const double default_fpirs[FR_EVAL_N_FPIR] = {0.3, 0.1, 0.01};
static const char *const known_columns[] = {"quality/norm", "quality/ers", "quality/ri", "audit/ri"};

void fr_eval_column_name(const char *name, char *out, size_t size)
{
  if (strchr(name, '/'))
    snprintf(out, size, "%s", name);
  else
    snprintf(out, size, "quality/%s", name);
}

void fr_eval_result_free(fr_eval_result *res)
{
  for (int q = 0; q < res->n_quality; q++) {
    if (res->quality[q].has_edc)
      fr_edc_free(&res->quality[q].edc);
    if (res->quality[q].has_erc)
      fr_erc_free(&res->quality[q].erc);
  }
  res->n_quality = 0;
}

static void add_note(fr_eval_result *res, const char *note)
{
  size_t len = strlen(res->notes);
  snprintf(res->notes + len, sizeof(res->notes) - len, "%s%s", len ? "; " : "", note);
}

/* ---- verification and quality ---- */

static int split_scores(const eval_pairs *p, const double *scores, const eval_items *it, int q, double *gen,
                        double *imp, double *gq, double *iq)
{
  int64_t ng = 0, ni = 0;
  for (int64_t i = 0; i < p->n; i++) {
    double qa = q >= 0 ? it->quality[q][p->a[i]] : 0, qb = q >= 0 ? it->quality[q][p->b[i]] : 0;
    /* NaN first: an unknown quality is the lowest (metrics.h). */
    double pq = isnan(qa) || isnan(qb) ? NAN : (qa < qb ? qa : qb);
    if (p->genuine[i]) {
      gen[ng] = scores[i];
      if (gq)
        gq[ng] = pq;
      ng++;
    } else {
      imp[ni] = scores[i];
      if (iq)
        iq[ni] = pq;
      ni++;
    }
  }
  return 0;
}

static int run_verification(fr_results_reader *r, const eval_items *it, const fr_eval_options *o,
                            fr_eval_result *res, fr_error *err)
{
  eval_pairs p = {0};
  int rc;
  if (o->pairs_mode == FR_PAIRS_FILE) {
    rc = eval_pairs_file(r, it, o->pairs_path, &p, err);
    res->pairs_source = "pairs file";
  } else if (o->pairs_mode == FR_PAIRS_ALL) {
    rc = eval_pairs_all(it, o->all_pairs_limit > 0 ? o->all_pairs_limit : 20000, &p, err);
    res->pairs_source = "all pairs";
  } else {
    rc = eval_pairs_sample(it, o->sample_pairs > 0 ? o->sample_pairs : 1000000, o->seed, &p, err);
    res->pairs_source = "sampled pairs";
  }
  if (rc)
    return rc;
  res->pairs_skipped = p.skipped;
  int64_t ng = p.n_genuine, ni = p.n - p.n_genuine;
  if (ng == 0 || ni == 0) {
    add_note(res, "verification: needs genuine and impostor pairs");
    eval_pairs_free(&p);
    return FR_OK;
  }
  double *scores = malloc((size_t)p.n * sizeof(double));
  double *gen = malloc((size_t)ng * sizeof(double)), *imp = malloc((size_t)ni * sizeof(double));
  double *gq = malloc((size_t)ng * sizeof(double)), *iq = malloc((size_t)ni * sizeof(double));
  if (!scores || !gen || !imp || !gq || !iq)
    rc = fr_error_set(err, FR_ERR_NOMEM, "out of memory for %lld pair scores", (long long)p.n);
  if (!rc)
    rc = eval_pairs_score(r, it, &p, scores, err);
  if (!rc) {
    split_scores(&p, scores, it, -1, gen, imp, NULL, NULL);
    memcpy(res->fars, default_fars, sizeof(res->fars));
    if (!(rc = fr_verification_from_scores(gen, ng, imp, ni, &res->ver, err)))
      rc = fr_verification_tpr_at_fars(gen, ng, imp, ni, res->fars, FR_EVAL_N_FAR, res->tpr, res->tpr_threshold,
                                       err);
    res->has_verification = !rc;
  }
  for (int q = 0; !rc && q < it->n_quality; q++) {
    fr_eval_quality *eq = &res->quality[q];
    split_scores(&p, scores, it, q, gen, imp, gq, iq);
    fr_edc_options eo = {.mode = FR_EDC_AT_FMR, .value = 1e-3, .pauc_limit = 0.2};
    fr_error qerr = {0};
    if (fr_edc_compute(gen, gq, ng, imp, ni, &eo, &eq->edc, &qerr) == FR_OK)
      eq->has_edc = 1;
    else
      snprintf(eq->why, sizeof(eq->why), "EDC: %.200s", qerr.message);
    if (fr_erc_compute(gen, gq, ng, imp, iq, ni, NULL, &eq->erc, &qerr) == FR_OK)
      eq->has_erc = 1;
    else
      snprintf(eq->why, sizeof(eq->why), "ERC: %.200s", qerr.message);
  }
  free(scores);
  free(gen);
  free(imp);
  free(gq);
  free(iq);
  eval_pairs_free(&p);
  return rc;
}

/* ---- identification ---- */

/* Score tiles from the blocked float kernel (similarity.h), ~4x the metrics
 * library's double default; ranks can differ only where two scores are within
 * ~1e-6 of each other. */
static int float_tile(void *ctx, const float *probes, int64_t np, const float *gallery, int64_t ng, int dim,
                      double *scores, fr_error *err)
{
  float *t = malloc((size_t)(np ? np : 1) * (size_t)(ng ? ng : 1) * sizeof(float));
  if (!t)
    return fr_error_set(err, FR_ERR_NOMEM, "identification: out of memory for a %lld x %lld tile", (long long)np,
                        (long long)ng);
  fr_similarity_cpu(probes, np, gallery, ng, dim, t, ng);
  for (int64_t i = 0; i < np * ng; i++)
    scores[i] = t[i];
  free(t);
  return FR_OK;
}

typedef struct ident_state {
  int dim, k;
  int64_t n_templates, n_open;
  float *templates;     /* [n_templates, dim] */
  int *template_label;  /* [n_templates] */
  float *open_templates;
  int *open_label;
  int64_t *position;    /* [n used items] position within its label, item order */
} ident_state;

static void normalise(float *v, int dim)
{
  double s = 0;
  for (int k = 0; k < dim; k++)
    s += (double)v[k] * v[k];
  double inv = s > 0 ? 1.0 / sqrt(s) : 0;
  for (int k = 0; k < dim; k++)
    v[k] = (float)(v[k] * inv);
}

/* Template sums stream the rows of each label's first K items. */
static int build_templates(fr_results_reader *r, const eval_items *it, ident_state *st, fr_error *err)
{
  int dim = st->dim;
  uint8_t *need = calloc((size_t)(it->n ? it->n : 1), 1);
  st->position = malloc((size_t)(it->n ? it->n : 1) * sizeof(int64_t));
  int *slot_of_label = malloc((size_t)(it->n_labels ? it->n_labels : 1) * sizeof(int));
  if (!need || !st->position || !slot_of_label) {
    free(need);
    free(slot_of_label);
    return fr_error_set(err, FR_ERR_NOMEM, "out of memory for gallery templates");
  }
  st->n_templates = 0;
  for (int l = 0; l < it->n_labels; l++) {
    slot_of_label[l] = -1;
    for (int64_t k = it->label_start[l]; k < it->label_start[l + 1]; k++) {
      int64_t pos = k - it->label_start[l];
      st->position[it->by_label[k]] = pos;
      need[it->by_label[k]] = pos < st->k;
    }
    if (it->label_start[l + 1] > it->label_start[l])
      slot_of_label[l] = (int)st->n_templates++;
  }
  float *rows = NULL;
  int64_t *slot = NULL, count = 0;
  int rc = eval_gather_rows(r, it, need, &rows, &slot, &count, err);
  st->templates = calloc((size_t)(st->n_templates ? st->n_templates : 1) * dim, sizeof(float));
  st->template_label = malloc((size_t)(st->n_templates ? st->n_templates : 1) * sizeof(int));
  st->open_templates = calloc((size_t)(st->n_templates ? st->n_templates : 1) * dim, sizeof(float));
  st->open_label = malloc((size_t)(st->n_templates ? st->n_templates : 1) * sizeof(int));
  if (!rc && (!st->templates || !st->template_label || !st->open_templates || !st->open_label))
    rc = fr_error_set(err, FR_ERR_NOMEM, "out of memory for %lld templates", (long long)st->n_templates);
  if (!rc) {
    for (int64_t i = 0; i < it->n; i++)
      if (need[i]) {
        float *t = st->templates + (size_t)slot_of_label[it->label[i]] * dim;
        const float *v = rows + (size_t)slot[i] * dim;
        for (int k = 0; k < dim; k++)
          t[k] += v[k];
      }
    st->n_open = 0;
    for (int l = 0; l < it->n_labels; l++) {
      if (slot_of_label[l] < 0)
        continue;
      float *t = st->templates + (size_t)slot_of_label[l] * dim;
      normalise(t, dim);
      st->template_label[slot_of_label[l]] = l;
      if (l % 2 == 0) {
        memcpy(st->open_templates + (size_t)st->n_open * dim, t, (size_t)dim * sizeof(float));
        st->open_label[st->n_open++] = l;
      }
    }
  }
  free(rows);
  free(slot);
  free(need);
  free(slot_of_label);
  return rc;
}

static int run_identification(fr_results_reader *r, const eval_items *it, const fr_eval_options *o,
                              fr_eval_result *res, fr_error *err)
{
  ident_state st = {.dim = fr_results_reader_dim(r), .k = o->gallery_first > 0 ? o->gallery_first : 1};
  res->gallery_first = st.k;
  res->open_rank = o->open_rank > 0 ? o->open_rank : 20;
  int rc = build_templates(r, it, &st, err);
  int64_t n_probes = 0;
  for (int64_t i = 0; !rc && i < it->n; i++)
    n_probes += st.position[i] >= st.k;
  res->n_templates = st.n_templates;
  res->n_probes = n_probes;
  fr_probe_outcome *closed = NULL, *open = NULL;
  if (!rc && (n_probes == 0 || st.n_templates == 0)) {
    add_note(res, "identification: no probes (every identity has at most --gallery-first items)");
    goto done;
  }
  closed = malloc((size_t)(n_probes ? n_probes : 1) * sizeof(*closed));
  open = malloc((size_t)(n_probes ? n_probes : 1) * sizeof(*open));
  int *probe_label = malloc((size_t)FR_RESULTS_BLOCK_ROWS * sizeof(int));
  uint8_t *need = malloc((size_t)(it->n ? it->n : 1));
  if (!rc && (!closed || !open || !probe_label || !need))
    rc = fr_error_set(err, FR_ERR_NOMEM, "out of memory for %lld probes", (long long)n_probes);
  /* Probes go in blocks of at most FR_RESULTS_BLOCK_ROWS: only one block's rows are held. */
  int64_t done_probes = 0;
  for (int64_t start = 0; !rc && start < it->n;) {
    memset(need, 0, (size_t)it->n);
    int64_t in_block = 0, e = start;
    for (; e < it->n && in_block < FR_RESULTS_BLOCK_ROWS; e++)
      if (st.position[e] >= st.k) {
        need[e] = 1;
        probe_label[in_block++] = it->label[e];
      }
    float *rows = NULL;
    int64_t *slot = NULL, count = 0;
    if (in_block > 0 && !(rc = eval_gather_rows(r, it, need, &rows, &slot, &count, err))) {
      fr_search_options so = {.score_tile = float_tile};
      rc = fr_identification_search(st.templates, st.template_label, st.n_templates, rows, probe_label, count,
                                    st.dim, &so, closed + done_probes, err);
      if (!rc && st.n_open > 0)
        rc = fr_identification_search(st.open_templates, st.open_label, st.n_open, rows, probe_label, count,
                                      st.dim, &so, open + done_probes, err);
      done_probes += count;
    }
    free(rows);
    free(slot);
    start = e;
  }
  free(probe_label);
  free(need);
  if (!rc) {
    int max_rank = FR_EVAL_MAX_RANK;
    rc = fr_identification_cmc(closed, n_probes, max_rank, res->cmc, NULL, err);
    res->has_identification = !rc;
  }
  if (!rc && st.n_open > 0) {
    int64_t mated = 0;
    for (int64_t p = 0; p < n_probes; p++)
      mated += open[p].rank > 0;
    res->open_templates = st.n_open;
    res->open_mated = mated;
    res->open_nonmated = n_probes - mated;
    memcpy(res->fpirs, default_fpirs, sizeof(res->fpirs));
    if (mated > 0 && mated < n_probes) {
      rc = fr_identification_tpir_at_fpir(open, n_probes, res->open_rank, res->fpirs, FR_EVAL_N_FPIR, res->tpir,
                                          res->tpir_threshold, err);
      res->has_open_set = !rc;
    } else {
      add_note(res, "open-set: needs mated and non-mated probes");
    }
  }
done:
  free(closed);
  free(open);
  free(st.templates);
  free(st.template_label);
  free(st.open_templates);
  free(st.open_label);
  free(st.position);
  return rc;
}

int fr_eval_run(fr_results_reader *r, const fr_eval_options *opts, fr_eval_result *res, fr_error *err)
{
  fr_eval_options o = opts ? *opts : (fr_eval_options){0};
  memset(res, 0, sizeof(*res));
  const char *cols[FR_EVAL_MAX_QUALITY];
  char names[FR_EVAL_MAX_QUALITY][64];
  int n_cols = 0;
  if (o.n_quality > 0) {
    for (int q = 0; q < o.n_quality && q < FR_EVAL_MAX_QUALITY; q++) {
      fr_eval_column_name(o.quality[q], names[q], sizeof(names[q]));
      if (!fr_results_reader_has_column(r, names[q]))
        return fr_error_set(err, FR_ERR_INVALID, "%s: no quality column /%s", fr_results_reader_path(r), names[q]);
      cols[n_cols++] = names[q];
    }
  } else {
    for (size_t q = 0; q < sizeof(known_columns) / sizeof(known_columns[0]); q++)
      if (fr_results_reader_has_column(r, known_columns[q]))
        cols[n_cols++] = known_columns[q];
  }
  eval_items it;
  int rc = eval_items_load(r, cols, n_cols, &it, err);
  if (rc)
    return rc;
  res->items = it.items;
  res->items_used = it.n;
  for (int l = 0; l < it.n_labels; l++)
    res->n_identities += it.label_start[l + 1] > it.label_start[l];
  /* Columns with no finite value (a model without an RI head) are left out
   * unless asked for by name. */
  int kept = 0;
  for (int q = 0; q < it.n_quality; q++) {
    int64_t finite = 0;
    for (int64_t i = 0; i < it.n; i++)
      finite += isfinite(it.quality[q][i]);
    if (finite == 0 && o.n_quality == 0) {
      free(it.quality[q]);
      it.quality[q] = NULL;
      continue;
    }
    fr_eval_quality *eq = &res->quality[kept];
    snprintf(eq->column, sizeof(eq->column), "%s", it.columns[q]);
    eq->n_finite = finite;
    it.quality[kept] = it.quality[q];
    if (kept != q)
      it.quality[q] = NULL;
    kept++;
  }
  res->n_quality = kept;
  it.n_quality = res->n_quality;
  if (it.n < 2) {
    add_note(res, "fewer than two labelled items with status ok");
  } else {
    if (!o.no_verification)
      rc = run_verification(r, &it, &o, res, err);
    if (!rc && !o.no_identification)
      rc = run_identification(r, &it, &o, res, err);
  }
  eval_items_free(&it);
  if (rc)
    fr_eval_result_free(res);
  return rc;
}
