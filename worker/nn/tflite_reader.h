#ifndef FACERI_TFLITE_READER_H
#define FACERI_TFLITE_READER_H
/* Internal: a bounds-checked reader of the FlatBuffers wire format, just what
 * the TFLite importer needs. Every accessor checks the bytes it touches against
 * the buffer size before reading them, so a hostile file can only make an
 * accessor return false, never read outside the buffer. Reads go through
 * memcpy because FlatBuffers offsets in a damaged file need not be aligned. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fb_buf {
  const uint8_t *data;
  size_t size;
} fb_buf;

typedef struct fb_table {
  const fb_buf *buf;
  size_t pos;       /* start of the table (where its soffset to the vtable sits) */
  size_t vtable;    /* start of its vtable */
  uint16_t vt_size; /* bytes in the vtable, including its 4-byte header */
  uint16_t size;    /* bytes of the table's inline part */
} fb_table;

typedef struct fb_vector {
  const fb_buf *buf;
  size_t pos;   /* first element */
  uint32_t len; /* number of elements */
  size_t elem;  /* bytes per element */
} fb_vector;

/* The root table; false if the buffer is too small or the offset is bad. */
bool fb_root(const fb_buf *buf, fb_table *out);

/* Scalars: absent fields read as def. False only when the field lies outside the buffer. */
bool fb_u8(const fb_table *t, int field, uint8_t def, uint8_t *out);
bool fb_i32(const fb_table *t, int field, int32_t def, int32_t *out);
bool fb_u32(const fb_table *t, int field, uint32_t def, uint32_t *out);
bool fb_u64(const fb_table *t, int field, uint64_t def, uint64_t *out);

/* Offsets: *present is false (and true returned) when the field is absent. */
bool fb_table_field(const fb_table *t, int field, fb_table *out, bool *present);
bool fb_vector_field(const fb_table *t, int field, size_t elem_size, fb_vector *out, bool *present);
/* A string (not necessarily NUL-terminated inside the buffer): pointer and length. */
bool fb_string_field(const fb_table *t, int field, const char **s, uint32_t *len, bool *present);

/* Elements of vectors; i must be < v->len (checked). */
bool fb_vector_table(const fb_vector *v, uint32_t i, fb_table *out);
bool fb_vector_i32(const fb_vector *v, uint32_t i, int32_t *out);

#endif
