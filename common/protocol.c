/* The wire protocol: docs/PROTOCOL.md is the layout, this file its only
 * implementation. Both directions compute every size up front with checked
 * arithmetic and then make exactly one allocation, so there is one place to
 * get the bounds right and one block to free. */
#include "faceri/protocol.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fixed sizes on the wire (docs/PROTOCOL.md). */
enum {
  VERSION_FRAME_SIZE = 8, /* "FACERI" + u16 version */
  TYPE_FRAME_SIZE = 1,
  READY_HEADER_SIZE = 96, /* u32 credit, u32 dim, 64 hex chars, u8 align + 3 reserved, f32 score, u32 x2 face size,
                           * u32 attn dim, u32 test embedding */
  SHARD_HEADER_SIZE = 16, /* u64 shard, u32 attempt, u32 count */
  SHARD_RECORD_SIZE = 12, /* u64 index, u32 key_len */
  RESULT_HEADER_SIZE = 24, /* u64 shard, u32 attempt, u32 count, u32 dim, u32 attn dim */
  RESULT_RECORD_SIZE = 40,
  HEARTBEAT_HEADER_SIZE = 16, /* u64 time_ms, u64 sequence */
  FAILED_HEADER_SIZE = 12,    /* u64 shard, u32 attempt */
  STOP_HEADER_SIZE = 4        /* u32 code */
};

/* Frames before the payload: version, type, header. */
#define FIXED_FRAMES 3

/* ---- little-endian helpers: byte by byte, so any host and any alignment work ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}
static void put_u64(uint8_t *p, uint64_t v)
{
  put_u32(p, (uint32_t)v);
  put_u32(p + 4, (uint32_t)(v >> 32));
}
static void put_f32(uint8_t *p, float f)
{
  uint32_t v;
  memcpy(&v, &f, 4); /* bit copy: NaN payloads survive */
  put_u32(p, v);
}
static uint32_t get_u32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p)
{
  return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static float get_f32(const uint8_t *p)
{
  uint32_t v = get_u32(p);
  float f;
  memcpy(&f, &v, 4);
  return f;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_IS_LITTLE_ENDIAN 1
#else
#define HOST_IS_LITTLE_ENDIAN 0
#endif

/* Embeddings are the bulk of a RESULT: one memcpy on little-endian hosts. */
static void put_floats(uint8_t *p, const float *f, size_t n)
{
  if (HOST_IS_LITTLE_ENDIAN) {
    if (n)
      memcpy(p, f, n * 4);
  } else {
    for (size_t i = 0; i < n; i++)
      put_f32(p + 4 * i, f[i]);
  }
}
static void get_floats(float *f, const uint8_t *p, size_t n)
{
  if (HOST_IS_LITTLE_ENDIAN) {
    if (n)
      memcpy(f, p, n * 4);
  } else {
    for (size_t i = 0; i < n; i++)
      f[i] = get_f32(p + 4 * i);
  }
}

/* Checked size arithmetic: a lying count must not wrap a size into something small. */
static int mul_ok(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static int add_ok(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

const char *fr_msg_type_name(int type)
{
  switch (type) {
  case FR_MSG_READY: return "READY";
  case FR_MSG_SHARD: return "SHARD";
  case FR_MSG_RESULT: return "RESULT";
  case FR_MSG_HEARTBEAT: return "HEARTBEAT";
  case FR_MSG_FAILED: return "FAILED";
  case FR_MSG_STOP: return "STOP";
  }
  return "unknown";
}

fr_str fr_str_c(const char *s)
{
  fr_str r = {s ? s : "", s ? strlen(s) : 0};
  return r;
}

char *fr_str_escape(fr_str s, char *out, size_t out_size)
{
  static const char hex[] = "0123456789abcdef";
  if (!out || out_size == 0)
    return out;
  size_t o = 0;
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.s[i];
    int plain = c >= 0x20 && c < 0x7f && c != '\\';
    size_t need = plain ? 1 : 4;
    if (o + need >= out_size)
      break;
    if (plain) {
      out[o++] = (char)c;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
  return out;
}

static int is_sha256_hex(const char *s)
{
  for (int i = 0; i < 64; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return 0;
  }
  return 1;
}

void fr_frames_free(fr_frames *frames)
{
  if (!frames)
    return;
  free(frames->owned);
  frames->owned = NULL;
  frames->frame = NULL;
  frames->count = 0;
}

void fr_msg_free(fr_msg *msg)
{
  if (!msg)
    return;
  free(msg->owned);
  memset(msg, 0, sizeof(*msg));
}

/* =========================== encoding =========================== */

#define ENC_FAIL(...) fr_error_set(err, FR_ERR_INVALID, __VA_ARGS__)

static int check_str(const char *msg, const char *field, fr_str s, fr_error *err)
{
  if (!s.s && s.len)
    return ENC_FAIL("encoding %s message: %s is NULL with length %zu", msg, field, s.len);
  if (s.len > FR_PROTO_MAX_STRING)
    return ENC_FAIL("encoding %s message: %s is %zu bytes (limit %u)", msg, field, s.len,
                    FR_PROTO_MAX_STRING);
  return FR_OK;
}

/* The READY preprocessing fields (both directions check the same rules). */
static int check_align(const fr_msg_ready *r, int code, const char *prefix, fr_error *err)
{
  if (r->align > 1)
    return fr_error_set(err, code, "%sREADY message: align %u is not 0 or 1", prefix, r->align);
  if (!(r->align_min_score >= 0.0f && r->align_min_score <= 1.0f))
    return fr_error_set(err, code, "%sREADY message: align min score %g is outside 0..1", prefix,
                        (double)r->align_min_score);
  if (r->align_min_face > FR_PROTO_MAX_FACE || r->align_max_face > FR_PROTO_MAX_FACE)
    return fr_error_set(err, code, "%sREADY message: face size %u:%u is over %u", prefix, r->align_min_face,
                        r->align_max_face, FR_PROTO_MAX_FACE);
  return FR_OK;
}

/* Checks what the decoder will check, and sums the bytes of the frames the
 * encoder writes itself (images excluded: they are borrowed). */
static int encode_plan(const fr_msg *m, size_t *nframes, size_t *nbytes, fr_error *err)
{
  const char *name = fr_msg_type_name(m->type);
  size_t bytes = VERSION_FRAME_SIZE + TYPE_FRAME_SIZE, t;
  int rc;
  switch (m->type) {
  case FR_MSG_READY: {
    const fr_msg_ready *r = &m->ready;
    if (r->credit < 1 || r->credit > FR_PROTO_MAX_CREDIT)
      return ENC_FAIL("encoding READY message: credit %u is outside 1..%u", r->credit, FR_PROTO_MAX_CREDIT);
    if (r->embedding_dim < 1 || r->embedding_dim > FR_PROTO_MAX_DIM)
      return ENC_FAIL("encoding READY message: embedding size %u is outside 1..%u", r->embedding_dim,
                      FR_PROTO_MAX_DIM);
    if (strnlen(r->model_sha256, sizeof(r->model_sha256)) != 64 || !is_sha256_hex(r->model_sha256))
      return ENC_FAIL("encoding READY message: model SHA-256 is not 64 lowercase hex digits");
    if ((rc = check_align(r, FR_ERR_INVALID, "encoding ", err)))
      return rc;
    if (r->attn_dim > FR_PROTO_MAX_DIM || r->test_embedding > 2)
      return ENC_FAIL("encoding READY message: attention size %u (limit %u) or test embedding %u (0..2) out of range",
                      r->attn_dim, FR_PROTO_MAX_DIM, r->test_embedding);
    if ((rc = check_str(name, "worker name", r->worker, err)) ||
        (rc = check_str(name, "device name", r->device, err)))
      return rc;
    *nframes = FIXED_FRAMES + 2;
    *nbytes = bytes + READY_HEADER_SIZE + r->worker.len + r->device.len;
    return FR_OK;
  }
  case FR_MSG_SHARD: {
    const fr_msg_shard *s = &m->shard;
    if (s->count > FR_PROTO_MAX_ITEMS)
      return ENC_FAIL("encoding SHARD message: %u items (limit %u)", s->count, FR_PROTO_MAX_ITEMS);
    if (s->count && !s->items)
      return ENC_FAIL("encoding SHARD message: %u items but no item array", s->count);
    bytes += SHARD_HEADER_SIZE + (size_t)s->count * SHARD_RECORD_SIZE;
    for (uint32_t i = 0; i < s->count; i++) {
      const fr_shard_item *it = &s->items[i];
      char field[64];
      snprintf(field, sizeof(field), "item %u key", i);
      if ((rc = check_str(name, field, it->key, err)))
        return rc;
      if (it->image_size > FR_PROTO_MAX_IMAGE)
        return ENC_FAIL("encoding SHARD message: item %u image is %zu bytes (limit %u)", i,
                        it->image_size, FR_PROTO_MAX_IMAGE);
      if (!it->image && it->image_size)
        return ENC_FAIL("encoding SHARD message: item %u image is NULL with size %zu", i, it->image_size);
      bytes += it->key.len; /* <= 65536 * (12 + 4096): no overflow possible */
    }
    *nframes = FIXED_FRAMES + 2 + s->count;
    *nbytes = bytes;
    return FR_OK;
  }
  case FR_MSG_RESULT: {
    const fr_msg_result *r = &m->result;
    if (r->count > FR_PROTO_MAX_ITEMS)
      return ENC_FAIL("encoding RESULT message: %u items (limit %u)", r->count, FR_PROTO_MAX_ITEMS);
    if (r->embedding_dim < 1 || r->embedding_dim > FR_PROTO_MAX_DIM)
      return ENC_FAIL("encoding RESULT message: embedding size %u is outside 1..%u", r->embedding_dim,
                      FR_PROTO_MAX_DIM);
    if (r->count && (!r->items || !r->embedding))
      return ENC_FAIL("encoding RESULT message: %u items but no item or embedding array", r->count);
    if (!mul_ok((size_t)r->count * r->embedding_dim, 4, &t) || !add_ok(bytes, t, &bytes))
      return ENC_FAIL("encoding RESULT message: embedding size overflows");
    if (r->attn_dim > FR_PROTO_MAX_DIM)
      return ENC_FAIL("encoding RESULT message: attention size %u is over %u", r->attn_dim, FR_PROTO_MAX_DIM);
    if (r->count && r->attn_dim && !r->attn)
      return ENC_FAIL("encoding RESULT message: attention size %u but no attention array", r->attn_dim);
    if (!mul_ok((size_t)r->count * r->attn_dim, 4, &t) || !add_ok(bytes, t, &bytes))
      return ENC_FAIL("encoding RESULT message: attention size overflows");
    bytes += RESULT_HEADER_SIZE + (size_t)r->count * RESULT_RECORD_SIZE;
    for (uint32_t i = 0; i < r->count; i++) {
      const fr_result_item *it = &r->items[i];
      if (it->status > FR_ITEM_SKIPPED)
        return ENC_FAIL("encoding RESULT message: item %u status %u is not 0, 1 or 2", i, it->status);
      if (it->width > INT32_MAX || it->height > INT32_MAX)
        return ENC_FAIL("encoding RESULT message: item %u size %ux%u is over INT32_MAX", i, it->width,
                        it->height);
      if (it->aligned < -1 || it->aligned > 1)
        return ENC_FAIL("encoding RESULT message: item %u aligned %d is not -1, 0 or 1", i, it->aligned);
      char field[64];
      snprintf(field, sizeof(field), "item %u error text", i);
      if ((rc = check_str(name, field, it->error, err)))
        return rc;
      bytes += it->error.len;
    }
    *nframes = FIXED_FRAMES + 4;
    *nbytes = bytes;
    return FR_OK;
  }
  case FR_MSG_HEARTBEAT:
    *nframes = FIXED_FRAMES;
    *nbytes = bytes + HEARTBEAT_HEADER_SIZE;
    return FR_OK;
  case FR_MSG_FAILED:
    if ((rc = check_str(name, "reason", m->failed.reason, err)))
      return rc;
    *nframes = FIXED_FRAMES + 1;
    *nbytes = bytes + FAILED_HEADER_SIZE + m->failed.reason.len;
    return FR_OK;
  case FR_MSG_STOP:
    if ((rc = check_str(name, "reason", m->stop.reason, err)))
      return rc;
    *nframes = FIXED_FRAMES + 1;
    *nbytes = bytes + STOP_HEADER_SIZE + m->stop.reason.len;
    return FR_OK;
  }
  return ENC_FAIL("encoding message: unknown message type %d", (int)m->type);
}

/* Appends frames into the owned block; the plan guarantees the space. */
typedef struct writer {
  fr_frame *frames;
  size_t nframes;
  uint8_t *p;
} writer;

static uint8_t *w_frame(writer *w, size_t size)
{
  uint8_t *at = w->p;
  w->frames[w->nframes].data = at;
  w->frames[w->nframes].size = size;
  w->nframes++;
  w->p += size;
  return at;
}
static void w_bytes_frame(writer *w, const void *src, size_t size)
{
  uint8_t *at = w_frame(w, size);
  if (size)
    memcpy(at, src, size);
}

int fr_msg_encode(const fr_msg *msg, fr_frames *out, fr_error *err)
{
  if (!out)
    return ENC_FAIL("encoding message: no output frame list");
  memset(out, 0, sizeof(*out));
  if (!msg)
    return ENC_FAIL("encoding message: no message");
  size_t nframes = 0, nbytes = 0, head;
  int rc = encode_plan(msg, &nframes, &nbytes, err);
  if (rc != FR_OK)
    return rc;
  head = align8(nframes * sizeof(fr_frame));
  void *block = malloc(head + nbytes);
  if (!block)
    return fr_error_set(err, FR_ERR_NOMEM, "encoding %s message: cannot allocate %zu bytes",
                        fr_msg_type_name(msg->type), head + nbytes);
  writer w = {block, 0, (uint8_t *)block + head};

  uint8_t *v = w_frame(&w, VERSION_FRAME_SIZE);
  memcpy(v, FR_PROTO_MAGIC, 6);
  v[6] = (uint8_t)(FR_PROTO_VERSION & 0xff);
  v[7] = (uint8_t)(FR_PROTO_VERSION >> 8);
  *w_frame(&w, TYPE_FRAME_SIZE) = (uint8_t)msg->type;

  switch (msg->type) {
  case FR_MSG_READY: {
    const fr_msg_ready *r = &msg->ready;
    uint8_t *h = w_frame(&w, READY_HEADER_SIZE);
    put_u32(h, r->credit);
    put_u32(h + 4, r->embedding_dim);
    memcpy(h + 8, r->model_sha256, 64);
    h[72] = r->align;
    h[73] = h[74] = h[75] = 0;
    put_f32(h + 76, r->align_min_score);
    put_u32(h + 80, r->align_min_face);
    put_u32(h + 84, r->align_max_face);
    put_u32(h + 88, r->attn_dim);
    put_u32(h + 92, r->test_embedding);
    w_bytes_frame(&w, r->worker.s, r->worker.len);
    w_bytes_frame(&w, r->device.s, r->device.len);
    break;
  }
  case FR_MSG_SHARD: {
    const fr_msg_shard *s = &msg->shard;
    uint8_t *h = w_frame(&w, SHARD_HEADER_SIZE);
    put_u64(h, s->shard_id);
    put_u32(h + 8, s->attempt);
    put_u32(h + 12, s->count);
    uint8_t *rec = w_frame(&w, (size_t)s->count * SHARD_RECORD_SIZE);
    size_t keys = 0;
    for (uint32_t i = 0; i < s->count; i++) {
      put_u64(rec + (size_t)i * SHARD_RECORD_SIZE, s->items[i].index);
      put_u32(rec + (size_t)i * SHARD_RECORD_SIZE + 8, (uint32_t)s->items[i].key.len);
      keys += s->items[i].key.len;
    }
    uint8_t *k = w_frame(&w, keys);
    for (uint32_t i = 0; i < s->count; i++) {
      if (s->items[i].key.len)
        memcpy(k, s->items[i].key.s, s->items[i].key.len);
      k += s->items[i].key.len;
    }
    for (uint32_t i = 0; i < s->count; i++) { /* borrowed: no copy of image bytes */
      w.frames[w.nframes].data = s->items[i].image;
      w.frames[w.nframes].size = s->items[i].image_size;
      w.nframes++;
    }
    break;
  }
  case FR_MSG_RESULT: {
    const fr_msg_result *r = &msg->result;
    uint8_t *h = w_frame(&w, RESULT_HEADER_SIZE);
    put_u64(h, r->shard_id);
    put_u32(h + 8, r->attempt);
    put_u32(h + 12, r->count);
    put_u32(h + 16, r->embedding_dim);
    put_u32(h + 20, r->attn_dim);
    uint8_t *rec = w_frame(&w, (size_t)r->count * RESULT_RECORD_SIZE);
    size_t errors = 0;
    for (uint32_t i = 0; i < r->count; i++, rec += RESULT_RECORD_SIZE) {
      const fr_result_item *it = &r->items[i];
      put_u64(rec, it->index);
      rec[8] = it->status;
      rec[9] = (uint8_t)it->aligned;
      rec[10] = rec[11] = 0;
      put_u32(rec + 12, it->width);
      put_u32(rec + 16, it->height);
      put_f32(rec + 20, it->norm);
      put_f32(rec + 24, it->ers);
      put_f32(rec + 28, it->ri);
      put_u32(rec + 32, (uint32_t)it->error.len);
      put_f32(rec + 36, it->align_score);
      errors += it->error.len;
    }
    size_t nfloat = (size_t)r->count * r->embedding_dim;
    put_floats(w_frame(&w, nfloat * 4), r->embedding, nfloat);
    uint8_t *e = w_frame(&w, errors);
    for (uint32_t i = 0; i < r->count; i++) {
      if (r->items[i].error.len)
        memcpy(e, r->items[i].error.s, r->items[i].error.len);
      e += r->items[i].error.len;
    }
    size_t nattn = (size_t)r->count * r->attn_dim; /* frame 6: empty when absent */
    put_floats(w_frame(&w, nattn * 4), r->attn, nattn);
    break;
  }
  case FR_MSG_HEARTBEAT: {
    uint8_t *h = w_frame(&w, HEARTBEAT_HEADER_SIZE);
    put_u64(h, msg->heartbeat.time_ms);
    put_u64(h + 8, msg->heartbeat.sequence);
    break;
  }
  case FR_MSG_FAILED: {
    uint8_t *h = w_frame(&w, FAILED_HEADER_SIZE);
    put_u64(h, msg->failed.shard_id);
    put_u32(h + 8, msg->failed.attempt);
    w_bytes_frame(&w, msg->failed.reason.s, msg->failed.reason.len);
    break;
  }
  case FR_MSG_STOP:
    put_u32(w_frame(&w, STOP_HEADER_SIZE), msg->stop.code);
    w_bytes_frame(&w, msg->stop.reason.s, msg->stop.reason.len);
    break;
  }
  if (w.nframes != nframes || w.p != (uint8_t *)block + head + nbytes) {
    free(block);
    return fr_error_set(err, FR_ERR_INTERNAL, "encoding %s message: size plan and writer disagree",
                        fr_msg_type_name(msg->type));
  }
  out->frame = w.frames;
  out->count = nframes;
  out->owned = block;
  return FR_OK;
}

/* =========================== decoding =========================== */

#define BAD(...) fr_error_set(err, FR_ERR_FORMAT, __VA_ARGS__)

int fr_protocol_peek_type(const fr_frame *frames, size_t n, fr_msg_type *type, fr_error *err)
{
  if (type)
    *type = (fr_msg_type)0;
  if (!frames || n == 0)
    return BAD("message: no frames");
  if (n < 2)
    return BAD("message: 1 frame, expected at least a version and a type frame");
  const fr_frame *v = &frames[0], *t = &frames[1];
  if ((!v->data && v->size) || (!t->data && t->size))
    return fr_error_set(err, FR_ERR_INVALID, "message: a frame has no data but a nonzero size");
  if (v->size != VERSION_FRAME_SIZE || memcmp(v->data, FR_PROTO_MAGIC, 6) != 0)
    return BAD("message: first frame (%zu bytes) is not a faceri version frame", v->size);
  unsigned version = (unsigned)v->data[6] | (unsigned)v->data[7] << 8;
  if (version != FR_PROTO_VERSION)
    return BAD("message: protocol version %u, this build speaks version %u", version, FR_PROTO_VERSION);
  if (t->size != TYPE_FRAME_SIZE)
    return BAD("message: type frame is %zu bytes, expected 1", t->size);
  if (t->data[0] < FR_MSG_READY || t->data[0] > FR_MSG_STOP)
    return BAD("message: unknown message type %u", t->data[0]);
  if (type)
    *type = (fr_msg_type)t->data[0];
  return FR_OK;
}

/* Exact frame count and header size for the fixed-shape messages. */
static int expect_shape(const char *name, size_t n, size_t want_frames, const fr_frame *f,
                        size_t header_size, fr_error *err)
{
  if (n < FIXED_FRAMES)
    return BAD("%s message: %zu frames, no header frame", name, n);
  if (f[2].size != header_size)
    return BAD("%s message: header frame is %zu bytes, expected %zu", name, f[2].size, header_size);
  if (n != want_frames)
    return BAD("%s message: %zu frames, expected %zu", name, n, want_frames);
  return FR_OK;
}

/* Copies a string frame into the arena, NUL-terminated. */
static fr_str take_str(char **arena, const uint8_t *src, size_t len)
{
  char *s = *arena;
  if (len)
    memcpy(s, src, len);
  s[len] = '\0';
  *arena += len + 1;
  fr_str r = {s, len};
  return r;
}

static int str_frame_ok(const char *name, const char *field, const fr_frame *f, fr_error *err)
{
  if (f->size > FR_PROTO_MAX_STRING)
    return BAD("%s message: %s is %zu bytes (limit %u)", name, field, f->size, FR_PROTO_MAX_STRING);
  return FR_OK;
}

static int alloc_arena(const char *name, size_t size, fr_msg *out, fr_error *err)
{
  if (size == 0)
    return FR_OK;
  out->owned = malloc(size);
  if (!out->owned)
    return fr_error_set(err, FR_ERR_NOMEM, "%s message: cannot allocate %zu bytes", name, size);
  return FR_OK;
}

static int decode_ready(const fr_frame *f, size_t n, fr_msg *out, fr_error *err)
{
  int rc = expect_shape("READY", n, FIXED_FRAMES + 2, f, READY_HEADER_SIZE, err);
  if (rc)
    return rc;
  fr_msg_ready *r = &out->ready;
  const uint8_t *h = f[2].data;
  r->credit = get_u32(h);
  r->embedding_dim = get_u32(h + 4);
  if (r->credit < 1 || r->credit > FR_PROTO_MAX_CREDIT)
    return BAD("READY message: credit %u is outside 1..%u", r->credit, FR_PROTO_MAX_CREDIT);
  if (r->embedding_dim < 1 || r->embedding_dim > FR_PROTO_MAX_DIM)
    return BAD("READY message: embedding size %u is outside 1..%u", r->embedding_dim, FR_PROTO_MAX_DIM);
  memcpy(r->model_sha256, h + 8, 64);
  r->model_sha256[64] = '\0';
  if (!is_sha256_hex(r->model_sha256))
    return BAD("READY message: model SHA-256 is not 64 lowercase hex digits");
  if (h[73] || h[74] || h[75])
    return BAD("READY message: reserved bytes are not zero");
  r->align = h[72];
  r->align_min_score = get_f32(h + 76);
  r->align_min_face = get_u32(h + 80);
  r->align_max_face = get_u32(h + 84);
  if ((rc = check_align(r, FR_ERR_FORMAT, "", err)))
    return rc;
  r->attn_dim = get_u32(h + 88);
  r->test_embedding = get_u32(h + 92);
  if (r->attn_dim > FR_PROTO_MAX_DIM)
    return BAD("READY message: attention size %u is over %u", r->attn_dim, FR_PROTO_MAX_DIM);
  if (r->test_embedding > 2)
    return BAD("READY message: test embedding %u is not 0 (v), 1 (attn) or 2 (concat)", r->test_embedding);
  if ((rc = str_frame_ok("READY", "worker name", &f[3], err)) ||
      (rc = str_frame_ok("READY", "device name", &f[4], err)))
    return rc;
  if ((rc = alloc_arena("READY", f[3].size + f[4].size + 2, out, err)))
    return rc;
  char *a = out->owned;
  r->worker = take_str(&a, f[3].data, f[3].size);
  r->device = take_str(&a, f[4].data, f[4].size);
  return FR_OK;
}

static int decode_shard(const fr_frame *f, size_t n, fr_msg *out, fr_error *err)
{
  if (n < FIXED_FRAMES)
    return BAD("SHARD message: %zu frames, no header frame", n);
  if (f[2].size != SHARD_HEADER_SIZE)
    return BAD("SHARD message: header frame is %zu bytes, expected %d", f[2].size, SHARD_HEADER_SIZE);
  fr_msg_shard *s = &out->shard;
  s->shard_id = get_u64(f[2].data);
  s->attempt = get_u32(f[2].data + 8);
  uint32_t count = get_u32(f[2].data + 12);
  if (count > FR_PROTO_MAX_ITEMS)
    return BAD("SHARD message: %u items (limit %u)", count, FR_PROTO_MAX_ITEMS);
  size_t want = FIXED_FRAMES + 2 + (size_t)count;
  if (n != want)
    return BAD("SHARD message: %zu frames but the header announces %u items (%zu frames)", n, count, want);
  size_t table = 0;
  if (!mul_ok(count, SHARD_RECORD_SIZE, &table) || f[3].size != table)
    return BAD("SHARD message: item table is %zu bytes, %u items need %zu", f[3].size, count,
               (size_t)count * SHARD_RECORD_SIZE);
  /* Every key length is bounded and the lengths must add up to the key
   * frame exactly, before anything is allocated. */
  size_t keys = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t len = get_u32(f[3].data + (size_t)i * SHARD_RECORD_SIZE + 8);
    if (len > FR_PROTO_MAX_STRING)
      return BAD("SHARD message: item %u key is %u bytes (limit %u)", i, len, FR_PROTO_MAX_STRING);
    if (!add_ok(keys, len, &keys))
      return BAD("SHARD message: key lengths overflow");
  }
  if (keys != f[4].size)
    return BAD("SHARD message: key lengths add up to %zu bytes, key frame is %zu", keys, f[4].size);
  for (uint32_t i = 0; i < count; i++)
    if (f[5 + i].size > FR_PROTO_MAX_IMAGE)
      return BAD("SHARD message: item %u image is %zu bytes (limit %u)", i, f[5 + i].size,
                 FR_PROTO_MAX_IMAGE);
  size_t items_bytes, total;
  if (!mul_ok(count, sizeof(fr_shard_item), &items_bytes) || !add_ok(items_bytes, keys, &total) ||
      !add_ok(total, count, &total))
    return BAD("SHARD message: sizes overflow");
  int rc = alloc_arena("SHARD", total, out, err);
  if (rc)
    return rc;
  s->count = count;
  s->items = count ? out->owned : NULL;
  char *a = count ? (char *)out->owned + items_bytes : NULL; /* no arena for 0 items */
  size_t at = 0; /* an offset, not a pointer: the key frame may be NULL when empty */
  for (uint32_t i = 0; i < count; i++) {
    fr_shard_item *it = &s->items[i];
    const uint8_t *rec = f[3].data + (size_t)i * SHARD_RECORD_SIZE;
    size_t len = get_u32(rec + 8);
    it->index = get_u64(rec);
    it->key = take_str(&a, len ? f[4].data + at : NULL, len);
    at += len;
    it->image = f[5 + i].data;
    it->image_size = f[5 + i].size;
  }
  return FR_OK;
}

static int decode_result(const fr_frame *f, size_t n, fr_msg *out, fr_error *err)
{
  int rc = expect_shape("RESULT", n, FIXED_FRAMES + 4, f, RESULT_HEADER_SIZE, err);
  if (rc)
    return rc;
  fr_msg_result *r = &out->result;
  const uint8_t *h = f[2].data;
  r->shard_id = get_u64(h);
  r->attempt = get_u32(h + 8);
  uint32_t count = get_u32(h + 12), dim = get_u32(h + 16), attn_dim = get_u32(h + 20);
  if (count > FR_PROTO_MAX_ITEMS)
    return BAD("RESULT message: %u items (limit %u)", count, FR_PROTO_MAX_ITEMS);
  if (dim < 1 || dim > FR_PROTO_MAX_DIM)
    return BAD("RESULT message: embedding size %u is outside 1..%u", dim, FR_PROTO_MAX_DIM);
  size_t table = 0, nfloat = 0, emb_bytes = 0;
  if (!mul_ok(count, RESULT_RECORD_SIZE, &table) || f[3].size != table)
    return BAD("RESULT message: item table is %zu bytes, %u items need %zu", f[3].size, count,
               (size_t)count * RESULT_RECORD_SIZE);
  if (!mul_ok(count, dim, &nfloat) || !mul_ok(nfloat, 4, &emb_bytes) || f[4].size != emb_bytes)
    return BAD("RESULT message: embedding frame is %zu bytes, %u items x %u floats need %llu", f[4].size,
               count, dim, (unsigned long long)count * dim * 4);
  size_t nattn = 0, attn_bytes = 0;
  if (attn_dim > FR_PROTO_MAX_DIM)
    return BAD("RESULT message: attention size %u is over %u", attn_dim, FR_PROTO_MAX_DIM);
  if (!mul_ok(count, attn_dim, &nattn) || !mul_ok(nattn, 4, &attn_bytes) || f[6].size != attn_bytes)
    return BAD("RESULT message: attention frame is %zu bytes, %u items x %u floats need %llu", f[6].size, count,
               attn_dim, (unsigned long long)count * attn_dim * 4);
  size_t errors = 0;
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *rec = f[3].data + (size_t)i * RESULT_RECORD_SIZE;
    if (rec[8] > FR_ITEM_SKIPPED)
      return BAD("RESULT message: item %u status %u is not 0 (ok), 1 (failed) or 2 (skipped)", i, rec[8]);
    if (rec[10] || rec[11])
      return BAD("RESULT message: item %u reserved bytes are not zero", i);
    if (rec[9] != 0 && rec[9] != 1 && rec[9] != 0xff)
      return BAD("RESULT message: item %u aligned byte 0x%02x is not -1, 0 or 1", i, rec[9]);
    uint32_t w = get_u32(rec + 12), hgt = get_u32(rec + 16), len = get_u32(rec + 32);
    if (w > INT32_MAX || hgt > INT32_MAX)
      return BAD("RESULT message: item %u size %ux%u is over INT32_MAX", i, w, hgt);
    if (len > FR_PROTO_MAX_STRING)
      return BAD("RESULT message: item %u error text is %u bytes (limit %u)", i, len, FR_PROTO_MAX_STRING);
    if (!add_ok(errors, len, &errors))
      return BAD("RESULT message: error text lengths overflow");
  }
  if (errors != f[5].size)
    return BAD("RESULT message: error text lengths add up to %zu bytes, error frame is %zu", errors,
               f[5].size);
  /* Arena: items (8-aligned), then floats (4-aligned at an 8-aligned
   * offset), then NUL-terminated error texts. */
  size_t items_bytes, total;
  if (!mul_ok(count, sizeof(fr_result_item), &items_bytes) || !add_ok(items_bytes, emb_bytes, &total) ||
      !add_ok(total, attn_bytes, &total) || !add_ok(total, errors, &total) || !add_ok(total, count, &total))
    return BAD("RESULT message: sizes overflow");
  if ((rc = alloc_arena("RESULT", total, out, err)))
    return rc;
  r->count = count;
  r->embedding_dim = dim;
  r->items = count ? out->owned : NULL;
  r->embedding = count ? (float *)((char *)out->owned + items_bytes) : NULL;
  if (count)
    get_floats(r->embedding, f[4].data, nfloat);
  r->attn_dim = attn_dim;
  r->attn = count && attn_dim ? (float *)((char *)out->owned + items_bytes + emb_bytes) : NULL;
  if (r->attn)
    get_floats(r->attn, f[6].data, nattn);
  char *a = count ? (char *)out->owned + items_bytes + emb_bytes + attn_bytes : NULL;
  size_t at = 0;
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *rec = f[3].data + (size_t)i * RESULT_RECORD_SIZE;
    fr_result_item *it = &r->items[i];
    size_t len = get_u32(rec + 32);
    it->index = get_u64(rec);
    it->status = rec[8];
    it->width = get_u32(rec + 12);
    it->height = get_u32(rec + 16);
    it->norm = get_f32(rec + 20);
    it->ers = get_f32(rec + 24);
    it->ri = get_f32(rec + 28);
    it->aligned = (int8_t)rec[9];
    it->align_score = get_f32(rec + 36);
    it->error = take_str(&a, len ? f[5].data + at : NULL, len);
    at += len;
  }
  return FR_OK;
}

static int decode_text_tail(const char *name, const fr_frame *f, size_t n, size_t header, fr_msg *out,
                            fr_str *reason, fr_error *err)
{
  int rc = expect_shape(name, n, FIXED_FRAMES + 1, f, header, err);
  if (rc || (rc = str_frame_ok(name, "reason", &f[3], err)) ||
      (rc = alloc_arena(name, f[3].size + 1, out, err)))
    return rc;
  char *a = out->owned;
  *reason = take_str(&a, f[3].data, f[3].size);
  return FR_OK;
}

int fr_msg_decode(const fr_frame *frames, size_t n, fr_msg_type expect, fr_msg *out, fr_error *err)
{
  if (!out)
    return fr_error_set(err, FR_ERR_INVALID, "decoding message: no output");
  memset(out, 0, sizeof(*out));
  fr_msg_type type;
  int rc = fr_protocol_peek_type(frames, n, &type, err);
  if (rc)
    return rc;
  for (size_t i = 2; i < n; i++)
    if (!frames[i].data && frames[i].size)
      return fr_error_set(err, FR_ERR_INVALID, "%s message: frame %zu has no data but %zu bytes",
                          fr_msg_type_name(type), i, frames[i].size);
  if (expect && type != expect)
    return BAD("message: got %s, expected %s", fr_msg_type_name(type), fr_msg_type_name(expect));
  out->type = type;
  switch (type) {
  case FR_MSG_READY: rc = decode_ready(frames, n, out, err); break;
  case FR_MSG_SHARD: rc = decode_shard(frames, n, out, err); break;
  case FR_MSG_RESULT: rc = decode_result(frames, n, out, err); break;
  case FR_MSG_HEARTBEAT:
    rc = expect_shape("HEARTBEAT", n, FIXED_FRAMES, frames, HEARTBEAT_HEADER_SIZE, err);
    if (!rc) {
      out->heartbeat.time_ms = get_u64(frames[2].data);
      out->heartbeat.sequence = get_u64(frames[2].data + 8);
    }
    break;
  case FR_MSG_FAILED:
    rc = decode_text_tail("FAILED", frames, n, FAILED_HEADER_SIZE, out, &out->failed.reason, err);
    if (!rc) {
      out->failed.shard_id = get_u64(frames[2].data);
      out->failed.attempt = get_u32(frames[2].data + 8);
    }
    break;
  case FR_MSG_STOP:
    rc = decode_text_tail("STOP", frames, n, STOP_HEADER_SIZE, out, &out->stop.reason, err);
    if (!rc)
      out->stop.code = get_u32(frames[2].data);
    break;
  }
  if (rc)
    fr_msg_free(out);
  return rc;
}
