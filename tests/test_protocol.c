/* The wire protocol: round trips of every message with edge values, then a
 * hostile peer: every truncation and extension of every frame, wrong
 * versions and types, missing and extra frames, counts and lengths that lie.
 * Every mutated frame is its own exact-size allocation, so an over-read is
 * an ASan failure, not a silent pass. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faceri/protocol.h"
#include "test_util.h"

static const char SHA[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* ---- frame sets that own a private copy of every frame ---- */

typedef struct fset {
  fr_frame *f;
  size_t n;
} fset;

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
  uint8_t *b = malloc(n ? n : 1); /* 1: so an empty frame still has a distinct pointer */
  CU_ASSERT_FATAL(b != NULL);
  if (n)
    memcpy(b, p, n);
  return b;
}

static fset fset_copy(const fr_frame *src, size_t n)
{
  fset s = {calloc(n ? n : 1, sizeof(fr_frame)), n};
  CU_ASSERT_FATAL(s.f != NULL);
  for (size_t i = 0; i < n; i++) {
    s.f[i].data = dup_bytes(src[i].data, src[i].size);
    s.f[i].size = src[i].size;
  }
  return s;
}

static void fset_free(fset *s)
{
  for (size_t i = 0; i < s->n; i++)
    free((void *)s->f[i].data);
  free(s->f);
  s->f = NULL;
  s->n = 0;
}

/* Replaces frame i with `n` bytes copied from p (exact-size allocation). */
static void fset_set(fset *s, size_t i, const uint8_t *p, size_t n)
{
  uint8_t *b = dup_bytes(p, n);
  free((void *)s->f[i].data);
  s->f[i].data = b;
  s->f[i].size = n;
}

static uint8_t *fset_mut(fset *s, size_t i) { return (uint8_t *)s->f[i].data; }

static void put32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static fr_frames encode_ok(const fr_msg *m)
{
  fr_frames fr;
  fr_error err = {0};
  int rc = fr_msg_encode(m, &fr, &err);
  if (rc != FR_OK)
    fprintf(stderr, "encode: %s\n", err.message);
  CU_ASSERT_FATAL(rc == FR_OK);
  return fr;
}

/* Decodes a copy with exact-size frames (so ASan sees over-reads). */
static int decode_copy(const fr_frame *f, size_t n, fr_msg *out, fr_error *err)
{
  fset s = fset_copy(f, n);
  int rc = fr_msg_decode(s.f, s.n, 0, out, err);
  /* Shard images point into frames: a successful decode keeps them, so
   * hand the test copies whose lifetime is the whole test. */
  if (rc == FR_OK && out->type == FR_MSG_SHARD) {
    for (uint32_t i = 0; i < out->shard.count; i++)
      out->shard.items[i].image = f[5 + i].data;
  }
  fset_free(&s);
  return rc;
}

/* Must fail as FR_ERR_FORMAT with a message, leaving nothing owned. */
static void expect_bad(const fset *s, const char *must_mention)
{
  fr_msg m;
  fr_error err = {0};
  memset(&m, 0x5a, sizeof(m));
  int rc = fr_msg_decode(s->f, s->n, 0, &m, &err);
  CU_ASSERT_EQUAL(rc, FR_ERR_FORMAT);
  CU_ASSERT(err.message[0] != '\0');
  CU_ASSERT(m.owned == NULL);
  if (must_mention && !strstr(err.message, must_mention)) {
    fprintf(stderr, "error \"%s\" does not mention %s\n", err.message, must_mention);
    CU_FAIL("error message does not name the message type");
  }
  if (rc == FR_OK)
    fr_msg_free(&m);
}

static int bits_equal(float a, float b) { return memcmp(&a, &b, sizeof(float)) == 0; }

static int str_is(fr_str s, const void *p, size_t n)
{
  return s.len == n && (n == 0 || memcmp(s.s, p, n) == 0) && s.s[n] == '\0';
}

/* ============================ round trips ============================ */

static void test_ready_roundtrip(void)
{
  static char longname[FR_PROTO_MAX_STRING];
  memset(longname, 'w', sizeof(longname));
  const char weird[] = {'g', 'p', 'u', 0, (char)0xff, '\n', '\x1b'};
  struct {
    fr_str worker, device;
    uint32_t credit, dim;
    uint8_t align;
    float score;
    uint32_t min_face, max_face;
  } cases[] = {
      {fr_str_c("node7:1234"), fr_str_c("llvmpipe (LLVM 15.0.6, 256 bits)"), 4, 128, 0, 0, 0, 0},
      {fr_str_c(""), fr_str_c(NULL), 1, 1, 1, 0.9f, 70, 150},
      {{longname, sizeof(longname)}, {weird, sizeof(weird)}, FR_PROTO_MAX_CREDIT, FR_PROTO_MAX_DIM, 1, 1.0f,
       FR_PROTO_MAX_FACE, 0},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    fr_msg m = {.type = FR_MSG_READY};
    m.ready.worker = cases[c].worker;
    m.ready.device = cases[c].device;
    m.ready.credit = cases[c].credit;
    m.ready.embedding_dim = cases[c].dim;
    m.ready.align = cases[c].align;
    m.ready.align_min_score = cases[c].score;
    m.ready.align_min_face = cases[c].min_face;
    m.ready.align_max_face = cases[c].max_face;
    memcpy(m.ready.model_sha256, SHA, 65);
    m.ready.attn_dim = c == 2 ? FR_PROTO_MAX_DIM : (uint32_t)c * 192; /* 0: no attention rows */
    m.ready.test_embedding = (uint32_t)c % 3;
    fr_frames fr = encode_ok(&m);
    CU_ASSERT_EQUAL(fr.count, 5);
    fr_msg_type t;
    CU_ASSERT_EQUAL(fr_protocol_peek_type(fr.frame, fr.count, &t, NULL), FR_OK);
    CU_ASSERT_EQUAL(t, FR_MSG_READY);
    fr_msg d;
    fr_error err;
    CU_ASSERT_EQUAL_FATAL(decode_copy(fr.frame, fr.count, &d, &err), FR_OK);
    CU_ASSERT_EQUAL(d.type, FR_MSG_READY);
    CU_ASSERT(str_is(d.ready.worker, cases[c].worker.s, cases[c].worker.len));
    CU_ASSERT(str_is(d.ready.device, cases[c].device.s, cases[c].device.len));
    CU_ASSERT_EQUAL(d.ready.credit, cases[c].credit);
    CU_ASSERT_EQUAL(d.ready.embedding_dim, cases[c].dim);
    CU_ASSERT_STRING_EQUAL(d.ready.model_sha256, SHA);
    CU_ASSERT_EQUAL(d.ready.align, cases[c].align);
    CU_ASSERT(bits_equal(d.ready.align_min_score, cases[c].score));
    CU_ASSERT_EQUAL(d.ready.align_min_face, cases[c].min_face);
    CU_ASSERT_EQUAL(d.ready.align_max_face, cases[c].max_face);
    CU_ASSERT_EQUAL(d.ready.attn_dim, m.ready.attn_dim);
    CU_ASSERT_EQUAL(d.ready.test_embedding, m.ready.test_embedding);
    fr_msg_free(&d);
    fr_frames_free(&fr);
  }
}

/* n items with hostile keys; images are caller buffers (borrowed by the encoder). */
static void make_shard(fr_msg *m, uint32_t n, fr_shard_item *items, uint8_t *images, char *keys)
{
  memset(m, 0, sizeof(*m));
  m->type = FR_MSG_SHARD;
  m->shard.shard_id = UINT64_MAX - 1;
  m->shard.attempt = 7;
  m->shard.count = n;
  m->shard.items = items;
  for (uint32_t i = 0; i < n; i++) {
    char *k = keys + (size_t)i * 32;
    /* "../" and non-UTF-8 bytes and an embedded NUL: a key is data. */
    int len = snprintf(k, 32, "../x/%u", i);
    k[len++] = (char)0xc3;
    k[len++] = (char)0x28;
    k[len++] = (char)(i % 3 == 0 ? 0 : 'z');
    items[i].index = (uint64_t)i * 1000003u + (i == 1 ? UINT64_MAX - 5000000 : 0);
    items[i].key.s = k;
    items[i].key.len = (size_t)(i % 5 == 4 ? 0 : len); /* some empty keys */
    items[i].image = images + i;
    items[i].image_size = (size_t)(i % 4); /* some empty images */
  }
}

static void test_shard_roundtrip(void)
{
  uint32_t sizes[] = {0, 1, 2, 1000};
  enum { MAXN = 1000 };
  static fr_shard_item items[MAXN];
  static uint8_t images[MAXN + 8];
  static char keys[MAXN * 32];
  for (size_t i = 0; i < sizeof(images); i++)
    images[i] = (uint8_t)(i * 37 + 11);
  for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
    fr_msg m;
    make_shard(&m, sizes[c], items, images, keys);
    fr_frames fr = encode_ok(&m);
    CU_ASSERT_EQUAL_FATAL(fr.count, 5 + (size_t)sizes[c]);
    /* Zero copy: image frames are the caller's bytes. */
    for (uint32_t i = 0; i < sizes[c]; i++)
      CU_ASSERT(fr.frame[5 + i].data == items[i].image && fr.frame[5 + i].size == items[i].image_size);
    fr_msg d;
    fr_error err;
    CU_ASSERT_EQUAL_FATAL(fr_msg_decode(fr.frame, fr.count, FR_MSG_SHARD, &d, &err), FR_OK);
    CU_ASSERT_EQUAL(d.shard.shard_id, UINT64_MAX - 1);
    CU_ASSERT_EQUAL(d.shard.attempt, 7);
    CU_ASSERT_EQUAL_FATAL(d.shard.count, sizes[c]);
    for (uint32_t i = 0; i < sizes[c]; i++) {
      CU_ASSERT_EQUAL(d.shard.items[i].index, items[i].index);
      CU_ASSERT(str_is(d.shard.items[i].key, items[i].key.s, items[i].key.len));
      CU_ASSERT(d.shard.items[i].image == fr.frame[5 + i].data); /* points into the frame */
      CU_ASSERT_EQUAL(d.shard.items[i].image_size, items[i].image_size);
    }
    fr_msg_free(&d);
    fr_frames_free(&fr);
  }
}

static void test_shard_max_items(void)
{
  uint32_t n = FR_PROTO_MAX_ITEMS;
  fr_shard_item *items = calloc(n + 1, sizeof(*items));
  CU_ASSERT_FATAL(items != NULL);
  for (uint32_t i = 0; i <= n; i++)
    items[i].index = i;
  static char maxkey[FR_PROTO_MAX_STRING];
  memset(maxkey, '/', sizeof(maxkey));
  items[n - 1].key.s = maxkey;
  items[n - 1].key.len = sizeof(maxkey);
  fr_msg m = {.type = FR_MSG_SHARD};
  m.shard.count = n;
  m.shard.items = items;
  fr_frames fr = encode_ok(&m);
  fr_msg d;
  fr_error err;
  CU_ASSERT_EQUAL_FATAL(fr_msg_decode(fr.frame, fr.count, 0, &d, &err), FR_OK);
  CU_ASSERT_EQUAL(d.shard.count, n);
  CU_ASSERT_EQUAL(d.shard.items[n - 1].index, n - 1);
  CU_ASSERT_EQUAL(d.shard.items[n - 1].key.len, FR_PROTO_MAX_STRING);
  fr_msg_free(&d);
  fr_frames_free(&fr);
  m.shard.count = n + 1;
  CU_ASSERT_EQUAL(fr_msg_encode(&m, &fr, &err), FR_ERR_INVALID);
  CU_ASSERT(fr.frame == NULL && fr.owned == NULL);
  free(items);
}

static void fill_result(fr_msg *m, uint32_t n, uint32_t dim, fr_result_item *items, float *emb)
{
  static const char *errs[] = {"", "truncated JPEG in ../a\xff.jpg", "not an image: README"};
  memset(m, 0, sizeof(*m));
  m->type = FR_MSG_RESULT;
  m->result.shard_id = 42;
  m->result.attempt = UINT32_MAX;
  m->result.count = n;
  m->result.embedding_dim = dim;
  m->result.items = items;
  m->result.embedding = emb;
  for (uint32_t i = 0; i < n; i++) {
    fr_result_item *it = &items[i];
    it->index = 5000000000ull + i;
    it->status = (uint8_t)(i % 3);
    it->width = i == 0 ? INT32_MAX : i % 250;
    it->height = i == 0 ? 0 : i % 117;
    it->norm = it->status == 0 ? 1.0f + (float)i : NAN;
    it->ers = i % 2 ? -0.0f : INFINITY;
    it->ri = i == 1 ? -NAN : (float)i * 0.25f;
    it->aligned = (int8_t)((int)(i % 3) - 1);
    it->align_score = it->aligned < 0 ? NAN : 1.0f / (float)(i + 1);
    it->error = fr_str_c(errs[it->status]);
    for (uint32_t j = 0; j < dim; j++)
      emb[(size_t)i * dim + j] = it->status == 0 ? (float)j / (float)(i + 1) - 0.5f : NAN;
  }
}

static void check_result_equal(const fr_msg *d, const fr_msg *m)
{
  const fr_msg_result *a = &d->result, *b = &m->result;
  CU_ASSERT_EQUAL(d->type, FR_MSG_RESULT);
  CU_ASSERT_EQUAL(a->shard_id, b->shard_id);
  CU_ASSERT_EQUAL(a->attempt, b->attempt);
  CU_ASSERT_EQUAL(a->embedding_dim, b->embedding_dim);
  CU_ASSERT_EQUAL_FATAL(a->count, b->count);
  for (uint32_t i = 0; i < a->count; i++) {
    const fr_result_item *x = &a->items[i], *y = &b->items[i];
    CU_ASSERT_EQUAL(x->index, y->index);
    CU_ASSERT_EQUAL(x->status, y->status);
    CU_ASSERT_EQUAL(x->width, y->width);
    CU_ASSERT_EQUAL(x->height, y->height);
    CU_ASSERT(bits_equal(x->norm, y->norm)); /* NaN payloads and -0 survive */
    CU_ASSERT(bits_equal(x->ers, y->ers));
    CU_ASSERT(bits_equal(x->ri, y->ri));
    CU_ASSERT_EQUAL(x->aligned, y->aligned);
    CU_ASSERT(bits_equal(x->align_score, y->align_score));
    CU_ASSERT(str_is(x->error, y->error.s, y->error.len));
  }
  size_t nf = (size_t)a->count * a->embedding_dim;
  CU_ASSERT(nf == 0 || memcmp(a->embedding, b->embedding, nf * 4) == 0);
  CU_ASSERT_EQUAL(a->attn_dim, b->attn_dim);
  size_t na = (size_t)a->count * a->attn_dim;
  CU_ASSERT(na == 0 ? a->attn == NULL : memcmp(a->attn, b->attn, na * 4) == 0);
}

static void test_result_roundtrip(void)
{
  struct {
    uint32_t n, dim;
  } cases[] = {{0, 1}, {0, 192}, {1, 1}, {1, FR_PROTO_MAX_DIM}, {3, 192}, {256, 192}};
  for (size_t c = 0; c < 2 * sizeof(cases) / sizeof(cases[0]); c++) {
    /* Every case without and with the attention matrix (a different width than D's). */
    uint32_t n = cases[c / 2].n, dim = cases[c / 2].dim, adim = c % 2 ? (dim > 1 ? dim / 2 : 1) : 0;
    fr_result_item *items = calloc(n + 1, sizeof(*items));
    float *emb = calloc((size_t)n * dim + 1, sizeof(float)), *attn = calloc((size_t)n * adim + 1, sizeof(float));
    CU_ASSERT_FATAL(items && emb && attn);
    fr_msg m;
    fill_result(&m, n, dim, items, emb);
    for (size_t j = 0; j < (size_t)n * adim; j++)
      attn[j] = j % 7 == 3 ? NAN : (float)j * -0.125f;
    m.result.attn_dim = adim;
    m.result.attn = adim ? attn : NULL;
    fr_frames fr = encode_ok(&m);
    CU_ASSERT_EQUAL(fr.count, 7);
    fr_msg d;
    fr_error err;
    CU_ASSERT_EQUAL_FATAL(decode_copy(fr.frame, fr.count, &d, &err), FR_OK);
    check_result_equal(&d, &m);
    if (n == 0)
      CU_ASSERT(d.result.items == NULL && d.result.embedding == NULL && d.owned == NULL);
    fr_msg_free(&d);
    fr_frames_free(&fr);
    free(items);
    free(emb);
    free(attn);
  }
}

static void test_small_messages_roundtrip(void)
{
  static char maxreason[FR_PROTO_MAX_STRING];
  memset(maxreason, 'r', sizeof(maxreason));
  maxreason[7] = (char)0x80;
  fr_str reasons[] = {fr_str_c(""), fr_str_c("device lost"), {maxreason, sizeof(maxreason)}};
  uint64_t u64s[] = {0, 1, UINT64_MAX};
  for (int c = 0; c < 3; c++) {
    fr_msg m = {.type = FR_MSG_HEARTBEAT}, d;
    m.heartbeat.time_ms = u64s[c];
    m.heartbeat.sequence = u64s[2 - c];
    fr_frames fr = encode_ok(&m);
    CU_ASSERT_EQUAL(fr.count, 3);
    CU_ASSERT_EQUAL_FATAL(decode_copy(fr.frame, fr.count, &d, NULL), FR_OK);
    CU_ASSERT_EQUAL(d.heartbeat.time_ms, u64s[c]);
    CU_ASSERT_EQUAL(d.heartbeat.sequence, u64s[2 - c]);
    CU_ASSERT(d.owned == NULL);
    fr_msg_free(&d);
    fr_frames_free(&fr);

    m = (fr_msg){.type = FR_MSG_FAILED};
    m.failed.shard_id = u64s[c];
    m.failed.attempt = (uint32_t)c * 0x7fffffffu;
    m.failed.reason = reasons[c];
    fr = encode_ok(&m);
    CU_ASSERT_EQUAL_FATAL(decode_copy(fr.frame, fr.count, &d, NULL), FR_OK);
    CU_ASSERT_EQUAL(d.type, FR_MSG_FAILED);
    CU_ASSERT_EQUAL(d.failed.shard_id, u64s[c]);
    CU_ASSERT_EQUAL(d.failed.attempt, (uint32_t)c * 0x7fffffffu);
    CU_ASSERT(str_is(d.failed.reason, reasons[c].s, reasons[c].len));
    fr_msg_free(&d);
    fr_frames_free(&fr);

    m = (fr_msg){.type = FR_MSG_STOP};
    m.stop.code = c == 2 ? 99 : (uint32_t)c; /* unknown codes travel as-is */
    m.stop.reason = reasons[2 - c];
    fr = encode_ok(&m);
    CU_ASSERT_EQUAL_FATAL(decode_copy(fr.frame, fr.count, &d, NULL), FR_OK);
    CU_ASSERT_EQUAL(d.type, FR_MSG_STOP);
    CU_ASSERT_EQUAL(d.stop.code, c == 2 ? 99u : (uint32_t)c);
    CU_ASSERT(str_is(d.stop.reason, reasons[2 - c].s, reasons[2 - c].len));
    fr_msg_free(&d);
    fr_frames_free(&fr);
  }
}

/* ============================ encoder limits ============================ */

static void expect_encode_invalid(const fr_msg *m, const char *mention)
{
  fr_frames fr;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_msg_encode(m, &fr, &err), FR_ERR_INVALID);
  CU_ASSERT(fr.frame == NULL && fr.count == 0 && fr.owned == NULL);
  if (!strstr(err.message, mention)) {
    fprintf(stderr, "encode error \"%s\" does not mention \"%s\"\n", err.message, mention);
    CU_FAIL("encoder error message");
  }
}

static void test_encoder_limits(void)
{
  static char big[FR_PROTO_MAX_STRING + 1];
  fr_str too_long = {big, sizeof(big)};
  fr_msg m = {.type = FR_MSG_READY};
  m.ready.credit = 1;
  m.ready.embedding_dim = 128;
  memcpy(m.ready.model_sha256, SHA, 65);
  m.ready.worker = too_long;
  expect_encode_invalid(&m, "worker name");
  m.ready.worker = fr_str_c("w");
  m.ready.credit = 0;
  expect_encode_invalid(&m, "credit");
  m.ready.credit = FR_PROTO_MAX_CREDIT + 1;
  expect_encode_invalid(&m, "credit");
  m.ready.credit = 2;
  m.ready.embedding_dim = FR_PROTO_MAX_DIM + 1;
  expect_encode_invalid(&m, "embedding size");
  m.ready.embedding_dim = 128;
  m.ready.model_sha256[3] = 'A';
  expect_encode_invalid(&m, "SHA-256");
  m.ready.model_sha256[3] = '3';
  m.ready.model_sha256[63] = '\0';
  expect_encode_invalid(&m, "SHA-256");

  fr_shard_item it = {.index = 1, .key = too_long};
  m = (fr_msg){.type = FR_MSG_SHARD};
  m.shard.count = 1;
  m.shard.items = &it;
  expect_encode_invalid(&m, "item 0 key");
  it.key = fr_str_c("k");
  it.image = (const uint8_t *)big; /* never read: the size is refused first */
  it.image_size = (size_t)FR_PROTO_MAX_IMAGE + 1;
  expect_encode_invalid(&m, "image");
  it.image = NULL;
  it.image_size = 3;
  expect_encode_invalid(&m, "NULL");
  m.shard.items = NULL;
  expect_encode_invalid(&m, "no item array");

  fr_result_item ri[2] = {{.status = 0}, {.status = 3}};
  float emb[2 * 4] = {0};
  m = (fr_msg){.type = FR_MSG_RESULT};
  m.result.count = 2;
  m.result.embedding_dim = 4;
  m.result.items = ri;
  m.result.embedding = emb;
  expect_encode_invalid(&m, "item 1 status 3");
  ri[1].status = 1;
  ri[1].width = 0x80000000u;
  expect_encode_invalid(&m, "INT32_MAX");
  ri[1].width = 1;
  ri[1].error = too_long;
  expect_encode_invalid(&m, "item 1 error text");
  ri[1].error = fr_str_c("");
  m.result.embedding_dim = 0;
  expect_encode_invalid(&m, "embedding size 0");
  m.result.embedding_dim = 4;
  m.result.count = FR_PROTO_MAX_ITEMS + 1;
  expect_encode_invalid(&m, "items");

  m = (fr_msg){.type = FR_MSG_FAILED};
  m.failed.reason = too_long;
  expect_encode_invalid(&m, "reason");
  m = (fr_msg){.type = FR_MSG_STOP};
  m.stop.reason = (fr_str){NULL, 5};
  expect_encode_invalid(&m, "NULL");
  m = (fr_msg){.type = (fr_msg_type)0};
  expect_encode_invalid(&m, "unknown message type");
  m.type = (fr_msg_type)7;
  expect_encode_invalid(&m, "unknown message type");
}

/* ============================ hostile peers ============================ */

/* One valid sample of every type, with nonempty variable parts. */
static fr_shard_item g_items[3];
static uint8_t g_images[16] = {0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static char g_keys[3 * 32];
static fr_result_item g_ritems[3];
static float g_emb[3 * 5];
static float g_attn[3 * 4];

static fr_frames sample(fr_msg_type t)
{
  fr_msg m = {.type = t};
  switch (t) {
  case FR_MSG_READY:
    m.ready.worker = fr_str_c("host:1");
    m.ready.device = fr_str_c("dev");
    m.ready.credit = 3;
    m.ready.embedding_dim = 5;
    memcpy(m.ready.model_sha256, SHA, 65);
    break;
  case FR_MSG_SHARD:
    make_shard(&m, 3, g_items, g_images, g_keys);
    g_items[1].image_size = 5; /* every frame nonempty */
    break;
  case FR_MSG_RESULT:
    fill_result(&m, 3, 5, g_ritems, g_emb);
    m.result.attn_dim = 4; /* the attention frame nonempty, so every lie about it shows */
    m.result.attn = g_attn;
    for (int i = 0; i < 12; i++)
      g_attn[i] = (float)i / 12.0f;
    break;
  case FR_MSG_HEARTBEAT:
    m.heartbeat.time_ms = 123;
    m.heartbeat.sequence = 4;
    break;
  case FR_MSG_FAILED:
    m.failed.shard_id = 9;
    m.failed.reason = fr_str_c("out of device memory");
    break;
  case FR_MSG_STOP:
    m.stop.code = FR_STOP_REFUSED;
    m.stop.reason = fr_str_c("wrong model");
    break;
  }
  return encode_ok(&m);
}

/* Frames whose size is free by design (a string or an image standing alone
 * in its frame): cutting or growing them yields another valid message. */
static int frame_is_free(fr_msg_type t, size_t i)
{
  switch (t) {
  case FR_MSG_READY: return i >= 3;
  case FR_MSG_SHARD: return i >= 5;
  case FR_MSG_FAILED:
  case FR_MSG_STOP: return i == 3;
  default: return 0;
  }
}

static void test_every_truncation_and_extension(void)
{
  for (int t = FR_MSG_READY; t <= FR_MSG_STOP; t++) {
    fr_frames fr = sample((fr_msg_type)t);
    for (size_t i = 0; i < fr.count; i++) {
      for (size_t len = 0; len <= fr.frame[i].size + 1; len++) {
        if (len == fr.frame[i].size)
          continue;
        fset s = fset_copy(fr.frame, fr.count);
        uint8_t grown[4096];
        CU_ASSERT_FATAL(len <= sizeof(grown));
        memset(grown, 0, sizeof(grown));
        memcpy(grown, fr.frame[i].data, len < fr.frame[i].size ? len : fr.frame[i].size);
        fset_set(&s, i, grown, len);
        if (frame_is_free((fr_msg_type)t, i)) {
          fr_msg d;
          fr_error err;
          CU_ASSERT_EQUAL(fr_msg_decode(s.f, s.n, 0, &d, &err), FR_OK);
          fr_msg_free(&d);
        } else {
          expect_bad(&s, i >= 2 ? fr_msg_type_name(t) : NULL);
        }
        fset_free(&s);
      }
    }
    fr_frames_free(&fr);
  }
}

static void test_missing_and_extra_frames(void)
{
  for (int t = FR_MSG_READY; t <= FR_MSG_STOP; t++) {
    fr_frames fr = sample((fr_msg_type)t);
    /* Every prefix. */
    for (size_t k = 0; k < fr.count; k++) {
      fset s = fset_copy(fr.frame, k);
      expect_bad(&s, k >= 2 ? fr_msg_type_name(t) : NULL);
      fset_free(&s);
    }
    /* Each frame dropped (past the type frame, so the type stays known). */
    for (size_t drop = 2; drop < fr.count; drop++) {
      fr_frame f[16];
      size_t n = 0;
      for (size_t i = 0; i < fr.count; i++)
        if (i != drop)
          f[n++] = fr.frame[i];
      fset s = fset_copy(f, n);
      expect_bad(&s, fr_msg_type_name(t));
      fset_free(&s);
    }
    /* One extra frame, empty or not. */
    for (int extra = 0; extra < 2; extra++) {
      fr_frame f[16];
      memcpy(f, fr.frame, fr.count * sizeof(fr_frame));
      f[fr.count].data = (const uint8_t *)"x";
      f[fr.count].size = (size_t)extra;
      fset s = fset_copy(f, fr.count + 1);
      expect_bad(&s, fr_msg_type_name(t));
      fset_free(&s);
    }
    fr_frames_free(&fr);
  }
}

static void test_wrong_version_and_type(void)
{
  for (int t = FR_MSG_READY; t <= FR_MSG_STOP; t++) {
    fr_frames fr = sample((fr_msg_type)t);
    uint16_t versions[] = {0, 1, FR_PROTO_VERSION - 1, FR_PROTO_VERSION + 1, 0xffff, 0x0100};
    for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
      fset s = fset_copy(fr.frame, fr.count);
      fset_mut(&s, 0)[6] = (uint8_t)versions[v];
      fset_mut(&s, 0)[7] = (uint8_t)(versions[v] >> 8);
      expect_bad(&s, "version");
      fset_free(&s);
    }
    fset s = fset_copy(fr.frame, fr.count);
    fset_mut(&s, 0)[0] = 'f'; /* magic is case-sensitive */
    expect_bad(&s, "version frame");
    fset_free(&s);
    uint8_t types[] = {0, 7, 0x80, 0xff};
    for (size_t k = 0; k < 4; k++) {
      s = fset_copy(fr.frame, fr.count);
      fset_mut(&s, 1)[0] = types[k];
      expect_bad(&s, "type");
      fset_free(&s);
    }
    /* A frame list whose type frame says something else than its shape. */
    for (int other = FR_MSG_READY; other <= FR_MSG_STOP; other++) {
      if (other == t)
        continue;
      s = fset_copy(fr.frame, fr.count);
      fset_mut(&s, 1)[0] = (uint8_t)other;
      fr_msg d;
      fr_error err;
      int rc = fr_msg_decode(s.f, s.n, 0, &d, &err);
      CU_ASSERT(rc == FR_ERR_FORMAT);
      if (rc == FR_OK)
        fr_msg_free(&d);
      fset_free(&s);
    }
    /* The caller expects another type. */
    fr_msg d;
    fr_error err;
    fr_msg_type other = t == FR_MSG_STOP ? FR_MSG_READY : (fr_msg_type)(t + 1);
    CU_ASSERT_EQUAL(fr_msg_decode(fr.frame, fr.count, other, &d, &err), FR_ERR_FORMAT);
    CU_ASSERT(strstr(err.message, fr_msg_type_name(other)) != NULL);
    CU_ASSERT(d.owned == NULL);
    /* A frame that claims bytes but has none is the caller's bug. */
    fr_frame f[16];
    memcpy(f, fr.frame, fr.count * sizeof(fr_frame));
    f[fr.count - 1].data = NULL;
    f[fr.count - 1].size = 1;
    CU_ASSERT_EQUAL(fr_msg_decode(f, fr.count, 0, &d, &err), FR_ERR_INVALID);
    fr_frames_free(&fr);
  }
  CU_ASSERT_EQUAL(fr_msg_decode(NULL, 0, 0, &(fr_msg){0}, NULL), FR_ERR_FORMAT);
  CU_ASSERT_EQUAL(fr_protocol_peek_type(NULL, 0, NULL, NULL), FR_ERR_FORMAT);
}

/* Overwrites a u32 at `off` of frame `i`; expects a clean error naming `mention`. */
static void lie_u32(fr_msg_type t, size_t i, size_t off, uint32_t v, const char *mention)
{
  fr_frames fr = sample(t);
  fset s = fset_copy(fr.frame, fr.count);
  put32(fset_mut(&s, i) + off, v);
  expect_bad(&s, mention);
  fset_free(&s);
  fr_frames_free(&fr);
}

static void test_counts_and_lengths_that_lie(void)
{
  /* SHARD header: count at 12. Items 3. */
  uint32_t counts[] = {0, 2, 4, FR_PROTO_MAX_ITEMS, FR_PROTO_MAX_ITEMS + 1, 0x7fffffff, UINT32_MAX};
  for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
    lie_u32(FR_MSG_SHARD, 2, 12, counts[k], "SHARD");
    lie_u32(FR_MSG_RESULT, 2, 12, counts[k], "RESULT");
  }
  /* SHARD key lengths: one too long, one over the limit, lengths that would wrap. */
  lie_u32(FR_MSG_SHARD, 3, 8, 1000, "key lengths add up");
  lie_u32(FR_MSG_SHARD, 3, 8, FR_PROTO_MAX_STRING + 1, "key is 4097 bytes");
  lie_u32(FR_MSG_SHARD, 3, 12 + 8, UINT32_MAX, "item 1 key");
  /* RESULT dim at 16. */
  uint32_t dims[] = {0, 4, 6, FR_PROTO_MAX_DIM + 1, 0x40000000, UINT32_MAX};
  for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++)
    lie_u32(FR_MSG_RESULT, 2, 16, dims[k], "RESULT");
  /* RESULT records: status, reserved, width/height, error lengths. */
  lie_u32(FR_MSG_RESULT, 3, 40 + 8, 3, "item 1 status 3");
  lie_u32(FR_MSG_RESULT, 3, 8, 0x10000, "reserved");
  lie_u32(FR_MSG_RESULT, 3, 8, 0x200, "aligned byte 0x02");  /* aligned is -1, 0 or 1 */
  lie_u32(FR_MSG_RESULT, 3, 8, 0x7f00, "aligned byte 0x7f");
  lie_u32(FR_MSG_RESULT, 3, 40 * 2 + 12, 0x80000000u, "INT32_MAX");
  lie_u32(FR_MSG_RESULT, 3, 16, UINT32_MAX, "INT32_MAX");
  lie_u32(FR_MSG_RESULT, 3, 32, 1, "error text lengths add up");
  lie_u32(FR_MSG_RESULT, 3, 40 + 32, UINT32_MAX, "item 1 error text");
  lie_u32(FR_MSG_RESULT, 3, 40 * 2 + 32, FR_PROTO_MAX_STRING + 1, "limit");
  /* READY: credit, dim, SHA-256. */
  lie_u32(FR_MSG_READY, 2, 0, 0, "credit");
  lie_u32(FR_MSG_READY, 2, 0, FR_PROTO_MAX_CREDIT + 1, "credit");
  lie_u32(FR_MSG_READY, 2, 4, 0, "embedding size");
  lie_u32(FR_MSG_READY, 2, 4, UINT32_MAX, "embedding size");
  lie_u32(FR_MSG_READY, 2, 8, 0x41414141, "SHA-256"); /* "AAAA": uppercase is refused */
  lie_u32(FR_MSG_READY, 2, 68, 0x00333231, "SHA-256"); /* a NUL inside */
  /* READY --align settings: align at 72, 3 reserved bytes, min score at 76, face sizes at 80, 84. */
  lie_u32(FR_MSG_READY, 2, 72, 2, "align 2");
  lie_u32(FR_MSG_READY, 2, 72, 0x100, "reserved");
  lie_u32(FR_MSG_READY, 2, 76, 0x7fc00000u, "min score"); /* NaN */
  lie_u32(FR_MSG_READY, 2, 76, 0x3fc00000u, "min score"); /* 1.5 */
  lie_u32(FR_MSG_READY, 2, 80, FR_PROTO_MAX_FACE + 1, "face size");
  lie_u32(FR_MSG_READY, 2, 84, UINT32_MAX, "face size");
  /* READY attention size at 88, test embedding kind at 92. */
  lie_u32(FR_MSG_READY, 2, 88, FR_PROTO_MAX_DIM + 1, "attention size");
  lie_u32(FR_MSG_READY, 2, 88, UINT32_MAX, "attention size");
  lie_u32(FR_MSG_READY, 2, 92, 3, "test embedding");
  /* RESULT attention size at 20 (the sample has 3 x 4): absent, wrong, over the limit, wrapping. */
  uint32_t adims[] = {0, 3, 5, FR_PROTO_MAX_DIM + 1, 0x40000000, UINT32_MAX};
  for (size_t k = 0; k < sizeof(adims) / sizeof(adims[0]); k++)
    lie_u32(FR_MSG_RESULT, 2, 20, adims[k], "attention");

  /* A SHARD whose count matches the frames but whose image is over the limit:
   * the limit is checked on the frame size, not by reading it. */
  fr_frames fr = sample(FR_MSG_SHARD);
  fr_frame f[8];
  memcpy(f, fr.frame, fr.count * sizeof(fr_frame));
  f[6].size = (size_t)FR_PROTO_MAX_IMAGE + 1; /* a view only; never read */
  fr_msg d;
  fr_error err;
  CU_ASSERT_EQUAL(fr_msg_decode(f, fr.count, 0, &d, &err), FR_ERR_FORMAT);
  CU_ASSERT(strstr(err.message, "item 1 image") != NULL);
  fr_frames_free(&fr);

  /* A 65537-item SHARD header must be refused before the frame count is looked at. */
  fr = sample(FR_MSG_SHARD);
  fset s = fset_copy(fr.frame, fr.count);
  put32(fset_mut(&s, 2) + 12, FR_PROTO_MAX_ITEMS + 1);
  fr_msg_decode(s.f, s.n, 0, &d, &err);
  CU_ASSERT(strstr(err.message, "limit") != NULL);
  fset_free(&s);
  fr_frames_free(&fr);
}

static void test_peek_names_and_escape(void)
{
  for (int t = FR_MSG_READY; t <= FR_MSG_STOP; t++) {
    fr_frames fr = sample((fr_msg_type)t);
    fr_msg_type got;
    CU_ASSERT_EQUAL(fr_protocol_peek_type(fr.frame, 2, &got, NULL), FR_OK); /* only 2 frames needed */
    CU_ASSERT_EQUAL((int)got, t);
    fr_frames_free(&fr);
  }
  CU_ASSERT_STRING_EQUAL(fr_msg_type_name(FR_MSG_HEARTBEAT), "HEARTBEAT");
  CU_ASSERT_STRING_EQUAL(fr_msg_type_name(0), "unknown");
  char out[32];
  fr_str s = {"a\x1b[2J\\\xff", 7};
  CU_ASSERT_STRING_EQUAL(fr_str_escape(s, out, sizeof(out)), "a\\x1b[2J\\x5c\\xff");
  CU_ASSERT_STRING_EQUAL(fr_str_escape(s, out, 5), "a"); /* cut before an escape, never inside */
  CU_ASSERT_STRING_EQUAL(fr_str_escape(s, out, 6), "a\\x1b");
  CU_ASSERT_STRING_EQUAL(fr_str_escape((fr_str){NULL, 0}, out, sizeof(out)), "");
}

int main(void)
{
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite("protocol", NULL, NULL);
  CU_add_test(s, "READY round trip", test_ready_roundtrip);
  CU_add_test(s, "SHARD round trip (0, 1, 2, 1000 items, hostile keys)", test_shard_roundtrip);
  CU_add_test(s, "SHARD with the maximum item count", test_shard_max_items);
  CU_add_test(s, "RESULT round trip (NaN, -0, inf, max dim)", test_result_roundtrip);
  CU_add_test(s, "HEARTBEAT, FAILED, STOP round trip", test_small_messages_roundtrip);
  CU_add_test(s, "encoder refuses what the decoder would", test_encoder_limits);
  CU_add_test(s, "every truncation and extension of every frame", test_every_truncation_and_extension);
  CU_add_test(s, "missing and extra frames", test_missing_and_extra_frames);
  CU_add_test(s, "wrong version and type", test_wrong_version_and_type);
  CU_add_test(s, "counts and lengths that lie", test_counts_and_lengths_that_lie);
  CU_add_test(s, "peek, names, escape", test_peek_names_and_escape);
  return test_run_all();
}
