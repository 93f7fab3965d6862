/* faceri audit RESULTS.h5: prototypes, Eq. 3 RI and flags, written to /audit (audit.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/audit.h"
#include "faceri/commands.h"
#include "faceri/json_writer.h"

static const char usage[] =
    "usage: faceri audit RESULTS.h5 [OPTIONS]\n"
    "\n"
    "Audits a labelled results file and writes /audit into it (docs/FORMAT.md):\n"
    "identity prototypes (normalised mean embeddings, leave-one-out for the item's own\n"
    "identity), per item d_P, d_N, the nearest other identity and the Eq. 3 RI\n"
    "(d_UI from /quality/ers, else the model's UI centre, else 1), and flags:\n"
    "\n"
    "      --margin M            suspected mislabel: d_P - d_N > M (default 0.05)\n"
    "      --duplicate-threshold C   near-duplicate: cosine with another item > C (default 0.95)\n"
    "      --duplicates SCOPE    all (every pair), identity (pairs within a label), off,\n"
    "                            auto (default: all up to 200,000 items, else identity)\n"
    "      --max-duplicate-pairs N   pairs recorded in the file (all are counted; default 1e6)\n"
    "      --device[=SEL], --cpu     all-pairs duplicate search on the Vulkan device (SEL: index\n"
    "                            or name) or the CPU; default: the device from 1e8 pairs\n"
    "                            when one is usable (the pairs found are the same)\n"
    "      --unrecognizable COL:T    quality column below T (default quality/ers:0.6 when\n"
    "                            the results have d_UI values)\n"
    "  -m, --model FILE          model whose UI centre gives d_UI when /quality/ers is empty\n"
    "                            (default: the results' model_path; SHA-256 must match)\n"
    "      --json                print the summary as JSON\n"
    "  -h, --help                this text\n";

void fr_audit_print_text(const fr_audit_summary *s, FILE *out)
{
  fprintf(out, "items %lld, used (status ok, labelled) %lld, identities %lld (%lld with one item)\n",
          (long long)s->items, (long long)s->used, (long long)s->identities, (long long)s->singletons);
  fprintf(out, "d_UI: %s\n", s->d_ui_source);
  fprintf(out, "suspected mislabels (d_P - d_N > %g): %lld\n", s->margin, (long long)s->mislabel);
  fprintf(out, "near-duplicates (cosine > %g, %s pairs, on %s): %lld pairs, %lld items%s\n", s->dup_threshold,
          s->dup_scope, s->dup_path, (long long)s->duplicate_pairs, (long long)s->duplicate_items,
          s->duplicates_truncated ? " (not every pair recorded)" : "");
  if (s->unrec_column[0])
    fprintf(out, "unrecognizable (/%s < %g): %lld\n", s->unrec_column, s->unrec_threshold, (long long)s->unrecognizable);
  else
    fprintf(out, "unrecognizable: not computed (no quality column with values; --unrecognizable COL:T)\n");
  fprintf(out, "written to /audit in %.1f s\n", s->seconds);
}

void fr_audit_print_json(const fr_audit_summary *s, FILE *out)
{
  fputc('{', out);
  fr_json_key(out, "items", 1);
  fr_json_number(out, (double)s->items);
  fr_json_key(out, "used", 0);
  fr_json_number(out, (double)s->used);
  fr_json_key(out, "identities", 0);
  fr_json_number(out, (double)s->identities);
  fr_json_key(out, "singletons", 0);
  fr_json_number(out, (double)s->singletons);
  fr_json_key(out, "d_ui_source", 0);
  fr_json_string(out, s->d_ui_source);
  fr_json_key(out, "margin", 0);
  fr_json_number(out, s->margin);
  fr_json_key(out, "mislabel", 0);
  fr_json_number(out, (double)s->mislabel);
  fr_json_key(out, "duplicate_threshold", 0);
  fr_json_number(out, s->dup_threshold);
  fr_json_key(out, "duplicate_scope", 0);
  fr_json_string(out, s->dup_scope);
  fr_json_key(out, "duplicate_search", 0);
  fr_json_string(out, s->dup_path);
  fr_json_key(out, "duplicate_pairs", 0);
  fr_json_number(out, (double)s->duplicate_pairs);
  fr_json_key(out, "duplicate_items", 0);
  fr_json_number(out, (double)s->duplicate_items);
  fr_json_key(out, "unrecognizable_column", 0);
  fr_json_string(out, s->unrec_column);
  fr_json_key(out, "unrecognizable_threshold", 0);
  fr_json_number(out, s->unrec_threshold);
  fr_json_key(out, "unrecognizable", 0);
  fr_json_number(out, s->unrec_column[0] ? (double)s->unrecognizable : NAN);
  fr_json_key(out, "seconds", 0);
  fr_json_number(out, s->seconds);
  fputs("}\n", out);
}

static int parse_double(const char *opt, const char *text, double lo, double hi, double *out, fr_error *err)
{
  char *end;
  double v = strtod(text, &end);
  if (end == text || *end || !(v >= lo && v <= hi))
    return fr_error_set(err, FR_ERR_INVALID, "%s: \"%s\" is not a number in [%g, %g]", opt, text, lo, hi);
  *out = v;
  return FR_OK;
}

int fr_cmd_audit(int argc, char **argv)
{
  enum { OPT_MARGIN = 256, OPT_DUPT, OPT_DUPS, OPT_MAXD, OPT_UNREC, OPT_JSON, OPT_DEVICE, OPT_CPU };
  static const struct option longopts[] = {
      {"margin", required_argument, 0, OPT_MARGIN},   {"duplicate-threshold", required_argument, 0, OPT_DUPT},
      {"duplicates", required_argument, 0, OPT_DUPS}, {"max-duplicate-pairs", required_argument, 0, OPT_MAXD},
      {"unrecognizable", required_argument, 0, OPT_UNREC}, {"model", required_argument, 0, 'm'},
      {"json", no_argument, 0, OPT_JSON},             {"help", no_argument, 0, 'h'},
      {"device", optional_argument, 0, OPT_DEVICE},   {"cpu", no_argument, 0, OPT_CPU},
      {0, 0, 0, 0}};
  fr_audit_options o = {.margin = -1, .unrec_threshold = NAN};
  int json = 0, c;
  double v;
  fr_error err = {0};
  static char column[64];
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:h", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_MARGIN:
      if (parse_double("--margin", optarg, 0, 2, &o.margin, &err))
        goto usage_error;
      break;
    case OPT_DUPT:
      if (parse_double("--duplicate-threshold", optarg, -1, 1, &v, &err))
        goto usage_error;
      o.dup_threshold = v > 0 ? v : 1e-9; /* 0 means "default" in the options */
      break;
    case OPT_DUPS:
      if (!strcmp(optarg, "all"))
        o.dup_scope = FR_DUP_ALL;
      else if (!strcmp(optarg, "identity"))
        o.dup_scope = FR_DUP_LABEL;
      else if (!strcmp(optarg, "off"))
        o.dup_scope = FR_DUP_OFF;
      else if (!strcmp(optarg, "auto"))
        o.dup_scope = FR_DUP_AUTO;
      else {
        fr_error_set(&err, FR_ERR_INVALID, "--duplicates: \"%s\" is not all, identity, off or auto", optarg);
        goto usage_error;
      }
      break;
    case OPT_MAXD:
      if (parse_double("--max-duplicate-pairs", optarg, 1, 1e9, &v, &err))
        goto usage_error;
      o.max_dup_pairs = (int64_t)v;
      break;
    case OPT_UNREC: {
      const char *colon = strrchr(optarg, ':');
      if (!colon || colon == optarg || (size_t)(colon - optarg) >= sizeof(column)) {
        fr_error_set(&err, FR_ERR_INVALID, "--unrecognizable: expected COLUMN:THRESHOLD, got \"%s\"", optarg);
        goto usage_error;
      }
      snprintf(column, sizeof(column), "%.*s", (int)(colon - optarg), optarg);
      if (parse_double("--unrecognizable", colon + 1, -1e30, 1e30, &o.unrec_threshold, &err))
        goto usage_error;
      o.unrec_column = column;
      break;
    }
    case 'm':
      o.model_path = optarg;
      break;
    case OPT_JSON:
      json = 1;
      break;
    case OPT_DEVICE:
    case OPT_CPU:
      o.dup_device = c == OPT_DEVICE ? FR_AUDIT_DEVICE : FR_AUDIT_CPU;
      o.device = c == OPT_DEVICE ? optarg : NULL;
      break;
    case 'h':
      fputs(usage, stdout);
      return FR_EXIT_OK;
    default:
      fputs(usage, stderr);
      return FR_EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    fr_error_set(&err, FR_ERR_INVALID, "expected one RESULTS.h5");
    goto usage_error;
  }
  fr_results_reader *r = NULL;
  if (fr_results_reader_open(argv[optind], 1, &r, &err)) {
    fprintf(stderr, "faceri audit: %s\n", err.message);
    return FR_EXIT_ERROR;
  }
  fr_audit_summary s;
  int rc = fr_audit_run(r, &o, &s, &err);
  fr_results_reader_close(r);
  if (rc) {
    fprintf(stderr, "faceri audit: %s\n", err.message);
    return rc == FR_ERR_INVALID ? FR_EXIT_USAGE : FR_EXIT_ERROR;
  }
  if (json)
    fr_audit_print_json(&s, stdout);
  else
    fr_audit_print_text(&s, stdout);
  return FR_EXIT_OK;

usage_error:
  fprintf(stderr, "faceri audit: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}
