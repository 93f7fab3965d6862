#ifndef FACERI_REPORT_INTERNAL_H
#define FACERI_REPORT_INTERNAL_H
/* Pieces of the HTML report (coordinator/ only): SVG plots and thumbnails. */
#include <stdint.h>
#include <stdio.h>

#include "faceri/error.h"

typedef struct report_series {
  const char *name;
  const double *x, *y;
  int64_t n;
} report_series;

/* Histogram of the finite values of x (40 bins between min and max). */
void report_histogram_svg(FILE *out, const double *x, int64_t n, const char *title);
/* Line plot; x and y ranges from the data (y from 0). */
void report_lines_svg(FILE *out, const report_series *s, int n_series, const char *title, const char *xlabel,
                      const char *ylabel);
/* HTML-escaped text. */
void report_text(FILE *out, const char *s);

/* Thumbnails of the given keys, read back from the input paths (archives,
 * folders, files): html[i] gets a malloc'd <img> element (NULL when the key
 * was not found or did not decode). Returns the number found. */
int report_thumbnails(const char *const *inputs, int n_inputs, const char *const *keys, int n_keys, int size,
                      char **html, fr_error *err);

#endif
