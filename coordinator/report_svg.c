/* Inline SVG plots and embedded thumbnails for the HTML report. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/image.h"
#include "faceri/input_source.h"
#include "report_internal.h"
#include "results_hdf5.h"

#define W 420
#define H 260
#define ML 50
#define MB 40

static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

void report_text(FILE *out, const char *s)
{
  for (; s && *s; s++) {
    if (*s == '<')
      fputs("&lt;", out);
    else if (*s == '>')
      fputs("&gt;", out);
    else if (*s == '&')
      fputs("&amp;", out);
    else if (*s == '"')
      fputs("&quot;", out);
    else
      fputc(*s, out);
  }
}

static void frame(FILE *out, const char *title, const char *xl, const char *yl, double x0, double x1, double y0,
                  double y1)
{
  fprintf(out, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' class='plot'>", W, H);
  fprintf(out, "<text x='%d' y='14' font-size='13' text-anchor='middle'>", W / 2);
  report_text(out, title);
  fprintf(out, "</text><rect x='%d' y='20' width='%d' height='%d' fill='none' stroke='#888'/>", ML, W - ML - 10,
          H - MB - 20);
  fprintf(out, "<text x='%d' y='%d' font-size='11' text-anchor='middle'>", W / 2, H - 4);
  report_text(out, xl);
  fprintf(out, "</text><text x='12' y='%d' font-size='11' transform='rotate(-90 12 %d)' text-anchor='middle'>",
          H / 2, H / 2);
  report_text(out, yl);
  fprintf(out, "</text>");
  for (int t = 0; t <= 4; t++) {
    double fx = x0 + (x1 - x0) * t / 4, fy = y0 + (y1 - y0) * t / 4;
    fprintf(out, "<text x='%.1f' y='%d' font-size='10' text-anchor='middle'>%.3g</text>",
            ML + (W - ML - 10) * t / 4.0, H - MB + 14, fx);
    fprintf(out, "<text x='%d' y='%.1f' font-size='10' text-anchor='end'>%.3g</text>", ML - 3,
            H - MB - (H - MB - 20) * t / 4.0 + 3, fy);
  }
}

void report_histogram_svg(FILE *out, const double *x, int64_t n, const char *title)
{
  double lo = INFINITY, hi = -INFINITY;
  int64_t finite = 0;
  for (int64_t i = 0; i < n; i++)
    if (isfinite(x[i])) {
      lo = x[i] < lo ? x[i] : lo;
      hi = x[i] > hi ? x[i] : hi;
      finite++;
    }
  if (!finite) {
    fputs("<p>(no finite values)</p>", out);
    return;
  }
  if (hi <= lo)
    hi = lo + 1;
  int64_t bins[40] = {0}, top = 1;
  for (int64_t i = 0; i < n; i++)
    if (isfinite(x[i])) {
      int b = (int)((x[i] - lo) / (hi - lo) * 40);
      bins[b > 39 ? 39 : b]++;
    }
  for (int b = 0; b < 40; b++)
    top = bins[b] > top ? bins[b] : top;
  frame(out, title, "value", "items", lo, hi, 0, (double)top);
  double bw = (W - ML - 10) / 40.0, ph = H - MB - 20;
  for (int b = 0; b < 40; b++) {
    double h = ph * bins[b] / top;
    fprintf(out, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#4c78a8'/>", ML + b * bw, 20 + ph - h,
            bw - 1, h);
  }
  fputs("</svg>", out);
}

void report_lines_svg(FILE *out, const report_series *s, int n_series, const char *title, const char *xlabel,
                      const char *ylabel)
{
  double x0 = INFINITY, x1 = -INFINITY, y1 = 0;
  for (int k = 0; k < n_series; k++)
    for (int64_t i = 0; i < s[k].n; i++)
      if (isfinite(s[k].x[i]) && isfinite(s[k].y[i])) {
        x0 = s[k].x[i] < x0 ? s[k].x[i] : x0;
        x1 = s[k].x[i] > x1 ? s[k].x[i] : x1;
        y1 = s[k].y[i] > y1 ? s[k].y[i] : y1;
      }
  if (!(x1 > x0)) {
    x0 = 0;
    x1 = 1;
  }
  if (y1 <= 0)
    y1 = 1;
  frame(out, title, xlabel, ylabel, x0, x1, 0, y1);
  double pw = W - ML - 10, ph = H - MB - 20;
  for (int k = 0; k < n_series; k++) {
    fprintf(out, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", colours[k % 6]);
    for (int64_t i = 0; i < s[k].n; i++)
      if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
        fprintf(out, "%.1f,%.1f ", ML + pw * (s[k].x[i] - x0) / (x1 - x0), 20 + ph - ph * s[k].y[i] / y1);
    fprintf(out, "'/><text x='%d' y='%d' font-size='11' fill='%s' text-anchor='end'>", W - 14, 34 + 13 * k,
            colours[k % 6]);
    report_text(out, s[k].name);
    fputs("</text>", out);
  }
  fputs("</svg>", out);
}

/* ---- thumbnails: 24-bit BMP (every browser shows it; no encoder library) in base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *bmp_img(const fr_image *im)
{
  size_t row = ((size_t)im->width * 3 + 3) & ~(size_t)3, size = 54 + row * im->height;
  uint8_t *bmp = calloc(size, 1);
  char *html = malloc(64 + (size + 2) / 3 * 4 + 8);
  if (!bmp || !html) {
    free(bmp);
    free(html);
    return NULL;
  }
  uint32_t h32[] = {(uint32_t)size, 0, 54, 40, (uint32_t)im->width, (uint32_t)im->height};
  bmp[0] = 'B';
  bmp[1] = 'M';
  for (int i = 0; i < 6; i++)
    for (int b = 0; b < 4; b++)
      bmp[2 + i * 4 + b] = (uint8_t)(h32[i] >> (8 * b));
  bmp[26] = 1;  /* planes */
  bmp[28] = 24; /* bits per pixel */
  for (int y = 0; y < im->height; y++) {
    uint8_t *dst = bmp + 54 + row * (size_t)(im->height - 1 - y); /* bottom-up, BGR */
    const uint8_t *src = im->pixels + (size_t)y * im->width * 3;
    for (int x = 0; x < im->width; x++) {
      dst[x * 3] = src[x * 3 + 2];
      dst[x * 3 + 1] = src[x * 3 + 1];
      dst[x * 3 + 2] = src[x * 3];
    }
  }
  char *p = html + sprintf(html, "<img alt='' src='data:image/bmp;base64,");
  for (size_t i = 0; i < size; i += 3) {
    uint32_t v = (uint32_t)bmp[i] << 16 | (i + 1 < size ? (uint32_t)bmp[i + 1] << 8 : 0) | (i + 2 < size ? bmp[i + 2] : 0);
    *p++ = b64[v >> 18 & 63];
    *p++ = b64[v >> 12 & 63];
    *p++ = i + 1 < size ? b64[v >> 6 & 63] : '=';
    *p++ = i + 2 < size ? b64[v & 63] : '=';
  }
  strcpy(p, "'>");
  free(bmp);
  return html;
}

int report_thumbnails(const char *const *inputs, int n_inputs, const char *const *keys, int n_keys, int size,
                      char **html, fr_error *err)
{
  for (int i = 0; i < n_keys; i++)
    html[i] = NULL;
  fr_label_map wanted;
  if (fr_label_map_init(&wanted))
    return 0;
  int *slot_of = malloc((n_keys > 0 ? (size_t)n_keys : 1) * sizeof(int));
  for (int i = 0; slot_of && i < n_keys; i++)
    slot_of[i] = fr_label_map_get(&wanted, keys[i], 1);
  fr_input_source *src = NULL;
  int found = 0;
  if (slot_of && n_keys && fr_input_source_open(inputs, n_inputs, &src, err) == FR_OK) {
    fr_input_item item;
    int rc;
    while (found < n_keys && (rc = fr_input_source_next(src, &item, err)) != 0) {
      if (rc < 0 || item.status != FR_OK)
        continue;
      int id = fr_label_map_get(&wanted, item.key, 0);
      if (id < 0)
        continue;
      fr_image im = {0}, small = {0};
      fr_error e2 = {0};
      int h = 0;
      if (fr_image_decode(item.bytes, item.size, item.key, &im, &e2) == FR_OK) {
        h = im.width > 0 ? (int)lround((double)size * im.height / im.width) : size;
        if (fr_image_resize_bilinear(&im, size, h < 1 ? 1 : h > 4 * size ? 4 * size : h, &small, &e2) == FR_OK)
          for (int i = 0; i < n_keys; i++)
            if (slot_of[i] == id && !html[i] && (html[i] = bmp_img(&small)))
              found++;
      }
      fr_image_free(&im);
      fr_image_free(&small);
    }
    fr_input_source_close(src);
  }
  free(slot_of);
  fr_label_map_free(&wanted);
  return found;
}
