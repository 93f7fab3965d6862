/* The aligner: MTCNN landmarks -> similarity onto the ArcFace template -> device warp
 * to 112x112, or the plain resize when the landmarks are not trustworthy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/align.h"
#include "faceri/detect.h"

#define ALIGN_SIZE 112

struct fr_aligner {
  fr_vk_context *ctx;
  fr_detector *det;
  fr_warp *warp;
  fr_vk_buffer images, items, out;
  uint64_t images_cap, items_cap, out_cap;
  fr_vk_sequence *seq;
};

fr_align_options fr_align_defaults(void)
{
  return (fr_align_options){.min_score = 0.9f, .min_face = 0, .max_face = 0};
}

fr_detector *fr_aligner_detector(fr_aligner *a) { return a->det; }

const char *fr_mtcnn_default_dir(void)
{
  const char *d = getenv("FACERI_MTCNN");
  return d && *d ? d : FR_MTCNN_DEFAULT_DIR;
}

int fr_aligner_create(fr_vk_context *ctx, const char *models_dir, fr_aligner **out, fr_error *err)
{
  *out = NULL;
  fr_aligner *a = calloc(1, sizeof(*a));
  if (!a)
    return fr_error_set(err, FR_ERR_NOMEM, "aligner: out of memory");
  a->ctx = ctx;
  int rc = fr_detector_create(ctx, models_dir, &a->det, err);
  if (!rc)
    rc = fr_warp_create(ctx, &a->warp, err);
  if (!rc)
    rc = fr_vk_sequence_create(ctx, 0, &a->seq, err);
  if (rc) {
    fr_aligner_destroy(a);
    return rc;
  }
  *out = a;
  return FR_OK;
}

void fr_aligner_destroy(fr_aligner *a)
{
  if (!a)
    return;
  fr_vk_sequence_destroy(a->seq);
  fr_vk_buffer_destroy(a->ctx, &a->images);
  fr_vk_buffer_destroy(a->ctx, &a->items);
  fr_vk_buffer_destroy(a->ctx, &a->out);
  fr_warp_destroy(a->warp);
  fr_detector_destroy(a->det);
  free(a);
}

static int ensure(fr_aligner *a, fr_vk_buffer *b, uint64_t *cap, uint64_t bytes, fr_error *err)
{
  if (*cap >= bytes)
    return FR_OK;
  fr_vk_buffer_destroy(a->ctx, b);
  *cap = 0;
  uint64_t want = bytes + bytes / 4 + 256;
  int rc = fr_vk_buffer_create(a->ctx, want, b, err);
  if (!rc)
    *cap = want;
  return rc;
}

/* The matrix that takes an output pixel of the 112x112 crop back to the image. */
static int template_inverse(const float lm[10], float m[6], fr_error *err)
{
  float src[5][2];
  for (int i = 0; i < 5; i++)
    src[i][0] = lm[i], src[i][1] = lm[i + 5];
  double fwd[6], inv[6];
  int rc = fr_similarity_umeyama((const float(*)[2])src, fr_arcface_template, 5, fwd, err);
  if (!rc)
    rc = fr_affine_invert(fwd, inv, err);
  for (int i = 0; i < 6 && !rc; i++)
    m[i] = (float)inv[i];
  return rc;
}

int fr_aligner_warp(fr_aligner *a, const fr_image *imgs, const float (*landmarks)[10], int n, uint8_t *out,
                    fr_error *err)
{
  if (n < 1)
    return fr_error_set(err, FR_ERR_INVALID, "align: %d images", n);
  fr_warp_item *items = malloc(sizeof(fr_warp_item) * (size_t)n);
  uint32_t *words = malloc(sizeof(uint32_t) * FR_WARP_ITEM_WORDS * (size_t)n);
  size_t pixels = (size_t)n * ALIGN_SIZE * ALIGN_SIZE * 3;
  float *res = malloc(pixels * sizeof(float));
  int rc = items && words && res ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "align: out of memory");
  uint64_t total = 0;
  for (int i = 0; i < n && !rc; i++) {
    if (!imgs[i].pixels || imgs[i].channels != 3 || imgs[i].width < 1 || imgs[i].height < 1)
      rc = fr_error_set(err, FR_ERR_INVALID, "align: image %d is not RGB", i);
    else if (total > UINT32_MAX - (uint64_t)imgs[i].width * imgs[i].height * 3 - 4)
      rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "align: images over 4 GiB in one call");
    if (!rc)
      rc = template_inverse(landmarks[i], items[i].m, err);
    if (rc) {
      fr_error_prefix(err, "image %d", i);
      break;
    }
    items[i].offset = (uint32_t)total, items[i].width = (uint32_t)imgs[i].width;
    items[i].height = (uint32_t)imgs[i].height;
    total += ((uint64_t)imgs[i].width * imgs[i].height * 3 + 3) & ~(uint64_t)3;
  }
  if (!rc)
    rc = ensure(a, &a->images, &a->images_cap, total, err);
  for (int i = 0; i < n && !rc; i++)
    rc = fr_vk_buffer_upload(a->ctx, &a->images, items[i].offset, imgs[i].pixels,
                             (uint64_t)imgs[i].width * imgs[i].height * 3, err);
  if (!rc) {
    fr_warp_pack_items(items, n, words);
    rc = ensure(a, &a->items, &a->items_cap, sizeof(uint32_t) * FR_WARP_ITEM_WORDS * (uint64_t)n, err);
  }
  if (!rc)
    rc = fr_vk_buffer_upload(a->ctx, &a->items, 0, words, sizeof(uint32_t) * FR_WARP_ITEM_WORDS * (uint64_t)n, err);
  if (!rc)
    rc = ensure(a, &a->out, &a->out_cap, pixels * sizeof(float), err);
  fr_warp_params p = {.out_w = ALIGN_SIZE, .out_h = ALIGN_SIZE, .count = n, .batch = n, .border = FR_WARP_ZERO,
                      .mean = 0.0f, .std = 1.0f};
  if (!rc)
    rc = fr_vk_sequence_begin(a->seq, err);
  if (!rc)
    rc = fr_warp_record(a->warp, a->seq, &p, (fr_vk_arg){&a->images, 0, 0}, (fr_vk_arg){&a->items, 0, 0},
                        (fr_vk_arg){&a->out, 0, 0}, err);
  if (!rc)
    rc = fr_vk_sequence_end(a->seq, err);
  if (!rc)
    rc = fr_vk_sequence_run(a->seq, err);
  if (!rc)
    rc = fr_vk_buffer_download(a->ctx, &a->out, 0, res, pixels * sizeof(float), err);
  for (size_t i = 0; i < pixels && !rc; i++)
    out[i] = (uint8_t)res[i]; /* already whole numbers in [0, 255] */
  free(items);
  free(words);
  free(res);
  return rc;
}

int fr_aligner_align(fr_aligner *a, const fr_image *img, const fr_align_options *opt, fr_image *out,
                     fr_align_result *res, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  memset(res, 0, sizeof(*res));
  fr_align_options o = opt ? *opt : fr_align_defaults();
  fr_detect_options dopt = fr_detect_defaults();
  dopt.min_face = o.min_face;
  dopt.max_face = o.max_face;
  fr_face *faces = NULL, chosen;
  memset(&chosen, 0, sizeof(chosen));
  int n = 0, have = 0;
  int rc = fr_detector_detect(a->det, img, &dopt, &faces, &n, err);
  if (rc)
    return rc;
  /* the face nearest the centre: face archives are centred crops */
  double best = INFINITY;
  for (int i = 0; i < n; i++) {
    double cx = 0.5 * (faces[i].box[0] + faces[i].box[2]) - 0.5 * (img->width - 1);
    double cy = 0.5 * (faces[i].box[1] + faces[i].box[3]) - 0.5 * (img->height - 1);
    if (cx * cx + cy * cy < best) {
      best = cx * cx + cy * cy;
      chosen = faces[i];
      have = 1;
    }
  }
  free(faces);
  res->detected = have;
  if (!have) {
    /* a tight crop may be too close for the pyramid: ONet on the centred square */
    int side = img->width < img->height ? img->width : img->height;
    int x0 = (img->width - side) / 2, y0 = (img->height - side) / 2;
    int box[4] = {x0, y0, x0 + side - 1, y0 + side - 1};
    if ((rc = fr_detector_onet(a->det, img, box, &chosen, err)))
      return rc;
  }
  res->score = chosen.score;
  for (int i = 0; i < 4; i++)
    res->box[i] = (float)chosen.box[i];
  memcpy(res->landmarks, chosen.landmarks, sizeof(res->landmarks));
  fr_error probe = {0};
  float m[6];
  res->aligned = chosen.score >= o.min_score && template_inverse(chosen.landmarks, m, &probe) == FR_OK;
  if (!res->aligned && o.has_fallback_crop) {
    fr_image cropped;
    const int *c = o.fallback_crop;
    if ((rc = fr_image_crop(img, c[0], c[1], c[2], c[3], &cropped, err)))
      return rc;
    rc = fr_image_resize_bilinear(&cropped, ALIGN_SIZE, ALIGN_SIZE, out, err);
    fr_image_free(&cropped);
    return rc;
  }
  if (!res->aligned)
    return fr_image_resize_bilinear(img, ALIGN_SIZE, ALIGN_SIZE, out, err);
  if ((rc = fr_image_alloc(ALIGN_SIZE, ALIGN_SIZE, out, err)))
    return rc;
  const float(*lm)[10] = (const float(*)[10])chosen.landmarks;
  rc = fr_aligner_warp(a, img, lm, 1, out->pixels, err);
  if (rc)
    fr_image_free(out);
  return rc;
}

int fr_aligner_align_input(fr_aligner *a, const fr_image *img, const fr_align_options *opt, int out_w, int out_h,
                           const float mean[3], const float std[3], float *out_hwc, fr_align_result *res,
                           fr_error *err)
{
  if (out_w < 1 || out_h < 1)
    return fr_error_set(err, FR_ERR_INVALID, "align: network input %dx%d", out_w, out_h);
  fr_image crop, sized;
  int rc = fr_aligner_align(a, img, opt, &crop, res, err);
  if (rc)
    return rc;
  if (crop.width != out_w || crop.height != out_h) {
    rc = fr_image_resize_bilinear(&crop, out_w, out_h, &sized, err);
    fr_image_free(&crop);
    if (rc)
      return rc;
    crop = sized;
  }
  fr_image_to_tensor(&crop, mean, std, out_hwc);
  fr_image_free(&crop);
  return FR_OK;
}
