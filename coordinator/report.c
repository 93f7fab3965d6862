/* faceri report: the self-contained HTML page (include/faceri/report.h). */
#include "faceri/report.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval_internal.h"
#include "faceri/cli_util.h"
#include "faceri/item_status.h"
#include "faceri/metrics.h"
#include "report_internal.h"
#include "results_hdf5.h"

#define MAX_EXAMPLES 20
static const double pct[] = {0.001, 0.01, 0.05, 0.10, 0.15};

static const char css[] =
    "body{font:14px sans-serif;margin:24px;max-width:1300px}h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3;cursor:pointer}td.l,th.l{text-align:left}.thumbs div{display:inline-block;margin:4px;"
    "text-align:center;font-size:10px;width:90px;vertical-align:top;word-break:break-all}.plot{margin:6px}"
    ".pair{display:inline-block;border:1px solid #ddd;margin:4px;padding:4px;font-size:11px;width:260px;vertical-align:top}";

/* Sorts a table by the clicked column: numbers numerically, else as text. */
static const char sort_js[] =
    "function sortTable(th){var t=th.closest('table'),i=[].indexOf.call(th.parentNode.children,th),"
    "b=t.tBodies[0],r=[].slice.call(b.rows),d=th.dataset.d=th.dataset.d==='a'?'d':'a';"
    "r.sort(function(x,y){var p=x.cells[i].textContent,q=y.cells[i].textContent,m=parseFloat(p),n=parseFloat(q);"
    "var c=(isNaN(m)||isNaN(n))?p.localeCompare(q):m-n;return d==='a'?c:-c;});"
    "r.forEach(function(x){b.appendChild(x);});}";

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double parse_time(const char *iso)
{
  struct tm tm = {0};
  if (sscanf(iso, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return NAN;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (double)timegm(&tm);
}

static void row_kv(FILE *out, const char *k, const char *v)
{
  fputs("<tr><th class='l'>", out);
  report_text(out, k);
  fputs("</th><td class='l'>", out);
  report_text(out, v);
  fputs("</td></tr>", out);
}

typedef struct audit_view {
  int present;
  float *d_p, *d_n;
  int32_t *nearest;
  uint8_t *flags;
  int64_t n_dup;
  int64_t *dup_a, *dup_b;
  float *dup_cos;
  int64_t *id_count, *id_mis, *id_dup, *id_unrec;
  float *id_qm, *id_ri;
  int64_t n_ids;
  char margin[32];
} audit_view;

static void audit_view_free(audit_view *a)
{
  void *p[] = {a->d_p, a->d_n, a->nearest, a->flags, a->dup_a, a->dup_b, a->dup_cos, a->id_count, a->id_mis,
               a->id_dup, a->id_unrec, a->id_qm, a->id_ri};
  for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
    free(p[i]);
}

/* Per-item audit columns of the used items, and the identity summary. */
static int load_audit(fr_results_reader *r, const eval_items *it, audit_view *a, fr_error *err)
{
  hid_t f = (hid_t)fr_results_reader_hid(r);
  memset(a, 0, sizeof(*a));
  if (H5Lexists(f, "audit", H5P_DEFAULT) <= 0)
    return FR_OK;
  a->present = 1;
  size_t n = (size_t)(it->n ? it->n : 1);
  a->d_p = malloc(n * sizeof(float));
  a->d_n = malloc(n * sizeof(float));
  a->nearest = malloc(n * sizeof(int32_t));
  a->flags = malloc(n);
  float *blk = malloc((size_t)FR_RESULTS_BLOCK_ROWS * sizeof(float));
  int32_t *ib = malloc((size_t)FR_RESULTS_BLOCK_ROWS * sizeof(int32_t));
  uint8_t *fb = malloc((size_t)FR_RESULTS_BLOCK_ROWS);
  hid_t dn = H5Dopen2(f, "audit/nearest", H5P_DEFAULT), df = H5Dopen2(f, "audit/flags", H5P_DEFAULT);
  int rc = !a->d_p || !a->d_n || !a->nearest || !a->flags || !blk || !ib || !fb || dn < 0 || df < 0
               ? fr_error_set(err, FR_ERR_FORMAT, "%s: /audit is incomplete (rerun faceri audit)", fr_results_reader_path(r))
               : FR_OK;
  int64_t items = fr_results_reader_items(r), p = 0;
  for (int64_t g0 = 0; !rc && g0 < items; g0 += FR_RESULTS_BLOCK_ROWS) {
    int64_t m = items - g0 < FR_RESULTS_BLOCK_ROWS ? items - g0 : FR_RESULTS_BLOCK_ROWS, p0 = p;
    while (p < it->n && it->index[p] < g0 + m)
      p++;
    if (fr_h5_read_rows(dn, H5T_NATIVE_INT32, g0, (int)m, 0, ib) < 0 || fr_h5_read_rows(df, H5T_NATIVE_UINT8, g0, (int)m, 0, fb) < 0) {
      rc = fr_error_set(err, FR_ERR_HDF5, "%s: cannot read /audit rows", fr_results_reader_path(r));
      break;
    }
    for (int64_t q = p0; q < p; q++) {
      a->nearest[q] = ib[it->index[q] - g0];
      a->flags[q] = fb[it->index[q] - g0];
    }
    if ((rc = fr_results_read_column(r, "audit/d_p", g0, m, blk, err)))
      break;
    for (int64_t q = p0; q < p; q++)
      a->d_p[q] = blk[it->index[q] - g0];
    if ((rc = fr_results_read_column(r, "audit/d_n", g0, m, blk, err)))
      break;
    for (int64_t q = p0; q < p; q++)
      a->d_n[q] = blk[it->index[q] - g0];
  }
  if (dn >= 0)
    H5Dclose(dn);
  if (df >= 0)
    H5Dclose(df);
  free(blk);
  free(ib);
  free(fb);
  int64_t k = 0;
  if (!rc && (fr_h5_read_vector(f, "audit/duplicates/a", H5T_NATIVE_INT64, &a->n_dup, (void **)&a->dup_a, 8) < 0 ||
              fr_h5_read_vector(f, "audit/duplicates/b", H5T_NATIVE_INT64, &k, (void **)&a->dup_b, 8) < 0 ||
              fr_h5_read_vector(f, "audit/duplicates/cosine", H5T_NATIVE_FLOAT, &k, (void **)&a->dup_cos, 4) < 0 ||
              fr_h5_read_vector(f, "audit/identity/count", H5T_NATIVE_INT64, &a->n_ids, (void **)&a->id_count, 8) < 0 ||
              fr_h5_read_vector(f, "audit/identity/mislabel", H5T_NATIVE_INT64, &k, (void **)&a->id_mis, 8) < 0 ||
              fr_h5_read_vector(f, "audit/identity/duplicate", H5T_NATIVE_INT64, &k, (void **)&a->id_dup, 8) < 0 ||
              fr_h5_read_vector(f, "audit/identity/unrecognizable", H5T_NATIVE_INT64, &k, (void **)&a->id_unrec, 8) < 0 ||
              fr_h5_read_vector(f, "audit/identity/quality_mean", H5T_NATIVE_FLOAT, &k, (void **)&a->id_qm, 4) < 0 ||
              fr_h5_read_vector(f, "audit/identity/ri_mean", H5T_NATIVE_FLOAT, &k, (void **)&a->id_ri, 4) < 0))
    rc = fr_error_set(err, FR_ERR_FORMAT, "%s: /audit summary is incomplete (rerun faceri audit)", fr_results_reader_path(r));
  hid_t g = rc ? -1 : H5Gopen2(f, "audit", H5P_DEFAULT);
  if (g >= 0) {
    hid_t at = H5Aexists(g, "mislabel_margin") > 0 ? H5Aopen(g, "mislabel_margin", H5P_DEFAULT) : -1;
    double v = NAN;
    if (at >= 0) {
      H5Aread(at, H5T_NATIVE_DOUBLE, &v);
      H5Aclose(at);
    }
    snprintf(a->margin, sizeof(a->margin), "%g", v);
    H5Gclose(g);
  }
  return rc;
}


typedef struct example {
  int64_t a, b; /* used-item positions (b: -1 none) or global rows for duplicates */
  double v;
} example;

static int cmp_example_desc(const void *x, const void *y)
{
  double a = ((const example *)x)->v, b = ((const example *)y)->v;
  return (a < b) - (a > b);
}

/* Key of a global row, malloc'd ("" on failure). */
static char *key_of(fr_results_reader *r, int64_t row)
{
  char *k = NULL;
  fr_error e;
  if (fr_results_read_keys(r, row, 1, &k, &e) != FR_OK)
    return strdup("");
  return k;
}

static void thumb_cell(FILE *out, const char *img, const char *caption)
{
  fputs("<div>", out);
  fputs(img ? img : "<span>(image not found)</span>", out);
  fputs("<br>", out);
  report_text(out, caption);
  fputs("</div>", out);
}

static void write_csv(FILE *csv, fr_results_reader *r, fr_error *err, int *rc)
{
  static const char *cols[] = {"quality/norm", "quality/ers", "quality/ri", "audit/d_p", "audit/d_n", "audit/ri"};
  int64_t items = fr_results_reader_items(r), B = 4096;
  fputs("key,label,status,norm,ers,ri,d_p,d_n,eq3_ri\n", csv);
  float *q = malloc((size_t)B * 6 * sizeof(float));
  int8_t *st = malloc((size_t)B);
  int32_t *lab = malloc((size_t)B * sizeof(int32_t));
  char **keys = calloc((size_t)B, sizeof(char *));
  if (!q || !st || !lab || !keys)
    *rc = fr_error_set(err, FR_ERR_NOMEM, "report: out of memory for the CSV");
  for (int64_t g0 = 0; !*rc && g0 < items; g0 += B) {
    int64_t n = items - g0 < B ? items - g0 : B;
    if ((*rc = fr_results_read_status(r, g0, n, st, err)) || (*rc = fr_results_read_labels(r, g0, n, lab, err)) ||
        (*rc = fr_results_read_keys(r, g0, n, keys, err)))
      break;
    for (int c = 0; !*rc && c < 6; c++)
      *rc = fr_results_read_column(r, cols[c], g0, n, q + (size_t)c * B, err);
    for (int64_t i = 0; !*rc && i < n; i++) {
      fputc('"', csv);
      for (const char *p = keys[i]; *p; p++)
        fputs(*p == '"' ? "\"\"" : (char[]){*p, 0}, csv);
      fputs("\",\"", csv);
      for (const char *p = fr_results_reader_label_name(r, lab[i]); *p; p++)
        fputs(*p == '"' ? "\"\"" : (char[]){*p, 0}, csv);
      fprintf(csv, "\",%s", st[i] == FR_ITEM_OK ? "ok" : st[i] == FR_ITEM_FAILED ? "failed" : st[i] == FR_ITEM_SKIPPED ? "skipped" : "pending");
      for (int c = 0; c < 6; c++)
        isfinite(q[(size_t)c * B + i]) ? fprintf(csv, ",%.6g", q[(size_t)c * B + i]) : fputs(",", csv);
      fputc('\n', csv);
    }
    fr_results_free_keys(keys, n);
    memset(keys, 0, (size_t)B * sizeof(char *));
  }
  free(q);
  free(st);
  free(lab);
  free(keys);
}

int fr_report_write(fr_results_reader *r, const fr_report_options *opts, FILE *out, fr_report_summary *sum,
                    fr_error *err)
{
  fr_report_options o = opts ? *opts : (fr_report_options){0};
  int n_thumbs = o.thumbnails == 0 ? 50 : o.thumbnails < 0 ? 0 : o.thumbnails, size = o.thumb_size > 0 ? o.thumb_size : 64;
  double t0 = fr_now_seconds();
  memset(sum, 0, sizeof(*sum));
  int64_t items = fr_results_reader_items(r);
  sum->items = items;
  int8_t *st = malloc(FR_RESULTS_BLOCK_ROWS);
  int rc = st ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "report: out of memory");
  for (int64_t g0 = 0; !rc && g0 < items; g0 += FR_RESULTS_BLOCK_ROWS) {
    int64_t n = items - g0 < FR_RESULTS_BLOCK_ROWS ? items - g0 : FR_RESULTS_BLOCK_ROWS;
    rc = fr_results_read_status(r, g0, n, st, err);
    for (int64_t i = 0; !rc && i < n; i++) {
      sum->ok += st[i] == FR_ITEM_OK;
      sum->failed += st[i] == FR_ITEM_FAILED;
      sum->skipped += st[i] == FR_ITEM_SKIPPED;
      sum->pending += st[i] == FR_ITEM_PENDING;
    }
  }
  free(st);
  if (rc)
    return rc;
  /* Quality columns with values. */
  static const char *const known[] = {"quality/norm", "quality/ers", "quality/ri", "audit/ri"};
  const char *cols[4];
  int nc = 0;
  for (int q = 0; q < 4; q++)
    if (fr_results_reader_has_column(r, known[q]))
      cols[nc++] = known[q];
  eval_items it;
  if ((rc = eval_items_load(r, cols, nc, &it, err)))
    return rc;
  int kept = 0;
  for (int q = 0; q < it.n_quality; q++) {
    int finite = 0;
    for (int64_t i = 0; i < it.n && !finite; i++)
      finite = isfinite(it.quality[q][i]);
    if (!finite) {
      free(it.quality[q]);
      continue;
    }
    if (kept != q) {
      it.quality[kept] = it.quality[q];
      memcpy(it.columns[kept], it.columns[q], sizeof(it.columns[q]));
    }
    kept++;
  }
  it.n_quality = kept;
  for (int l = 0; l < it.n_labels; l++)
    sum->identities += it.label_start[l + 1] > it.label_start[l];
  fr_eval_options eo = {.sample_pairs = o.sample_pairs > 0 ? o.sample_pairs : 200000};
  fr_eval_result ev;
  memset(&ev, 0, sizeof(ev));
  if (it.n >= 2 && (rc = fr_eval_run(r, &eo, &ev, err)))
    goto done_items;
  audit_view av;
  if ((rc = load_audit(r, &it, &av, err)))
    goto done_eval;

  /* Which images get thumbnails: the lowest-quality ones, mislabel examples with the
   * nearest identity's first image, duplicate pairs. */
  int primary = -1;
  for (int q = 0; q < it.n_quality; q++)
    if (primary < 0 || !strcmp(it.columns[q], "audit/ri") || (!strcmp(it.columns[q], "quality/ri")))
      primary = q;
  example *low = calloc((size_t)(it.n ? it.n : 1), sizeof(example)), mis[MAX_EXAMPLES], dup[MAX_EXAMPLES];
  int n_low = 0, n_mis = 0, n_dup = 0;
  if (!low) {
    rc = fr_error_set(err, FR_ERR_NOMEM, "report: out of memory");
    goto done_audit;
  }
  if (primary >= 0) {
    for (int64_t i = 0; i < it.n; i++)
      low[i] = (example){i, -1, isnan(it.quality[primary][i]) ? INFINITY : -it.quality[primary][i]};
    qsort(low, (size_t)it.n, sizeof(example), cmp_example_desc);
    n_low = (int)(it.n < n_thumbs ? it.n : n_thumbs);
  }
  if (av.present) {
    for (int64_t i = 0; i < it.n; i++)
      if (av.flags[i] & 1) {
        example e = {i, -1, av.d_p[i] - av.d_n[i]};
        int32_t nl = av.nearest[i];
        if (nl >= 0 && nl < it.n_labels && it.label_start[nl + 1] > it.label_start[nl])
          e.b = it.by_label[it.label_start[nl]];
        if (n_mis < MAX_EXAMPLES)
          mis[n_mis++] = e;
        else if (e.v > mis[MAX_EXAMPLES - 1].v)
          mis[MAX_EXAMPLES - 1] = e;
        qsort(mis, (size_t)n_mis, sizeof(example), cmp_example_desc);
      }
    for (int64_t i = 0; i < av.n_dup && n_dup < MAX_EXAMPLES; i++)
      dup[n_dup++] = (example){av.dup_a[i], av.dup_b[i], av.dup_cos[i]};
  }
  int n_keys = n_low + 2 * n_mis + 2 * n_dup;
  char **keys = calloc((size_t)n_keys + 1, sizeof(char *)), **imgs = calloc((size_t)n_keys + 1, sizeof(char *));
  int k = 0;
  for (int i = 0; keys && i < n_low; i++)
    keys[k++] = key_of(r, it.index[low[i].a]);
  for (int i = 0; keys && i < n_mis; i++) {
    keys[k++] = key_of(r, it.index[mis[i].a]);
    keys[k++] = mis[i].b >= 0 ? key_of(r, it.index[mis[i].b]) : strdup("");
  }
  for (int i = 0; keys && i < n_dup; i++) {
    keys[k++] = key_of(r, dup[i].a);
    keys[k++] = key_of(r, dup[i].b);
  }
  hid_t f = (hid_t)fr_results_reader_hid(r);
  hid_t utf8 = fr_h5_string_type(H5T_CSET_UTF8);
  char **inputs = NULL;
  int64_t n_inputs = 0;
  if (keys && imgs && n_keys && utf8 >= 0 && fr_h5_read_vector(f, "inputs/path", utf8, &n_inputs, (void **)&inputs, sizeof(char *)) == 0) {
    fr_error terr = {0};
    sum->thumbnails_embedded = report_thumbnails((const char *const *)inputs, (int)n_inputs, (const char *const *)keys,
                                                 n_keys, size, imgs, &terr);
  }
  sum->thumbnails_missing = n_keys - sum->thumbnails_embedded;
  fr_h5_free_strings(inputs, n_inputs);
  if (utf8 >= 0)
    H5Tclose(utf8);

  /* ---- the page ---- */
  char a[1024], b[1024];
  fprintf(out, "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>faceri report</title><style>%s</style>"
               "<script>%s</script></head><body>",
          css, sort_js);
  fputs("<h1>faceri report: ", out);
  report_text(out, fr_results_reader_path(r));
  fputs("</h1><h2>Run</h2><table>", out);
  static const char *const attrs[] = {"state", "model_path", "model_architecture", "model_sha256", "device",
                                      "start_time", "end_time", "command_line", "faceri_version"};
  for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
    fr_results_reader_attr(r, attrs[i], a, sizeof(a));
    row_kv(out, attrs[i], a);
  }
  fr_results_reader_attr(r, "start_time", a, sizeof(a));
  fr_results_reader_attr(r, "end_time", b, sizeof(b));
  double secs = parse_time(b) - parse_time(a);
  snprintf(a, sizeof(a), "%lld items: %lld ok, %lld failed, %lld skipped, %lld pending", (long long)items,
           (long long)sum->ok, (long long)sum->failed, (long long)sum->skipped, (long long)sum->pending);
  row_kv(out, "items", a);
  if (secs > 0)
    snprintf(a, sizeof(a), "%.2f items/s over %.0f s (start to end)", items / secs, secs);
  else
    snprintf(a, sizeof(a), "n/a (no start and end time)");
  row_kv(out, "throughput", a);
  snprintf(a, sizeof(a), "%lld labelled identities, %lld used items", (long long)sum->identities, (long long)it.n);
  row_kv(out, "identities", a);
  fputs("</table>", out);

  if (ev.has_verification || ev.has_identification) {
    fputs("<h2>Recognition</h2><table><tr><th class='l'>figure</th><th>value</th></tr>", out);
    for (int i = 0; ev.has_verification && i < FR_EVAL_N_FAR; i++)
      fprintf(out, "<tr><td class='l'>TPR @ FAR %g (%s)</td><td id='tpr%d'>%.4f</td></tr>", ev.fars[i],
              ev.pairs_source, i, ev.tpr[i]);
    if (ev.has_identification)
      fprintf(out, "<tr><td class='l'>rank-1 identification (%lld probes)</td><td id='rank1'>%.4f</td></tr>"
                   "<tr><td class='l'>rank-5</td><td>%.4f</td></tr>",
              (long long)ev.n_probes, ev.cmc[0], ev.cmc[4]);
    for (int i = 0; ev.has_open_set && i < FR_EVAL_N_FPIR; i++)
      fprintf(out, "<tr><td class='l'>TPIR @ FPIR %g, rank %d</td><td>%.4f</td></tr>", ev.fpirs[i], ev.open_rank, ev.tpir[i]);
    fputs("</table>", out);
  }

  fputs("<h2>Quality</h2>", out);
  for (int q = 0; q < it.n_quality; q++)
    report_histogram_svg(out, it.quality[q], it.n, it.columns[q]);
  fputs("<h3>Percentile thresholds</h3><table><tr><th class='l'>column</th>", out);
  for (size_t p = 0; p < sizeof(pct) / sizeof(pct[0]); p++)
    fprintf(out, "<th>%g%%</th>", 100 * pct[p]);
  fputs("</tr>", out);
  double *sorted = malloc((size_t)(it.n ? it.n : 1) * sizeof(double));
  for (int q = 0; sorted && q < it.n_quality; q++) {
    int64_t m = 0;
    for (int64_t i = 0; i < it.n; i++)
      if (isfinite(it.quality[q][i]))
        sorted[m++] = it.quality[q][i];
    qsort(sorted, (size_t)m, sizeof(double), cmp_double);
    fprintf(out, "<tr><td class='l'>%s</td>", it.columns[q]);
    for (size_t p = 0; p < sizeof(pct) / sizeof(pct[0]); p++) {
      double x = pct[p] * (m - 1); /* linear interpolation, NumPy's default */
      int64_t lo = (int64_t)floor(x);
      double v = m ? sorted[lo] + (lo + 1 < m ? (x - lo) * (sorted[lo + 1] - sorted[lo]) : 0) : NAN;
      fprintf(out, "<td>%.4g</td>", v);
    }
    fputs("</tr>", out);
  }
  free(sorted);
  fputs("</table>", out);
  if (ev.n_quality) {
    report_series edc[FR_EVAL_MAX_QUALITY], erc[FR_EVAL_MAX_QUALITY];
    double *erc_y[FR_EVAL_MAX_QUALITY] = {0};
    int ne = 0, nr = 0;
    for (int q = 0; q < ev.n_quality; q++) {
      if (ev.quality[q].has_edc)
        edc[ne++] = (report_series){ev.quality[q].column, ev.quality[q].edc.discard, ev.quality[q].edc.fnmr, ev.quality[q].edc.n_points};
      const fr_erc *e = &ev.quality[q].erc;
      if (ev.quality[q].has_erc && (erc_y[nr] = malloc((size_t)e->n_steps * sizeof(double)))) {
        for (int s2 = 0; s2 < e->n_steps; s2++)
          erc_y[nr][s2] = e->fnmr[s2 * e->n_fmr + 1]; /* FMR 1e-3 */
        erc[nr] = (report_series){ev.quality[q].column, e->discard, erc_y[nr], e->n_steps};
        nr++;
      }
    }
    fputs("<h3>Error versus discard</h3>", out);
    report_lines_svg(out, edc, ne, "EDC (ISO/IEC 29794-1), threshold at FMR 1e-3", "fraction discarded", "FNMR");
    report_lines_svg(out, erc, nr, "ERC (FIQA), FNMR at FMR 1e-3", "fraction discarded", "FNMR");
    fputs("<table><tr><th class='l'>column</th><th>EDC pAUC (20%)</th><th>relative</th></tr>", out);
    for (int q = 0; q < ev.n_quality; q++)
      if (ev.quality[q].has_edc)
        fprintf(out, "<tr><td class='l'>%s</td><td>%.5f</td><td>%.3f</td></tr>", ev.quality[q].column,
                ev.quality[q].edc.pauc, ev.quality[q].edc.pauc_relative);
    fputs("</table>", out);
    for (int q = 0; q < nr; q++)
      free(erc_y[q]);
  }

  k = 0;
  if (n_low) {
    fprintf(out, "<h2>The %d lowest-quality images (%s)</h2><div class='thumbs'>", n_low, it.columns[primary]);
    for (int i = 0; i < n_low; i++, k++) {
      snprintf(a, sizeof(a), "%.4g %s", it.quality[primary][low[i].a], keys[k]);
      thumb_cell(out, imgs[k], a);
    }
    fputs("</div>", out);
  }
  if (av.present) {
    int64_t tot = 0;
    for (int64_t i = 0; i < it.n; i++)
      tot += av.flags[i] & 1;
    fprintf(out, "<h2>Suspected mislabels: <span id='mislabels'>%lld</span> (d_P - d_N &gt; %s)</h2>", (long long)tot, av.margin);
    for (int i = 0; i < n_mis; i++, k += 2) {
      fputs("<div class='pair thumbs'>", out);
      snprintf(a, sizeof(a), "%s (d_P %.3f, d_N %.3f)", keys[k], av.d_p[mis[i].a], av.d_n[mis[i].a]);
      thumb_cell(out, imgs[k], a);
      snprintf(b, sizeof(b), "nearest: %s", fr_results_reader_label_name(r, av.nearest[mis[i].a]));
      thumb_cell(out, imgs[k + 1], b);
      fputs("</div>", out);
    }
    fprintf(out, "<h2>Near-duplicates: <span id='duplicates'>%lld</span> pairs</h2>", (long long)av.n_dup);
    for (int i = 0; i < n_dup; i++, k += 2) {
      fputs("<div class='pair thumbs'>", out);
      snprintf(a, sizeof(a), "%s", keys[k]);
      thumb_cell(out, imgs[k], a);
      snprintf(b, sizeof(b), "cos %.4f %s", dup[i].v, keys[k + 1]);
      thumb_cell(out, imgs[k + 1], b);
      fputs("</div>", out);
    }
    fputs("<h2>Identities</h2><table id='identities'><thead><tr><th class='l' onclick='sortTable(this)'>identity</th>"
          "<th onclick='sortTable(this)'>items</th><th onclick='sortTable(this)'>quality mean</th>"
          "<th onclick='sortTable(this)'>Eq. 3 RI mean</th><th onclick='sortTable(this)'>mislabel</th>"
          "<th onclick='sortTable(this)'>duplicate</th><th onclick='sortTable(this)'>unrecognizable</th></tr></thead><tbody>",
          out);
    for (int64_t l = 0; l < av.n_ids; l++) {
      if (!av.id_count[l])
        continue;
      fputs("<tr><td class='l'>", out);
      report_text(out, fr_results_reader_label_name(r, (int)l));
      fprintf(out, "</td><td>%lld</td><td>%.4g</td><td>%.4g</td><td>%lld</td><td>%lld</td><td>%lld</td></tr>",
              (long long)av.id_count[l], av.id_qm[l], av.id_ri[l], (long long)av.id_mis[l], (long long)av.id_dup[l],
              (long long)av.id_unrec[l]);
    }
    fputs("</tbody></table>", out);
  } else {
    fputs("<h2>Audit</h2><p>No /audit group: run <code>faceri audit</code> for mislabels, duplicates and the identity table.</p>", out);
  }
  sum->seconds = fr_now_seconds() - t0;
  fprintf(out, "<p style='color:#888'>faceri %s, report made in %.1f s.</p></body></html>\n", FACERI_VERSION, sum->seconds);
  if (ferror(out))
    rc = fr_error_set(err, FR_ERR_IO, "report: writing the HTML failed");
  if (!rc && o.csv_path) {
    FILE *csv = fopen(o.csv_path, "w");
    if (!csv)
      rc = fr_error_set(err, FR_ERR_IO, "%s: cannot create the CSV", o.csv_path);
    else {
      write_csv(csv, r, err, &rc);
      if (fclose(csv) != 0 && !rc)
        rc = fr_error_set(err, FR_ERR_IO, "%s: write failed", o.csv_path);
    }
  }
  for (int i = 0; keys && i < n_keys; i++)
    free(keys[i]);
  for (int i = 0; imgs && i < n_keys; i++)
    free(imgs[i]);
  free(keys);
  free(imgs);
  free(low);
done_audit:
  audit_view_free(&av);
done_eval:
  fr_eval_result_free(&ev);
done_items:
  eval_items_free(&it);
  return rc;
}
