/*
 * fuzz_decode_stream.c - libFuzzer harness of `allocation-processor decode`'s reader
 * (ap_decode_stream): the input is what kcat -f '%R%s' would print, length-prefixed values
 * of any kind, decoded with the fake registry of fuzz_codec.h. Output goes to /dev/null.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "entrypoints/decode_stream.h"
#include "fuzz_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ap_avro_codec_t *codec;
static FILE *devnull;

static void release(void)
{
    ap_avro_codec_free(codec);
    fclose(devnull);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t failed = 0;

    if (!codec) {
        codec = fuzz_codec_new(AP_WIRE_SINGLE_OBJECT);
        if (!(devnull = fopen("/dev/null", "w")))
            abort();
        atexit(release);
    }
    if (size == 0)
        return 0; /* fmemopen refuses an empty buffer */
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in)
        abort();
    ap_decode_stream(codec, in, devnull, devnull, &failed);
    fclose(in);
    return 0;
}
