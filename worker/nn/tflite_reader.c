#include "tflite_reader.h"

#include <string.h>

/* True when [pos, pos + n) lies inside the buffer; written so it cannot overflow. */
static bool in_bounds(const fb_buf *b, size_t pos, size_t n)
{
  return pos <= b->size && n <= b->size - pos;
}

static bool read_u16(const fb_buf *b, size_t pos, uint16_t *out)
{
  if (!in_bounds(b, pos, 2))
    return false;
  *out = (uint16_t)(b->data[pos] | (b->data[pos + 1] << 8));
  return true;
}

static bool read_u32(const fb_buf *b, size_t pos, uint32_t *out)
{
  if (!in_bounds(b, pos, 4))
    return false;
  const uint8_t *p = b->data + pos;
  *out = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
  return true;
}

static bool read_u64(const fb_buf *b, size_t pos, uint64_t *out)
{
  uint32_t lo, hi;
  if (!read_u32(b, pos, &lo) || !read_u32(b, pos + 4, &hi))
    return false;
  *out = (uint64_t)lo | ((uint64_t)hi << 32);
  return true;
}

static bool table_at(const fb_buf *b, size_t pos, fb_table *out)
{
  uint32_t soff_bits;
  if (!read_u32(b, pos, &soff_bits))
    return false;
  /* vtable = pos - soffset, with soffset signed: the vtable may sit either side. */
  int64_t vt = (int64_t)pos - (int64_t)(int32_t)soff_bits;
  if (vt < 0 || (uint64_t)vt > b->size)
    return false;
  uint16_t vt_size, size;
  if (!read_u16(b, (size_t)vt, &vt_size) || !read_u16(b, (size_t)vt + 2, &size))
    return false;
  if (vt_size < 4 || (vt_size & 1) || !in_bounds(b, (size_t)vt, vt_size))
    return false;
  if (size < 4 || !in_bounds(b, pos, size))
    return false;
  out->buf = b;
  out->pos = pos;
  out->vtable = (size_t)vt;
  out->vt_size = vt_size;
  out->size = size;
  return true;
}

bool fb_root(const fb_buf *buf, fb_table *out)
{
  uint32_t root;
  if (!read_u32(buf, 0, &root))
    return false;
  return table_at(buf, root, out);
}

/* Position of a field of n bytes, or 0 when the field is absent. False when
 * the vtable claims a field that does not fit in the table. */
static bool field_pos(const fb_table *t, int field, size_t n, size_t *pos)
{
  *pos = 0;
  size_t slot = 4 + 2 * (size_t)field;
  if (field < 0 || slot + 2 > t->vt_size)
    return true; /* older writer: field not in the vtable, i.e. absent */
  uint16_t off;
  if (!read_u16(t->buf, t->vtable + slot, &off))
    return false;
  if (off == 0)
    return true;
  if ((size_t)off + n > t->size)
    return false;
  *pos = t->pos + off;
  return true;
}

bool fb_u8(const fb_table *t, int field, uint8_t def, uint8_t *out)
{
  size_t pos;
  if (!field_pos(t, field, 1, &pos))
    return false;
  *out = pos ? t->buf->data[pos] : def;
  return true;
}

bool fb_u32(const fb_table *t, int field, uint32_t def, uint32_t *out)
{
  size_t pos;
  if (!field_pos(t, field, 4, &pos))
    return false;
  if (!pos) {
    *out = def;
    return true;
  }
  return read_u32(t->buf, pos, out);
}

bool fb_i32(const fb_table *t, int field, int32_t def, int32_t *out)
{
  uint32_t u;
  if (!fb_u32(t, field, (uint32_t)def, &u))
    return false;
  memcpy(out, &u, sizeof(*out));
  return true;
}

bool fb_u64(const fb_table *t, int field, uint64_t def, uint64_t *out)
{
  size_t pos;
  if (!field_pos(t, field, 8, &pos))
    return false;
  if (!pos) {
    *out = def;
    return true;
  }
  return read_u64(t->buf, pos, out);
}

/* Follows the uoffset stored at pos (relative to pos itself). */
static bool deref(const fb_buf *b, size_t pos, size_t *target)
{
  uint32_t off;
  if (!read_u32(b, pos, &off))
    return false;
  if (off == 0 || !in_bounds(b, pos, off))
    return false;
  *target = pos + off;
  return true;
}

bool fb_table_field(const fb_table *t, int field, fb_table *out, bool *present)
{
  size_t pos, target;
  *present = false;
  if (!field_pos(t, field, 4, &pos))
    return false;
  if (!pos)
    return true;
  if (!deref(t->buf, pos, &target) || !table_at(t->buf, target, out))
    return false;
  *present = true;
  return true;
}

static bool vector_at(const fb_buf *b, size_t pos, size_t elem, fb_vector *out)
{
  uint32_t len;
  if (!read_u32(b, pos, &len))
    return false;
  /* len * elem cannot overflow 64 bits; compare against what is left. */
  if ((uint64_t)len * elem > (uint64_t)(b->size - pos - 4))
    return false;
  out->buf = b;
  out->pos = pos + 4;
  out->len = len;
  out->elem = elem;
  return true;
}

bool fb_vector_field(const fb_table *t, int field, size_t elem_size, fb_vector *out, bool *present)
{
  size_t pos, target;
  *present = false;
  if (!field_pos(t, field, 4, &pos))
    return false;
  if (!pos)
    return true;
  if (!deref(t->buf, pos, &target) || !vector_at(t->buf, target, elem_size, out))
    return false;
  *present = true;
  return true;
}

bool fb_string_field(const fb_table *t, int field, const char **s, uint32_t *len, bool *present)
{
  fb_vector v;
  if (!fb_vector_field(t, field, 1, &v, present))
    return false;
  if (*present) {
    *s = (const char *)(t->buf->data + v.pos);
    *len = v.len;
  }
  return true;
}

bool fb_vector_table(const fb_vector *v, uint32_t i, fb_table *out)
{
  size_t target;
  if (i >= v->len || v->elem != 4)
    return false;
  size_t pos = v->pos + (size_t)i * 4;
  return deref(v->buf, pos, &target) && table_at(v->buf, target, out);
}

bool fb_vector_i32(const fb_vector *v, uint32_t i, int32_t *out)
{
  uint32_t u;
  if (i >= v->len || v->elem != 4 || !read_u32(v->buf, v->pos + (size_t)i * 4, &u))
    return false;
  memcpy(out, &u, sizeof(*out));
  return true;
}
