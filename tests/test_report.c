/* faceri report on a small results file made here, whose items are real PPM
 * files in a folder (so thumbnails are read back through the input source):
 * the page is self-contained, holds the key figures and one thumbnail per
 * shown image, the CSV has a row per image; then headless Chromium loads the
 * page (skipped when chromium is absent): no console errors, a screenshot in
 * the build's test-output/, and the key numbers in the rendered DOM. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faceri/audit.h"
#include "faceri/report.h"
#include "results_fixture.h"
#include "test_util.h"

static char dir[] = "/tmp/faceri-test-report-XXXXXX";
static char results[300], images[300], html[300];

static const float emb[][2] = {{1, 0}, {0.8f, 0.6f}, {0.6f, 0.8f}, {0, 1}, {-0.6f, 0.8f}, {0.8f, 0.6f}, {-1, 0},
                               {-0.96f, -0.28f}};
static const float ers[] = {1.0f, 0.9f, 0.8f, 1.1f, 0.3f, 0.9f, 1.0f, 0.95f};

static char *slurp(const char *p, size_t *n)
{
  FILE *f = fopen(p, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)len + 1);
  *n = buf ? fread(buf, 1, (size_t)len, f) : 0;
  if (buf)
    buf[*n] = '\0';
  fclose(f);
  return buf;
}

static int setup(void)
{
  if (!mkdtemp(dir))
    return -1;
  snprintf(results, sizeof(results), "%s/r.h5", dir);
  snprintf(images, sizeof(images), "%s/img", dir);
  snprintf(html, sizeof(html), "%s/report.html", dir);
  static const char *names[] = {"A/1.ppm", "A/2.ppm", "A/3.ppm", "B/1.ppm", "B/2.ppm", "B/3.ppm", "C/1.ppm", "C/2.ppm"};
  static char keys[8][320];
  const char *labels[] = {"A", "A", "A", "B", "B", "B", "C", "C"};
  fixture_item items[8];
  char p[400];
  for (int i = 0; i < 8; i++) {
    snprintf(p, sizeof(p), "%s/%c", images, names[i][0]);
    mkdir(images, 0755);
    mkdir(p, 0755);
    snprintf(keys[i], sizeof(keys[i]), "%s/%s", images, names[i]);
    FILE *f = fopen(keys[i], "wb");
    if (!f)
      return -1;
    fprintf(f, "P6\n16 16\n255\n");
    for (int k = 0; k < 16 * 16; k++) /* a different colour per image */
      fputc(30 * i, f), fputc(255 - 30 * i, f), fputc(k % 256, f);
    fclose(f);
    items[i] = (fixture_item){.key = keys[i], .label = labels[i], .embedding = emb[i], .norm = 10 + i,
                              .ers = ers[i], .ri = NAN};
  }
  fr_error err = {0};
  const char *inputs[] = {images};
  if (fixture_write_inputs(results, items, 8, 2, inputs, 1, &err)) {
    fprintf(stderr, "fixture: %s\n", err.message);
    return -1;
  }
  fr_results_reader *r = NULL;
  fr_audit_summary s;
  int rc = fr_results_reader_open(results, 1, &r, &err) || fr_audit_run(r, NULL, &s, &err);
  fr_results_reader_close(r);
  return rc ? -1 : 0;
}

static int teardown(void)
{
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static int count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++)
    n++;
  return n;
}

static void test_page(void)
{
  fr_results_reader *r = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_results_reader_open(results, 0, &r, &err), FR_OK);
  char csv[320];
  snprintf(csv, sizeof(csv), "%s/r.csv", dir);
  fr_report_options o = {.thumbnails = 5, .csv_path = csv};
  fr_report_summary s;
  FILE *f = fopen(html, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  CU_ASSERT_EQUAL(fr_report_write(r, &o, f, &s, &err), FR_OK);
  fclose(f);
  fr_results_reader_close(r);
  CU_ASSERT_EQUAL(s.ok, 8);
  CU_ASSERT_EQUAL(s.identities, 3);
  CU_ASSERT_EQUAL(s.thumbnails_missing, 0);
  size_t n = 0;
  char *page = slurp(html, &n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(page);
  CU_ASSERT_EQUAL(count(page, "src='http"), 0); /* self-contained */
  CU_ASSERT_EQUAL(count(page, "href="), 0);
  CU_ASSERT_EQUAL(count(page, "<img"), s.thumbnails_embedded);
  CU_ASSERT(s.thumbnails_embedded >= 5);
  CU_ASSERT(count(page, "<svg") >= 4); /* two histograms (norm, ers; audit/ri too), EDC, ERC */
  CU_ASSERT_PTR_NOT_NULL(strstr(page, "<td id='rank1'>0.6000</td>")); /* see test_eval.c: CMC rank-1 = .6 */
  CU_ASSERT_PTR_NOT_NULL(strstr(page, "<span id='duplicates'>4</span>")); /* see test_audit.c */
  CU_ASSERT_PTR_NOT_NULL(strstr(page, "id='identities'"));
  free(page);
  char *c = slurp(csv, &n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL(count(c, "\n"), 9);
  free(c);
}

static void test_chromium(void)
{
  const char *browser = access("/usr/bin/chromium", X_OK) == 0 ? "/usr/bin/chromium" : NULL;
  if (!browser)
    TEST_SKIP("chromium not installed (Debian package chromium)");
  char outdir[600], cmd[8192], log[700], dom[700];
  snprintf(outdir, sizeof(outdir), "%s/test-output", FACERI_BINARY_DIR);
  mkdir(outdir, 0755);
  snprintf(log, sizeof(log), "%s/report-console.log", dir);
  snprintf(dom, sizeof(dom), "%s/report-dom.html", dir);
  /* One run for the DOM (after scripts ran) with console messages logged, one for the screenshot. */
  snprintf(cmd, sizeof(cmd),
           "timeout 120 %s --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir=%s/chrome "
           "--enable-logging=stderr --v=0 --dump-dom file://%s > %s 2> %s && "
           "timeout 120 %s --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir=%s/chrome "
           "--window-size=1300,2400 --screenshot=%s/report.png file://%s >/dev/null 2>&1",
           browser, dir, html, dom, log, browser, dir, outdir, html);
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  size_t n = 0;
  char *console = slurp(log, &n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(console);
  /* Chromium logs every console message of the page, uncaught errors included, as
   * "INFO:CONSOLE:LINE] ...": the page writes none, so any is a failure. */
  int errors = count(console, ":CONSOLE");
  if (errors)
    printf("\n  console: %.500s", console);
  CU_ASSERT_EQUAL(errors, 0);
  free(console);
  char *d = slurp(dom, &n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(d);
  CU_ASSERT_PTR_NOT_NULL(strstr(d, "<td id=\"rank1\">0.6000</td>"));
  CU_ASSERT_PTR_NOT_NULL(strstr(d, "<span id=\"duplicates\">4</span>"));
  free(d);
  char png[700];
  snprintf(png, sizeof(png), "%s/report.png", outdir);
  struct stat st;
  CU_ASSERT(stat(png, &st) == 0 && st.st_size > 1000);
  printf("\n  screenshot: %s", png);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("report", setup, teardown);
  CU_add_test(s, "self-contained page: figures, plots, thumbnails, CSV", test_page);
  CU_add_test(s, "headless Chromium: loads without console errors, screenshot, key numbers", test_chromium);
  return test_run_all();
}
