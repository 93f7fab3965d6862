/* ArcFace and softmax cross-entropy: the double reference against central finite
 * differences, the device against the reference (relative error <= 1e-4: max abs error
 * / max abs reference), s = 64 extremes, ignored rows, bit-identical reruns. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/train_loss.h"
#include "test_numeric.h"
#include "test_util.h"

static fr_vk_context *ctx;
static fr_loss *lossk;
static unsigned rng_state = 777u;

static double frand(void) { return test_frand(&rng_state); }

/* Rows of unit length, rounded to float (what the device sees). */
static double *unit_rows(int rows, int dim)
{
  double *a = malloc((size_t)rows * dim * sizeof(double));
  for (int r = 0; r < rows; r++) {
    double ss = 0;
    for (int d = 0; d < dim; d++) {
      a[(size_t)r * dim + d] = frand();
      ss += a[(size_t)r * dim + d] * a[(size_t)r * dim + d];
    }
    for (int d = 0; d < dim; d++)
      a[(size_t)r * dim + d] = (double)(float)(a[(size_t)r * dim + d] / sqrt(ss));
  }
  return a;
}

static double *random_d(size_t n) { return test_random_d(&rng_state, n); }

/* ---------------- reference against finite differences ---------------- */

/* Distance of the target cosines from the margin's switch point, which FD must avoid. */
static double boundary_gap(const fr_loss_params *p, const double *x, const double *w, const int32_t *y)
{
  double *c = malloc((size_t)p->batch * p->classes * sizeof(double)), gap = INFINITY;
  fr_ref_loss(p, x, w, y, NULL, c, NULL, NULL);
  double th = p->easy_margin ? 0.0 : cos(M_PI - p->m);
  for (int b = 0; b < p->batch; b++)
    gap = fmin(gap, fabs(c[(size_t)b * p->classes + y[b]] - th));
  free(c);
  return gap;
}

static void fd_case(const char *name, fr_loss_params p, double scale_w, int target_wrong)
{
  int B = p.batch, D = p.dim, C = p.classes;
  size_t nx = (size_t)B * D, nw = (size_t)C * D;
  double *x = unit_rows(B, D), *w = random_d(nw);
  for (size_t i = 0; i < nw; i++)
    w[i] *= scale_w;
  int32_t y[16];
  for (int b = 0; b < B; b++)
    y[b] = (b * 5 + 3) % C;
  if (target_wrong) /* push some targets past pi - m: the clipped branch */
    for (int d = 0; d < D; d++)
      w[(size_t)y[0] * D + d] = -x[d] * scale_w;
  double gap = boundary_gap(&p, x, w, y);
  double *dx = malloc(nx * sizeof(double)), *dw = malloc(nw * sizeof(double));
  fr_ref_loss(&p, x, w, y, NULL, NULL, dx, dw);
  const double h = 1e-6;
  double worst = 0;
  for (int k = 0; k < 2; k++) {
    double *v = k ? w : x, *an = k ? dw : dx;
    size_t n = k ? nw : nx;
    double *fd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
      double keep = v[i];
      v[i] = keep + h;
      double lp = fr_ref_loss(&p, x, w, y, NULL, NULL, NULL, NULL);
      v[i] = keep - h;
      double lm = fr_ref_loss(&p, x, w, y, NULL, NULL, NULL, NULL);
      v[i] = keep;
      fd[i] = (lp - lm) / (2 * h);
    }
    worst = fmax(worst, test_rel_err_d(an, fd, n));
    free(fd);
  }
  printf("\n    %-44s FD rel err %.2e (target gap to switch %.3f)", name, worst, gap);
  CU_ASSERT(gap > 1e-3);
  CU_ASSERT(worst <= 1e-6);
  free(x), free(w), free(dx), free(dw);
}

static void test_fd(void)
{
  fr_loss_params p = fr_loss_arcface_defaults(4, 9, 7);
  fd_case("arcface s=64 m=0.5", p, 1.0, 0);
  fd_case("arcface s=64 m=0.5, unnormalised rows x3", p, 3.0, 0);
  fd_case("arcface s=64 m=0.5, a target past pi-m", p, 1.0, 1);
  p.s = 30.0f, p.m = 0.3f, p.easy_margin = 1;
  fd_case("arcface s=30 m=0.3 easy margin", p, 1.0, 1);
  fr_loss_params sm = {FR_LOSS_SOFTMAX, 5, 6, 11, 1.0f, 0.0f, 0};
  fd_case("softmax cross-entropy (linear head)", sm, 1.0, 0);
}

/* ---------------- device against the reference ---------------- */

typedef struct gpu_result {
  double loss, e_loss, e_rows, e_cos, e_dx, e_dw;
  float *raw; /* loss, dx, dw bytes for determinism checks */
  size_t raw_n;
} gpu_result;

static int upload(fr_vk_buffer *b, size_t n, const double *d, const int32_t *iv, fr_error *err)
{
  int rc = fr_vk_buffer_create(ctx, (n ? n : 1) * 4, b, err);
  if (rc)
    return rc;
  float *f = calloc(n ? n : 1, 4);
  for (size_t i = 0; i < n; i++) {
    if (iv)
      memcpy(&f[i], &iv[i], 4);
    else if (d)
      f[i] = (float)d[i];
  }
  rc = fr_vk_buffer_upload(ctx, b, 0, f, (n ? n : 1) * 4, err);
  free(f);
  return rc;
}

static double *download(const fr_vk_buffer *b, uint64_t offset, size_t n, float *raw_out)
{
  fr_error err = {0};
  float *f = malloc(n * 4);
  double *d = malloc(n * sizeof(double));
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, b, offset, f, n * 4, &err), FR_OK);
  for (size_t i = 0; i < n; i++)
    d[i] = f[i];
  if (raw_out)
    memcpy(raw_out, f, n * 4);
  free(f);
  return d;
}

/* Runs the loss on the device and compares every output with the reference. */
static gpu_result run_gpu(const fr_loss_params *p, const double *x, const double *w, const int32_t *y, int verbose)
{
  gpu_result r = {0};
  size_t B = p->batch, D = p->dim, C = p->classes;
  fr_error err = {0};
  fr_vk_buffer bx, bw, by, bws, bl, bdx, bdw;
  size_t ws = fr_loss_workspace_floats(lossk, p);
  CU_ASSERT_FATAL(ws > 0);
  CU_ASSERT_EQUAL_FATAL(upload(&bx, B * D, x, NULL, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload(&bw, C * D, w, NULL, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload(&by, B, NULL, y, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload(&bws, ws, NULL, NULL, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload(&bl, 1, NULL, NULL, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload(&bdx, B * D, NULL, NULL, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(upload(&bdw, C * D, NULL, NULL, &err), FR_OK);
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  fr_vk_arg wsa = {&bws, 0, 0};
  int rc = fr_loss_record(lossk, seq, p, (fr_vk_arg){&bx, 0, 0}, (fr_vk_arg){&bw, 0, 0}, (fr_vk_arg){&by, 0, 0},
                          wsa, (fr_vk_arg){&bl, 0, 0}, (fr_vk_arg){&bdx, 0, 0}, (fr_vk_arg){&bdw, 0, 0}, &err);
  CU_ASSERT_EQUAL(rc, FR_OK);
  if (rc)
    fprintf(stderr, "record: %s\n", err.message);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  rc = fr_vk_sequence_run(seq, &err);
  CU_ASSERT_EQUAL(rc, FR_OK);
  if (rc)
    fprintf(stderr, "run: %s\n", err.message);
  fr_vk_sequence_destroy(seq);

  double *rows = malloc(B * sizeof(double)), *cos = malloc(B * C * sizeof(double));
  double *dx = malloc(B * D * sizeof(double)), *dw = malloc(C * D * sizeof(double));
  double want = fr_ref_loss(p, x, w, y, rows, cos, dx, dw);
  r.raw_n = 1 + B * D + C * D;
  r.raw = malloc(r.raw_n * 4);
  double *gl = download(&bl, 0, 1, r.raw);
  double *gdx = download(&bdx, 0, B * D, r.raw + 1), *gdw = download(&bdw, 0, C * D, r.raw + 1 + B * D);
  fr_vk_arg ra = fr_loss_row_losses_arg(lossk, p, wsa), ca = fr_loss_cosines_arg(lossk, p, wsa);
  double *grows = download(&bws, ra.offset, B, NULL), *gcos = download(&bws, ca.offset, B * C, NULL);
  r.loss = gl[0];
  r.e_loss = fabs(gl[0] - want) / fmax(fabs(want), 1e-12);
  r.e_rows = test_rel_err_d(grows, rows, B);
  r.e_cos = test_rel_err_d(gcos, cos, B * C);
  r.e_dx = test_rel_err_d(gdx, dx, B * D);
  r.e_dw = test_rel_err_d(gdw, dw, C * D);
  if (verbose)
    printf("\n    loss %.6g (ref %.6g): rel err loss %.1e rows %.1e cos %.1e dx %.1e dw %.1e", gl[0], want, r.e_loss,
           r.e_rows, r.e_cos, r.e_dx, r.e_dw);
  CU_ASSERT(isfinite(gl[0]));
  CU_ASSERT(r.e_loss <= 1e-4 && r.e_rows <= 1e-4 && r.e_cos <= 1e-4 && r.e_dx <= 1e-4 && r.e_dw <= 1e-4);
  free(rows), free(cos), free(dx), free(dw), free(gl), free(gdx), free(gdw), free(grows), free(gcos);
  fr_vk_buffer *all[] = {&bx, &bw, &by, &bws, &bl, &bdx, &bdw};
  for (int i = 0; i < 7; i++)
    fr_vk_buffer_destroy(ctx, all[i]);
  return r;
}

static void gpu_case(const char *name, fr_loss_params p, int ignore_some)
{
  double *x = unit_rows(p.batch, p.dim), *w = random_d((size_t)p.classes * p.dim);
  int32_t *y = malloc(p.batch * sizeof(int32_t));
  for (int b = 0; b < p.batch; b++)
    y[b] = (int32_t)((b * 7919u + 13u) % (unsigned)p.classes);
  if (ignore_some)
    y[1] = -1, y[p.batch - 1] = p.classes; /* both ignored */
  printf("\n    %s: B=%d D=%d C=%d s=%g m=%g", name, p.batch, p.dim, p.classes, (double)p.s, (double)p.m);
  gpu_result r = run_gpu(&p, x, w, y, 1);
  free(r.raw), free(x), free(w), free(y);
}

static void test_gpu(void)
{
  gpu_case("arcface", fr_loss_arcface_defaults(4, 16, 10), 0);
  gpu_case("arcface, odd sizes, 2 class chunks", fr_loss_arcface_defaults(7, 192, 1500), 0);
  gpu_case("arcface, MobileFaceNet's 512, ignored rows", fr_loss_arcface_defaults(5, 512, 1100), 1);
  fr_loss_params e = fr_loss_arcface_defaults(6, 33, 57);
  e.easy_margin = 1;
  gpu_case("arcface easy margin", e, 0);
  fr_loss_params sm = {FR_LOSS_SOFTMAX, 9, 40, 300, 1.0f, 0.0f, 0};
  gpu_case("softmax over a linear head", sm, 0);
}

/* s = 64 with the largest logits there are: targets exactly on their class (sin = 0,
 * the derivative's floor), opposite it (the clipped branch), and a batch where another
 * class has cosine 1 (loss about 64 * 2): all finite and on the reference. */
static void test_extremes(void)
{
  fr_loss_params p = fr_loss_arcface_defaults(4, 32, 20);
  double *x = unit_rows(4, 32), *w = unit_rows(20, 32);
  int32_t y[4] = {3, 7, 11, 19};
  for (int d = 0; d < 32; d++) {
    w[3 * 32 + d] = x[0 * 32 + d];       /* c_y = 1 */
    w[7 * 32 + d] = -x[1 * 32 + d];      /* c_y = -1 */
    w[12 * 32 + d] = x[2 * 32 + d];      /* a wrong class with c = 1 */
    w[11 * 32 + d] = -x[2 * 32 + d] * 5; /* and the target opposite, unnormalised */
  }
  gpu_result r = run_gpu(&p, x, w, y, 1);
  CU_ASSERT(r.loss > 40.0); /* two rows near 128 */
  for (size_t i = 0; i < r.raw_n; i++)
    CU_ASSERT_FATAL(isfinite(r.raw[i]));
  free(r.raw), free(x), free(w);
}

static void test_determinism(void)
{
  fr_loss_params p = fr_loss_arcface_defaults(8, 128, 2100);
  double *x = unit_rows(8, 128), *w = random_d((size_t)2100 * 128);
  int32_t y[8];
  for (int b = 0; b < 8; b++)
    y[b] = b * 263;
  gpu_result a = run_gpu(&p, x, w, y, 0), b = run_gpu(&p, x, w, y, 0);
  int same = memcmp(a.raw, b.raw, a.raw_n * 4) == 0;
  printf("\n    loss, dx, dW (%zu floats), two runs: %s", a.raw_n, same ? "bit-identical" : "DIFFER");
  CU_ASSERT(same);
  free(a.raw), free(b.raw), free(x), free(w);
}

static void test_bad_params(void)
{
  fr_error err = {0};
  fr_vk_buffer big, small;
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, 1 << 16, &big, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, 16, &small, &err), FR_OK);
  fr_vk_arg A = {&big, 0, 0}, S = {&small, 0, 0}, none = {0};
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 0, &seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
  fr_loss_params p = fr_loss_arcface_defaults(4, 16, 10);
  CU_ASSERT_EQUAL(fr_loss_record(lossk, seq, &p, A, A, A, S, A, A, A, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "workspace"));
  CU_ASSERT_EQUAL(fr_loss_record(lossk, seq, &p, A, none, A, A, A, A, A, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "class weights"));
  p.m = 2.0f;
  CU_ASSERT_EQUAL(fr_loss_record(lossk, seq, &p, A, A, A, A, A, A, A, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "margin"));
  CU_ASSERT_EQUAL(fr_loss_workspace_floats(lossk, &p), 0);
  p = (fr_loss_params){FR_LOSS_SOFTMAX, 4, 16, 10, 1.0f, 0.5f, 0};
  CU_ASSERT_EQUAL(fr_loss_record(lossk, seq, &p, A, A, A, A, A, A, A, &err), FR_ERR_INVALID);
  p = fr_loss_arcface_defaults(0, 16, 10);
  CU_ASSERT_EQUAL(fr_loss_record(lossk, seq, &p, A, A, A, A, A, A, A, &err), FR_ERR_INVALID);
  p = fr_loss_arcface_defaults(4, 16, 10);
  p.s = NAN;
  CU_ASSERT_EQUAL(fr_loss_record(lossk, seq, &p, A, A, A, A, A, A, A, &err), FR_ERR_INVALID);
  /* A valid forward-only call, so the sequence is not empty when it runs. */
  p = fr_loss_arcface_defaults(4, 16, 10);
  CU_ASSERT_EQUAL(fr_loss_record(lossk, seq, &p, A, A, A, A, A, none, none, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  fr_vk_sequence_destroy(seq);
  fr_vk_buffer_destroy(ctx, &big);
  fr_vk_buffer_destroy(ctx, &small);
}

static void test_no_validation_messages(void) { CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0); }

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) || fr_loss_create(ctx, &lossk, &err)) {
    fprintf(stderr, "setup: %s\n", err.message);
    return 1;
  }
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("train loss", NULL, NULL);
  CU_add_test(s, "reference vs central finite differences", test_fd);
  CU_add_test(s, "device vs reference", test_gpu);
  CU_add_test(s, "s = 64 extremes stay finite", test_extremes);
  CU_add_test(s, "determinism: bit-identical reruns", test_determinism);
  CU_add_test(s, "bad parameters", test_bad_params);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_loss_destroy(lossk);
  fr_vk_context_destroy(ctx);
  return rc;
}
