/* The recognizability index on the device (conventions and the CPU reference:
 * include/faceri/ri.h, common/ri.c). Two stages for Eq. 1-3 so no invocation loops
 * over classes x dim (lavapipe's loop limiter cuts loops past ~65k iterations):
 *   ri_cos    one invocation per (row, class): the clamped cosines into the workspace
 *   ri_index  one invocation per row: d_P, masked max -> d_N, d_UI, xi
 * d_UI alone and the projection v' are one invocation per row (ri_ui). */
#include <stdlib.h>

#include "faceri/ri.h"

#define WG 64u
#define MAX_LOOP 65536

struct fr_ri_device {
  fr_vk_context *ctx;
  fr_vk_kernel *cos, *index, *ui;
  uint32_t wg;
};

typedef struct ri_push {
  uint32_t n, dim, third; /* classes, or project for ri_ui */
} ri_push;

int fr_ri_device_create(fr_vk_context *ctx, fr_ri_device **out, fr_error *err)
{
  *out = NULL;
  fr_ri_device *r = calloc(1, sizeof(*r));
  if (!r)
    return fr_error_set(err, FR_ERR_NOMEM, "RI kernels: out of memory");
  r->ctx = ctx;
  const fr_vk_device_info *info = fr_vk_context_device(ctx);
  uint32_t lim = info->max_workgroup_size[0] < info->max_workgroup_invocations ? info->max_workgroup_size[0]
                                                                               : info->max_workgroup_invocations;
  r->wg = WG < lim ? WG : lim;
  fr_vk_binding_kind st[FR_VK_MAX_BINDINGS] = {FR_BIND_STORAGE};
  int rc = fr_vk_kernel_create(ctx, "ri_cos", 3, st, sizeof(ri_push), &r->wg, 1, &r->cos, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "ri_index", 5, st, sizeof(ri_push), &r->wg, 1, &r->index, err);
  if (!rc)
    rc = fr_vk_kernel_create(ctx, "ri_ui", 3, st, sizeof(ri_push), &r->wg, 1, &r->ui, err);
  if (rc) {
    fr_ri_device_destroy(r);
    return rc;
  }
  *out = r;
  return FR_OK;
}

void fr_ri_device_destroy(fr_ri_device *r)
{
  if (!r)
    return;
  fr_vk_kernel_destroy(r->ctx, r->cos);
  fr_vk_kernel_destroy(r->ctx, r->index);
  fr_vk_kernel_destroy(r->ctx, r->ui);
  free(r);
}

size_t fr_ri_workspace_floats(int n, int classes)
{
  return n > 0 && classes > 0 ? (size_t)n * (size_t)classes : 0;
}

static int check_shape(int n, int dim, int classes, fr_error *err)
{
  if (n <= 0 || dim <= 0 || classes <= 0)
    return fr_error_set(err, FR_ERR_INVALID, "RI: shape n %d, dim %d, classes %d", n, dim, classes);
  if (dim > MAX_LOOP || classes > MAX_LOOP || (int64_t)n * classes >= INT32_MAX || (int64_t)n * dim >= INT32_MAX ||
      (int64_t)classes * dim >= INT32_MAX)
    return fr_error_set(err, FR_ERR_UNSUPPORTED,
                        "RI: shape n %d, dim %d, classes %d is too large for one call (dim, classes <= %d)", n, dim,
                        classes, MAX_LOOP);
  return FR_OK;
}

static int need(fr_vk_arg a, uint64_t floats, const char *what, fr_error *err)
{
  if (!a.buffer)
    return fr_error_set(err, FR_ERR_INVALID, "RI: no buffer for %s", what);
  uint64_t avail = a.offset < a.buffer->size ? a.buffer->size - a.offset : 0;
  if (a.range && a.range < avail)
    avail = a.range;
  if (avail < floats * sizeof(float))
    return fr_error_set(err, FR_ERR_INVALID, "RI: %s holds %llu bytes, needs %llu", what, (unsigned long long)avail,
                        (unsigned long long)(floats * sizeof(float)));
  return FR_OK;
}

static int dispatch(fr_ri_device *r, fr_vk_sequence *seq, const fr_vk_kernel *k, const fr_vk_arg *args,
                    const ri_push *push, uint64_t invocations, fr_error *err)
{
  uint64_t groups = (invocations + r->wg - 1) / r->wg;
  const fr_vk_device_info *info = fr_vk_context_device(r->ctx);
  uint32_t gx = groups <= info->max_workgroup_count[0] ? (uint32_t)groups : info->max_workgroup_count[0];
  uint64_t gy = (groups + gx - 1) / gx;
  if (gy > info->max_workgroup_count[1])
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: %llu invocations exceed one dispatch", fr_vk_kernel_name(k),
                        (unsigned long long)invocations);
  return fr_vk_sequence_dispatch(seq, k, args, push, gx, (uint32_t)gy, 1, NULL, err);
}

int fr_ri_record_ui(fr_ri_device *r, fr_vk_sequence *seq, int n, int dim, fr_vk_arg v, fr_vk_arg centre,
                    fr_vk_arg d_ui, fr_error *err)
{
  int rc = check_shape(n, dim, 1, err);
  if (!rc)
    rc = need(v, (uint64_t)n * dim, "v", err);
  if (!rc)
    rc = need(centre, (uint64_t)dim, "the UI centre", err);
  if (!rc)
    rc = need(d_ui, (uint64_t)n, "d_UI", err);
  if (rc)
    return rc;
  ri_push push = {(uint32_t)n, (uint32_t)dim, 0};
  fr_vk_arg args[3] = {v, centre, d_ui};
  return dispatch(r, seq, r->ui, args, &push, (uint64_t)n, err);
}

int fr_ri_record_project(fr_ri_device *r, fr_vk_sequence *seq, int n, int dim, fr_vk_arg v, fr_vk_arg centre,
                         fr_vk_arg out, fr_error *err)
{
  int rc = check_shape(n, dim, 1, err);
  if (!rc)
    rc = need(v, (uint64_t)n * dim, "v", err);
  if (!rc)
    rc = need(centre, (uint64_t)dim, "the UI centre", err);
  if (!rc)
    rc = need(out, (uint64_t)n * dim, "v'", err);
  if (rc)
    return rc;
  ri_push push = {(uint32_t)n, (uint32_t)dim, 1};
  fr_vk_arg args[3] = {v, centre, out};
  return dispatch(r, seq, r->ui, args, &push, (uint64_t)n, err);
}

int fr_ri_record_index(fr_ri_device *r, fr_vk_sequence *seq, int n, int dim, int classes, fr_vk_arg v,
                       fr_vk_arg w, fr_vk_arg labels, fr_vk_arg centre, fr_vk_arg workspace, fr_vk_arg out,
                       fr_error *err)
{
  int rc = check_shape(n, dim, classes, err);
  if (!rc)
    rc = need(v, (uint64_t)n * dim, "v", err);
  if (!rc)
    rc = need(w, (uint64_t)classes * dim, "the prototypes", err);
  if (!rc)
    rc = need(labels, (uint64_t)n, "labels", err); /* int32: same size as float */
  if (!rc)
    rc = need(centre, (uint64_t)dim, "the UI centre", err);
  if (!rc)
    rc = need(workspace, fr_ri_workspace_floats(n, classes), "the workspace", err);
  if (!rc)
    rc = need(out, (uint64_t)n * 4, "the output", err);
  if (rc)
    return rc;
  ri_push push = {(uint32_t)n, (uint32_t)dim, (uint32_t)classes};
  fr_vk_arg cos_args[3] = {v, w, workspace};
  rc = dispatch(r, seq, r->cos, cos_args, &push, (uint64_t)n * classes, err);
  if (rc)
    return rc;
  fr_vk_sequence_barrier(seq); /* the cosines are written before the rows read them */
  fr_vk_arg row_args[5] = {v, workspace, labels, centre, out};
  return dispatch(r, seq, r->index, row_args, &push, (uint64_t)n, err);
}
