/*
 * test_produce.c - produces one record whose value is all of stdin, byte for byte, even when
 * that is nothing at all (kcat skips empty values): `test-produce TOPIC KEY [--null]`, with
 * --null sending a null value. Uses KAFKA_BOOTSTRAP_SERVERS like the processor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/config.h"
#include "ap/kafka_producer.h"

extern char **environ;

static ap_err_t delivered = AP_ERR_UNAVAILABLE;

static void on_delivery(void *ctx, void *opaque, ap_err_t err, const char *reason)
{
    (void)ctx, (void)opaque;
    delivered = err;
    if (err)
        fprintf(stderr, "test-produce: %s\n", reason);
}

int main(int argc, char **argv)
{
    ap_config_t cfg;
    ap_producer_t *producer = NULL;
    char err[512], *value = NULL;
    size_t len = 0, cap = 0;
    int rc = 1;

    if (argc < 3 || (argc == 4 && strcmp(argv[3], "--null") != 0) || argc > 4) {
        fprintf(stderr, "usage: test-produce TOPIC KEY [--null] < value\n");
        return 2;
    }
    bool null_value = argc == 4;
    while (!null_value && !feof(stdin)) {
        if (len == cap && !(value = realloc(value, cap = cap ? cap * 2 : 65536)))
            return 1;
        len += fread(value + len, 1, cap - len, stdin);
    }
    if (ap_config_load(&cfg, NULL, environ, err, sizeof err)) {
        fprintf(stderr, "test-produce: %s\n", err);
        return 2;
    }
    if (ap_producer_new(&cfg, "test-produce", on_delivery, NULL, &producer) == AP_OK &&
        ap_producer_send(producer, argv[1], argv[2], strlen(argv[2]),
                         null_value ? NULL : (value ? value : ""), len, NULL, 0, NULL) == AP_OK) {
        for (int waited = 0; ap_producer_pending(producer) > 0 && waited < 30000; waited += 100)
            ap_producer_poll(producer, 100);
        rc = delivered == AP_OK ? 0 : 1;
    }
    ap_producer_free(producer);
    ap_config_release(&cfg);
    free(value);
    return rc;
}
