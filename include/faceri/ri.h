#ifndef FACERI_RI_H
#define FACERI_RI_H
/* The recognizability index of the paper (section 3.1, DESIGN §5), on the CPU in
 * double (the reference, common/ri.c) and on the device (worker/nn/ri_device.c):
 *
 *   d_P  = 1 - cos(v, w_y)                   y = the row's label
 *   d_N  = 1 - max_{j != y} cos(v, w_j)       the true class masked with -inf
 *   d_UI = 1 - cos(v, c)                      c = the UI centre
 *   xi   = d_UI * d_N / (d_P + 1e-7)          Eq. 3
 *   v'   = v - <v, c^> c^                     Eq. 8, c^ = c / |c|
 *
 * Conventions (the paper leaves them open; these are the documented choices):
 * - cos(a, b) = <a, b> / (max(|a|, 1e-12) max(|b|, 1e-12)): rows of W and v need not
 *   be unit length (ArcFace prototypes are not); a zero vector has cosine 0 with
 *   everything.
 * - Every cosine is clamped to [-1, 1] (float rounding gives 1.0000001 for identical
 *   vectors), so d_P, d_N, d_UI lie in [0, 2] and xi in [0, 4 / 1e-7 = 4e7]: the clamp
 *   is the cap, xi is always finite for finite inputs. d_P = 0 (the embedding on its
 *   prototype) gives xi = 1e7 d_UI d_N; rows with d_P < FR_RI_EXTREME_DP are counted
 *   (fr_ri_index's return value) so a trainer can log them: there xi is dominated by
 *   the 1e-7 and by float rounding of d_P (on the device d_P is only good to ~1e-7).
 * - C = 1 (no negative class): the max over an empty set is -inf, clamped to -1, so
 *   d_N = 2 (no negative prototype is close: the most recognizable case).
 * - A label outside [0, C) marks an unlabelled row: d_P, d_N, xi are NaN; d_UI is
 *   still computed.
 * - NaN in, NaN out: a NaN in v makes every output of its row NaN; a NaN cosine with
 *   a negative prototype makes d_N (and xi) NaN. The clamps keep NaN.
 * - The projection uses v as given (the paper projects the raw embedding v, not v^). */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/vk_context.h"

#define FR_RI_EPS 1e-7
#define FR_RI_NORM_FLOOR 1e-12
#define FR_RI_EXTREME_DP 1e-4 /* d_P below this: xi > 1e3 d_UI d_N, rounding-dominated */

/* ---- CPU reference (double) ---- */

/* Clamped cosine as above; NaN when either vector has a NaN. */
double fr_ri_cosine(const float *a, const float *b, int dim);
/* Eq. 3 from the three distances (NaN propagates). */
double fr_ri_xi(double d_ui, double d_n, double d_p);
/* d_ui[i] = 1 - cos(v_i, centre) for n rows of v [n, dim]. */
void fr_ri_ui_distances(const float *v, int n, int dim, const float *centre, double *d_ui);
/* Eq. 1-3 for n rows: w [classes, dim], labels [n]; centre may be NULL (then d_ui and
 * xi are NaN). Any output array may be NULL; nearest (may be NULL) gets the index of
 * the nearest negative prototype (-1 when there is none or the row is unlabelled).
 * Returns the number of labelled rows with d_P < FR_RI_EXTREME_DP. */
int fr_ri_index(const float *v, int n, int dim, const float *w, int classes, const int32_t *labels,
                const float *centre, double *d_p, double *d_n, double *d_ui, double *xi, int *nearest);
/* out [n, dim] = v - <v, c^> c^ (Eq. 8); a zero centre leaves v unchanged. */
void fr_ri_project(const float *v, int n, int dim, const float *centre, double *out);

/* The UI centre: the L2-normalised mean of the L2-normalised rows of emb [n, dim]
 * (rows with a NaN or zero length are an error naming the row). resultant (may be
 * NULL) gets the length of the mean before normalising: 1 when all rows agree, near 0
 * when they cancel out (then the centre is meaningless; below 1e-6 is an error). */
int fr_ri_ui_centre(const float *emb, int n, int dim, float *centre, double *resultant, fr_error *err);

/* Summary of a sample (NaNs ignored; all NaN when none is finite). Percentiles by
 * linear interpolation between order statistics (NumPy's default). */
typedef struct fr_ri_stats {
  int n;
  double mean, std, min, p5, p25, p50, p75, p95, max;
} fr_ri_stats;
int fr_ri_stats_of(const double *x, int n, fr_ri_stats *out, fr_error *err);
/* Area under the ROC curve of "score separates positives (higher) from negatives",
 * ties counting one half (the Mann-Whitney U / (n_pos n_neg)). NaN if a side is empty. */
double fr_ri_auc(const double *pos, int n_pos, const double *neg, int n_neg);

/* ---- device (worker/nn/ri_device.c, shaders ri_*.comp) ----
 * For training, where v lives on the device. Plain storage-buffer loops: one
 * invocation per (row, class) cosine, then one per row; no loop runs past 65536
 * iterations (lavapipe's limiter), so dim and classes are at most 65536. */
typedef struct fr_ri_device fr_ri_device;

int fr_ri_device_create(fr_vk_context *ctx, fr_ri_device **out, fr_error *err);
void fr_ri_device_destroy(fr_ri_device *dev);

/* Floats of workspace fr_ri_record_index needs (the [n, classes] cosines). */
size_t fr_ri_workspace_floats(int n, int classes);

/* d_ui [n] = 1 - cos(v_i, centre); v [n, dim], centre [dim]. */
int fr_ri_record_ui(fr_ri_device *dev, fr_vk_sequence *seq, int n, int dim, fr_vk_arg v, fr_vk_arg centre,
                    fr_vk_arg d_ui, fr_error *err);
/* out [n, 4] = (d_P, d_N, d_UI, xi) per row; labels int32 [n]; w [classes, dim]. Puts
 * its own barrier between the cosine and the row stage; the caller orders producers
 * before and readers after. */
int fr_ri_record_index(fr_ri_device *dev, fr_vk_sequence *seq, int n, int dim, int classes, fr_vk_arg v,
                       fr_vk_arg w, fr_vk_arg labels, fr_vk_arg centre, fr_vk_arg workspace, fr_vk_arg out,
                       fr_error *err);
/* out [n, dim] = v - <v, c^> c^. */
int fr_ri_record_project(fr_ri_device *dev, fr_vk_sequence *seq, int n, int dim, fr_vk_arg v, fr_vk_arg centre,
                         fr_vk_arg out, fr_error *err);

#endif
