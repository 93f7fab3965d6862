/* Image decoding, cropping, resizing and normalisation.
 * Images are encoded here, in memory, with libjpeg/libpng/a PNM writer and
 * decoded back; resizers are checked against naive double-precision versions
 * and the default one against the golden LFW inputs, bit for bit. */
#include "faceri/image.h"
#include "test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

typedef struct buf {
  uint8_t *data;
  size_t size, cap;
} buf;

static void buf_put(buf *b, const void *p, size_t n)
{
  if (b->size + n > b->cap) {
    b->cap = (b->size + n) * 2;
    b->data = realloc(b->data, b->cap);
    CU_ASSERT_FATAL(b->data != NULL);
  }
  memcpy(b->data + b->size, p, n);
  b->size += n;
}

static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return rng_state >> 8;
}

/* A smooth colour pattern (JPEG-friendly) or noise. */
static uint8_t *make_rgb(int w, int h, int noise)
{
  uint8_t *p = malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        p[((size_t)y * w + x) * 3 + c] =
            noise ? (uint8_t)rng() : (uint8_t)(127.5 + 120 * sin(0.11 * x * (c + 1) + 0.07 * y + c));
  return p;
}

/* ---------------------------------------------------------------- writers */

static void png_write_mem(png_structp png, png_bytep data, size_t n) { buf_put(png_get_io_ptr(png), data, n); }
static void png_flush_mem(png_structp png) {}

/* Writes `rows` already in the PNG's own sample layout. */
static buf encode_png(int w, int h, int color, int depth, const uint8_t *samples, size_t row_bytes,
                      const png_color *palette, int npal, const uint8_t *trns, int ntrns, int interlace)
{
  buf b = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  CU_ASSERT_FATAL(png && info);
  if (setjmp(png_jmpbuf(png)))
    CU_FAIL_FATAL("libpng write failed");
  png_set_write_fn(png, &b, png_write_mem, png_flush_mem);
  png_set_IHDR(png, info, w, h, depth, color, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (palette)
    png_set_PLTE(png, info, palette, npal);
  if (trns)
    png_set_tRNS(png, info, trns, ntrns, NULL);
  png_write_info(png, info);
  png_bytep *rows = malloc(sizeof(png_bytep) * h);
  for (int y = 0; y < h; y++)
    rows[y] = (png_bytep)samples + (size_t)y * row_bytes;
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  return b;
}

static buf encode_jpeg(int w, int h, int components, J_COLOR_SPACE space, const uint8_t *samples, int quality)
{
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  unsigned char *mem = NULL;
  unsigned long size = 0;
  c.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &mem, &size);
  c.image_width = w;
  c.image_height = h;
  c.input_components = components;
  c.in_color_space = space;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  for (int i = 0; i < c.num_components; i++)
    c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1; /* 4:4:4, so q100 is near lossless */
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)samples + (size_t)c.next_scanline * w * components;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  buf b = {0};
  buf_put(&b, mem, size);
  free(mem);
  return b;
}

static buf encode_pnm(char kind, int w, int h, int maxval, const uint16_t *samples, const char *comment)
{
  buf b = {0};
  int ch = (kind == '3' || kind == '6') ? 3 : 1;
  char head[256];
  int n = snprintf(head, sizeof(head), "P%c\n# %s\n%d %d\n# another comment\n%d\n", kind, comment, w, h, maxval);
  buf_put(&b, head, (size_t)n);
  for (size_t i = 0; i < (size_t)w * h * ch; i++) {
    if (kind == '2' || kind == '3') {
      n = snprintf(head, sizeof(head), "%u%s", samples[i], (i % 7 == 6) ? "\n" : " ");
      buf_put(&b, head, (size_t)n);
    } else if (maxval > 255) {
      uint8_t be[2] = {(uint8_t)(samples[i] >> 8), (uint8_t)samples[i]};
      buf_put(&b, be, 2);
    } else {
      uint8_t v = (uint8_t)samples[i];
      buf_put(&b, &v, 1);
    }
  }
  return b;
}

static int decode_ok(const buf *b, fr_image *img)
{
  fr_error err = {0};
  int rc = fr_image_decode(b->data, b->size, "mem", img, &err);
  if (rc)
    printf("\n  decode failed: %s\n", err.message);
  return rc;
}

/* ---------------------------------------------------------------- decode */

static void test_sniff(void)
{
  CU_ASSERT(fr_image_is_probably_image((const uint8_t *)"\xff\xd8\xff\xe0", 4));
  CU_ASSERT(fr_image_is_probably_image((const uint8_t *)"\x89PNG\r\n\x1a\n", 8));
  CU_ASSERT(fr_image_is_probably_image((const uint8_t *)"P5\n92 112\n255\n", 14));
  CU_ASSERT(fr_image_is_probably_image((const uint8_t *)"P3 1 1 255 0 0 0", 16));
  CU_ASSERT(!fr_image_is_probably_image((const uint8_t *)"P4\n", 3));
  CU_ASSERT(!fr_image_is_probably_image((const uint8_t *)"Public README\n", 14));
  CU_ASSERT(!fr_image_is_probably_image((const uint8_t *)"\xff\xd8", 2));
  CU_ASSERT(!fr_image_is_probably_image(NULL, 10));

  fr_image img;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_image_decode((const uint8_t *)"hello world", 11, "orl/README", &img, &err), FR_ERR_UNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "orl/README: not an image"));
  CU_ASSERT_PTR_NULL(img.pixels);
  CU_ASSERT_EQUAL(fr_image_decode((const uint8_t *)"", 0, "empty", &img, &err), FR_ERR_FORMAT);
}

static void test_png_rgb_exact(void)
{
  for (int interlace = 0; interlace < 2; interlace++) {
    uint8_t *px = make_rgb(37, 23, 1);
    buf b = encode_png(37, 23, PNG_COLOR_TYPE_RGB, 8, px, 37 * 3, NULL, 0, NULL, 0, interlace);
    fr_image img;
    CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
    CU_ASSERT_EQUAL(img.width, 37);
    CU_ASSERT_EQUAL(img.height, 23);
    CU_ASSERT_EQUAL(img.channels, 3);
    CU_ASSERT(memcmp(img.pixels, px, 37 * 23 * 3) == 0);
    fr_image_free(&img);
    free(px);
    free(b.data);
  }
}

static void test_png_grey_alpha_16bit_palette(void)
{
  enum { W = 9, H = 5 };
  uint8_t grey[W * H], ga[W * H * 2], rgba[W * H * 4], idx[W * H];
  uint16_t rgb16[W * H * 3];
  for (int i = 0; i < W * H; i++) {
    grey[i] = (uint8_t)(i * 5);
    ga[2 * i] = (uint8_t)(250 - i);
    ga[2 * i + 1] = (uint8_t)(i * 3); /* alpha must be dropped, not composited */
    for (int c = 0; c < 4; c++)
      rgba[4 * i + c] = (uint8_t)(i * 4 + c * 50);
    idx[i] = (uint8_t)(i % 3);
  }
  /* 16-bit big-endian: v*257 must come back as v, 0x1234 as round(0x1234*255/65535). */
  uint8_t be16[W * H * 6];
  for (int i = 0; i < W * H * 3; i++) {
    rgb16[i] = (uint16_t)(i == 0 ? 0x1234 : (i % 256) * 257);
    be16[2 * i] = (uint8_t)(rgb16[i] >> 8);
    be16[2 * i + 1] = (uint8_t)rgb16[i];
  }
  png_color pal[3] = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}};
  uint8_t trns[3] = {0, 128, 255};
  fr_image img;

  buf b = encode_png(W, H, PNG_COLOR_TYPE_GRAY, 8, grey, W, NULL, 0, NULL, 0, 0);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  for (int i = 0; i < W * H; i++)
    for (int c = 0; c < 3; c++)
      CU_ASSERT_EQUAL(img.pixels[3 * i + c], grey[i]);
  fr_image_free(&img);
  free(b.data);

  b = encode_png(W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, W * 2, NULL, 0, NULL, 0, 0);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  for (int i = 0; i < W * H; i++)
    CU_ASSERT(img.pixels[3 * i] == ga[2 * i] && img.pixels[3 * i + 2] == ga[2 * i]);
  fr_image_free(&img);
  free(b.data);

  b = encode_png(W, H, PNG_COLOR_TYPE_RGBA, 8, rgba, W * 4, NULL, 0, NULL, 0, 0);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  for (int i = 0; i < W * H; i++)
    CU_ASSERT(memcmp(img.pixels + 3 * i, rgba + 4 * i, 3) == 0);
  fr_image_free(&img);
  free(b.data);

  b = encode_png(W, H, PNG_COLOR_TYPE_RGB, 16, be16, W * 6, NULL, 0, NULL, 0, 0);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  CU_ASSERT_EQUAL(img.pixels[0], (0x1234 * 255 + 32767) / 65535);
  for (int i = 1; i < W * H * 3; i++)
    CU_ASSERT_EQUAL(img.pixels[i], i % 256);
  fr_image_free(&img);
  free(b.data);

  b = encode_png(W, H, PNG_COLOR_TYPE_PALETTE, 8, idx, W, pal, 3, trns, 3, 0);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  for (int i = 0; i < W * H; i++) {
    const png_color *p = &pal[idx[i]];
    CU_ASSERT(img.pixels[3 * i] == p->red && img.pixels[3 * i + 1] == p->green && img.pixels[3 * i + 2] == p->blue);
  }
  fr_image_free(&img);
  free(b.data);

  uint8_t bits[H * 2]; /* 1-bit grey, 9 pixels = 2 bytes per row */
  for (int i = 0; i < H * 2; i++)
    bits[i] = (uint8_t)(0xA5 ^ i);
  b = encode_png(W, H, PNG_COLOR_TYPE_GRAY, 1, bits, 2, NULL, 0, NULL, 0, 0);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int bit = (bits[y * 2 + x / 8] >> (7 - x % 8)) & 1;
      CU_ASSERT_EQUAL(img.pixels[(y * W + x) * 3 + 1], bit ? 255 : 0);
    }
  fr_image_free(&img);
  free(b.data);
}

static void jpeg_diff(const uint8_t *a, const uint8_t *b, size_t n, double *mean, int *max)
{
  double sum = 0;
  *max = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs((int)a[i] - (int)b[i]);
    sum += d;
    if (d > *max)
      *max = d;
  }
  *mean = sum / (double)n;
}

static void test_jpeg_rgb_grey_cmyk(void)
{
  enum { W = 48, H = 40 };
  uint8_t *px = make_rgb(W, H, 0);
  buf b = encode_jpeg(W, H, 3, JCS_RGB, px, 100);
  fr_image img;
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  CU_ASSERT(img.width == W && img.height == H && img.channels == 3);
  double mean;
  int max;
  jpeg_diff(img.pixels, px, W * H * 3, &mean, &max);
  printf("\n  JPEG q100 4:4:4 round trip: mean |d| %.3f, max %d", mean, max);
  CU_ASSERT(mean < 1.0);
  CU_ASSERT(max <= 4);
  fr_image_free(&img);
  free(b.data);

  uint8_t grey[W * H], cmyk[W * H * 4], want[W * H * 3];
  for (int i = 0; i < W * H; i++) {
    grey[i] = px[3 * i + 1];
    for (int c = 0; c < 4; c++)
      cmyk[4 * i + c] = c == 3 ? (uint8_t)(200 + i % 56) : px[3 * i + c];
    for (int c = 0; c < 3; c++)
      want[3 * i + c] = (uint8_t)((cmyk[4 * i + c] * cmyk[4 * i + 3] + 127) / 255);
  }
  b = encode_jpeg(W, H, 1, JCS_GRAYSCALE, grey, 100);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  for (int i = 0; i < W * H; i++) {
    CU_ASSERT(abs(img.pixels[3 * i] - grey[i]) <= 3);
    CU_ASSERT(img.pixels[3 * i] == img.pixels[3 * i + 1] && img.pixels[3 * i] == img.pixels[3 * i + 2]);
  }
  fr_image_free(&img);
  free(b.data);

  b = encode_jpeg(W, H, 4, JCS_CMYK, cmyk, 100);
  CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
  jpeg_diff(img.pixels, want, W * H * 3, &mean, &max);
  CU_ASSERT(mean < 1.5);
  CU_ASSERT(max <= 6);
  fr_image_free(&img);
  free(b.data);
  free(px);
}

static void test_pnm_all_kinds(void)
{
  enum { W = 7, H = 3 };
  uint16_t s[W * H * 3];
  const char kinds[] = {'5', '6', '2', '3'};
  const int maxvals[] = {255, 65535, 15};
  for (int k = 0; k < 4; k++)
    for (int m = 0; m < 3; m++) {
      int ch = (kinds[k] == '3' || kinds[k] == '6') ? 3 : 1;
      for (int i = 0; i < W * H * ch; i++)
        s[i] = (uint16_t)((i * 37u) % (maxvals[m] + 1u));
      buf b = encode_pnm(kinds[k], W, H, maxvals[m], s, "made by test_image");
      fr_image img;
      CU_ASSERT_FATAL(decode_ok(&b, &img) == 0);
      CU_ASSERT(img.width == W && img.height == H);
      for (int i = 0; i < W * H * 3; i++) {
        int sample = ch == 3 ? s[i] : s[i / 3];
        int want = (sample * 255 + maxvals[m] / 2) / maxvals[m];
        CU_ASSERT_EQUAL(img.pixels[i], want);
      }
      fr_image_free(&img);
      free(b.data);
    }
}

/* Every prefix of a valid file must give an error (or, past the last pixel
 * byte, the image): never a crash, never a half-grey success. */
static void check_prefixes(const buf *b, size_t must_fail_below, const char *what)
{
  int failures = 0;
  for (size_t n = 0; n < b->size; n++) {
    fr_image img;
    fr_error err = {0};
    int rc = fr_image_decode(b->data, n, what, &img, &err);
    if (n < must_fail_below && rc == 0) {
      printf("\n  %s cut to %zu of %zu bytes decoded without error", what, n, b->size);
      failures++;
    }
    if (rc) {
      CU_ASSERT_PTR_NULL(img.pixels);
      CU_ASSERT(n < 3 || strstr(err.message, what) != NULL);
    }
    fr_image_free(&img);
  }
  CU_ASSERT_EQUAL(failures, 0);
}

static void test_truncated_files(void)
{
  uint8_t *px = make_rgb(24, 16, 0);
  buf jpg = encode_jpeg(24, 16, 3, JCS_RGB, px, 90);
  check_prefixes(&jpg, jpg.size, "cut.jpg");
  buf png = encode_png(24, 16, PNG_COLOR_TYPE_RGB, 8, px, 24 * 3, NULL, 0, NULL, 0, 0);
  check_prefixes(&png, png.size - 12, "cut.png"); /* minus IEND: the pixels are all there */
  uint16_t s[24 * 16 * 3];
  for (int i = 0; i < 24 * 16 * 3; i++)
    s[i] = px[i];
  buf p6 = encode_pnm('6', 24, 16, 255, s, "c");
  check_prefixes(&p6, p6.size, "cut.ppm");
  buf p3 = encode_pnm('3', 24, 16, 255, s, "c");
  /* A plain file cut inside its last number still parses (as a smaller one). */
  size_t last = p3.size - 1;
  while (last > 0 && p3.data[last - 1] != ' ' && p3.data[last - 1] != '\n')
    last--;
  check_prefixes(&p3, last + 1, "cut_plain.ppm");
  free(jpg.data);
  free(png.data);
  free(p6.data);
  free(p3.data);
  free(px);
}

/* Random byte damage: the decoder may accept or reject, but must not crash,
 * leak or read out of bounds (this test earns its keep under ASan). */
static void test_corrupt_files(void)
{
  uint8_t *px = make_rgb(32, 32, 0);
  buf files[3];
  files[0] = encode_jpeg(32, 32, 3, JCS_RGB, px, 75);
  files[1] = encode_png(32, 32, PNG_COLOR_TYPE_RGB, 8, px, 32 * 3, NULL, 0, NULL, 0, 1);
  uint16_t s[32 * 32 * 3];
  for (int i = 0; i < 32 * 32 * 3; i++)
    s[i] = px[i];
  files[2] = encode_pnm('3', 32, 32, 255, s, "x");
  int errors = 0, decoded = 0;
  for (int f = 0; f < 3; f++) {
    uint8_t *copy = malloc(files[f].size);
    for (int trial = 0; trial < 300; trial++) {
      memcpy(copy, files[f].data, files[f].size);
      int flips = 1 + (int)(rng() % 8);
      for (int i = 0; i < flips; i++)
        copy[3 + rng() % (files[f].size - 3)] ^= (uint8_t)(1 + rng() % 255);
      fr_image img;
      fr_error err = {0};
      if (fr_image_decode(copy, files[f].size, "damaged", &img, &err)) {
        errors++;
        CU_ASSERT(strncmp(err.message, "damaged: ", 9) == 0);
      } else {
        decoded++;
        CU_ASSERT(img.width > 0 && img.height > 0 && img.pixels != NULL);
      }
      fr_image_free(&img);
    }
    free(copy);
    free(files[f].data);
  }
  printf("\n  900 damaged files: %d rejected, %d decoded", errors, decoded);
  CU_ASSERT(errors > 0);
  free(px);
}

static void put_be32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static void test_huge_dimensions(void)
{
  fr_image img;
  fr_error err = {0};
  const char *pgm = "P5\n100000 100000\n255\n\x01\x02";
  CU_ASSERT_EQUAL(fr_image_decode((const uint8_t *)pgm, strlen(pgm), "huge.pgm", &img, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "huge.pgm"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "100000x100000"));
  const char *ppm = "P6 16385 1 255 ";
  CU_ASSERT_EQUAL(fr_image_decode((const uint8_t *)ppm, strlen(ppm), "wide.ppm", &img, &err), FR_ERR_INVALID);
  const char *big = "P5 99999999999999999999 1 255 ";
  CU_ASSERT_EQUAL(fr_image_decode((const uint8_t *)big, strlen(big), "overflow.pgm", &img, &err), FR_ERR_FORMAT);

  /* A small PNG whose IHDR claims 20000x20000 (CRC fixed so libpng believes it). */
  uint8_t px[12] = {0};
  buf png = encode_png(2, 2, PNG_COLOR_TYPE_RGB, 8, px, 6, NULL, 0, NULL, 0, 0);
  put_be32(png.data + 16, 20000);
  put_be32(png.data + 20, 20000);
  put_be32(png.data + 29, (uint32_t)crc32(0, png.data + 12, 17));
  CU_ASSERT_EQUAL(fr_image_decode(png.data, png.size, "huge.png", &img, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "huge.png: PNG is 20000x20000"));
  free(png.data);

  /* A small JPEG whose SOF says 20000x20000. */
  uint8_t *small = make_rgb(8, 8, 0);
  buf jpg = encode_jpeg(8, 8, 3, JCS_RGB, small, 90);
  free(small);
  for (size_t i = 2; i + 9 < jpg.size; i++)
    if (jpg.data[i] == 0xFF && jpg.data[i + 1] == 0xC0) {
      jpg.data[i + 5] = jpg.data[i + 7] = 20000 >> 8;
      jpg.data[i + 6] = jpg.data[i + 8] = 20000 & 255;
      break;
    }
  CU_ASSERT_EQUAL(fr_image_decode(jpg.data, jpg.size, "huge.jpg", &img, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "huge.jpg: JPEG is 20000x20000"));
  free(jpg.data);
}

/* ---------------------------------------------------------------- crop */

static void test_crop(void)
{
  fr_image img = {7, 5, 3, make_rgb(7, 5, 1)}, out;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_image_crop(&img, 2, 1, 4, 3, &out, &err), 0);
  CU_ASSERT(out.width == 4 && out.height == 3);
  for (int y = 0; y < 3; y++)
    CU_ASSERT(memcmp(out.pixels + y * 12, img.pixels + ((y + 1) * 7 + 2) * 3, 12) == 0);
  fr_image_free(&out);
  CU_ASSERT_EQUAL(fr_image_crop(&img, 0, 0, 7, 5, &out, &err), 0);
  CU_ASSERT(memcmp(out.pixels, img.pixels, 7 * 5 * 3) == 0);
  fr_image_free(&out);

  const int bad[][4] = {{-1, 0, 3, 3}, {0, -2, 3, 3}, {5, 0, 3, 3}, {0, 3, 3, 3}, {7, 5, 1, 1},
                        {0, 0, 0, 3},  {0, 0, 3, -1}, {2, 2, 2147483647, 1}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CU_ASSERT_EQUAL(fr_image_crop(&img, bad[i][0], bad[i][1], bad[i][2], bad[i][3], &out, &err), FR_ERR_INVALID);
    CU_ASSERT_PTR_NULL(out.pixels);
    char want[128];
    snprintf(want, sizeof(want), "(x=%d, y=%d, w=%d, h=%d)", bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, want));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "7x5 image"));
  }
  fr_image_free(&img);
}

/* ---------------------------------------------------------------- resize */

static double naive_half_pixel(const fr_image *in, int ow, int oh, int x, int y, int c)
{
  double sx = (x + 0.5) * in->width / ow - 0.5, sy = (y + 0.5) * in->height / oh - 0.5;
  sx = fmin(fmax(sx, 0), in->width - 1);
  sy = fmin(fmax(sy, 0), in->height - 1);
  int x0 = (int)sx, y0 = (int)sy;
  int x1 = x0 + 1 < in->width ? x0 + 1 : x0, y1 = y0 + 1 < in->height ? y0 + 1 : y0;
  double fx = sx - x0, fy = sy - y0;
#define P(xx, yy) ((double)in->pixels[((size_t)(yy)*in->width + (xx)) * 3 + c])
  return (1 - fy) * ((1 - fx) * P(x0, y0) + fx * P(x1, y0)) + fy * ((1 - fx) * P(x0, y1) + fx * P(x1, y1));
}

/* Dense [out][in] weights of a triangle filter stretched by the downscale factor. */
static double *naive_triangle_weights(int in, int out)
{
  double scale = (double)in / out, fs = scale > 1 ? scale : 1;
  double *w = calloc((size_t)in * out, sizeof(double));
  for (int o = 0; o < out; o++) {
    double centre = (o + 0.5) * scale, sum = 0;
    for (int i = 0; i < in; i++) {
      double t = fabs((i + 0.5 - centre) / fs);
      w[(size_t)o * in + i] = t < 1 ? 1 - t : 0;
      sum += w[(size_t)o * in + i];
    }
    for (int i = 0; i < in; i++)
      w[(size_t)o * in + i] /= sum;
  }
  return w;
}

static void check_resize(int iw, int ih, int ow, int oh)
{
  fr_image in = {iw, ih, 3, make_rgb(iw, ih, 1)}, a, b;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_image_resize(&in, ow, oh, FR_RESIZE_BILINEAR_HALF_PIXEL, &a, &err), 0);
  CU_ASSERT_EQUAL_FATAL(fr_image_resize_bilinear(&in, ow, oh, &b, &err), 0);
  CU_ASSERT(a.width == ow && a.height == oh && b.width == ow && b.height == oh);
  double *wx = naive_triangle_weights(iw, ow), *wy = naive_triangle_weights(ih, oh);
  /* The separable convolution in double, without Pillow's rounding between passes. */
  double *rows = calloc((size_t)ih * ow * 3, sizeof(double));
  for (int j = 0; j < ih; j++)
    for (int x = 0; x < ow; x++)
      for (int i = 0; i < iw; i++)
        for (int c = 0; c < 3; c++)
          rows[((size_t)j * ow + x) * 3 + c] += wx[(size_t)x * iw + i] * in.pixels[((size_t)j * iw + i) * 3 + c];
  int max_half = 0, max_pil = 0;
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++)
      for (int c = 0; c < 3; c++) {
        int ref = (int)floor(naive_half_pixel(&in, ow, oh, x, y, c) + 0.5);
        int d = abs(ref - a.pixels[((size_t)y * ow + x) * 3 + c]);
        max_half = d > max_half ? d : max_half;
        double acc = 0;
        for (int j = 0; j < ih; j++)
          acc += wy[(size_t)y * ih + j] * rows[((size_t)j * ow + x) * 3 + c];
        d = abs((int)floor(acc + 0.5) - b.pixels[((size_t)y * ow + x) * 3 + c]);
        max_pil = d > max_pil ? d : max_pil;
      }
  /* Half-pixel is computed in double like the reference: only a .5 tie can differ.
   * The Pillow mode rounds to uint8 between its passes: one level at most. */
  CU_ASSERT(max_half <= 1);
  CU_ASSERT(max_pil <= 1);
  if (max_half > 1 || max_pil > 1)
    printf("\n  %dx%d -> %dx%d: max |d| half-pixel %d, pillow %d", iw, ih, ow, oh, max_half, max_pil);
  free(rows);
  free(wx);
  free(wy);
  fr_image_free(&in);
  fr_image_free(&a);
  fr_image_free(&b);
}

static void test_resize_against_naive(void)
{
  check_resize(37, 23, 19, 41); /* odd sizes, down in x, up in y */
  check_resize(250, 250, 112, 112);
  check_resize(140, 140, 112, 112);
  check_resize(8, 8, 112, 112); /* very-low-resolution faces */
  check_resize(13, 17, 112, 112);
  check_resize(112, 112, 7, 5);
  check_resize(1, 1, 3, 2);
  check_resize(5, 1, 2, 9);
}

static void test_resize_identity_and_upscale(void)
{
  fr_image in = {31, 17, 3, make_rgb(31, 17, 1)}, out, half;
  fr_error err = {0};
  for (int m = 0; m < 3; m++) {
    CU_ASSERT_EQUAL_FATAL(fr_image_resize(&in, 31, 17, (fr_resize_mode)m, &out, &err), 0);
    CU_ASSERT(memcmp(out.pixels, in.pixels, 31 * 17 * 3) == 0);
    fr_image_free(&out);
  }
  /* Upscaling: Pillow's filter does not widen, so it is half-pixel bilinear. */
  fr_image small = {16, 12, 3, make_rgb(16, 12, 1)};
  CU_ASSERT_EQUAL_FATAL(fr_image_resize_bilinear(&small, 112, 112, &out, &err), 0);
  CU_ASSERT_EQUAL_FATAL(fr_image_resize(&small, 112, 112, FR_RESIZE_BILINEAR_HALF_PIXEL, &half, &err), 0);
  int max = 0;
  for (int i = 0; i < 112 * 112 * 3; i++)
    max = abs(out.pixels[i] - half.pixels[i]) > max ? abs(out.pixels[i] - half.pixels[i]) : max;
  CU_ASSERT(max <= 1);
  /* align-corners keeps the corner pixels. */
  fr_image ac;
  CU_ASSERT_EQUAL_FATAL(fr_image_resize(&small, 61, 29, FR_RESIZE_BILINEAR_ALIGN_CORNERS, &ac, &err), 0);
  CU_ASSERT(memcmp(ac.pixels, small.pixels, 3) == 0);
  CU_ASSERT(memcmp(ac.pixels + (61 * 29 - 1) * 3, small.pixels + (16 * 12 - 1) * 3, 3) == 0);
  fr_image bad;
  CU_ASSERT_EQUAL(fr_image_resize(&small, 0, 5, FR_RESIZE_BILINEAR, &bad, &err), FR_ERR_INVALID);
  CU_ASSERT_EQUAL(fr_image_resize(&small, 5, 5, (fr_resize_mode)9, &bad, &err), FR_ERR_INVALID);
  CU_ASSERT_PTR_NULL(bad.pixels);
  fr_image_free(&ac);
  fr_image_free(&out);
  fr_image_free(&half);
  fr_image_free(&small);
  fr_image_free(&in);
}

/* ---------------------------------------------------------------- normalise */

static uint8_t *read_file(const char *path, size_t want)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  uint8_t *p = malloc(want);
  size_t got = fread(p, 1, want, f);
  fclose(f);
  if (got != want) {
    free(p);
    return NULL;
  }
  return p;
}

static void test_to_tensor(void)
{
  uint8_t px[6] = {0, 127, 255, 10, 20, 30};
  fr_image img = {2, 1, 3, px};
  const float mean[3] = {1, 2, 3}, std[3] = {2, 4, 0.5f};
  float t[6];
  fr_image_to_tensor(&img, mean, std, t);
  CU_ASSERT_DOUBLE_EQUAL(t[0], -0.5, 1e-7);
  CU_ASSERT_DOUBLE_EQUAL(t[1], 31.25, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(t[2], 504.0, 1e-5);
  CU_ASSERT_DOUBLE_EQUAL(t[5], 54.0, 1e-5);

  /* Golden set A: (img - 127.5) / 128 must match the reference input exactly. */
  char p1[1024], p2[1024];
  snprintf(p1, sizeof(p1), "%s/mfn_input_rgb_u8_nhwc_4x112x112x3.u8", test_golden_dir());
  snprintf(p2, sizeof(p2), "%s/mfn_input_f32_nhwc_4x112x112x3.f32", test_golden_dir());
  const size_t n = 4 * 112 * 112 * 3;
  uint8_t *u8 = read_file(p1, n);
  float *f32 = (float *)read_file(p2, n * sizeof(float));
  if (!u8 || !f32) {
    free(u8);
    free(f32);
    TEST_SKIP("golden files not found under %s", test_golden_dir());
  }
  const float m[3] = {127.5f, 127.5f, 127.5f}, s[3] = {128, 128, 128};
  float *mine = malloc(n * sizeof(float));
  for (int b = 0; b < 4; b++) {
    fr_image g = {112, 112, 3, u8 + (size_t)b * 112 * 112 * 3};
    fr_image_to_tensor(&g, m, s, mine + (size_t)b * 112 * 112 * 3);
  }
  CU_ASSERT(memcmp(mine, f32, n * sizeof(float)) == 0);
  free(mine);
  free(u8);
  free(f32);
}

/* Golden set B: the 4 LFW JPEGs, cropped to (55,47)-(195,187) and resized to
 * 112x112, must reproduce the stored uint8 input. Also prints how far the
 * other conventions land, which is how the reference's resampler was found. */
static void test_lfw_golden_preprocessing(void)
{
  char tar[1024], gold[1024], list[1024];
  snprintf(tar, sizeof(tar), "%s/lfw-min5.tar", test_data_dir());
  snprintf(gold, sizeof(gold), "%s/mfn_lfw_input_rgb_u8_nhwc_4x112x112x3.u8", test_golden_dir());
  snprintf(list, sizeof(list), "%s/mfn_lfw_files.txt", test_golden_dir());
  const size_t one = 112 * 112 * 3;
  uint8_t *golden = read_file(gold, 4 * one);
  FILE *lf = fopen(list, "r");
  struct archive *a = archive_read_new();
  archive_read_support_format_tar(a);
  if (!golden || !lf || archive_read_open_filename(a, tar, 1 << 16) != ARCHIVE_OK) {
    free(golden);
    if (lf)
      fclose(lf);
    archive_read_free(a);
    TEST_SKIP("%s or the LFW golden files are absent", tar);
  }
  char names[4][256];
  for (int i = 0; i < 4; i++)
    CU_ASSERT_FATAL(fscanf(lf, "%255s", names[i]) == 1);
  fclose(lf);
  uint8_t *jpeg[4] = {0};
  size_t jpeg_size[4] = {0};
  struct archive_entry *e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    const char *path = archive_entry_pathname(e);
    for (int i = 0; i < 4; i++) {
      const char *slash = strchr(path, '/');
      if (slash && strcmp(slash + 1, names[i]) == 0) {
        jpeg_size[i] = (size_t)archive_entry_size(e);
        jpeg[i] = malloc(jpeg_size[i]);
        CU_ASSERT_FATAL(archive_read_data(a, jpeg[i], jpeg_size[i]) == (la_ssize_t)jpeg_size[i]);
      }
    }
  }
  archive_read_free(a);
  const char *mode_name[3] = {"pillow bilinear", "half-pixel", "align-corners"};
  for (int m = 0; m < 3; m++) {
    double sum = 0;
    int max = 0;
    for (int i = 0; i < 4; i++) {
      CU_ASSERT_FATAL(jpeg[i] != NULL);
      fr_image img, crop, out;
      fr_error err = {0};
      CU_ASSERT_EQUAL_FATAL(fr_image_decode(jpeg[i], jpeg_size[i], names[i], &img, &err), 0);
      CU_ASSERT(img.width == 250 && img.height == 250);
      CU_ASSERT_EQUAL_FATAL(fr_image_crop(&img, 55, 47, 140, 140, &crop, &err), 0);
      CU_ASSERT_EQUAL_FATAL(fr_image_resize(&crop, 112, 112, (fr_resize_mode)m, &out, &err), 0);
      for (size_t k = 0; k < one; k++) {
        int d = abs(out.pixels[k] - golden[i * one + k]);
        sum += d;
        max = d > max ? d : max;
      }
      fr_image_free(&img);
      fr_image_free(&crop);
      fr_image_free(&out);
    }
    printf("\n  LFW golden input vs %-15s: mean |d| %.4f, max %d", mode_name[m], sum / (4.0 * one), max);
    if (m == FR_RESIZE_BILINEAR)
      CU_ASSERT_EQUAL(max, 0);
  }
  for (int i = 0; i < 4; i++)
    free(jpeg[i]);
  free(golden);
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("image", NULL, NULL);
  CU_add_test(s, "magic sniffing and unknown formats", test_sniff);
  CU_add_test(s, "PNG RGB round trip is exact (plain and Adam7)", test_png_rgb_exact);
  CU_add_test(s, "PNG grey, grey+alpha, RGBA, 16-bit, palette+tRNS, 1-bit", test_png_grey_alpha_16bit_palette);
  CU_add_test(s, "JPEG RGB, grey and CMYK", test_jpeg_rgb_grey_cmyk);
  CU_add_test(s, "PGM/PPM P2/P3/P5/P6 with maxval 15/255/65535", test_pnm_all_kinds);
  CU_add_test(s, "truncated files are errors", test_truncated_files);
  CU_add_test(s, "damaged files never crash", test_corrupt_files);
  CU_add_test(s, "huge dimensions rejected before allocating", test_huge_dimensions);
  CU_add_test(s, "crop and its bounds", test_crop);
  CU_add_test(s, "resizers against naive double references", test_resize_against_naive);
  CU_add_test(s, "identity resize, upscale, align-corners", test_resize_identity_and_upscale);
  CU_add_test(s, "normalisation, golden set A", test_to_tensor);
  CU_add_test(s, "LFW golden preprocessing, bit for bit", test_lfw_golden_preprocessing);
  return test_run_all();
}
