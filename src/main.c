/*
 * main.c -- command line, signals and wiring. No logic lives here.
 */
#include <stdio.h>
#include <string.h>

#include "touchpulse/common.h"

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    printf("touchpulse %s\n", TP_VERSION_STRING);
    return 0;
  }
  fprintf(stderr, "usage: touchpulse --version\n");
  return 2;
}
