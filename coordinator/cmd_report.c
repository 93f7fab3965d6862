/* faceri report RESULTS.h5 -o report.html [--csv F] [--json] (report.h). */
#include <getopt.h>
#include <stdio.h>

#include "faceri/cli_util.h"
#include "faceri/commands.h"
#include "faceri/report.h"

static const char usage[] =
    "usage: faceri report RESULTS.h5 -o REPORT.html [--csv FILE] [--json] [--thumbnails N]\n"
    "\n"
    "Writes one self-contained HTML page (inline SVG, embedded thumbnails read back\n"
    "from the input archives): run summary, recognition figures, quality histograms,\n"
    "EDC/ERC curves for every quality column, percentile thresholds, the N lowest-\n"
    "quality images (default 50), and, after 'faceri audit', suspected mislabels and\n"
    "near-duplicates side by side and a sortable per-identity table.\n"
    "      --csv FILE          one row per image: key,label,status,norm,ers,ri,d_p,d_n,eq3_ri\n"
    "      --json              print a JSON summary\n"
    "      --sample-pairs N    verification pairs for the curves (default 200,000)\n";

int fr_cmd_report(int argc, char **argv)
{
  static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, {"csv", required_argument, 0, 'c'},
                                           {"json", no_argument, 0, 'j'},         {"thumbnails", required_argument, 0, 't'},
                                           {"sample-pairs", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  fr_report_options o = {0};
  const char *out = NULL;
  int json = 0, c;
  long v;
  fr_error err = {0};
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
    if (c == 'o')
      out = optarg;
    else if (c == 'c')
      o.csv_path = optarg;
    else if (c == 'j')
      json = 1;
    else if (c == 't' || c == 's') {
      if (fr_parse_int(c == 't' ? "--thumbnails" : "--sample-pairs", optarg, c == 't' ? 0 : 1, 100000000L, &v, &err)) {
        fprintf(stderr, "faceri report: %s\n", err.message);
        return FR_EXIT_USAGE;
      }
      if (c == 't')
        o.thumbnails = v ? (int)v : -1;
      else
        o.sample_pairs = v;
    } else if (c == 'h') {
      fputs(usage, stdout);
      return FR_EXIT_OK;
    } else {
      fputs(usage, stderr);
      return FR_EXIT_USAGE;
    }
  }
  if (!out || optind != argc - 1) {
    fprintf(stderr, "faceri report: expected RESULTS.h5 and -o REPORT.html\n\n%s", usage);
    return FR_EXIT_USAGE;
  }
  fr_results_reader *r = NULL;
  if (fr_results_reader_open(argv[optind], 0, &r, &err)) {
    fprintf(stderr, "faceri report: %s\n", err.message);
    return FR_EXIT_ERROR;
  }
  FILE *html = fopen(out, "w");
  if (!html) {
    fprintf(stderr, "faceri report: %s: cannot create the report\n", out);
    fr_results_reader_close(r);
    return FR_EXIT_ERROR;
  }
  fr_report_summary s;
  int rc = fr_report_write(r, &o, html, &s, &err);
  if (fclose(html) != 0 && !rc)
    rc = fr_error_set(&err, FR_ERR_IO, "%s: write failed", out);
  fr_results_reader_close(r);
  if (rc) {
    fprintf(stderr, "faceri report: %s\n", err.message);
    return FR_EXIT_ERROR;
  }
  if (json)
    printf("{\"command\":\"report\",\"output\":\"%s\",\"items\":%lld,\"ok\":%lld,\"failed\":%lld,\"skipped\":%lld,"
           "\"pending\":%lld,\"identities\":%lld,\"thumbnails\":%d,\"thumbnails_missing\":%d,\"seconds\":%.3f}\n",
           out, (long long)s.items, (long long)s.ok, (long long)s.failed, (long long)s.skipped, (long long)s.pending,
           (long long)s.identities, s.thumbnails_embedded, s.thumbnails_missing, s.seconds);
  else
    fprintf(stderr, "faceri report: wrote %s (%d thumbnails) in %.1f s\n", out, s.thumbnails_embedded, s.seconds);
  return FR_EXIT_OK;
}
