/* faceri eval RESULTS.h5: evaluation protocols on a results file (eval.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/eval.h"
#include "faceri/results_reader.h"

static const char usage[] =
    "usage: faceri eval RESULTS.h5 [OPTIONS]\n"
    "\n"
    "Verification, identification and error-versus-discard figures for the labelled\n"
    "items with status ok of a results file (read in row blocks: millions of items fit).\n"
    "\n"
    "verification pairs (one of):\n"
    "      --pairs FILE        LFW pairs.txt: name = label name, image number = NAME_0004.jpg's\n"
    "                          number, else the label's n-th item in item order\n"
    "      --all-pairs         every pair (up to 20,000 items)\n"
    "      --sample-pairs N    every genuine pair if there are at most N, else N random ones;\n"
    "                          the same for impostor pairs (default, N = 1,000,000)\n"
    "      --seed S            seed for the sampling (default fixed)\n"
    "identification:\n"
    "      --gallery-first K   template = normalised mean of each identity's first K items;\n"
    "                          the rest are probes (default 1). Open set: identities with an\n"
    "                          odd label id are left out of the gallery (non-mated probes)\n"
    "      --open-rank R       rank for TPIR at FPIR (default 20)\n"
    "quality:\n"
    "      --quality COL       a quality column for EDC/ERC: norm, ers, ri, audit/ri or any\n"
    "                          /path (repeatable; default: every column present with values)\n"
    "      --no-verification, --no-identification   skip a part\n"
    "      --json              print JSON instead of text\n"
    "  -h, --help              this text\n";

int fr_cmd_eval(int argc, char **argv)
{
  enum { OPT_PAIRS = 256, OPT_ALL, OPT_SAMPLE, OPT_SEED, OPT_FIRST, OPT_RANK, OPT_QUALITY, OPT_NOVER, OPT_NOID, OPT_JSON };
  static const struct option longopts[] = {
      {"pairs", required_argument, 0, OPT_PAIRS},      {"all-pairs", no_argument, 0, OPT_ALL},
      {"sample-pairs", required_argument, 0, OPT_SAMPLE}, {"seed", required_argument, 0, OPT_SEED},
      {"gallery-first", required_argument, 0, OPT_FIRST}, {"open-rank", required_argument, 0, OPT_RANK},
      {"quality", required_argument, 0, OPT_QUALITY},  {"no-verification", no_argument, 0, OPT_NOVER},
      {"no-identification", no_argument, 0, OPT_NOID}, {"json", no_argument, 0, OPT_JSON},
      {"help", no_argument, 0, 'h'},                   {0, 0, 0, 0}};
  fr_eval_options o = {0};
  int json = 0, modes = 0, c;
  long v = 0;
  fr_error err = {0};
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_PAIRS:
      o.pairs_mode = FR_PAIRS_FILE;
      o.pairs_path = optarg;
      modes++;
      break;
    case OPT_ALL:
      o.pairs_mode = FR_PAIRS_ALL;
      modes++;
      break;
    case OPT_SAMPLE:
      if (fr_parse_int("--sample-pairs", optarg, 1, 1000000000L, &v, &err))
        goto usage_error;
      o.pairs_mode = FR_PAIRS_SAMPLE;
      o.sample_pairs = v;
      modes++;
      break;
    case OPT_SEED:
      if (fr_parse_int("--seed", optarg, 0, 2147483647L, &v, &err))
        goto usage_error;
      o.seed = (uint64_t)v;
      break;
    case OPT_FIRST:
      if (fr_parse_int("--gallery-first", optarg, 1, 1000000, &v, &err))
        goto usage_error;
      o.gallery_first = (int)v;
      break;
    case OPT_RANK:
      if (fr_parse_int("--open-rank", optarg, 1, 1000000, &v, &err))
        goto usage_error;
      o.open_rank = (int)v;
      break;
    case OPT_QUALITY:
      if (o.n_quality == FR_EVAL_MAX_QUALITY) {
        fr_error_set(&err, FR_ERR_INVALID, "at most %d --quality columns", FR_EVAL_MAX_QUALITY);
        goto usage_error;
      }
      o.quality[o.n_quality++] = optarg;
      break;
    case OPT_NOVER:
      o.no_verification = 1;
      break;
    case OPT_NOID:
      o.no_identification = 1;
      break;
    case OPT_JSON:
      json = 1;
      break;
    case 'h':
      fputs(usage, stdout);
      return FR_EXIT_OK;
    default:
      fputs(usage, stderr);
      return FR_EXIT_USAGE;
    }
  }
  if (modes > 1) {
    fr_error_set(&err, FR_ERR_INVALID, "--pairs, --all-pairs and --sample-pairs exclude each other");
    goto usage_error;
  }
  if (optind != argc - 1) {
    fr_error_set(&err, FR_ERR_INVALID, "expected one RESULTS.h5");
    goto usage_error;
  }
  fr_results_reader *r = NULL;
  if (fr_results_reader_open(argv[optind], 0, &r, &err)) {
    fprintf(stderr, "faceri eval: %s\n", err.message);
    return FR_EXIT_ERROR;
  }
  fr_eval_result res;
  int rc = fr_eval_run(r, &o, &res, &err);
  fr_results_reader_close(r);
  if (rc) {
    fprintf(stderr, "faceri eval: %s\n", err.message);
    return rc == FR_ERR_INVALID ? FR_EXIT_USAGE : FR_EXIT_ERROR;
  }
  if (json)
    fr_eval_print_json(&res, stdout);
  else
    fr_eval_print_text(&res, stdout);
  fr_eval_result_free(&res);
  return FR_EXIT_OK;

usage_error:
  fprintf(stderr, "faceri eval: %s\n\n%s", err.message, usage);
  return FR_EXIT_USAGE;
}
