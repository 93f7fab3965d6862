#ifndef FACERI_TRAIN_LOSS_H
#define FACERI_TRAIN_LOSS_H
/* Classification losses on the device: ArcFace (additive angular margin, Deng et al.)
 * and plain softmax cross-entropy over a linear head, forward and backward in one call.
 *
 * ArcFace numerics are those of insightface's arcface_torch `ArcFace` module (the one
 * with `th = cos(pi - m)` and `mm = sin(pi - m) * m`, also the MXNet original's), with
 * autograd's true gradients:
 *   c_j = x . w_j / ||w_j||                          (x: the L2-normalised embedding)
 *   target: sin = sqrt(1 - c_y^2)  (c_y clamped to [-1, 1] for the root only)
 *           c_y > cos(pi - m):  c_y' = c_y cos m - sin sin m        (= cos(theta_y + m))
 *           otherwise:          c_y' = c_y - m sin m   (theta_y + m would pass pi, where
 *                                                      cos stops decreasing)
 *           easy_margin:        c_y' = c_y > 0 ? cos(theta_y + m) : c_y
 *   logits z_j = s c_j (z_y = s c_y'), loss = mean over the batch of logsumexp(z) - z_y
 *   (max subtracted: s = 64 gives logits up to 64 and stays finite).
 * d c_y'/d c_y = cos m + sin m c_y / sin; sin is floored at 1e-6 there (torch gives
 * inf/NaN at c_y = +-1 exactly). The newer arcface_torch `CombinedMarginLoss` applies
 * the margin under no_grad (a straight-through gradient); that is NOT what this does.
 *
 * Softmax mode: z = s * x W^T (no normalisation, m must be 0), the cross-entropy over a
 * linear head; a bias is the caller's (fr_train_record_bias, and its gradient is the
 * column sum of dlogits: fr_train_record_bias_bwd on fr_loss_dlogits_arg).
 *
 * A label outside [0, classes) marks a row to ignore (arcface_torch's -1): it adds 0 to
 * the loss and gets a zero gradient; the mean still divides by the batch size.
 *
 * Determinism: no float atomics. Every sum is a fixed-order loop or a fixed-shape
 * shared-memory tree; dx sums over classes in two stages through the workspace. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/vk_context.h"

typedef enum fr_loss_kind { FR_LOSS_ARCFACE = 0, FR_LOSS_SOFTMAX = 1 } fr_loss_kind;

typedef struct fr_loss_params {
  fr_loss_kind kind;
  int batch, dim, classes; /* batch <= 16384; classes * dim and batch * classes < 2^31 */
  float s;                 /* scale: 64 for ArcFace, 1 for a plain linear head */
  float m;                 /* additive angular margin, in [0, pi/2); 0.5 in the paper */
  int easy_margin;
} fr_loss_params;

/* ArcFace defaults of the paper: s = 64, m = 0.5. */
fr_loss_params fr_loss_arcface_defaults(int batch, int dim, int classes);

typedef struct fr_loss fr_loss;

int fr_loss_create(fr_vk_context *ctx, fr_loss **out, fr_error *err);
void fr_loss_destroy(fr_loss *l);

/* Floats of workspace one call needs (normalised weights, logits, their gradient,
 * per-row losses, dx partials; segments aligned for storage-buffer offsets). */
size_t fr_loss_workspace_floats(const fr_loss *l, const fr_loss_params *p);

/* Records the forward and, when dx or dw has a buffer, the backward:
 *   x [batch, dim], w [classes, dim] (raw class weights), labels int32 [batch];
 *   loss: 1 float (the batch mean), dx [batch, dim], dw [classes, dim] (either may be
 *   {0}: not computed). The call puts its own barriers between its stages; the caller
 *   orders producers of x/w/labels before it and readers of the outputs after it. */
int fr_loss_record(fr_loss *l, fr_vk_sequence *seq, const fr_loss_params *p, fr_vk_arg x, fr_vk_arg w,
                   fr_vk_arg labels, fr_vk_arg workspace, fr_vk_arg loss, fr_vk_arg dx, fr_vk_arg dw,
                   fr_error *err);

/* Views into the workspace after a recorded call has run: the cosines c [batch, classes]
 * before the margin (ArcFace; x W^T in softmax mode), per-row losses [batch], and
 * dL/dc [batch, classes] (margin and s included; in softmax mode d loss / d (x W^T),
 * which is the input of a bias gradient). dL/dc is written only by a backward. */
fr_vk_arg fr_loss_cosines_arg(const fr_loss *l, const fr_loss_params *p, fr_vk_arg workspace);
fr_vk_arg fr_loss_row_losses_arg(const fr_loss *l, const fr_loss_params *p, fr_vk_arg workspace);
fr_vk_arg fr_loss_dlogits_arg(const fr_loss *l, const fr_loss_params *p, fr_vk_arg workspace);

/* ---- CPU reference in double: the ground truth for the kernels ----
 * Returns the mean loss; row_loss, cos, dx, dw may be NULL. */
double fr_ref_loss(const fr_loss_params *p, const double *x, const double *w, const int32_t *labels,
                   double *row_loss, double *cos, double *dx, double *dw);

#endif
