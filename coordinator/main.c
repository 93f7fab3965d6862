/* faceri: recognizability-aware face embedding on Vulkan. */
#include <stdio.h>
#include <string.h>

#include "faceri/audit.h"
#include "faceri/commands.h"
#include "faceri/eval.h"
#include "faceri/gallery.h"
#include "faceri/report.h"
#include "faceri/scheduler.h"
#include "faceri/worker_loop.h"

static const char usage[] =
    "usage: faceri COMMAND [OPTIONS]\n"
    "\n"
    "Face embeddings and recognizability on any Vulkan device.\n"
    "\n"
    "commands:\n"
    "  run       embed face archives on every Vulkan device: coordinator + in-process workers\n"
    "  coordinate  serve face archives to 'faceri worker' processes on a fleet, collect results\n"
    "  embed     embed face images, folders or archives into an HDF5 file, in one process\n"
    "  detect    find faces (MTCNN) and their landmarks; optionally write aligned crops\n"
    "  bench     measure images/s, per-layer times and device memory\n"
    "  devices   list the Vulkan devices with their limits and memory\n"
    "  model     import a model (model import) or describe one (model info)\n"
    "  worker    serve a coordinator: embed the shards it sends (faceri worker --connect ENDPOINT)\n"
    "  train     fine-tune a model on labelled faces on the Vulkan device (ArcFace), with checkpoints\n"
    "\n"
    "Run 'faceri COMMAND --help' for a command's options.\n"
    "Exit codes: 0 success, 1 error, 2 usage error, 3 done but some items failed.\n"
    "Environment: FACERI_DEVICE (index or name), FACERI_MODEL (default model file),\n"
    "FACERI_LOG (debug|info|warn|error), FACERI_VALIDATION=1 (Vulkan validation layers).\n";

int main(int argc, char **argv)
{
  fr_set_command_line(argc, argv);
  if (argc < 2) {
    fputs(usage, stderr);
    return FR_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return FR_EXIT_OK;
  }
  if (!strcmp(cmd, "--version")) {
    printf("faceri %s\n", FACERI_VERSION);
    return FR_EXIT_OK;
  }
  if (!strcmp(cmd, "run"))
    return fr_cmd_run(argc - 1, argv + 1);
  if (!strcmp(cmd, "coordinate"))
    return fr_cmd_coordinate(argc - 1, argv + 1);
  if (!strcmp(cmd, "embed"))
    return fr_cmd_embed(argc - 1, argv + 1);
  if (!strcmp(cmd, "detect"))
    return fr_cmd_detect(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench"))
    return fr_cmd_bench(argc - 1, argv + 1);
  if (!strcmp(cmd, "devices"))
    return fr_cmd_devices(argc - 1, argv + 1);
  if (!strcmp(cmd, "model"))
    return fr_cmd_model(argc - 1, argv + 1);
  if (!strcmp(cmd, "audit"))
    return fr_cmd_audit(argc - 1, argv + 1);
  if (!strcmp(cmd, "gallery"))
    return fr_cmd_gallery(argc - 1, argv + 1);
  if (!strcmp(cmd, "report"))
    return fr_cmd_report(argc - 1, argv + 1);
  if (!strcmp(cmd, "eval"))
    return fr_cmd_eval(argc - 1, argv + 1);
  if (!strcmp(cmd, "worker"))
    return fr_cmd_worker(argc - 1, argv + 1);
  if (!strcmp(cmd, "train"))
    return fr_cmd_train(argc - 1, argv + 1);
  fprintf(stderr, "faceri: unknown command \"%s\"\n\n%s", cmd, usage);
  return FR_EXIT_USAGE;
}
