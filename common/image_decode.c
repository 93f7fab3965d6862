/* Decoding JPEG (libjpeg-turbo), PNG (libpng) and PGM/PPM into 8-bit RGB.
 *
 * Both libraries report fatal errors through callbacks that must not return;
 * we longjmp back into the decode function, free what was allocated and turn
 * the library's message into an fr_error. Pointers assigned after setjmp and
 * read after the longjmp are volatile, as C requires. */
#include "faceri/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#define PNG_MAGIC "\x89PNG\r\n\x1a\n"

/* libjpeg-turbo's own fuzzers stop at 500 scans: a crafted progressive JPEG
 * with thousands of tiny scans otherwise takes minutes to decode. */
#define JPEG_MAX_SCANS 500

/* Caps what libpng allocates for one ancillary chunk (iCCP, zTXt, ...), so a
 * compressed text bomb cannot take the memory an image would not. */
#define PNG_MAX_CHUNK_BYTES (8u << 20)

static int is_jpeg(const uint8_t *b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

static int is_png(const uint8_t *b, size_t n) { return n >= 8 && memcmp(b, PNG_MAGIC, 8) == 0; }

static int is_pnm_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* P2/P3 (plain) and P5/P6 (raw) grey and colour maps; PBM and PAM are not
 * face images and are reported as unsupported. */
static int is_pnm(const uint8_t *b, size_t n)
{
  return n >= 3 && b[0] == 'P' && (b[1] == '2' || b[1] == '3' || b[1] == '5' || b[1] == '6') &&
         (is_pnm_space(b[2]) || b[2] == '#');
}

int fr_image_is_probably_image(const uint8_t *bytes, size_t n)
{
  if (!bytes)
    return 0;
  return is_jpeg(bytes, n) || is_png(bytes, n) || is_pnm(bytes, n);
}

static int check_dimensions(long long w, long long h, const char *name, const char *what, fr_error *err)
{
  if (w < 1 || h < 1)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: %s has an empty size %lldx%lld", name, what, w, h);
  if (w > FR_IMAGE_MAX_SIDE || h > FR_IMAGE_MAX_SIDE || w * h > FR_IMAGE_MAX_PIXELS)
    return fr_error_set(err, FR_ERR_INVALID,
                        "%s: %s is %lldx%lld, over the limit of %dx%d and %lld pixels", name, what, w, h,
                        FR_IMAGE_MAX_SIDE, FR_IMAGE_MAX_SIDE, FR_IMAGE_MAX_PIXELS);
  return FR_OK;
}

int fr_image_alloc(int width, int height, fr_image *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  int rc = check_dimensions(width, height, "image", "requested size", err);
  if (rc)
    return rc;
  size_t bytes = (size_t)width * (size_t)height * 3;
  out->pixels = malloc(bytes);
  if (!out->pixels)
    return fr_error_set(err, FR_ERR_NOMEM, "image: cannot allocate %dx%d RGB pixels (%zu bytes)", width,
                        height, bytes);
  out->width = width;
  out->height = height;
  out->channels = 3;
  return FR_OK;
}

void fr_image_free(fr_image *img)
{
  if (!img)
    return;
  free(img->pixels);
  memset(img, 0, sizeof(*img));
}

/* ---------------------------------------------------------------- JPEG */

typedef struct jpeg_guard {
  struct jpeg_error_mgr pub; /* first: libjpeg hands us a pointer to it */
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
} jpeg_guard;

static void jpeg_on_error(j_common_ptr cinfo)
{
  jpeg_guard *g = (jpeg_guard *)cinfo->err;
  char text[JMSG_LENGTH_MAX];
  g->pub.format_message(cinfo, text);
  snprintf(g->message, sizeof(g->message), "%s", text);
  longjmp(g->jump, 1);
}

/* libjpeg only warns about a truncated or damaged entropy stream and fills
 * the rest of the image with grey; a face embedding of half a grey image is
 * worse than an error, so those warnings abort the decode. Benign warnings
 * (extraneous bytes, unknown JFIF revision) are ignored, as every viewer does. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
  if (level >= 0)
    return;
  int code = cinfo->err->msg_code;
  if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
      code == JWRN_ARITH_BAD_CODE || code == JWRN_MUST_RESYNC || code == JWRN_BOGUS_PROGRESSION)
    jpeg_on_error(cinfo);
  cinfo->err->num_warnings++;
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
  if (!cinfo->is_decompressor)
    return;
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (d->input_scan_number > JPEG_MAX_SCANS) {
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    snprintf(g->message, sizeof(g->message), "more than %d progressive scans", JPEG_MAX_SCANS);
    longjmp(g->jump, 1);
  }
}

/* Adobe CMYK JPEGs store inverted inks (255 = no ink), which libjpeg passes
 * through; with that convention R = C*K/255, as Pillow and libvips do. */
static void cmyk_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width)
{
  for (int x = 0; x < width; x++) {
    unsigned k = cmyk[4 * x + 3];
    for (int c = 0; c < 3; c++)
      rgb[3 * x + c] = (uint8_t)((cmyk[4 * x + c] * k + 127) / 255);
  }
}

static int decode_jpeg(const uint8_t *bytes, size_t n, const char *name, fr_image *out, fr_error *err)
{
  struct jpeg_decompress_struct cinfo;
  struct jpeg_progress_mgr progress;
  jpeg_guard guard;
  uint8_t *volatile pixels = NULL;
  uint8_t *volatile cmyk_row = NULL;

  memset(&cinfo, 0, sizeof(cinfo));
  memset(&guard, 0, sizeof(guard));
  cinfo.err = jpeg_std_error(&guard.pub);
  guard.pub.error_exit = jpeg_on_error;
  guard.pub.emit_message = jpeg_on_message;
  if (setjmp(guard.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    free(cmyk_row);
    return fr_error_set(err, FR_ERR_FORMAT, "%s: corrupt JPEG: %s", name, guard.message);
  }
  jpeg_create_decompress(&cinfo);
  progress.progress_monitor = jpeg_on_progress;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, bytes, (unsigned long)n);
  jpeg_read_header(&cinfo, TRUE);

  int rc = check_dimensions(cinfo.image_width, cinfo.image_height, name, "JPEG", err);
  if (rc) {
    jpeg_destroy_decompress(&cinfo);
    return rc;
  }
  int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  /* libjpeg-turbo converts grey and YCbCr to RGB itself, but not CMYK. */
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);

  int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
  if (cinfo.output_components != (cmyk ? 4 : 3)) {
    jpeg_destroy_decompress(&cinfo);
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: JPEG decodes to %d components, expected %d", name,
                        cinfo.output_components, cmyk ? 4 : 3);
  }
  pixels = malloc((size_t)w * (size_t)h * 3);
  if (cmyk)
    cmyk_row = malloc((size_t)w * 4);
  if (!pixels || (cmyk && !cmyk_row)) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    free(cmyk_row);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: cannot allocate %dx%d pixels", name, w, h);
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t *dst = pixels + (size_t)cinfo.output_scanline * (size_t)w * 3;
    JSAMPROW row = cmyk ? cmyk_row : dst;
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
      /* Only a suspending data source returns 0 lines; memory sources do not. */
      snprintf(guard.message, sizeof(guard.message), "decoder returned no scanline at row %u",
               cinfo.output_scanline);
      longjmp(guard.jump, 1);
    }
    if (cmyk)
      cmyk_row_to_rgb(cmyk_row, dst, w);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  free(cmyk_row);
  out->width = w;
  out->height = h;
  out->channels = 3;
  out->pixels = pixels;
  return FR_OK;
}

/* ---------------------------------------------------------------- PNG */

typedef struct png_guard {
  jmp_buf jump;
  char message[256];
  const uint8_t *bytes;
  size_t size, pos;
} png_guard;

static void png_on_error(png_structp png, png_const_charp msg)
{
  png_guard *g = png_get_error_ptr(png);
  snprintf(g->message, sizeof(g->message), "%s", msg);
  longjmp(g->jump, 1);
}

/* Warnings (bad ancillary CRC, unknown sRGB profile) do not stop a decode. */
static void png_on_warning(png_structp png, png_const_charp msg) {}

static void png_read_memory(png_structp png, png_bytep data, size_t len)
{
  png_guard *g = png_get_io_ptr(png);
  if (len > g->size - g->pos)
    png_error(png, "truncated: the file ends inside a chunk");
  memcpy(data, g->bytes + g->pos, len);
  g->pos += len;
}

/* The full libpng API rather than png_image: the simplified API treats 16-bit
 * files without gAMA as linear light and gamma-encodes them on the way to
 * 8 bits, which changes the pixels; here 16-bit samples are just rescaled. */
static int decode_png(const uint8_t *bytes, size_t n, const char *name, fr_image *out, fr_error *err)
{
  png_guard guard;
  memset(&guard, 0, sizeof(guard));
  guard.bytes = bytes;
  guard.size = n;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &guard, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: cannot allocate a PNG decoder", name);
  }
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(guard.jump)) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    return fr_error_set(err, FR_ERR_FORMAT, "%s: corrupt PNG: %s", name, guard.message);
  }
  png_set_chunk_malloc_max(png, PNG_MAX_CHUNK_BYTES);
  png_set_read_fn(png, &guard, png_read_memory);
  png_read_info(png, info);

  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, NULL, NULL, NULL);
  int rc = check_dimensions(w, h, name, "PNG", err);
  if (rc) {
    png_destroy_read_struct(&png, &info, NULL);
    return rc;
  }
  if (color == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16)
    png_set_scale_16(png);
  /* Unconditional: palette_to_rgb also turns a tRNS chunk into an alpha channel. */
  png_set_strip_alpha(png);
  if (!(color & PNG_COLOR_MASK_COLOR))
    png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)w * 3 || png_get_bit_depth(png, info) != 8) {
    png_destroy_read_struct(&png, &info, NULL);
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: PNG colour type %d depth %d does not convert to 8-bit RGB",
                        name, color, depth);
  }
  pixels = malloc((size_t)w * h * 3);
  rows = malloc(sizeof(png_bytep) * h);
  if (!pixels || !rows) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    return fr_error_set(err, FR_ERR_NOMEM, "%s: cannot allocate %ux%u pixels", name, (unsigned)w, (unsigned)h);
  }
  for (png_uint_32 y = 0; y < h; y++)
    rows[y] = pixels + (size_t)y * w * 3;
  png_read_image(png, rows);
  /* No png_read_end: chunks after the image data cannot change the pixels,
   * and a file cut just before IEND still holds the whole image. */
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  out->width = (int)w;
  out->height = (int)h;
  out->channels = 3;
  out->pixels = pixels;
  return FR_OK;
}

/* ---------------------------------------------------------------- PGM/PPM */

/* Whitespace and '#' comments (to the end of the line) may separate header
 * fields; returns the position of the next token. */
static size_t pnm_skip(const uint8_t *b, size_t n, size_t pos)
{
  while (pos < n) {
    if (b[pos] == '#') {
      while (pos < n && b[pos] != '\n' && b[pos] != '\r')
        pos++;
    } else if (is_pnm_space(b[pos])) {
      pos++;
    } else {
      break;
    }
  }
  return pos;
}

/* Reads a decimal number; 0 on success, -1 if there is no number or it is
 * over `max` (which also rules out overflow). */
static int pnm_number(const uint8_t *b, size_t n, size_t *pos, long max, long *value)
{
  size_t p = pnm_skip(b, n, *pos);
  if (p >= n || b[p] < '0' || b[p] > '9')
    return -1;
  long v = 0;
  while (p < n && b[p] >= '0' && b[p] <= '9') {
    v = v * 10 + (b[p] - '0');
    if (v > max)
      return -1;
    p++;
  }
  *pos = p;
  *value = v;
  return 0;
}

static uint8_t pnm_scale(long v, long maxval)
{
  if (v > maxval)
    v = maxval; /* out-of-range samples exist in the wild; clamp, as Pillow does */
  if (maxval == 255)
    return (uint8_t)v;
  return (uint8_t)((v * 255 + maxval / 2) / maxval);
}

static int decode_pnm(const uint8_t *b, size_t n, const char *name, fr_image *out, fr_error *err)
{
  int plain = b[1] == '2' || b[1] == '3';
  int channels = (b[1] == '3' || b[1] == '6') ? 3 : 1;
  size_t pos = 2;
  long w = 0, h = 0, maxval = 0;
  if (pnm_number(b, n, &pos, 1L << 30, &w) || pnm_number(b, n, &pos, 1L << 30, &h) ||
      pnm_number(b, n, &pos, 65535, &maxval))
    return fr_error_set(err, FR_ERR_FORMAT, "%s: corrupt P%c header: expected width, height and maxval <= 65535",
                        name, b[1]);
  if (maxval < 1)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: P%c maxval is 0", name, b[1]);
  int rc = check_dimensions(w, h, name, b[1] == '5' || b[1] == '2' ? "PGM" : "PPM", err);
  if (rc)
    return rc;

  size_t samples = (size_t)w * (size_t)h * (size_t)channels;
  size_t bps = maxval > 255 ? 2 : 1;
  if (!plain) {
    /* Exactly one whitespace byte separates maxval from the raster. */
    if (pos >= n || !is_pnm_space(b[pos]))
      return fr_error_set(err, FR_ERR_FORMAT, "%s: P%c header does not end in whitespace", name, b[1]);
    pos++;
    if (n - pos < samples * bps)
      return fr_error_set(err, FR_ERR_FORMAT,
                          "%s: truncated P%c: %ldx%ld needs %zu bytes of pixels, the file has %zu", name, b[1], w,
                          h, samples * bps, n - pos);
  } else if (n - pos < 2 * samples - 1) {
    /* Every plain sample takes a digit and a separator: checked before allocating. */
    return fr_error_set(err, FR_ERR_FORMAT, "%s: truncated P%c: %ldx%ld needs %zu samples, the file is too short",
                        name, b[1], w, h, samples);
  }
  rc = fr_image_alloc((int)w, (int)h, out, err);
  if (rc) {
    fr_error_prefix(err, "%s", name);
    return rc;
  }
  uint8_t *px = out->pixels;
  for (size_t i = 0; i < samples; i++) {
    long v;
    if (plain) {
      if (pnm_number(b, n, &pos, 65535, &v)) {
        fr_image_free(out);
        return fr_error_set(err, FR_ERR_FORMAT, "%s: P%c sample %zu of %zu is missing or not a number <= 65535",
                            name, b[1], i, samples);
      }
    } else if (bps == 2) {
      v = (long)b[pos] << 8 | b[pos + 1]; /* big-endian, by the Netpbm spec */
      pos += 2;
    } else {
      v = b[pos++];
    }
    uint8_t s = pnm_scale(v, maxval);
    if (channels == 3) {
      px[i] = s;
    } else {
      px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = s;
    }
  }
  return FR_OK;
}

int fr_image_decode(const uint8_t *bytes, size_t n, const char *name, fr_image *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  if (!name)
    name = "image";
  if (!bytes || n == 0)
    return fr_error_set(err, FR_ERR_FORMAT, "%s: empty file", name);
  if (is_jpeg(bytes, n))
    return decode_jpeg(bytes, n, name, out, err);
  if (is_png(bytes, n))
    return decode_png(bytes, n, name, out, err);
  if (is_pnm(bytes, n))
    return decode_pnm(bytes, n, name, out, err);
  return fr_error_set(err, FR_ERR_UNSUPPORTED, "%s: not an image (JPEG, PNG, PGM/PPM)", name);
}
