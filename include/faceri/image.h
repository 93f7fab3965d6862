#ifndef FACERI_IMAGE_H
#define FACERI_IMAGE_H
/* Image decoding (JPEG, PNG, PGM/PPM) into 8-bit RGB, cropping, resizing and
 * normalisation into the network's float input.
 *
 * Every decoded image is 3-channel RGB, interleaved, row-major, no padding:
 * grey is replicated into R=G=B, alpha is dropped (not composited), 16-bit
 * samples are scaled to 8 bits. The format is sniffed from magic bytes, never
 * from a file name: face archives are full of misnamed members. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"

/* A hostile header must not make the decoder allocate gigabytes: images wider
 * or taller than this, or with more pixels than FR_IMAGE_MAX_PIXELS, are
 * rejected before any pixel buffer is allocated. */
#define FR_IMAGE_MAX_SIDE 16384
#define FR_IMAGE_MAX_PIXELS (256LL * 1000 * 1000)

typedef struct fr_image {
  int width;
  int height;
  int channels;    /* always 3 for images made by this module */
  uint8_t *pixels; /* width * height * channels bytes, RGB interleaved; owned */
} fr_image;

/* Decodes an in-memory file. `name` is only used in error messages (pass the
 * archive key or path). On success *out owns a new pixel buffer; on error
 * *out is zeroed and the message names `name` and the reason:
 * FR_ERR_UNSUPPORTED for an unknown format, FR_ERR_FORMAT for corrupt or
 * truncated data, FR_ERR_INVALID for an image over the size limits,
 * FR_ERR_NOMEM when the pixel buffer cannot be allocated. */
int fr_image_decode(const uint8_t *bytes, size_t n, const char *name, fr_image *out, fr_error *err);

/* 1 when the bytes start like a JPEG, PNG or PGM/PPM file, else 0. Cheap:
 * looks at the first few bytes only, so callers can skip README, .txt and
 * .info archive members without trying to decode them. */
int fr_image_is_probably_image(const uint8_t *bytes, size_t n);

/* Allocates an uninitialised width x height x 3 image. */
int fr_image_alloc(int width, int height, fr_image *out, fr_error *err);
void fr_image_free(fr_image *img);

/* Copies the box (x, y, w, h) (x, y = top-left corner) into a new image. A box
 * that is empty or not entirely inside the image is an error naming the box
 * and the image size. */
int fr_image_crop(const fr_image *in, int x, int y, int w, int h, fr_image *out, fr_error *err);

typedef enum fr_resize_mode {
  /* Pillow's Image.resize(BILINEAR): a triangle filter whose support is
   * stretched by the scale factor when downscaling (so it antialiases), plain
   * half-pixel-centre bilinear when upscaling; 22-bit fixed-point weights,
   * horizontal pass first, rounded to uint8 between the passes. This is the
   * convention of the golden LFW inputs: it reproduces them bit for bit. */
  FR_RESIZE_BILINEAR = 0,
  /* src = (dst + 0.5) * in/out - 0.5, clamped at the borders, 2x2 taps, no
   * antialiasing: OpenCV INTER_LINEAR, TF half_pixel_centers=True,
   * torch align_corners=False. Rounded to nearest. */
  FR_RESIZE_BILINEAR_HALF_PIXEL = 1,
  /* src = dst * (in-1)/(out-1): torch align_corners=True, TF1 align_corners. */
  FR_RESIZE_BILINEAR_ALIGN_CORNERS = 2
} fr_resize_mode;

/* Resizes to out_w x out_h (up or down, any ratio, each axis independently). */
int fr_image_resize(const fr_image *in, int out_w, int out_h, fr_resize_mode mode, fr_image *out,
                    fr_error *err);

/* fr_image_resize with FR_RESIZE_BILINEAR: the preprocessing the reference used. */
int fr_image_resize_bilinear(const fr_image *in, int out_w, int out_h, fr_image *out, fr_error *err);

/* out_hwc[(y*W + x)*3 + c] = (pixel - mean[c]) / std[c], RGB order, HWC,
 * computed in double and rounded once to float (as the float64 references
 * were). MobileFaceNet uses mean 127.5, std 128 on every channel. */
void fr_image_to_tensor(const fr_image *img, const float mean[3], const float std[3], float *out_hwc);

#endif
