#include <stdio.h>
#include <string.h>

#include "faceri/commands.h"

static char command_line[4096];

void fr_set_command_line(int argc, char **argv)
{
  size_t used = 0;
  command_line[0] = '\0';
  for (int i = 0; i < argc && used < sizeof(command_line) - 1; i++) {
    int quote = strpbrk(argv[i], " \t'\"") != NULL;
    int n = snprintf(command_line + used, sizeof(command_line) - used, "%s%s%s%s", i ? " " : "", quote ? "'" : "",
                     argv[i], quote ? "'" : "");
    if (n < 0)
      break;
    used += (size_t)n;
  }
}

const char *fr_command_line(void) { return command_line; }
