#ifndef FACERI_REPORT_H
#define FACERI_REPORT_H
/* faceri report: one self-contained HTML page about a results file
 * (coordinator/report*.c): run summary, quality histograms, EDC/ERC curves for
 * every quality column, a percentile threshold table, the lowest-quality images
 * as embedded thumbnails (read back from the input archives), the audit's
 * suspected mislabels and duplicates side by side, and a sortable per-identity
 * table. Inline SVG, CSS and script only: no external asset. Also a CSV with one
 * row per image and a JSON summary. */
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"
#include "faceri/results_reader.h"

typedef struct fr_report_options {
  int64_t sample_pairs; /* verification pairs for the curves; 0 = 200,000 */
  int thumbnails;       /* lowest-quality images shown; 0 = 50, < 0 none */
  int thumb_size;       /* pixels; 0 = 64 */
  const char *csv_path; /* NULL: no CSV */
} fr_report_options;

typedef struct fr_report_summary {
  int64_t items, ok, failed, skipped, pending, identities;
  int thumbnails_embedded, thumbnails_missing;
  double seconds;
} fr_report_summary;

int fr_report_write(fr_results_reader *r, const fr_report_options *o, FILE *html, fr_report_summary *summary,
                    fr_error *err);

/* argv[0] is "report"; returns an FR_EXIT_* code. */
int fr_cmd_report(int argc, char **argv);

#endif
