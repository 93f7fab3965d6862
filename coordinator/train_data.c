/* Training data read once into 8-bit model-size images (see faceri/train_data.h). */
#include "faceri/train_data.h"
#include "faceri/rng.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/image.h"
#include "faceri/input_source.h"
#include "faceri/labels.h"
#include "faceri/log.h"
#include "faceri/ui_centre.h"

/* Images as read, before identities are numbered. */
typedef struct staging {
  uint8_t *pixels;
  char **labels; /* per image, malloc'd */
  int64_t *item; /* per image: its ordinal among the items read (to find it again for --align) */
  int n, cap;
  size_t image_bytes, max_bytes;
} staging;

static int stage_image(staging *s, const uint8_t *px, const char *label, int64_t item, fr_error *err)
{
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 256;
    if ((size_t)cap * s->image_bytes > s->max_bytes)
      cap = (int)(s->max_bytes / s->image_bytes);
    if (cap <= s->n)
      return fr_error_set(err, FR_ERR_NOMEM,
                          "training data: more than %d images (%zu MiB) exceed the memory limit of %zu MiB", s->n,
                          (size_t)s->n * s->image_bytes >> 20, s->max_bytes >> 20);
    uint8_t *p = realloc(s->pixels, (size_t)cap * s->image_bytes);
    if (p)
      s->pixels = p;
    char **l = p ? realloc(s->labels, (size_t)cap * sizeof(char *)) : NULL;
    if (l)
      s->labels = l;
    int64_t *it = l ? realloc(s->item, (size_t)cap * sizeof(int64_t)) : NULL;
    if (!p || !l || !it)
      return fr_error_set(err, FR_ERR_NOMEM, "training data: out of memory for %d images", cap);
    s->item = it;
    s->cap = cap;
  }
  if (!(s->labels[s->n] = strdup(label)))
    return fr_error_set(err, FR_ERR_NOMEM, "training data: out of memory");
  memcpy(s->pixels + (size_t)s->n * s->image_bytes, px, s->image_bytes);
  s->item[s->n] = item;
  s->n++;
  return FR_OK;
}

/* --align: the aligned 112x112 crop (or the fallback), resized to the model input
 * when that differs, as fr_aligner_align_input prepares it at inference. */
static int prepare_aligned(const fr_train_data_options *o, const fr_image *img, fr_train_data *d, fr_image *out,
                           fr_error *err)
{
  fr_align_options ao = o->align_opts;
  if (o->pp.has_crop) {
    ao.has_fallback_crop = 1;
    ao.fallback_crop[0] = o->pp.crop_x;
    ao.fallback_crop[1] = o->pp.crop_y;
    ao.fallback_crop[2] = o->pp.crop_w;
    ao.fallback_crop[3] = o->pp.crop_h;
  }
  fr_image crop;
  fr_align_result res;
  int rc = fr_aligner_align(o->aligner, img, &ao, &crop, &res, err);
  if (rc)
    return rc;
  d->aligned += res.aligned != 0;
  d->fallbacks += res.aligned == 0;
  if (crop.width == o->pp.input_w && crop.height == o->pp.input_h) {
    *out = crop;
    return FR_OK;
  }
  rc = fr_image_resize_bilinear(&crop, o->pp.input_w, o->pp.input_h, out, err);
  fr_image_free(&crop);
  return rc;
}

/* Decode, crop, resize: the same steps (and the same 8-bit rounding) as fr_preprocess_image. */
static int prepare(const fr_train_data_options *o, const fr_input_item *it, fr_train_data *d, fr_image *out,
                   fr_error *err)
{
  const fr_preprocess *pp = &o->pp;
  int head_box = o->head_box;
  fr_image img = {0}, cropped = {0};
  int rc = fr_image_decode(it->bytes, it->size, it->key, &img, err);
  const fr_image *src = &img;
  (void)d;
  if (!rc && pp->has_crop) {
    rc = fr_image_crop(&img, pp->crop_x, pp->crop_y, pp->crop_w, pp->crop_h, &cropped, err);
    src = &cropped;
  } else if (!rc && head_box) {
    int W = img.width, H = img.height;
    int x = (int)((long)FR_HEAD_BOX_X * W / FR_HEAD_BOX_REF_W), y = (int)((long)FR_HEAD_BOX_Y * H / FR_HEAD_BOX_REF_H);
    int w = (int)((long)FR_HEAD_BOX_W * W / FR_HEAD_BOX_REF_W), h = (int)((long)FR_HEAD_BOX_H * H / FR_HEAD_BOX_REF_H);
    rc = fr_image_crop(&img, x, y, w > 0 ? w : 1, h > 0 ? h : 1, &cropped, err);
    src = &cropped;
  }
  if (!rc)
    rc = fr_image_resize_bilinear(src, pp->input_w, pp->input_h, out, err);
  if (rc && !strstr(err->message, it->key))
    fr_error_prefix(err, "%s", it->key);
  fr_image_free(&img);
  fr_image_free(&cropped);
  return rc;
}

static int read_inputs(const char *const *inputs, int n_inputs, const fr_train_data_options *o, staging *s,
                       fr_train_data *d, fr_error *err)
{
  fr_labeler *labeler = NULL;
  fr_input_source *src = NULL;
  int rc = fr_labeler_create(o->labels_csv, o->label_regex, &labeler, err);
  if (!rc)
    rc = fr_input_source_open(inputs, n_inputs, &src, err);
  fr_input_item it;
  for (int more = 1; !rc && more;) {
    fr_error item_err = {0};
    more = fr_input_source_next(src, &it, &item_err);
    if (more < 0) { /* a damaged input: what came before it stays, the rest of the inputs go on */
      fr_warn("training data: %s", item_err.message);
      d->input_errors++;
      more = 1;
      continue;
    }
    if (more == 0)
      break;
    d->items_read++;
    if (it.status != FR_OK) {
      fr_warn("training data: %s", it.error);
      d->failed++;
    } else if (!it.is_image) {
      d->skipped++;
    } else {
      const char *label = o->unlabelled ? "-" : fr_labeler_apply(labeler, it.key, it.label);
      fr_image img = {0};
      if (!label || !*label) {
        d->unlabelled++;
      } else if (prepare(o, &it, d, &img, &item_err) != FR_OK) {
        fr_warn("training data: %s", item_err.message);
        d->failed++;
      } else {
        rc = stage_image(s, img.pixels, label, d->items_read - 1, err);
      }
      fr_image_free(&img);
    }
    if (o->progress)
      o->progress(o->progress_user, d->items_read, s->n);
  }
  fr_input_source_close(src);
  fr_labeler_destroy(labeler);
  return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int find_name(char **names, int n, const char *key)
{
  char *const *hit = bsearch(&key, names, (size_t)n, sizeof(char *), cmp_str);
  return hit ? (int)(hit - names) : -1;
}

/* Numbers the identities that pass min_images, keeps the chosen range, compacts. */
static int select_identities(staging *s, const fr_train_data_options *o, fr_train_data *d, fr_error *err)
{
  char **sorted = malloc((size_t)(s->n ? s->n : 1) * sizeof(char *));
  int *count = calloc((size_t)(s->n ? s->n : 1), sizeof(int));
  int *keep = calloc((size_t)(s->n ? s->n : 1), sizeof(int)); /* per distinct name: class id or -1 */
  int rc = sorted && count && keep ? FR_OK : fr_error_set(err, FR_ERR_NOMEM, "training data: out of memory");
  int distinct = 0;
  if (!rc) {
    memcpy(sorted, s->labels, (size_t)s->n * sizeof(char *));
    qsort(sorted, (size_t)s->n, sizeof(char *), cmp_str);
    for (int i = 0; i < s->n; i++)
      if (i == 0 || strcmp(sorted[i], sorted[distinct - 1]) != 0)
        sorted[distinct++] = sorted[i];
    for (int i = 0; i < s->n; i++)
      count[find_name(sorted, distinct, s->labels[i])]++;
    int eligible = 0, classes = 0;
    for (int k = 0; k < distinct; k++) {
      keep[k] = -1;
      if (count[k] < (o->min_images > 0 ? o->min_images : 1))
        continue;
      if (eligible >= o->first_identity && (o->identity_count <= 0 || classes < o->identity_count))
        keep[k] = classes++;
      eligible++;
    }
    d->n_classes = classes;
    if (classes < 2)
      rc = fr_error_set(err, FR_ERR_INVALID,
                        "training data: %d identities left (of %d eligible with >= %d images; range from %d, count %d): "
                        "need at least 2",
                        classes, eligible, o->min_images > 0 ? o->min_images : 1, o->first_identity, o->identity_count);
  }
  if (!rc && !(d->class_names = calloc((size_t)d->n_classes, sizeof(char *))))
    rc = fr_error_set(err, FR_ERR_NOMEM, "training data: out of memory");
  for (int k = 0; !rc && k < distinct; k++)
    if (keep[k] >= 0 && !(d->class_names[keep[k]] = strdup(sorted[k])))
      rc = fr_error_set(err, FR_ERR_NOMEM, "training data: out of memory");
  if (!rc && !(d->labels = malloc((size_t)s->n * sizeof(int32_t))))
    rc = fr_error_set(err, FR_ERR_NOMEM, "training data: out of memory");
  int n = 0;
  for (int i = 0; !rc && i < s->n; i++) {
    int cls = keep[find_name(sorted, distinct, s->labels[i])];
    if (cls < 0) {
      d->outside_range++;
      continue;
    }
    memmove(s->pixels + (size_t)n * s->image_bytes, s->pixels + (size_t)i * s->image_bytes, s->image_bytes);
    s->item[n] = s->item[i];
    d->labels[n++] = cls;
  }
  if (!rc) {
    d->n_images = n;
    d->pixels = s->pixels;
    s->pixels = NULL;
    uint8_t *shrunk = realloc(d->pixels, (size_t)(n ? n : 1) * s->image_bytes);
    if (shrunk)
      d->pixels = shrunk;
  }
  free(sorted);
  free(count);
  free(keep);
  return rc;
}

static int keep_all(staging *s, fr_train_data *d, fr_error *err)
{
  if (!(d->labels = malloc((size_t)s->n * sizeof(int32_t))))
    return fr_error_set(err, FR_ERR_NOMEM, "training data: out of memory");
  for (int i = 0; i < s->n; i++)
    d->labels[i] = -1;
  d->n_images = s->n;
  d->n_classes = 0;
  d->pixels = s->pixels;
  s->pixels = NULL;
  return FR_OK;
}

/* --align, once the images are chosen: the inputs are read again and only the kept
 * images (found by their ordinal; the order is deterministic) are aligned, replacing
 * their plain crop. Aligning only what trains matters: detection is ~50 ms an image
 * on a CPU, and an identity range may keep a tenth of the set. */
static int align_kept(const char *const *inputs, int n_inputs, const fr_train_data_options *o, const int64_t *item,
                      fr_train_data *d, fr_error *err)
{
  fr_input_source *src = NULL;
  int rc = fr_input_source_open(inputs, n_inputs, &src, err);
  size_t bytes = (size_t)d->width * d->height * 3;
  int64_t ordinal = 0;
  int j = 0;
  fr_input_item it;
  while (!rc && j < d->n_images) {
    fr_error item_err = {0};
    int more = fr_input_source_next(src, &it, &item_err);
    if (more < 0) {
      if (item_err.code == FR_ERR_NOMEM) {
        rc = fr_error_set(err, FR_ERR_NOMEM, "training data: --align: %s", item_err.message);
        break;
      }
      continue; /* a damaged input, counted by the first pass */
    }
    if (more == 0)
      break;
    if (ordinal++ != item[j])
      continue;
    fr_image img = {0}, out = {0};
    rc = fr_image_decode(it.bytes, it.size, it.key, &img, err);
    if (!rc)
      rc = prepare_aligned(o, &img, d, &out, err);
    if (rc)
      fr_error_prefix(err, "training data: --align: %s", it.key);
    else
      memcpy(d->pixels + (size_t)j * bytes, out.pixels, bytes);
    fr_image_free(&img);
    fr_image_free(&out);
    j++;
  }
  fr_input_source_close(src);
  if (!rc && j != d->n_images)
    rc = fr_error_set(err, FR_ERR_IO, "training data: --align: the inputs changed while reading (found %d of %d "
                      "images again)", j, d->n_images);
  return rc;
}

static int fingerprint(fr_train_data *d, size_t image_bytes, fr_error *err)
{
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char digest[32];
  unsigned len = 0;
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  for (int k = 0; ok && k < d->n_classes; k++)
    ok = EVP_DigestUpdate(md, d->class_names[k], strlen(d->class_names[k]) + 1) == 1;
  ok = ok && EVP_DigestUpdate(md, d->labels, (size_t)d->n_images * sizeof(int32_t)) == 1 &&
       EVP_DigestUpdate(md, d->pixels, (size_t)d->n_images * image_bytes) == 1 &&
       EVP_DigestFinal_ex(md, digest, &len) == 1 && len == 32;
  EVP_MD_CTX_free(md);
  if (!ok)
    return fr_error_set(err, FR_ERR_INTERNAL, "training data: OpenSSL SHA-256 failed");
  for (int i = 0; i < 32; i++)
    snprintf(d->fingerprint + 2 * i, 3, "%02x", digest[i]);
  return FR_OK;
}

int fr_train_data_load(const char *const *inputs, int n_inputs, const fr_train_data_options *o, fr_train_data *d,
                       fr_error *err)
{
  memset(d, 0, sizeof(*d));
  if (!o || o->pp.input_w < 1 || o->pp.input_h < 1 || o->first_identity < 0 || o->identity_count < 0)
    return fr_error_set(err, FR_ERR_INVALID, "training data: bad options");
  d->width = o->pp.input_w;
  d->height = o->pp.input_h;
  staging s = {.image_bytes = (size_t)d->width * d->height * 3, .max_bytes = o->max_bytes ? o->max_bytes : (8ull << 30)};
  int rc = read_inputs(inputs, n_inputs, o, &s, d, err);
  if (!rc && s.n == 0)
    rc = fr_error_set(err, FR_ERR_INVALID, "training data: no labelled image in the %d input(s) (%lld items read)",
                      n_inputs, (long long)d->items_read);
  if (!rc && o->unlabelled)
    rc = keep_all(&s, d, err);
  else if (!rc)
    rc = select_identities(&s, o, d, err);
  if (!rc && o->aligner) {
    fr_info("training data: aligning the %d images kept", d->n_images);
    rc = align_kept(inputs, n_inputs, o, s.item, d, err);
  }
  if (!rc)
    rc = fingerprint(d, s.image_bytes, err);
  for (int i = 0; i < s.n; i++)
    free(s.labels[i]);
  free(s.labels);
  free(s.item);
  free(s.pixels);
  if (rc)
    fr_train_data_free(d);
  return rc;
}

void fr_train_data_free(fr_train_data *d)
{
  if (!d)
    return;
  for (int k = 0; d->class_names && k < d->n_classes; k++)
    free(d->class_names[k]);
  free(d->class_names);
  free(d->pixels);
  free(d->labels);
  memset(d, 0, sizeof(*d));
}

void fr_train_data_epoch_order(const fr_train_data *d, uint64_t seed, int64_t epoch, int32_t *order)
{
  uint64_t state = seed * 0x2545f4914f6cdd1dull + (uint64_t)epoch;
  for (int i = 0; i < d->n_images; i++)
    order[i] = i;
  for (int i = d->n_images - 1; i > 0; i--) { /* Fisher-Yates; the modulo bias is below 2^-32 here */
    int j = (int)(fr_splitmix64(&state) % (uint64_t)(i + 1));
    int32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

void fr_train_data_to_input(const uint8_t *px, int width, int height, const float mean[3], const float std[3],
                            int mirror, float *out)
{
  size_t row = (size_t)width * 3;
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++) {
      const uint8_t *p = px + (size_t)y * row + (size_t)(mirror ? width - 1 - x : x) * 3;
      float *q = out + (size_t)y * row + (size_t)x * 3;
      /* the same expression as fr_image_to_tensor, so training sees inference's numbers */
      for (int c = 0; c < 3; c++)
        q[c] = (float)(((double)p[c] - mean[c]) / std[c]);
    }
}

void fr_train_data_batch(const fr_train_data *d, const int32_t *order, int count, const float mean[3],
                         const float std[3], const uint8_t *flip, float *images, int32_t *labels)
{
  size_t per = (size_t)d->width * 3 * d->height;
  for (int b = 0; b < count; b++) {
    fr_train_data_to_input(d->pixels + (size_t)order[b] * per, d->width, d->height, mean, std, flip && flip[b],
                           images + (size_t)b * per);
    labels[b] = d->labels[order[b]];
  }
}
