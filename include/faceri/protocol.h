#ifndef FACERI_PROTOCOL_H
#define FACERI_PROTOCOL_H
/* The coordinator <-> worker wire protocol: messages to and from lists of
 * frames (byte buffers). No sockets here: the socket layer sends a list of
 * frames as one ZeroMQ multipart message and hands received parts back as
 * frames. The ROUTER identity frame belongs to the socket layer, not to a
 * message. docs/PROTOCOL.md describes every frame byte by byte.
 *
 * A message is [version][type][header][payload...]. Decoding trusts nothing:
 * every count, length and limit is checked against the frames actually
 * present, with checked size arithmetic, before anything is allocated or read.
 * A bad message gives FR_ERR_FORMAT and a message naming the message type and
 * the problem; decoding never crashes, over-reads or allocates more than a
 * constant times the bytes received. */
#include <stddef.h>
#include <stdint.h>

#include "faceri/error.h"
#include "faceri/item_status.h"

#define FR_PROTO_MAGIC "FACERI" /* 6 bytes, then u16 version: the version frame */
#define FR_PROTO_VERSION 3 /* 2: READY carries the --align settings, RESULT items aligned + align_score;
                            * 3: READY and RESULT carry the attention embedding (docs/PROTOCOL.md) */

/* Limits enforced by both the encoder (a sender's bug fails locally, with a
 * reason, instead of being dropped by the peer) and the decoder. */
#define FR_PROTO_MAX_ITEMS 65536u              /* items per SHARD / RESULT */
#define FR_PROTO_MAX_STRING 4096u              /* bytes in any string (key, name, error) */
#define FR_PROTO_MAX_IMAGE (64u * 1024 * 1024) /* bytes in one item's image */
#define FR_PROTO_MAX_DIM 4096u                 /* embedding size */
#define FR_PROTO_MAX_CREDIT 1024u              /* shards a worker may hold at once */
#define FR_PROTO_MAX_FACE 65536u               /* READY face size bounds, pixels */

typedef enum fr_msg_type {
  FR_MSG_READY = 1,     /* worker -> coordinator: who I am, how many shards I take */
  FR_MSG_SHARD = 2,     /* coordinator -> worker: items to process */
  FR_MSG_RESULT = 3,    /* worker -> coordinator: per-item results of one shard */
  FR_MSG_HEARTBEAT = 4, /* both ways */
  FR_MSG_FAILED = 5,    /* worker -> coordinator: a whole shard could not be processed */
  FR_MSG_STOP = 6       /* coordinator -> worker: go away */
} fr_msg_type;

/* One frame: a view of bytes owned by someone else. */
typedef struct fr_frame {
  const uint8_t *data;
  size_t size;
} fr_frame;

/* A list of frames made by the encoder. Every frame except SHARD image
 * frames points into `owned`; image frames point at the caller's image bytes
 * (borrowed, not copied, so the socket layer can send them without a copy:
 * keep them alive until the message is sent). */
typedef struct fr_frames {
  fr_frame *frame;
  size_t count;
  void *owned; /* one block: the frame array and every encoded byte */
} fr_frames;
void fr_frames_free(fr_frames *frames);

/* Bytes with a length. Any bytes are allowed (keys may be non-UTF-8 or
 * contain "../": they are data). In a decoded message `s` is always
 * NUL-terminated (s[len] == '\0') for convenience, but len is the truth: a
 * key may hold a NUL byte. */
typedef struct fr_str {
  const char *s;
  size_t len;
} fr_str;
fr_str fr_str_c(const char *s); /* from a C string; NULL gives the empty string */

typedef struct fr_msg_ready {
  fr_str worker; /* e.g. host:pid */
  fr_str device; /* Vulkan device name */
  uint32_t credit;        /* 1..FR_PROTO_MAX_CREDIT shards held at once */
  uint32_t embedding_dim; /* 1..FR_PROTO_MAX_DIM */
  char model_sha256[65];  /* 64 lowercase hex digits + NUL: the coordinator refuses other models */
  /* The worker's --align settings; the coordinator refuses a worker whose settings
   * differ from the run's (the results file records one preprocessing). */
  uint8_t align;            /* 0 or 1 */
  float align_min_score;    /* 0..1 */
  uint32_t align_min_face;  /* --face-size MIN:MAX, 0..FR_PROTO_MAX_FACE */
  uint32_t align_max_face;
  uint32_t attn_dim;       /* 0..FR_PROTO_MAX_DIM: v_attn floats per item in RESULTs (0: none sent) */
  uint32_t test_embedding; /* 0..2: fr_test_embedding, what the RESULT embedding holds */
} fr_msg_ready;

typedef struct fr_shard_item {
  uint64_t index; /* global item index in the run */
  fr_str key;
  const uint8_t *image; /* encoded image file; decoded: points into the item's frame */
  size_t image_size;    /* 0..FR_PROTO_MAX_IMAGE */
} fr_shard_item;

typedef struct fr_msg_shard {
  uint64_t shard_id;
  uint32_t attempt;
  uint32_t count; /* 0..FR_PROTO_MAX_ITEMS */
  fr_shard_item *items;
} fr_msg_shard;


typedef struct fr_result_item {
  uint64_t index;
  uint8_t status;   /* fr_item_status */
  uint32_t width;   /* decoded size before crop/resize; 0 when unknown. <= INT32_MAX */
  uint32_t height;
  float norm;       /* embedding norm before L2 normalisation; NaN when not computed */
  float ers;        /* distance to the UI centre; NaN when not computed */
  float ri;         /* learned recognizability index; NaN when not computed */
  int8_t aligned;   /* 1 aligned, 0 fallback resize, -1 not attempted (failed item, or no --align) */
  float align_score; /* ONet's face probability of the face used; NaN when not attempted */
  fr_str error;     /* why failed or skipped; empty when ok */
} fr_result_item;

typedef struct fr_msg_result {
  uint64_t shard_id;
  uint32_t attempt;
  uint32_t count;         /* 0..FR_PROTO_MAX_ITEMS */
  uint32_t embedding_dim; /* 1..FR_PROTO_MAX_DIM */
  fr_result_item *items;
  float *embedding; /* count x embedding_dim, row-major; NaN rows where not computed */
  uint32_t attn_dim; /* 0 (absent) ..FR_PROTO_MAX_DIM */
  float *attn;       /* count x attn_dim, L2-normalised v_attn rows; NaN rows where not computed */
} fr_msg_result;

typedef struct fr_msg_heartbeat {
  uint64_t time_ms;  /* sender's monotonic clock: only differences mean anything */
  uint64_t sequence; /* per sender, +1 per heartbeat */
} fr_msg_heartbeat;

typedef struct fr_msg_failed {
  uint64_t shard_id;
  uint32_t attempt;
  fr_str reason;
} fr_msg_failed;

typedef enum fr_stop_code {
  FR_STOP_DONE = 0,     /* the run is over: exit 0 */
  FR_STOP_REFUSED = 1,  /* this worker cannot take part (wrong model, version, size) */
  FR_STOP_SHUTDOWN = 2  /* the coordinator is going away (signal, fatal error) */
} fr_stop_code;

typedef struct fr_msg_stop {
  uint32_t code; /* fr_stop_code; other values are kept as-is (treat as SHUTDOWN) */
  fr_str reason;
} fr_msg_stop;

/* Any message. C11 anonymous union: m.shard.count, m.result.items[i]... */
typedef struct fr_msg {
  fr_msg_type type;
  union {
    fr_msg_ready ready;
    fr_msg_shard shard;
    fr_msg_result result;
    fr_msg_heartbeat heartbeat;
    fr_msg_failed failed;
    fr_msg_stop stop;
  };
  void *owned; /* set by the decoder: one block with items, strings, embeddings */
} fr_msg;

/* Encodes *msg into a new frame list. Checks the same limits the decoder
 * does and returns FR_ERR_INVALID naming the field when one is broken
 * (FR_ERR_NOMEM when allocation fails). On error *out is empty. */
int fr_msg_encode(const fr_msg *msg, fr_frames *out, fr_error *err);

/* Decodes frames into *out. `expect` is the type the caller accepts, or 0
 * for any. Lifetime: everything in *out lives in out->owned (free it with
 * fr_msg_free) EXCEPT shard item image bytes, which point into their frames:
 * keep the frames alive while using them. On error *out is zeroed and owns
 * nothing; FR_ERR_FORMAT for a malformed message (and for a type other than
 * `expect`), FR_ERR_INVALID for a NULL frame with a nonzero size, FR_ERR_NOMEM. */
int fr_msg_decode(const fr_frame *frames, size_t n, fr_msg_type expect, fr_msg *out, fr_error *err);
void fr_msg_free(fr_msg *msg);

/* Checks only the version and type frames and gives the type, so a peer can
 * route or reject a message before decoding the rest. */
int fr_protocol_peek_type(const fr_frame *frames, size_t n, fr_msg_type *type, fr_error *err);

/* "READY", "SHARD", ...; "unknown" for anything else. */
const char *fr_msg_type_name(int type);

/* Convenience for logs: writes `s` into out (NUL-terminated, cut to fit)
 * with bytes outside printable ASCII as \xHH, so a hostile worker name or
 * key cannot put control sequences on a terminal. Returns out. */
char *fr_str_escape(fr_str s, char *out, size_t out_size);

#endif
