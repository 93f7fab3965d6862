/* libFuzzer target for the wire protocol. The input is cut into frames by a
 * length prefix: [u16 LE length][bytes]... (a short last frame takes what is
 * left). Each frame is copied into its own exact-size allocation so ASan sees
 * any over-read. The frames are decoded as they are, then once per message
 * type behind a valid version frame and that type's frame, so the fuzzer
 * spends its time in the per-type decoders rather than on the magic.
 *
 * Property checked beyond "no crash": the encoding is canonical, so every
 * message the decoder accepts must re-encode to exactly the same bytes, and
 * a refused one must leave nothing allocated and say why.
 * Build with clang and -DFACERI_FUZZ=ON; run e.g.
 *   ./fuzz_protocol -max_total_time=60 -rss_limit_mb=2048 corpus/ */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_FRAMES = 4096 };

static void check_decode(const fr_frame *f, size_t n)
{
  fr_msg m;
  fr_error err;
  err.message[0] = '\0';
  int rc = fr_msg_decode(f, n, 0, &m, &err);
  if (rc != FR_OK) {
    if (m.owned || err.message[0] == '\0' || rc != FR_ERR_FORMAT)
      abort();
    return;
  }
  fr_frames again;
  if (fr_msg_encode(&m, &again, &err) != FR_OK)
    abort(); /* the encoder must take whatever the decoder let through */
  if (again.count != n)
    abort();
  for (size_t i = 0; i < n; i++)
    if (again.frame[i].size != f[i].size ||
        (f[i].size && memcmp(again.frame[i].data, f[i].data, f[i].size) != 0))
      abort();
  fr_frames_free(&again);
  fr_msg_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static fr_frame frames[MAX_FRAMES + 2];
  static uint8_t *owned[MAX_FRAMES + 2];
  size_t n = 2; /* slots 0 and 1: the forced version and type frames */
  size_t at = 0;
  while (at < size && n < MAX_FRAMES + 2) {
    size_t len = data[at];
    if (at + 1 < size)
      len |= (size_t)data[at + 1] << 8;
    at += 2;
    if (at > size)
      at = size;
    if (len > size - at)
      len = size - at;
    owned[n] = malloc(len ? len : 1);
    if (!owned[n])
      abort();
    if (len)
      memcpy(owned[n], data + at, len);
    frames[n].data = owned[n];
    frames[n].size = len;
    n++;
    at += len;
  }
  check_decode(frames + 2, n - 2);

  uint8_t *version = malloc(8), *type = malloc(1);
  if (!version || !type)
    abort();
  memcpy(version, FR_PROTO_MAGIC, 6);
  version[6] = (uint8_t)FR_PROTO_VERSION;
  version[7] = (uint8_t)(FR_PROTO_VERSION >> 8);
  frames[0] = (fr_frame){version, 8};
  frames[1] = (fr_frame){type, 1};
  for (int t = FR_MSG_READY; t <= FR_MSG_STOP; t++) {
    type[0] = (uint8_t)t;
    check_decode(frames, n);
  }
  free(version);
  free(type);
  for (size_t i = 2; i < n; i++)
    free(owned[i]);
  return 0;
}
