#ifndef FACERI_DEGRADE_H
#define FACERI_DEGRADE_H
/* Very-low-resolution augmentation for training (issue 6, `faceri train --degrade`):
 * an RGB8 image is blurred, sampled down to a random side in [min_size, max_size],
 * given Gaussian noise, re-encoded as JPEG at a random quality (libjpeg) and sampled
 * back up to its own size. Everything random comes from `seed` (splitmix64), so a
 * given (seed, image) always gives the same bytes: a resumed training run sees the
 * same degraded batches. Pure CPU (common/degrade.c). */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"

typedef struct fr_degrade_options {
  int min_size, max_size;     /* side of the low-resolution image: 8, 32 */
  float blur_min, blur_max;   /* Gaussian sigma before sampling down, in low-resolution pixels: 0.3, 0.8 */
  float noise_max;            /* noise sigma ~ U(0, noise_max) grey levels: 8 */
  int jpeg_min, jpeg_max;     /* JPEG quality ~ U{jpeg_min..jpeg_max}: 30, 90 */
} fr_degrade_options;

fr_degrade_options fr_degrade_defaults(void);

/* What one call drew (for logs and tests). */
typedef struct fr_degrade_draw {
  int size, quality;
  float blur, noise;
  size_t jpeg_bytes;
} fr_degrade_draw;

/* dst (w x h x 3, may be src) = degraded src. draw may be NULL. */
int fr_degrade_rgb8(const uint8_t *src, int w, int h, uint64_t seed, const fr_degrade_options *o, uint8_t *dst,
                    fr_degrade_draw *draw, fr_error *err);

#endif
