/* Buffers: device-local memory, mapped directly where it is also host-visible
 * (lavapipe, integrated GPUs), else filled and read through a staging buffer. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

static int find_memory_type(const fr_vk_context *ctx, uint32_t type_bits, VkMemoryPropertyFlags want)
{
  for (uint32_t t = 0; t < ctx->memory_props.memoryTypeCount; t++)
    if ((type_bits & (1u << t)) && (ctx->memory_props.memoryTypes[t].propertyFlags & want) == want)
      return (int)t;
  return -1;
}

static int allocate_buffer(fr_vk_context *ctx, uint64_t size, VkBufferUsageFlags usage, int want_host,
                           fr_vk_buffer *out, fr_error *err)
{
  memset(out, 0, sizeof(*out));
  if (size == 0)
    size = 16;
  VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                            .size = size,
                            .usage = usage,
                            .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
  int rc = fr_vk_check(vkCreateBuffer(ctx->device, &bci, NULL, &out->buffer), "vkCreateBuffer", err);
  if (rc) {
    out->buffer = VK_NULL_HANDLE;
    fr_error_prefix(err, "creating a %.1f MiB buffer", (double)size / 1048576.0);
    return rc;
  }
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(ctx->device, out->buffer, &req);
  const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  const VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  int type = -1;
  if (want_host) {
    type = find_memory_type(ctx, req.memoryTypeBits, host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (type < 0)
      type = find_memory_type(ctx, req.memoryTypeBits, host);
  } else {
    /* Where device memory is also mappable and the device is not discrete (so the
     * mapping is not a small BAR window), map it and skip staging copies. */
    if (ctx->info.unified_memory && ctx->info.type != VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU)
      type = find_memory_type(ctx, req.memoryTypeBits, local | host);
    if (type < 0)
      type = find_memory_type(ctx, req.memoryTypeBits, local);
    if (type < 0)
      type = find_memory_type(ctx, req.memoryTypeBits, 0);
  }
  if (type < 0) {
    vkDestroyBuffer(ctx->device, out->buffer, NULL);
    out->buffer = VK_NULL_HANDLE;
    return fr_error_set(err, FR_ERR_UNSUPPORTED, "no suitable memory type for a %llu-byte buffer",
                        (unsigned long long)size);
  }
  uint32_t heap = ctx->memory_props.memoryTypes[type].heapIndex;
  if (req.size > ctx->memory_props.memoryHeaps[heap].size) {
    /* Asking anyway is invalid usage; say plainly that it cannot fit. */
    vkDestroyBuffer(ctx->device, out->buffer, NULL);
    out->buffer = VK_NULL_HANDLE;
    return fr_error_set(err, FR_ERR_NOMEM, "allocating %.1f MiB of device memory: larger than the device's %.1f MiB heap",
                        (double)req.size / 1048576.0, (double)ctx->memory_props.memoryHeaps[heap].size / 1048576.0);
  }
  VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                              .allocationSize = req.size,
                              .memoryTypeIndex = (uint32_t)type};
  VkResult r = vkAllocateMemory(ctx->device, &mai, NULL, &out->memory);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(ctx->device, out->buffer, NULL);
    out->buffer = VK_NULL_HANDLE;
    fr_vk_check(r, "vkAllocateMemory", err);
    fr_error_prefix(err, "allocating %.1f MiB of device memory", (double)size / 1048576.0);
    return err ? (int)err->code : FR_ERR_NOMEM;
  }
  rc = fr_vk_check(vkBindBufferMemory(ctx->device, out->buffer, out->memory, 0), "vkBindBufferMemory", err);
  if (!rc && (ctx->memory_props.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
    rc = fr_vk_check(vkMapMemory(ctx->device, out->memory, 0, VK_WHOLE_SIZE, 0, &out->mapped), "vkMapMemory", err);
  if (rc) {
    fr_vk_buffer_destroy(ctx, out);
    return rc;
  }
  out->size = size;
  pthread_mutex_lock(&ctx->lock);
  ctx->memory_in_use += req.size;
  if (ctx->memory_in_use > ctx->memory_peak)
    ctx->memory_peak = ctx->memory_in_use;
  pthread_mutex_unlock(&ctx->lock);
  return FR_OK;
}

int fr_vk_buffer_create(fr_vk_context *ctx, uint64_t size, fr_vk_buffer *out, fr_error *err)
{
  return allocate_buffer(ctx, size,
                         VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
                             VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                         0, out, err);
}

void fr_vk_buffer_destroy(fr_vk_context *ctx, fr_vk_buffer *buf)
{
  if (!buf || !ctx)
    return;
  if (buf->memory) {
    VkMemoryRequirements req = {0};
    if (buf->buffer)
      vkGetBufferMemoryRequirements(ctx->device, buf->buffer, &req);
    if (buf->mapped)
      vkUnmapMemory(ctx->device, buf->memory);
    vkFreeMemory(ctx->device, buf->memory, NULL);
    if (buf->size) {
      pthread_mutex_lock(&ctx->lock);
      ctx->memory_in_use -= req.size <= ctx->memory_in_use ? req.size : ctx->memory_in_use;
      pthread_mutex_unlock(&ctx->lock);
    }
  }
  if (buf->buffer)
    vkDestroyBuffer(ctx->device, buf->buffer, NULL);
  memset(buf, 0, sizeof(*buf));
}

static int check_range(const fr_vk_buffer *buf, uint64_t offset, uint64_t size, const char *what, fr_error *err)
{
  if (offset > buf->size || size > buf->size - offset)
    return fr_error_set(err, FR_ERR_INVALID, "%s of %llu bytes at offset %llu exceeds the %llu-byte buffer", what,
                        (unsigned long long)size, (unsigned long long)offset, (unsigned long long)buf->size);
  return FR_OK;
}

/* Copies between a staging buffer and buf on the queue, in chunks so the
 * staging buffer stays small whatever the transfer size. */
static int staged_copy(fr_vk_context *ctx, fr_vk_buffer *device_buf, uint64_t offset, void *host, uint64_t size,
                       int to_device, fr_error *err)
{
  const uint64_t chunk_max = 64ull << 20;
  fr_vk_buffer staging;
  uint64_t chunk = size < chunk_max ? size : chunk_max;
  int rc = allocate_buffer(ctx, chunk, VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT, 1,
                           &staging, err);
  if (rc)
    return rc;
  for (uint64_t done = 0; done < size && !rc; done += chunk) {
    uint64_t n = size - done < chunk ? size - done : chunk;
    if (to_device)
      memcpy(staging.mapped, (const uint8_t *)host + done, n);
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    rc = fr_vk_check(vkBeginCommandBuffer(ctx->transfer_cmd, &bi), "vkBeginCommandBuffer", err);
    if (rc)
      break;
    VkBufferCopy region = {.srcOffset = to_device ? 0 : offset + done, .dstOffset = to_device ? offset + done : 0,
                           .size = n};
    /* Earlier compute writes must land before a download reads them, and an
     * upload must land before later dispatches read it. */
    VkMemoryBarrier before = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT,
                              .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    vkCmdPipelineBarrier(ctx->transfer_cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1,
                         &before, 0, NULL, 0, NULL);
    if (to_device)
      vkCmdCopyBuffer(ctx->transfer_cmd, staging.buffer, device_buf->buffer, 1, &region);
    else
      vkCmdCopyBuffer(ctx->transfer_cmd, device_buf->buffer, staging.buffer, 1, &region);
    VkMemoryBarrier after = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                             .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                             .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_SHADER_READ_BIT};
    vkCmdPipelineBarrier(ctx->transfer_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &after, 0, NULL, 0,
                         NULL);
    rc = fr_vk_check(vkEndCommandBuffer(ctx->transfer_cmd), "vkEndCommandBuffer", err);
    if (rc)
      break;
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                       .pCommandBuffers = &ctx->transfer_cmd};
    rc = fr_vk_check(vkResetFences(ctx->device, 1, &ctx->transfer_fence), "vkResetFences", err);
    if (!rc)
      rc = fr_vk_check(vkQueueSubmit(ctx->queue, 1, &si, ctx->transfer_fence), "vkQueueSubmit (copy)", err);
    if (!rc)
      rc = fr_vk_wait_fence(ctx, ctx->transfer_fence, "buffer copy", err);
    if (!rc && !to_device)
      memcpy((uint8_t *)host + done, staging.mapped, n);
  }
  fr_vk_buffer_destroy(ctx, &staging);
  return rc;
}

int fr_vk_buffer_upload(fr_vk_context *ctx, fr_vk_buffer *buf, uint64_t offset, const void *data, uint64_t size,
                        fr_error *err)
{
  int rc = check_range(buf, offset, size, "upload", err);
  if (rc || size == 0)
    return rc;
  if (buf->mapped) {
    /* Nothing may still be running on this memory: callers upload between runs. */
    memcpy((uint8_t *)buf->mapped + offset, data, size);
    return FR_OK;
  }
  return staged_copy(ctx, buf, offset, (void *)data, size, 1, err);
}

int fr_vk_buffer_download(fr_vk_context *ctx, const fr_vk_buffer *buf, uint64_t offset, void *data, uint64_t size,
                          fr_error *err)
{
  int rc = check_range(buf, offset, size, "download", err);
  if (rc || size == 0)
    return rc;
  if (buf->mapped) {
    memcpy(data, (const uint8_t *)buf->mapped + offset, size);
    return FR_OK;
  }
  return staged_copy(ctx, (fr_vk_buffer *)buf, offset, data, size, 0, err);
}

uint64_t fr_vk_memory_in_use(const fr_vk_context *ctx) { return ctx->memory_in_use; }
uint64_t fr_vk_memory_peak(const fr_vk_context *ctx) { return ctx->memory_peak; }
void fr_vk_memory_reset_peak(fr_vk_context *ctx) { ctx->memory_peak = ctx->memory_in_use; }
