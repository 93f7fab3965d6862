/* The float64 reference of the RI heads against PyTorch autograd
 * (scripts/ri_heads_reference.py: CBAM built from nn layers, nn.BatchNorm2d in training
 * mode, smooth_l1_loss, mse_loss, float64), for each configuration of ri_heads_fixture.h:
 * outputs, loss terms, every parameter gradient, dL/dF and dL/dv within 1e-9. The device
 * is held to the reference by test_ri_heads.c. Skips when /usr/bin/python3 has no torch. */
#include <dirent.h>
#include <unistd.h>

#include "faceri/train_ops.h"
#include "ri_heads_fixture.h"

/* ---- the reference against PyTorch ---- */
#define PYTHON "/usr/bin/python3"

static int write_f64(const char *dir, const char *name, const double *x, size_t n)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s.f64", dir, name);
  FILE *fp = fopen(path, "wb");
  if (!fp)
    return -1;
  size_t w = fwrite(x, sizeof(double), n, fp);
  return fclose(fp) == 0 && w == n ? 0 : -1;
}

static int read_f64(const char *dir, const char *name, double *x, size_t n)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s.f64", dir, name);
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return -1;
  size_t r = fread(x, sizeof(double), n, fp);
  fclose(fp);
  return r == n ? 0 : -1;
}

static void remove_dir(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[768];
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
      unlink(path);
    }
  if (d)
    closedir(d);
  rmdir(dir);
}

static void torch_case(const fr_ri_heads_config *c)
{
  fixture *f = malloc(sizeof(*f));
  make_fixture(f, c);
  ref_backward(f);
  char dir[] = "/tmp/faceri-riheads-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  char path[512];
  snprintf(path, sizeof(path), "%s/meta.txt", dir);
  FILE *m = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  fprintf(m, "h %d\nw %d\nc %d\ndim %d\nbatch %d\nhidden %d\nkernel %d\nbn_eps %.17g\ntau %.17g\nl1_beta %.17g\n", HH,
          WW, CC, DIM, B, c->c / c->reduction > 0 ? c->c / c->reduction : 1, c->spatial_kernel, (double)c->bn_eps,
          (double)c->tau, (double)c->l1_beta);
  fprintf(m, "alpha %.17g\nbeta %.17g\ngamma %.17g\nmu %.17g\nsigma %.17g\ndetach %d\nproj_norm %d\nmse_sum_dim %d\n",
          (double)c->alpha, (double)c->beta, (double)c->gamma, (double)f->mu, (double)f->sigma, c->detach_vproj,
          c->project_normalized, c->mse_sum_dim);
  fprintf(m, "ui_terms %u\nemb %d\nattention %d\n", c->ui_terms, c->reg_input == FR_RI_REG_EMBEDDING, c->attention);
  fclose(m);
  size_t K = f->tn[0];
  double *mask = malloc(B * K * sizeof(double)), flags[B];
  for (size_t i = 0; i < B * K; i++)
    mask[i] = fr_train_dropout_keep(c->dropout, c->seed, f->step, (uint32_t)i) ? 1.0 / (1.0 - (double)c->dropout) : 0;
  for (int r = 0; r < B; r++)
    flags[r] = f->flags[r];
  int rc = write_f64(dir, "F", f->Fd, B * HWC) | write_f64(dir, "v", f->vd, B * DIM) | write_f64(dir, "xi", f->xid, B) |
           write_f64(dir, "flags", flags, B) | write_f64(dir, "centre", f->cd, DIM) | write_f64(dir, "mask", mask, B * K);
  for (int i = 0; i < f->nt && !rc; i++) {
    char name[16];
    snprintf(name, sizeof(name), "p%d", i);
    rc = fr_ri_ref_tensor_trainable(c, i) ? write_f64(dir, name, f->pd[i], f->tn[i]) : 0;
  }
  CU_ASSERT_EQUAL(rc, 0);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s %s/scripts/ri_heads_reference.py %s", PYTHON, FACERI_SOURCE_DIR, dir);
  CU_ASSERT_EQUAL(system(cmd), 0);
  double xh[B], va[B * DIM], loss[4], *dF = malloc(sizeof(f->dF)), dv[B * DIM];
  CU_ASSERT_EQUAL(read_f64(dir, "xi_hat", xh, B), 0);
  CU_ASSERT_EQUAL(read_f64(dir, "loss", loss, 4), 0);
  CU_ASSERT_EQUAL(read_f64(dir, "dF", dF, B * HWC), 0);
  CU_ASSERT_EQUAL(read_f64(dir, "dv", dv, B * DIM), 0);
  const double tol = 1e-9;
  CU_ASSERT(rel_err(f->xh, xh, B) < tol);
  CU_ASSERT(fabs(loss[0] - f->out.total) < tol * fabs(loss[0]));
  CU_ASSERT(fabs(loss[1] - f->out.l1) < tol && fabs(loss[2] - f->out.id) < tol && fabs(loss[3] - f->out.mse) < tol);
  CU_ASSERT(rel_err(f->dF, dF, B * HWC) < tol);
  CU_ASSERT(rel_err(f->dv, dv, B * DIM) < tol || c->detach_vproj);
  if (c->attention) {
    CU_ASSERT_EQUAL(read_f64(dir, "v_attn", va, B * DIM), 0);
    CU_ASSERT(rel_err(f->va, va, B * DIM) < tol);
  }
  for (int i = 0; i < f->nt; i++) {
    if (!fr_ri_ref_tensor_trainable(c, i))
      continue;
    char name[16];
    snprintf(name, sizeof(name), "g%d", i);
    double *g = malloc(f->tn[i] * sizeof(double));
    CU_ASSERT_EQUAL(read_f64(dir, name, g, f->tn[i]), 0);
    double e = rel_err(f->gd[i], g, f->tn[i]);
    CU_ASSERT(e < tol);
    if (!(e < tol))
      printf("\n  %s: reference vs torch %.3g\n", fr_ri_ref_tensor_name(c, i), e);
    free(g);
  }
  remove_dir(dir);
  free(mask), free(dF);
  free_fixture(f);
  free(f);
}

static void test_torch(void)
{
  if (access(PYTHON, X_OK) != 0)
    TEST_SKIP("%s not found: install python3 and python3-torch", PYTHON);
  if (system(PYTHON " -c 'import torch, numpy' >/dev/null 2>&1") != 0)
    TEST_SKIP("%s has no torch: install python3-torch", PYTHON);
  fr_ri_heads_config c[3];
  int n;
  configs(c, &n);
  for (int k = 0; k < n; k++)
    torch_case(&c[k]);
}

int main(void)
{
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("RI heads vs PyTorch", NULL, NULL);
  CU_add_test(s, "reference vs PyTorch autograd", test_torch);
  return test_run_all();
}
