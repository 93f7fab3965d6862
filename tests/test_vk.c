/* The Vulkan context on whatever device is present (lavapipe in CI), with validation. */
#include <stdlib.h>
#include <string.h>

#include "faceri/vk_context.h"
#include "test_util.h"

static fr_vk_context *ctx;

static void test_list_devices(void)
{
  fr_vk_device_info *infos = NULL;
  int n = 0;
  fr_error err = {0};
  CU_ASSERT_EQUAL_FATAL(fr_vk_list_devices(&infos, &n, &err), FR_OK);
  CU_ASSERT(n >= 1);
  for (int i = 0; i < n; i++) {
    CU_ASSERT(infos[i].name[0] != '\0');
    CU_ASSERT(infos[i].max_storage_buffer_range > 0);
  }
  free(infos);
}

static void test_bad_selector(void)
{
  fr_vk_options o = {.device = "no-such-device-xyz", .validation = 0};
  fr_vk_context *c = NULL;
  fr_error err = {0};
  CU_ASSERT_EQUAL(fr_vk_context_create(&o, &c, &err), FR_ERR_NOT_FOUND);
  CU_ASSERT_PTR_NULL(c);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "no-such-device-xyz"));
  o.device = "99";
  CU_ASSERT_EQUAL(fr_vk_context_create(&o, &c, &err), FR_ERR_NOT_FOUND);
}

static void test_buffer_roundtrip_and_range(void)
{
  fr_error err = {0};
  fr_vk_buffer buf;
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, 4096, &buf, &err), FR_OK);
  uint8_t in[1000], out[1000];
  for (int i = 0; i < 1000; i++)
    in[i] = (uint8_t)(i * 7);
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &buf, 96, in, sizeof(in), &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &buf, 96, out, sizeof(out), &err), FR_OK);
  CU_ASSERT_EQUAL(memcmp(in, out, sizeof(in)), 0);
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &buf, 4000, in, sizeof(in), &err), FR_ERR_INVALID);
  CU_ASSERT(fr_vk_memory_in_use(ctx) >= 4096);
  fr_vk_buffer_destroy(ctx, &buf);
}

static void test_dispatch_storage_and_texel(void)
{
  fr_error err = {0};
  const uint32_t n = 1003; /* odd: exercises the bounds check in the shader */
  fr_vk_buffer a, b, out;
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, n * 4, &a, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, ((n + 3) / 4) * 16, &b, &err), FR_OK);
  CU_ASSERT_EQUAL_FATAL(fr_vk_buffer_create(ctx, n * 4, &out, &err), FR_OK);
  float *ha = malloc(n * 4), *hb = calloc((n + 3) / 4 * 4, 4), *ho = malloc(n * 4);
  for (uint32_t i = 0; i < n; i++) {
    ha[i] = (float)i * 0.5f;
    hb[i] = (float)(n - i);
  }
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &a, 0, ha, n * 4, &err), FR_OK);
  CU_ASSERT_EQUAL(fr_vk_buffer_upload(ctx, &b, 0, hb, (n + 3) / 4 * 16, &err), FR_OK);
  fr_vk_binding_kind kinds[3] = {FR_BIND_STORAGE, FR_BIND_TEXEL, FR_BIND_STORAGE};
  uint32_t spec[1] = {64};
  fr_vk_kernel *k = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_kernel_create(ctx, "fill_test", 3, kinds, 8, spec, 1, &k, &err), FR_OK);
  fr_vk_sequence *seq = NULL;
  CU_ASSERT_EQUAL_FATAL(fr_vk_sequence_create(ctx, 4, &seq, &err), FR_OK);
  struct {
    uint32_t n;
    float scale;
  } push = {n, 3.0f};
  fr_vk_arg args[3] = {{&a, 0, 0}, {&b, 0, 0}, {&out, 0, 0}};
  /* Record twice: the second recording reuses the descriptor pools. */
  for (int rec = 0; rec < 2; rec++) {
    CU_ASSERT_EQUAL(fr_vk_sequence_begin(seq, &err), FR_OK);
    for (int d = 0; d < 200; d++) /* more sets than one pool holds */
      CU_ASSERT_EQUAL(fr_vk_sequence_dispatch(seq, k, args, &push, fr_div_up(n, 64), 1, 1, d == 0 ? "fill" : NULL, &err),
                      FR_OK);
    CU_ASSERT_EQUAL(fr_vk_sequence_end(seq, &err), FR_OK);
    CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK);
  }
  CU_ASSERT_EQUAL(fr_vk_sequence_run(seq, &err), FR_OK); /* resubmit without re-recording */
  CU_ASSERT_EQUAL(fr_vk_buffer_download(ctx, &out, 0, ho, n * 4, &err), FR_OK);
  int bad = 0;
  for (uint32_t i = 0; i < n; i++)
    bad += ho[i] != ha[i] * 3.0f + hb[i];
  CU_ASSERT_EQUAL(bad, 0);
  if (fr_vk_context_device(ctx)->has_timestamps) {
    const char *label;
    double ms;
    CU_ASSERT_EQUAL(fr_vk_sequence_timed_count(seq), 1);
    CU_ASSERT_EQUAL(fr_vk_sequence_timing(seq, 0, &label, &ms), FR_OK);
    CU_ASSERT_STRING_EQUAL(label, "fill");
    CU_ASSERT(ms >= 0.0);
  }
  fr_vk_sequence_destroy(seq);
  fr_vk_kernel_destroy(ctx, k);
  fr_vk_buffer_destroy(ctx, &a);
  fr_vk_buffer_destroy(ctx, &b);
  fr_vk_buffer_destroy(ctx, &out);
  free(ha);
  free(hb);
  free(ho);
}

static void test_out_of_memory_is_an_error(void)
{
  fr_error err = {0};
  fr_vk_buffer buf;
  int rc = fr_vk_buffer_create(ctx, 1ull << 42, &buf, &err); /* 4 TiB */
  CU_ASSERT(rc == FR_ERR_NOMEM || rc == FR_ERR_VULKAN || rc == FR_ERR_UNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "MiB"));
  CU_ASSERT_PTR_NULL(buf.buffer);
}

static void test_unknown_shader(void)
{
  fr_error err = {0};
  fr_vk_kernel *k = NULL;
  CU_ASSERT_EQUAL(fr_vk_kernel_create(ctx, "nope", 0, NULL, 0, NULL, 0, &k, &err), FR_ERR_NOT_FOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "nope"));
}

static void test_no_validation_messages(void)
{
  CU_ASSERT_EQUAL(fr_vk_validation_messages(ctx), 0);
}

int main(void)
{
  fr_error err = {0};
  if (fr_vk_context_create(NULL, &ctx, &err) != FR_OK) {
    fprintf(stderr, "cannot create a Vulkan context: %s\n", err.message);
    return 1;
  }
  printf("device: %s, validation %s\n", fr_vk_context_device(ctx)->name, fr_vk_validation_enabled(ctx) ? "on" : "off");
  CU_initialize_registry();
  CU_pSuite s = CU_add_suite("vk_context", NULL, NULL);
  CU_add_test(s, "list devices", test_list_devices);
  CU_add_test(s, "bad device selector", test_bad_selector);
  CU_add_test(s, "buffer round trip and range check", test_buffer_roundtrip_and_range);
  CU_add_test(s, "dispatch with storage and texel bindings", test_dispatch_storage_and_texel);
  CU_add_test(s, "unknown shader", test_unknown_shader);
  CU_add_test(s, "out of device memory is an error", test_out_of_memory_is_an_error);
  CU_add_test(s, "no validation messages", test_no_validation_messages);
  int rc = test_run_all();
  fr_vk_context_destroy(ctx);
  return rc;
}
