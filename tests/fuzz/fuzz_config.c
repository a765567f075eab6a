/*
 * fuzz_config.c - libFuzzer harness of the config file reader: each input is written to one
 * scratch file and loaded with ap_config_load and an empty environment (the loader reads
 * only files). A file's *_FILE keys name other files it opens: run it with stdin at
 * /dev/null (run.sh does) so /dev/stdin cannot block.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ap/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* In memory (tmpfs) where there is one: on a disk, truncating the file each input waits for
 * its writeback, and the harness runs ten times slower. */
static char path[64];
static int fd = -1;

static void release(void)
{
    close(fd);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *env[] = {NULL};
    char err[512];
    ap_config_t cfg;

    if (fd < 0) {
        snprintf(path, sizeof path, "/dev/shm/ap-fuzz-config-XXXXXX");
        if ((fd = mkstemp(path)) < 0) {
            snprintf(path, sizeof path, "/tmp/ap-fuzz-config-XXXXXX");
            if ((fd = mkstemp(path)) < 0)
                abort();
        }
        atexit(release);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    if (ap_config_load(&cfg, path, env, err, sizeof err) == AP_OK)
        ap_config_release(&cfg);
    return 0;
}
