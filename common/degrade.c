/* Very-low-resolution augmentation (faceri/degrade.h). The JPEG step goes through
 * libjpeg's in-memory destination with an error manager that longjmps back here, as
 * the decoder in image_decode.c does. */
#include "faceri/degrade.h"
#include "faceri/rng.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/image.h"

fr_degrade_options fr_degrade_defaults(void)
{
  fr_degrade_options o = {8, 32, 0.3f, 0.8f, 8.0f, 30, 90};
  return o;
}

static uint64_t next(uint64_t *x) { return fr_splitmix64(x); }

static double uniform(uint64_t *x) { return fr_uniform01(fr_splitmix64(x)); }

/* Separable Gaussian blur of an RGB8 image in place (edges clamped). */
static int blur(uint8_t *px, int w, int h, double sigma, fr_error *err)
{
  int r = (int)ceil(3.0 * sigma);
  if (r < 1)
    return FR_OK;
  if (r > 64)
    r = 64;
  double k[129], sum = 0;
  for (int i = -r; i <= r; i++)
    sum += k[i + r] = exp(-0.5 * i * i / (sigma * sigma));
  for (int i = 0; i <= 2 * r; i++)
    k[i] /= sum;
  float *tmp = malloc((size_t)w * h * 3 * sizeof(float));
  if (!tmp)
    return fr_error_set(err, FR_ERR_NOMEM, "degrade: out of memory for a %dx%d image", w, h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        double a = 0;
        for (int i = -r; i <= r; i++) {
          int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
          a += k[i + r] * px[((size_t)y * w + xx) * 3 + c];
        }
        tmp[((size_t)y * w + x) * 3 + c] = (float)a;
      }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        double a = 0;
        for (int i = -r; i <= r; i++) {
          int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
          a += k[i + r] * tmp[((size_t)yy * w + x) * 3 + c];
        }
        long v = lround(a);
        px[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
  free(tmp);
  return FR_OK;
}

typedef struct jpeg_guard {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
} jpeg_guard;

static void on_error(j_common_ptr cinfo)
{
  jpeg_guard *g = (jpeg_guard *)cinfo->err;
  g->pub.format_message(cinfo, g->message);
  longjmp(g->jump, 1);
}

/* img -> JPEG bytes at quality q -> *out (a new image). */
static int jpeg_roundtrip(const fr_image *img, int q, fr_image *out, size_t *bytes, fr_error *err)
{
  struct jpeg_compress_struct cinfo;
  jpeg_guard guard;
  unsigned char *volatile buf = NULL;
  unsigned long size = 0;
  memset(&cinfo, 0, sizeof(cinfo));
  cinfo.err = jpeg_std_error(&guard.pub);
  guard.pub.error_exit = on_error;
  guard.message[0] = '\0';
  if (setjmp(guard.jump)) {
    jpeg_destroy_compress(&cinfo);
    free(buf);
    return fr_error_set(err, FR_ERR_INTERNAL, "degrade: JPEG encode of a %dx%d image: %s", img->width, img->height,
                        guard.message);
  }
  jpeg_create_compress(&cinfo);
  unsigned char *mem = NULL;
  jpeg_mem_dest(&cinfo, &mem, &size);
  cinfo.image_width = (JDIMENSION)img->width;
  cinfo.image_height = (JDIMENSION)img->height;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, q, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = img->pixels + (size_t)cinfo.next_scanline * img->width * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  buf = mem;
  jpeg_destroy_compress(&cinfo);
  *bytes = size;
  int rc = fr_image_decode(buf, size, "degraded image", out, err);
  free(buf);
  return rc;
}

int fr_degrade_rgb8(const uint8_t *src, int w, int h, uint64_t seed, const fr_degrade_options *o, uint8_t *dst,
                    fr_degrade_draw *draw, fr_error *err)
{
  if (!src || !dst || !o || w < 1 || h < 1 || w > 4096 || h > 4096 || o->min_size < 1 || o->max_size < o->min_size ||
      o->jpeg_min < 1 || o->jpeg_max > 100 || o->jpeg_max < o->jpeg_min || !(o->blur_min >= 0) ||
      !(o->blur_max >= o->blur_min) || !(o->noise_max >= 0))
    return fr_error_set(err, FR_ERR_INVALID, "degrade: image %dx%d, sizes %d..%d, quality %d..%d: bad arguments", w, h,
                        o ? o->min_size : 0, o ? o->max_size : 0, o ? o->jpeg_min : 0, o ? o->jpeg_max : 0);
  uint64_t rng = seed ^ 0x6a09e667f3bcc909ull;
  fr_degrade_draw d;
  d.size = o->min_size + (int)(next(&rng) % (uint64_t)(o->max_size - o->min_size + 1));
  d.blur = (float)(o->blur_min + uniform(&rng) * (o->blur_max - o->blur_min));
  d.noise = (float)(uniform(&rng) * o->noise_max);
  d.quality = o->jpeg_min + (int)(next(&rng) % (uint64_t)(o->jpeg_max - o->jpeg_min + 1));
  d.jpeg_bytes = 0;
  int sw = d.size < w ? d.size : w, sh = d.size < h ? d.size : h;
  fr_image full = {0}, small = {0}, coded = {0}, back = {0};
  int rc = fr_image_alloc(w, h, &full, err);
  if (!rc) {
    memcpy(full.pixels, src, (size_t)w * h * 3);
    /* sigma in low-resolution pixels, applied at full resolution: the anti-aliasing a
     * camera's optics and sensor give a face that small */
    rc = blur(full.pixels, w, h, d.blur * (double)w / sw, err);
  }
  if (!rc)
    rc = fr_image_resize_bilinear(&full, sw, sh, &small, err);
  if (!rc && d.noise > 0) {
    for (size_t i = 0; i < (size_t)sw * sh * 3; i++) {
      double u1 = uniform(&rng), u2 = uniform(&rng);
      double n = sqrt(-2.0 * log(u1 > 1e-300 ? u1 : 1e-300)) * cos(6.283185307179586 * u2) * d.noise;
      long v = lround(small.pixels[i] + n);
      small.pixels[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  if (!rc)
    rc = jpeg_roundtrip(&small, d.quality, &coded, &d.jpeg_bytes, err);
  if (!rc)
    rc = fr_image_resize_bilinear(&coded, w, h, &back, err);
  if (!rc)
    memcpy(dst, back.pixels, (size_t)w * h * 3);
  fr_image_free(&full);
  fr_image_free(&small);
  fr_image_free(&coded);
  fr_image_free(&back);
  if (!rc && draw)
    *draw = d;
  return rc;
}
