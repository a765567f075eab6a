/*
 * test_encode_command.c - turns one JSON command (stdin) into an Avro-framed value (stdout),
 * so end-to-end tests can produce Avro commands with `kcat -P ... FILE`, as a service would.
 *
 *   test-encode-command [--confluent REGISTRY_URL SUBJECT] [--break truncate|fingerprint]
 *
 * Without --confluent the framing is single-object. With it, the command's schema is
 * registered under SUBJECT and its id framed. --break damages the output on purpose.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/avro.h"
#include "ap/codec.h"
#include "ap/registry.h"

static int usage(void)
{
    fprintf(stderr, "usage: test-encode-command [--confluent REGISTRY_URL SUBJECT] "
                    "[--break truncate|fingerprint] < command.json > value\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *registry_url = NULL, *subject = NULL, *damage = NULL;
    char input[8192], why[512] = "";
    ap_avro_codec_t *codec = NULL;
    ap_registry_t *registry = NULL;
    uint8_t *value = NULL;
    size_t len = 0;
    ap_msg_t cmd;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--confluent") == 0 && i + 2 < argc) {
            registry_url = argv[++i];
            subject = argv[++i];
        } else if (strcmp(argv[i], "--break") == 0 && i + 1 < argc) {
            damage = argv[++i];
        } else {
            return usage();
        }
    }
    size_t n = fread(input, 1, sizeof input - 1, stdin);
    if (ap_command_decode(NULL, input, n, AP_MSG_NONE, false, &cmd, why, sizeof why)) {
        fprintf(stderr, "test-encode-command: %s\n", why);
        return 1;
    }
    if (ap_avro_codec_new(registry_url ? AP_WIRE_CONFLUENT : AP_WIRE_SINGLE_OBJECT, &codec))
        goto out;
    if (registry_url) {
        const char *full_name, *schema;
        const char *type = ap_msg_type_name(cmd.type);
        int32_t id = -1;
        if (ap_registry_new(registry_url, &registry))
            goto out;
        for (size_t i = 0; ap_avro_schema_at(codec, i, &full_name, &schema); i++) {
            const char *dot = strrchr(full_name, '.');
            if (strcmp(dot ? dot + 1 : full_name, type) != 0)
                continue;
            if (ap_registry_register(registry, subject, schema, &id, why, sizeof why) ||
                ap_avro_codec_set_schema_id(codec, full_name, id)) {
                fprintf(stderr, "test-encode-command: registering: %s\n", why);
                goto out;
            }
        }
    }
    if (ap_avro_encode_command(codec, &cmd, &value, &len))
        goto out;
    if (damage && strcmp(damage, "truncate") == 0 && len > 12)
        len -= 3;
    else if (damage && strcmp(damage, "fingerprint") == 0 && len > 6)
        value[4] ^= 0x5a;
    else if (damage)
        return usage();
    rc = fwrite(value, 1, len, stdout) == len ? 0 : 1;
out:
    free(value);
    ap_registry_free(registry);
    ap_avro_codec_free(codec);
    return rc;
}
