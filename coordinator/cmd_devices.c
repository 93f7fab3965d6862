/* faceri devices: what Vulkan devices there are, and which one faceri would pick. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "faceri/commands.h"
#include "faceri/vk_context.h"

static const char usage[] = "usage: faceri devices [--json]\n"
                            "Lists every Vulkan device with its type, memory and compute limits.\n"
                            "faceri picks discrete > integrated > virtual > CPU unless --device or\n"
                            "FACERI_DEVICE names one (an index or a name substring).\n";

int fr_cmd_devices(int argc, char **argv)
{
  int json = 0;
  static const struct option longopts[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (c == 'j')
      json = 1;
    else if (c == 'h') {
      fputs(usage, stdout);
      return FR_EXIT_OK;
    } else {
      fputs(usage, stderr);
      return FR_EXIT_USAGE;
    }
  }
  fr_vk_device_info *infos;
  int n;
  fr_error err = {0};
  if (fr_vk_list_devices(&infos, &n, &err)) {
    fprintf(stderr, "faceri devices: %s\n", err.message);
    return FR_EXIT_ERROR;
  }
  if (json)
    printf("[");
  for (int i = 0; i < n; i++) {
    const fr_vk_device_info *d = &infos[i];
    if (json) {
      printf("%s{\"index\":%d,\"name\":\"%s\",\"type\":\"%s\",\"vendor_id\":%u,\"device_id\":%u,"
             "\"driver\":\"%s\",\"driver_info\":\"%s\",\"api\":\"%u.%u.%u\",\"device_local_bytes\":%llu,"
             "\"max_storage_buffer_range\":%llu,\"max_texel_buffer_elements\":%llu,\"subgroup_size\":%u,"
             "\"max_shared_memory\":%u,\"timestamps\":%s,\"texel_rgba32f\":%s,\"unified_memory\":%s}",
             i ? "," : "", d->index, d->name, fr_vk_device_type_name(d->type), d->vendor_id, d->device_id,
             d->driver_name, d->driver_info, VK_API_VERSION_MAJOR(d->api_version),
             VK_API_VERSION_MINOR(d->api_version), VK_API_VERSION_PATCH(d->api_version),
             (unsigned long long)d->device_local_bytes, (unsigned long long)d->max_storage_buffer_range,
             (unsigned long long)d->max_texel_buffer_elements, d->subgroup_size, d->max_shared_memory,
             d->has_timestamps ? "true" : "false", d->has_texel_rgba32f ? "true" : "false",
             d->unified_memory ? "true" : "false");
    } else {
      printf("device %d: %s (%s)\n", d->index, d->name, fr_vk_device_type_name(d->type));
      printf("  vendor 0x%04x device 0x%04x, driver %s %s, Vulkan %u.%u.%u\n", d->vendor_id, d->device_id,
             d->driver_name, d->driver_info, VK_API_VERSION_MAJOR(d->api_version),
             VK_API_VERSION_MINOR(d->api_version), VK_API_VERSION_PATCH(d->api_version));
      printf("  device-local memory %.1f GiB%s\n", (double)d->device_local_bytes / (1024.0 * 1024 * 1024),
             d->unified_memory ? " (host-visible)" : "");
      printf("  max storage buffer range %.0f MiB, max texel buffer elements %llu, shared memory %u KiB\n",
             (double)d->max_storage_buffer_range / 1048576.0, (unsigned long long)d->max_texel_buffer_elements,
             d->max_shared_memory / 1024);
      printf("  workgroup: %u invocations, size %ux%ux%u; subgroup %u; push constants %u bytes\n",
             d->max_workgroup_invocations, d->max_workgroup_size[0], d->max_workgroup_size[1],
             d->max_workgroup_size[2], d->subgroup_size, d->max_push_constants);
      printf("  timestamps %s, RGBA32F texel buffers %s, subgroup shuffle %s\n", d->has_timestamps ? "yes" : "no",
             d->has_texel_rgba32f ? "yes" : "no",
             (d->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) ? "yes" : "no");
    }
  }
  if (json)
    printf("]\n");
  if (n == 0 && !json)
    printf("no Vulkan devices\n");
  free(infos);
  return n > 0 ? FR_EXIT_OK : FR_EXIT_ERROR;
}
