/*
 * fuzz_codec.h - the Avro codec the fuzz harnesses decode with: every compiled-in schema
 * known by fingerprint (single-object) and by registry id 100 + i (confluent, as
 * tests/unit/test_avro.c numbers them), and a schema registry faked in process, answering a
 * few more ids without any I/O (tests/fakes/fake_registry serves real HTTP: far too slow for
 * millions of inputs).
 */
#ifndef AP_FUZZ_CODEC_H
#define AP_FUZZ_CODEC_H

#include "ap/avro.h"

/* The first confluent id of our schemas; a schema's id is this plus its index. */
#define FUZZ_SCHEMA_ID_BASE 100

/* The registry's extra ids: a writer schema of Allocate with one more field (resolved
 * against ours), a schema that is not JSON, a record no command has, and an unreachable
 * registry. Any other id is unknown (AP_ERR_NOT_FOUND). */
#define FUZZ_ID_EVOLVED 1
#define FUZZ_ID_NOT_JSON 2
#define FUZZ_ID_FOREIGN 3
#define FUZZ_ID_UNAVAILABLE 4

/* The id fuzz_registry_answer frames its values with: its registry answers with the input. */
#define FUZZ_ID_ANSWER 7

/* A codec framing in `format`, with the fake registry as its lookup. Aborts on failure;
 * the harness keeps it for the process's life. */
ap_avro_codec_t *fuzz_codec_new(ap_wire_format_t format);

#endif
