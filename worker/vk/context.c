/* Instance, device choice, validation and the logical device. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faceri/log.h"
#include "vk_internal.h"

#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

const char *fr_vk_result_name(VkResult r)
{
  switch (r) {
  case VK_SUCCESS: return "VK_SUCCESS";
  case VK_NOT_READY: return "VK_NOT_READY";
  case VK_TIMEOUT: return "VK_TIMEOUT";
  case VK_INCOMPLETE: return "VK_INCOMPLETE";
  case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
  case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
  case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
  case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
  case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
  case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
  case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
  case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
  case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
  case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
  case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
  case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
  case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
  default: return "VkResult(unknown)";
  }
}

int fr_vk_check(VkResult r, const char *what, fr_error *err)
{
  if (r == VK_SUCCESS)
    return FR_OK;
  fr_status code = FR_ERR_VULKAN;
  if (r == VK_ERROR_DEVICE_LOST)
    code = FR_ERR_DEVICE_LOST;
  else if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
    code = FR_ERR_NOMEM;
  else if (r == VK_TIMEOUT)
    code = FR_ERR_TIMEOUT;
  return fr_error_set(err, code, "%s failed: %s (%d)", what, fr_vk_result_name(r), (int)r);
}

int fr_vk_wait_fence(fr_vk_context *ctx, VkFence fence, const char *what, fr_error *err)
{
  VkResult r = vkWaitForFences(ctx->device, 1, &fence, VK_TRUE, ctx->fence_timeout_ns);
  if (r == VK_TIMEOUT)
    return fr_error_set(err, FR_ERR_TIMEOUT, "%s: the device did not finish within %llu ms (raise FACERI_FENCE_TIMEOUT_MS)",
                        what, (unsigned long long)(ctx->fence_timeout_ns / 1000000ull));
  return fr_vk_check(r, what, err);
}

const char *fr_vk_device_type_name(VkPhysicalDeviceType type)
{
  switch (type) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
  default: return "other";
  }
}

static int type_rank(VkPhysicalDeviceType type)
{
  switch (type) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
  default: return 0;
  }
}

static int find_compute_queue(VkPhysicalDevice pd, uint32_t *family)
{
  uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
  if (n == 0 || n > 64)
    return 0;
  VkQueueFamilyProperties props[64];
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, props);
  /* Prefer a compute queue that also does graphics: it is the one with timestamps everywhere. */
  int best = -1;
  for (uint32_t i = 0; i < n; i++) {
    if (!(props[i].queueFlags & VK_QUEUE_COMPUTE_BIT))
      continue;
    if (best < 0 || (props[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
      best = (int)i;
    if (props[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)
      break;
  }
  if (best < 0)
    return 0;
  *family = (uint32_t)best;
  return props[best].timestampValidBits > 0 ? 2 : 1;
}

static void describe_device(VkPhysicalDevice pd, int index, fr_vk_device_info *info)
{
  memset(info, 0, sizeof(*info));
  VkPhysicalDeviceSubgroupProperties subgroup = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceDriverProperties driver = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES,
                                             .pNext = &subgroup};
  VkPhysicalDeviceProperties2 props2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &driver};
  VkPhysicalDeviceProperties base;
  vkGetPhysicalDeviceProperties(pd, &base);
  if (base.apiVersion >= VK_API_VERSION_1_2)
    vkGetPhysicalDeviceProperties2(pd, &props2);
  else
    props2.properties = base;
  const VkPhysicalDeviceProperties *p = &props2.properties;
  const VkPhysicalDeviceLimits *l = &p->limits;
  info->index = index;
  snprintf(info->name, sizeof(info->name), "%s", p->deviceName);
  info->type = p->deviceType;
  info->vendor_id = p->vendorID;
  info->device_id = p->deviceID;
  info->api_version = p->apiVersion;
  info->driver_version = p->driverVersion;
  if (base.apiVersion >= VK_API_VERSION_1_2) {
    snprintf(info->driver_name, sizeof(info->driver_name), "%s", driver.driverName);
    snprintf(info->driver_info, sizeof(info->driver_info), "%s", driver.driverInfo);
    info->subgroup_size = subgroup.subgroupSize;
    if (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT)
      info->subgroup_ops = subgroup.supportedOperations;
  }
  info->max_storage_buffer_range = l->maxStorageBufferRange;
  info->max_texel_buffer_elements = l->maxTexelBufferElements;
  info->max_workgroup_invocations = l->maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; i++) {
    info->max_workgroup_size[i] = l->maxComputeWorkGroupSize[i];
    info->max_workgroup_count[i] = l->maxComputeWorkGroupCount[i];
  }
  info->max_shared_memory = l->maxComputeSharedMemorySize;
  info->max_push_constants = l->maxPushConstantsSize;
  info->min_texel_offset_alignment = l->minTexelBufferOffsetAlignment;
  info->min_storage_offset_alignment = l->minStorageBufferOffsetAlignment;
  info->timestamp_period_ns = l->timestampPeriod;
  uint32_t family;
  int q = find_compute_queue(pd, &family);
  info->has_timestamps = q == 2 && l->timestampComputeAndGraphics;
  VkFormatProperties fp;
  vkGetPhysicalDeviceFormatProperties(pd, VK_FORMAT_R32G32B32A32_SFLOAT, &fp);
  info->has_texel_rgba32f = (fp.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) != 0;
  VkPhysicalDeviceFeatures feat;
  vkGetPhysicalDeviceFeatures(pd, &feat);
  info->has_int64 = feat.shaderInt64 == VK_TRUE;
  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(pd, &mp);
  for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
    if (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      info->device_local_bytes += mp.memoryHeaps[h].size;
  const VkMemoryPropertyFlags both = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                     VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  for (uint32_t t = 0; t < mp.memoryTypeCount; t++)
    if ((mp.memoryTypes[t].propertyFlags & both) == both)
      info->unified_memory = 1;
}

static int create_instance(int validation, VkInstance *out, fr_error *err)
{
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                           .pApplicationName = "faceri",
                           .applicationVersion = 1,
                           .pEngineName = "faceri",
                           .apiVersion = VK_API_VERSION_1_2};
  const char *layers[1] = {VALIDATION_LAYER};
  const char *exts[1] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
  VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
  if (validation) {
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, NULL);
    VkLayerProperties *lp = calloc(n ? n : 1, sizeof(*lp));
    if (!lp)
      return fr_error_set(err, FR_ERR_NOMEM, "listing Vulkan layers: out of memory");
    vkEnumerateInstanceLayerProperties(&n, lp);
    int found = 0;
    for (uint32_t i = 0; i < n; i++)
      found |= strcmp(lp[i].layerName, VALIDATION_LAYER) == 0;
    free(lp);
    if (!found)
      return fr_error_set(err, FR_ERR_NOT_FOUND,
                          "validation was requested but the layer %s is not installed "
                          "(Debian: apt-get install vulkan-validationlayers)", VALIDATION_LAYER);
    ci.enabledLayerCount = 1;
    ci.ppEnabledLayerNames = layers;
    ci.enabledExtensionCount = 1;
    ci.ppEnabledExtensionNames = exts;
  }
  VkResult r = vkCreateInstance(&ci, NULL, out);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    return fr_error_set(err, FR_ERR_NOT_FOUND,
                        "no Vulkan driver found (install one, e.g. Debian mesa-vulkan-drivers for lavapipe)");
  return fr_vk_check(r, "vkCreateInstance", err);
}

int fr_vk_list_devices(fr_vk_device_info **out, int *count, fr_error *err)
{
  *out = NULL;
  *count = 0;
  VkInstance instance;
  int rc = create_instance(0, &instance, err);
  if (rc)
    return rc;
  uint32_t n = 0;
  rc = fr_vk_check(vkEnumeratePhysicalDevices(instance, &n, NULL), "vkEnumeratePhysicalDevices", err);
  VkPhysicalDevice *pds = NULL;
  fr_vk_device_info *infos = NULL;
  if (!rc && n > 0) {
    pds = calloc(n, sizeof(*pds));
    infos = calloc(n, sizeof(*infos));
    if (!pds || !infos)
      rc = fr_error_set(err, FR_ERR_NOMEM, "listing Vulkan devices: out of memory");
    else
      rc = fr_vk_check(vkEnumeratePhysicalDevices(instance, &n, pds), "vkEnumeratePhysicalDevices", err);
  }
  if (!rc)
    for (uint32_t i = 0; i < n; i++)
      describe_device(pds[i], (int)i, &infos[i]);
  free(pds);
  vkDestroyInstance(instance, NULL);
  if (rc) {
    free(infos);
    return rc;
  }
  *out = infos;
  *count = (int)n;
  return FR_OK;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                            VkDebugUtilsMessageTypeFlagsEXT types,
                                                            const VkDebugUtilsMessengerCallbackDataEXT *data,
                                                            void *user)
{
  fr_vk_context *ctx = user;
  if (severity < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)
    return VK_FALSE;
  pthread_mutex_lock(&ctx->lock);
  ctx->validation_messages++;
  pthread_mutex_unlock(&ctx->lock);
  fr_log(severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? FR_LOG_ERROR : FR_LOG_WARN,
         "Vulkan validation: %s", data && data->pMessage ? data->pMessage : "(no message)");
  return VK_FALSE;
}

static int env_flag(const char *name)
{
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* Picks the device named by selector (an index or a name substring), else the best one. */
static int choose_device(VkPhysicalDevice *pds, const fr_vk_device_info *infos, uint32_t n, const char *selector,
                         int *chosen, fr_error *err)
{
  if (selector && *selector) {
    char *end;
    long idx = strtol(selector, &end, 10);
    if (*end == '\0') {
      if (idx < 0 || idx >= (long)n)
        return fr_error_set(err, FR_ERR_NOT_FOUND, "device %s: there are %u Vulkan devices (faceri devices lists them)",
                            selector, n);
      *chosen = (int)idx;
      return FR_OK;
    }
    for (uint32_t i = 0; i < n; i++) {
      const char *hay = infos[i].name;
      size_t sl = strlen(selector);
      for (const char *h = hay; *h; h++) {
        size_t k = 0;
        while (k < sl && h[k] && tolower((unsigned char)h[k]) == tolower((unsigned char)selector[k]))
          k++;
        if (k == sl) {
          *chosen = (int)i;
          return FR_OK;
        }
      }
    }
    return fr_error_set(err, FR_ERR_NOT_FOUND, "device \"%s\": no Vulkan device name contains it (faceri devices lists them)",
                        selector);
  }
  int best = -1;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t family;
    if (!find_compute_queue(pds[i], &family))
      continue;
    if (best < 0 || type_rank(infos[i].type) > type_rank(infos[best].type) ||
        (type_rank(infos[i].type) == type_rank(infos[best].type) &&
         infos[i].device_local_bytes > infos[best].device_local_bytes))
      best = (int)i;
  }
  if (best < 0)
    return fr_error_set(err, FR_ERR_NOT_FOUND, "no Vulkan device with a compute queue");
  *chosen = best;
  return FR_OK;
}

int fr_vk_context_create(const fr_vk_options *opts, fr_vk_context **out, fr_error *err)
{
  *out = NULL;
  fr_vk_options defaults = {.device = NULL, .validation = -1, .fence_timeout_ms = 0};
  if (!opts)
    opts = &defaults;
  fr_vk_context *ctx = calloc(1, sizeof(*ctx));
  if (!ctx)
    return fr_error_set(err, FR_ERR_NOMEM, "creating the Vulkan context: out of memory");
  pthread_mutex_init(&ctx->lock, NULL);
  ctx->validation = opts->validation < 0 ? env_flag("FACERI_VALIDATION") : opts->validation;
  uint64_t timeout_ms = opts->fence_timeout_ms;
  if (!timeout_ms) {
    const char *t = getenv("FACERI_FENCE_TIMEOUT_MS");
    timeout_ms = t ? strtoull(t, NULL, 10) : 0;
    if (!timeout_ms)
      timeout_ms = 60000;
  }
  ctx->fence_timeout_ns = timeout_ms * 1000000ull;

  int rc = create_instance(ctx->validation, &ctx->instance, err);
  if (rc)
    goto fail;
  if (ctx->validation) {
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_validation_message,
        .pUserData = ctx};
    PFN_vkCreateDebugUtilsMessengerEXT create_messenger =
        (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(ctx->instance, "vkCreateDebugUtilsMessengerEXT");
    if (!create_messenger) {
      rc = fr_error_set(err, FR_ERR_VULKAN, "validation: vkCreateDebugUtilsMessengerEXT is not available");
      goto fail;
    }
    rc = fr_vk_check(create_messenger(ctx->instance, &mci, NULL, &ctx->messenger), "vkCreateDebugUtilsMessengerEXT", err);
    if (rc)
      goto fail;
  }

  uint32_t n = 0;
  rc = fr_vk_check(vkEnumeratePhysicalDevices(ctx->instance, &n, NULL), "vkEnumeratePhysicalDevices", err);
  if (rc)
    goto fail;
  if (n == 0 || n > 32) {
    rc = fr_error_set(err, FR_ERR_NOT_FOUND, "no usable Vulkan device (found %u)", n);
    goto fail;
  }
  VkPhysicalDevice pds[32];
  fr_vk_device_info infos[32];
  rc = fr_vk_check(vkEnumeratePhysicalDevices(ctx->instance, &n, pds), "vkEnumeratePhysicalDevices", err);
  if (rc)
    goto fail;
  for (uint32_t i = 0; i < n; i++)
    describe_device(pds[i], (int)i, &infos[i]);
  const char *selector = opts->device ? opts->device : getenv("FACERI_DEVICE");
  int chosen = 0;
  rc = choose_device(pds, infos, n, selector, &chosen, err);
  if (rc)
    goto fail;
  ctx->physical = pds[chosen];
  ctx->info = infos[chosen];
  if (!find_compute_queue(ctx->physical, &ctx->queue_family)) {
    rc = fr_error_set(err, FR_ERR_UNSUPPORTED, "device %d (%s) has no compute queue", chosen, ctx->info.name);
    goto fail;
  }
  vkGetPhysicalDeviceMemoryProperties(ctx->physical, &ctx->memory_props);

  float priority = 1.0f;
  VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                 .queueFamilyIndex = ctx->queue_family,
                                 .queueCount = 1,
                                 .pQueuePriorities = &priority};
  /* 64-bit integers let the kernels store two floats per store on lavapipe. */
  VkPhysicalDeviceFeatures enabled = {.shaderInt64 = ctx->info.has_int64 ? VK_TRUE : VK_FALSE};
  VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1,
                            .pQueueCreateInfos = &qci, .pEnabledFeatures = &enabled};
  rc = fr_vk_check(vkCreateDevice(ctx->physical, &dci, NULL, &ctx->device), "vkCreateDevice", err);
  if (rc)
    goto fail;
  vkGetDeviceQueue(ctx->device, ctx->queue_family, 0, &ctx->queue);

  VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                 .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                 .queueFamilyIndex = ctx->queue_family};
  rc = fr_vk_check(vkCreateCommandPool(ctx->device, &pci, NULL, &ctx->command_pool), "vkCreateCommandPool", err);
  if (rc)
    goto fail;
  VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                     .commandPool = ctx->command_pool,
                                     .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                     .commandBufferCount = 1};
  rc = fr_vk_check(vkAllocateCommandBuffers(ctx->device, &cai, &ctx->transfer_cmd), "vkAllocateCommandBuffers", err);
  if (rc)
    goto fail;
  VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  rc = fr_vk_check(vkCreateFence(ctx->device, &fci, NULL, &ctx->transfer_fence), "vkCreateFence", err);
  if (rc)
    goto fail;
  fr_debug("Vulkan device %d: %s (%s), validation %s", chosen, ctx->info.name,
           fr_vk_device_type_name(ctx->info.type), ctx->validation ? "on" : "off");
  *out = ctx;
  return FR_OK;
fail:
  fr_vk_context_destroy(ctx);
  return rc;
}

void fr_vk_context_destroy(fr_vk_context *ctx)
{
  if (!ctx)
    return;
  if (ctx->device) {
    vkDeviceWaitIdle(ctx->device);
    if (ctx->transfer_fence)
      vkDestroyFence(ctx->device, ctx->transfer_fence, NULL);
    if (ctx->command_pool)
      vkDestroyCommandPool(ctx->device, ctx->command_pool, NULL);
    vkDestroyDevice(ctx->device, NULL);
  }
  if (ctx->messenger) {
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger =
        (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(ctx->instance, "vkDestroyDebugUtilsMessengerEXT");
    if (destroy_messenger)
      destroy_messenger(ctx->instance, ctx->messenger, NULL);
  }
  if (ctx->instance)
    vkDestroyInstance(ctx->instance, NULL);
  pthread_mutex_destroy(&ctx->lock);
  free(ctx);
}

const fr_vk_device_info *fr_vk_context_device(const fr_vk_context *ctx) { return &ctx->info; }
int fr_vk_validation_enabled(const fr_vk_context *ctx) { return ctx->validation; }

uint64_t fr_vk_validation_messages(const fr_vk_context *ctx)
{
  pthread_mutex_lock((pthread_mutex_t *)&ctx->lock);
  uint64_t n = ctx->validation_messages;
  pthread_mutex_unlock((pthread_mutex_t *)&ctx->lock);
  return n;
}
