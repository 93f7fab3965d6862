/* faceri eval output: a text summary and the same figures as JSON. */
#include <math.h>
#include <stdio.h>

#include "faceri/eval.h"
#include "faceri/json_writer.h"

static const int shown_ranks[] = {1, 5, 10, 20};

static double edc_at(const fr_edc *e, double discard)
{
  /* FNMR of the last point at or before this discard fraction (the curve is a step function). */
  double v = e->n_points ? e->fnmr[0] : NAN;
  for (int64_t k = 0; k < e->n_points && e->discard[k] <= discard + 1e-12; k++)
    v = e->fnmr[k];
  return v;
}

void fr_eval_print_text(const fr_eval_result *res, FILE *out)
{
  fprintf(out, "items: %lld, used (status ok, labelled): %lld, identities: %lld\n", (long long)res->items,
          (long long)res->items_used, (long long)res->n_identities);
  if (res->has_verification) {
    const fr_verification *v = &res->ver;
    fprintf(out, "\nverification (%s: %lld genuine, %lld impostor", res->pairs_source, (long long)v->genuine,
            (long long)v->impostor);
    if (res->pairs_skipped)
      fprintf(out, ", %lld skipped: image not among the items", (long long)res->pairs_skipped);
    fprintf(out, ")\n  best balanced accuracy %.4f at threshold %.4f\n", v->accuracy, v->threshold);
    for (int k = 0; k < FR_EVAL_N_FAR; k++)
      fprintf(out, "  TPR @ FAR %-6g  %.4f  (threshold %.4f)\n", res->fars[k], res->tpr[k], res->tpr_threshold[k]);
  }
  if (res->has_identification) {
    fprintf(out, "\nclosed-set identification (%lld templates from the first %d item(s) of each identity, %lld probes)\n",
            (long long)res->n_templates, res->gallery_first, (long long)res->n_probes);
    for (size_t k = 0; k < sizeof(shown_ranks) / sizeof(shown_ranks[0]); k++)
      fprintf(out, "  rank-%-2d %.4f\n", shown_ranks[k], res->cmc[shown_ranks[k] - 1]);
  }
  if (res->has_open_set) {
    fprintf(out, "\nopen-set identification (%lld templates: even label ids; %lld mated, %lld non-mated probes; rank %d)\n",
            (long long)res->open_templates, (long long)res->open_mated, (long long)res->open_nonmated,
            res->open_rank);
    for (int k = 0; k < FR_EVAL_N_FPIR; k++)
      fprintf(out, "  TPIR @ FPIR %-5g %.4f  (threshold %.4f)\n", res->fpirs[k], res->tpir[k], res->tpir_threshold[k]);
  }
  for (int q = 0; q < res->n_quality; q++) {
    const fr_eval_quality *eq = &res->quality[q];
    fprintf(out, "\nerror versus discard: /%s (%lld items with a value)\n", eq->column, (long long)eq->n_finite);
    if (eq->has_edc) {
      const fr_edc *e = &eq->edc;
      fprintf(out, "  EDC (ISO/IEC 29794-1, threshold %.4f at FMR 1e-3): FNMR %.4f -> %.4f at 10%%, %.4f at 20%% discard; "
                   "pAUC(20%%) %.5f, relative %.3f\n",
              e->threshold, edc_at(e, 0), edc_at(e, 0.1), edc_at(e, 0.2), e->pauc, e->pauc_relative);
    }
    if (eq->has_erc) {
      const fr_erc *e = &eq->erc;
      fprintf(out, "  ERC (FIQA): discard  FNMR@FMR");
      for (int f = 0; f < e->n_fmr; f++)
        fprintf(out, " %-8g", e->fmrs[f]);
      fprintf(out, "\n");
      for (int s = 0; s < e->n_steps; s += 2) {
        fprintf(out, "               %4.0f%%          ", 100 * e->discard[s]);
        for (int f = 0; f < e->n_fmr; f++)
          fprintf(out, " %.4f  ", e->fnmr[s * e->n_fmr + f]);
        fprintf(out, "\n");
      }
    }
    if (eq->why[0])
      fprintf(out, "  (%s)\n", eq->why);
  }
  if (res->notes[0])
    fprintf(out, "\nnot computed: %s\n", res->notes);
}

static void array(FILE *out, const double *v, int64_t n)
{
  fputc('[', out);
  for (int64_t i = 0; i < n; i++) {
    if (i)
      fputc(',', out);
    fr_json_number(out, v[i]);
  }
  fputc(']', out);
}

void fr_eval_print_json(const fr_eval_result *res, FILE *out)
{
  fputc('{', out);
  fr_json_key(out, "items", 1);
  fr_json_number(out, (double)res->items);
  fr_json_key(out, "items_used", 0);
  fr_json_number(out, (double)res->items_used);
  fr_json_key(out, "identities", 0);
  fr_json_number(out, (double)res->n_identities);
  if (res->has_verification) {
    const fr_verification *v = &res->ver;
    fr_json_key(out, "verification", 0);
    fputc('{', out);
    fr_json_key(out, "pairs", 1);
    fr_json_string(out, res->pairs_source);
    fr_json_key(out, "pairs_skipped", 0);
    fr_json_number(out, (double)res->pairs_skipped);
    fr_json_key(out, "genuine", 0);
    fr_json_number(out, (double)v->genuine);
    fr_json_key(out, "impostor", 0);
    fr_json_number(out, (double)v->impostor);
    fr_json_key(out, "accuracy", 0);
    fr_json_number(out, v->accuracy);
    fr_json_key(out, "threshold", 0);
    fr_json_number(out, v->threshold);
    fr_json_key(out, "genuine_mean", 0);
    fr_json_number(out, v->genuine_mean);
    fr_json_key(out, "impostor_mean", 0);
    fr_json_number(out, v->impostor_mean);
    fr_json_key(out, "far", 0);
    array(out, res->fars, FR_EVAL_N_FAR);
    fr_json_key(out, "tpr", 0);
    array(out, res->tpr, FR_EVAL_N_FAR);
    fr_json_key(out, "tpr_threshold", 0);
    array(out, res->tpr_threshold, FR_EVAL_N_FAR);
    fputc('}', out);
  }
  if (res->has_identification) {
    fr_json_key(out, "identification", 0);
    fputc('{', out);
    fr_json_key(out, "gallery_first", 1);
    fr_json_number(out, res->gallery_first);
    fr_json_key(out, "templates", 0);
    fr_json_number(out, (double)res->n_templates);
    fr_json_key(out, "probes", 0);
    fr_json_number(out, (double)res->n_probes);
    fr_json_key(out, "cmc", 0);
    array(out, res->cmc, FR_EVAL_MAX_RANK);
    fputc('}', out);
  }
  if (res->has_open_set) {
    fr_json_key(out, "open_set", 0);
    fputc('{', out);
    fr_json_key(out, "rank", 1);
    fr_json_number(out, res->open_rank);
    fr_json_key(out, "templates", 0);
    fr_json_number(out, (double)res->open_templates);
    fr_json_key(out, "mated", 0);
    fr_json_number(out, (double)res->open_mated);
    fr_json_key(out, "nonmated", 0);
    fr_json_number(out, (double)res->open_nonmated);
    fr_json_key(out, "fpir", 0);
    array(out, res->fpirs, FR_EVAL_N_FPIR);
    fr_json_key(out, "tpir", 0);
    array(out, res->tpir, FR_EVAL_N_FPIR);
    fr_json_key(out, "tpir_threshold", 0);
    array(out, res->tpir_threshold, FR_EVAL_N_FPIR);
    fputc('}', out);
  }
  fr_json_key(out, "quality", 0);
  fputc('[', out);
  for (int q = 0; q < res->n_quality; q++) {
    const fr_eval_quality *eq = &res->quality[q];
    if (q)
      fputc(',', out);
    fputc('{', out);
    fr_json_key(out, "column", 1);
    fr_json_string(out, eq->column);
    fr_json_key(out, "finite", 0);
    fr_json_number(out, (double)eq->n_finite);
    if (eq->has_edc) {
      const fr_edc *e = &eq->edc;
      fr_json_key(out, "edc", 0);
      fputc('{', out);
      fr_json_key(out, "threshold", 1);
      fr_json_number(out, e->threshold);
      fr_json_key(out, "pauc", 0);
      fr_json_number(out, e->pauc);
      fr_json_key(out, "pauc_relative", 0);
      fr_json_number(out, e->pauc_relative);
      fr_json_key(out, "discard", 0);
      array(out, e->discard, e->n_points);
      fr_json_key(out, "fnmr", 0);
      array(out, e->fnmr, e->n_points);
      fputc('}', out);
    }
    if (eq->has_erc) {
      const fr_erc *e = &eq->erc;
      fr_json_key(out, "erc", 0);
      fputc('{', out);
      fr_json_key(out, "fmr", 1);
      array(out, e->fmrs, e->n_fmr);
      fr_json_key(out, "discard", 0);
      array(out, e->discard, e->n_steps);
      fr_json_key(out, "fnmr", 0); /* [step][fmr] */
      array(out, e->fnmr, (int64_t)e->n_steps * e->n_fmr);
      fputc('}', out);
    }
    if (eq->why[0]) {
      fr_json_key(out, "note", 0);
      fr_json_string(out, eq->why);
    }
    fputc('}', out);
  }
  fputc(']', out);
  if (res->notes[0]) {
    fr_json_key(out, "notes", 0);
    fr_json_string(out, res->notes);
  }
  fputs("}\n", out);
}
