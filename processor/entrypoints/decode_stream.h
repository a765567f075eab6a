/*
 * decode_stream.h - the reader behind `allocation-processor decode`: kcat's `-f '%R%s'`
 * stream (each value preceded by its length as a 4-byte big-endian integer, -1 for a NULL
 * value) turned into one JSON line per value. It is a function of its own so the fuzz
 * harness (tests/fuzz/) can feed it bytes; the CLI only opens the codec and the registry.
 */
#ifndef AP_ENTRYPOINTS_DECODE_STREAM_H
#define AP_ENTRYPOINTS_DECODE_STREAM_H

#include <stddef.h>
#include <stdio.h>

#include "ap/avro.h"
#include "ap/error.h"

/*
 * Reads `in` to its end: each decodable value becomes a line on `out`, each failure (a value
 * that is not a record we know, or input ending inside a value, which stops the reading) a
 * line on `errout`. *failed receives the number of failures. AP_ERR_NOMEM when a buffer
 * cannot grow (*failed is then not written). `codec` is the caller's, used from this thread.
 */
ap_err_t ap_decode_stream(ap_avro_codec_t *codec, FILE *in, FILE *out, FILE *errout,
                          size_t *failed);

#endif
