#ifndef FACERI_PREPROCESS_H
#define FACERI_PREPROCESS_H
/* Encoded image bytes -> the network's input tensor: decode, optional crop,
 * bilinear resize to the model input (upscaling very-low-resolution faces),
 * normalisation. One function so every command prepares faces the same way. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"

typedef struct fr_preprocess {
  int input_w, input_h;  /* model input size */
  float mean[3], std[3]; /* per channel, RGB */
  int has_crop;
  int crop_x, crop_y, crop_w, crop_h;
} fr_preprocess;

/* out: input_h x input_w x 3 floats. width/height (may be NULL) get the decoded
 * image's size even when a later step fails. The error names `name`. */
int fr_preprocess_image(const fr_preprocess *pp, const uint8_t *bytes, size_t n, const char *name, float *out,
                        int *width, int *height, fr_error *err);

#endif
