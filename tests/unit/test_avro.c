/*
 * test_avro.c - the Avro adapter: our schemas, Parsing Canonical Form and CRC-64-AVRO against
 * the specification's vectors, round trips through both framings, JSON output, schema
 * resolution through a (fake) registry, and malformed input that must fail cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ap/avro.h"

/* Parsing Canonical Form and fingerprints ----------------------------------------------- */

struct vector {
    const char *input;
    const char *canonical;
    bool has_fingerprint;
    int64_t fingerprint; /* as the file prints it: a signed 64-bit integer */
};

/* From the Avro repository, share/test/data/schema-tests.txt (cases 000-033). */
static const struct vector spec_vectors[] = {
    {"\"null\"", "\"null\"", true, INT64_C(7195948357588979594)},
    {"{\"type\":\"null\"}", "\"null\"", false, 0},
    {"\"boolean\"", "\"boolean\"", true, INT64_C(-6970731678124411036)},
    {"{\"type\":\"boolean\"}", "\"boolean\"", false, 0},
    {"\"int\"", "\"int\"", true, INT64_C(8247732601305521295)},
    {"{\"type\":\"int\"}", "\"int\"", false, 0},
    {"\"long\"", "\"long\"", true, INT64_C(-3434872931120570953)},
    {"{\"type\":\"long\"}", "\"long\"", false, 0},
    {"\"float\"", "\"float\"", true, INT64_C(5583340709985441680)},
    {"{\"type\":\"float\"}", "\"float\"", false, 0},
    {"\"double\"", "\"double\"", true, INT64_C(-8181574048448539266)},
    {"{\"type\":\"double\"}", "\"double\"", false, 0},
    {"\"bytes\"", "\"bytes\"", true, INT64_C(5746618253357095269)},
    {"{\"type\":\"bytes\"}", "\"bytes\"", false, 0},
    {"\"string\"", "\"string\"", true, INT64_C(-8142146995180207161)},
    {"{\"type\":\"string\"}", "\"string\"", false, 0},
    {"[  ]", "[]", true, INT64_C(-1241056759729112623)},
    {"[ \"int\"  ]", "[\"int\"]", true, INT64_C(-5232228896498058493)},
    {"[ \"int\" , {\"type\":\"boolean\"} ]", "[\"int\",\"boolean\"]", true,
     INT64_C(5392556393470105090)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", true,
     INT64_C(-4824392279771201922)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}", true,
     INT64_C(5916914534497305771)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}", true,
     INT64_C(-4616218487480524110)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful info\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", true,
     INT64_C(-4824392279771201922)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", true,
     INT64_C(-4824392279771201922)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"foo\", "
     "\"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", true,
     INT64_C(-4824392279771201922)},
    {"{\"fields\":[{\"type\":{\"type\":\"boolean\"}, \"name\":\"f1\"}], \"type\":\"record\", "
     "\"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
     true, INT64_C(7843277075252814651)},
    {"{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\", "
     "\"default\":\"true\"},\n"
     "            {\"order\":\"descending\",\"name\":\"f2\",\"doc\":\"Hello\",\"type\":\"int\"}],\n"
     "  \"type\":\"record\", \"name\":\"foo\"\n"
     "}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"},"
     "{\"name\":\"f2\",\"type\":\"int\"}]}",
     true, INT64_C(-4860222112080293046)},
    {"{\"type\":\"enum\", \"name\":\"foo\", \"symbols\":[\"A1\"]}",
     "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A1\"]}", true,
     INT64_C(-6342190197741309591)},
    {"{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"symbols\":[\"A1\", \"A2\"]}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}", true,
     INT64_C(-4448647247586288245)},
    {"{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
     "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}", true, INT64_C(1756455273707447556)},
    {"{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"size\":32}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}", true,
     INT64_C(-3064184465700546786)},
    {"{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
     "{\"type\":\"array\",\"items\":\"null\"}", true, INT64_C(-589620603366471059)},
    {"{ \"values\":\"string\", \"type\":\"map\"}", "{\"type\":\"map\",\"values\":\"string\"}", true,
     INT64_C(-8732877298790414990)},
    {"  {\"name\":\"PigValue\",\"type\":\"record\",\n"
     "   \"fields\":[{\"name\":\"value\", \"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
     "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\",\"type\":"
     "[\"null\",\"int\",\"long\",\"PigValue\"]}]}",
     true, INT64_C(-1759257747318642341)},
};

/* Cases of our own for rules the vectors above touch lightly. */
static const struct vector own_vectors[] = {
    /* Nested definitions and references inherit the enclosing namespace; an explicit
     * namespace wins; \u escapes become the characters (STRINGS). */
    {"{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a.b\",\"fields\":["
     "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}},"
     "{\"name\":\"e2\",\"type\":\"E\"},"
     "{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"namespace\":\"c\",\"size\":2}},"
     "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":"
     "{\"type\":\"array\",\"items\":\"c.F\"}}},"
     "{\"name\":\"\\u0067\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}}]}",
     "{\"name\":\"a.b.R\",\"type\":\"record\",\"fields\":["
     "{\"name\":\"e\",\"type\":{\"name\":\"a.b.E\",\"type\":\"enum\",\"symbols\":[\"X\"]}},"
     "{\"name\":\"e2\",\"type\":\"a.b.E\"},"
     "{\"name\":\"f\",\"type\":{\"name\":\"c.F\",\"type\":\"fixed\",\"size\":2}},"
     "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":"
     "{\"type\":\"array\",\"items\":\"c.F\"}}},"
     "{\"name\":\"g\",\"type\":\"long\"}]}",
     false, 0},
    /* A record's full name gives its nested types their namespace. */
    {"{\"type\":\"record\",\"name\":\"p.q.R\",\"fields\":[{\"name\":\"s\",\"type\":"
     "{\"type\":\"record\",\"name\":\"S\",\"fields\":[]}}]}",
     "{\"name\":\"p.q.R\",\"type\":\"record\",\"fields\":[{\"name\":\"s\",\"type\":"
     "{\"name\":\"p.q.S\",\"type\":\"record\",\"fields\":[]}}]}",
     false, 0},
};

static void check_vectors(const struct vector *vectors, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char *canonical = NULL;
        assert_int_equal(ap_avro_canonical_form(vectors[i].input, &canonical), AP_OK);
        if (strcmp(canonical, vectors[i].canonical) != 0)
            fail_msg("vector %zu: got %s, want %s", i, canonical, vectors[i].canonical);
        if (vectors[i].has_fingerprint) {
            int64_t fp = (int64_t)ap_avro_crc64(canonical, strlen(canonical));
            if (fp != vectors[i].fingerprint)
                fail_msg("vector %zu: fingerprint %lld, want %lld", i, (long long)fp,
                         (long long)vectors[i].fingerprint);
        }
        free(canonical);
    }
}

static void test_canonical_form_spec_vectors(void **state)
{
    (void)state;
    assert_int_equal(sizeof spec_vectors / sizeof spec_vectors[0], 34);
    check_vectors(spec_vectors, sizeof spec_vectors / sizeof spec_vectors[0]);
    check_vectors(own_vectors, sizeof own_vectors / sizeof own_vectors[0]);
    /* The fingerprint of nothing is the polynomial's EMPTY. */
    assert_true(ap_avro_crc64("", 0) == UINT64_C(0xc15d213aa4d7a795));
}

static void test_canonical_form_refuses_non_schemas(void **state)
{
    static const char *const bad[] = {
        "", "{", "42", "{\"type\":\"record\",\"fields\":[]}", "{\"type\":\"enum\",\"name\":\"E\"}",
        "{\"type\":\"array\"}", "{\"type\":\"fixed\",\"name\":\"F\",\"size\":\"x\"}",
        "{\"type\":[\"int\"]}", "{\"name\":\"x\"}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *canonical = NULL;
        if (ap_avro_canonical_form(bad[i], &canonical) == AP_OK)
            fail_msg("accepted %s as %s", bad[i], canonical);
    }
}

/* Our schemas ----------------------------------------------------------------------------- */

static bool has_doc(json_t *obj)
{
    json_t *doc = json_object_get(obj, "doc");
    return json_is_string(doc) && json_string_length(doc) > 0;
}

static void test_every_schema_parses_and_is_documented(void **state)
{
    ap_avro_codec_t *codec = NULL;
    const char *name, *text;
    size_t i, commands = 0, events = 0;
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    for (i = 0; ap_avro_schema_at(codec, i, &name, &text); i++) {
        json_t *doc = json_loads(text, 0, NULL);
        json_t *field;
        size_t j;
        char *canonical = NULL;
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "type")), "record");
        if (!has_doc(doc))
            fail_msg("%s has no doc", name);
        json_array_foreach(json_object_get(doc, "fields"), j, field) {
            if (!has_doc(field))
                fail_msg("%s field %zu has no doc", name, j);
        }
        if (strncmp(name, "com.made.allocation.commands.", 29) == 0)
            commands++;
        else if (strncmp(name, "com.made.allocation.events.", 27) == 0)
            events++;
        else
            fail_msg("%s is in neither namespace", name);
        assert_int_equal(ap_avro_canonical_form(text, &canonical), AP_OK);
        free(canonical);
        json_decref(doc);
    }
    assert_int_equal(commands, 3);
    assert_int_equal(events, 6);
    ap_avro_codec_free(codec);
    ap_avro_codec_free(NULL);
}

/* Fixtures ------------------------------------------------------------------------------- */

static int32_t day(const char *date)
{
    int32_t days = 0;
    assert_true(ap_date_parse(date, strlen(date), &days));
    return days;
}

static ap_msg_t create_batch(bool has_eta)
{
    ap_msg_t msg;
    assert_int_equal(
        ap_msg_create_batch(&msg, "b1", "RED-CHAIR", 100, has_eta, has_eta ? day("2026-12-01") : 0),
        AP_OK);
    return msg;
}

static ap_msg_t event(ap_msg_type_t type)
{
    ap_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = type;
    strcpy(msg.sku, "RED-CHAIR");
    switch (type) {
    case AP_EVT_BATCH_CREATED:
        strcpy(msg.ref, "b1");
        msg.qty = 100;
        msg.has_eta = true;
        msg.eta = day("2026-12-01");
        break;
    case AP_EVT_BATCH_QUANTITY_CHANGED:
        strcpy(msg.ref, "b1");
        msg.qty = 50;
        break;
    case AP_EVT_ALLOCATED:
    case AP_EVT_DEALLOCATED:
        strcpy(msg.orderid, "o1");
        strcpy(msg.batchref, "b1");
        msg.qty = 10;
        break;
    default:
        break;
    }
    return msg;
}

static const char *const event_json[] = {
    [AP_EVT_BATCH_CREATED] =
        "{\"type\":\"BatchCreated\",\"ref\":\"b1\",\"sku\":\"RED-CHAIR\",\"qty\":100,"
        "\"eta\":\"2026-12-01\"}",
    [AP_EVT_BATCH_QUANTITY_CHANGED] =
        "{\"type\":\"BatchQuantityChanged\",\"ref\":\"b1\",\"sku\":\"RED-CHAIR\",\"qty\":50}",
    [AP_EVT_ALLOCATED] = "{\"type\":\"Allocated\",\"orderid\":\"o1\",\"sku\":\"RED-CHAIR\","
                         "\"qty\":10,\"batchref\":\"b1\"}",
    [AP_EVT_DEALLOCATED] = "{\"type\":\"Deallocated\",\"orderid\":\"o1\",\"sku\":\"RED-CHAIR\","
                           "\"qty\":10,\"batchref\":\"b1\"}",
    [AP_EVT_OUT_OF_STOCK] = "{\"type\":\"OutOfStock\",\"sku\":\"RED-CHAIR\"}",
};

static ap_rejection_t rejection(void)
{
    ap_rejection_t r;
    memset(&r, 0, sizeof r);
    r.command_type = AP_CMD_ALLOCATE;
    strcpy(r.reason, "invalid_sku");
    strcpy(r.message, "Invalid sku NOPE");
    strcpy(r.source_topic, "allocation.commands");
    r.source_partition = 3;
    r.source_offset = INT64_C(1234567890123);
    return r;
}

static const char rejection_json[] =
    "{\"type\":\"CommandRejected\",\"command_type\":\"Allocate\",\"reason\":\"invalid_sku\","
    "\"message\":\"Invalid sku NOPE\",\"source_topic\":\"allocation.commands\","
    "\"source_partition\":3,\"source_offset\":1234567890123}";

static ap_avro_codec_t *confluent_codec(void)
{
    ap_avro_codec_t *codec = NULL;
    const char *name, *text;
    assert_int_equal(ap_avro_codec_new(AP_WIRE_CONFLUENT, &codec), AP_OK);
    for (size_t i = 0; ap_avro_schema_at(codec, i, &name, &text); i++)
        assert_int_equal(ap_avro_codec_set_schema_id(codec, name, (int32_t)(100 + i)), AP_OK);
    return codec;
}

static void assert_same_msg(const ap_msg_t *a, const ap_msg_t *b)
{
    assert_int_equal(a->type, b->type);
    assert_string_equal(a->ref, b->ref);
    assert_string_equal(a->sku, b->sku);
    assert_string_equal(a->orderid, b->orderid);
    assert_string_equal(a->batchref, b->batchref);
    assert_int_equal(a->qty, b->qty);
    assert_int_equal(a->has_eta, b->has_eta);
    assert_int_equal(a->eta, b->eta);
}

static void assert_json(ap_avro_codec_t *codec, const uint8_t *value, size_t len,
                        const char *want)
{
    char *json = NULL;
    char why[256] = "";
    ap_err_t err = ap_avro_decode_to_json(codec, value, len, &json, why, sizeof why);
    if (err)
        fail_msg("decode_to_json: %s: %s", ap_strerror(err), why);
    assert_string_equal(json, want);
    free(json);
}

/* Round trips ----------------------------------------------------------------------------- */

static void round_trip_commands(ap_avro_codec_t *codec, bool confluent)
{
    ap_msg_t cmds[4], back;
    cmds[0] = create_batch(true);
    cmds[1] = create_batch(false);
    assert_int_equal(ap_msg_allocate(&cmds[2], "o1", "RED-CHAIR", 10), AP_OK);
    assert_int_equal(ap_msg_change_batch_quantity(&cmds[3], "b1", 0), AP_OK);

    for (size_t i = 0; i < 4; i++) {
        uint8_t *value = NULL;
        size_t len = 0;
        char why[256] = "";
        assert_int_equal(ap_avro_encode_command(codec, &cmds[i], &value, &len), AP_OK);
        assert_true(ap_avro_is_framed(value, len));
        assert_int_equal(value[0], confluent ? 0x00 : 0xC3);
        ap_err_t err = ap_avro_decode_command(codec, value, len, &back, why, sizeof why);
        if (err)
            fail_msg("command %zu: %s: %s", i, ap_strerror(err), why);
        assert_same_msg(&back, &cmds[i]);
        free(value);
    }
}

static void round_trip_events(ap_avro_codec_t *codec, bool confluent)
{
    for (int t = AP_EVT_BATCH_CREATED; t <= AP_EVT_OUT_OF_STOCK; t++) {
        ap_msg_t msg = event((ap_msg_type_t)t), cmd;
        uint8_t *value = NULL;
        size_t len = 0;
        char why[256] = "";
        assert_int_equal(ap_avro_encode_event(codec, &msg, &value, &len), AP_OK);
        assert_int_equal(value[0], confluent ? 0x00 : 0xC3);
        assert_json(codec, value, len, event_json[t]);
        /* An event is not a command. */
        assert_int_equal(ap_avro_decode_command(codec, value, len, &cmd, why, sizeof why),
                         AP_ERR_DECODE);
        assert_non_null(strstr(why, "is not a command"));
        free(value);
    }
    ap_rejection_t r = rejection();
    uint8_t *value = NULL;
    size_t len = 0;
    assert_int_equal(ap_avro_encode_rejection(codec, &r, &value, &len), AP_OK);
    assert_json(codec, value, len, rejection_json);
    free(value);
}

static void test_round_trip_single_object(void **state)
{
    ap_avro_codec_t *codec = NULL;
    (void)state;
    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    round_trip_commands(codec, false);
    round_trip_events(codec, false);
    ap_avro_codec_free(codec);
}

static void test_round_trip_confluent(void **state)
{
    ap_avro_codec_t *codec = confluent_codec();
    (void)state;
    round_trip_commands(codec, true);
    round_trip_events(codec, true);
    ap_avro_codec_free(codec);
}

static void test_single_object_header_is_the_fingerprint(void **state)
{
    ap_avro_codec_t *codec = NULL;
    const char *name = NULL, *text = NULL;
    ap_msg_t msg = event(AP_EVT_OUT_OF_STOCK);
    uint8_t *value = NULL;
    size_t len = 0, i;
    char *canonical = NULL;
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    for (i = 0; ap_avro_schema_at(codec, i, &name, &text); i++) {
        if (strcmp(name, "com.made.allocation.events.OutOfStock") == 0)
            break;
    }
    assert_non_null(text);
    assert_int_equal(ap_avro_canonical_form(text, &canonical), AP_OK);
    assert_string_equal(canonical,
                        "{\"name\":\"com.made.allocation.events.OutOfStock\",\"type\":\"record\","
                        "\"fields\":[{\"name\":\"sku\",\"type\":\"string\"}]}");
    uint64_t fp = ap_avro_crc64(canonical, strlen(canonical));
    free(canonical);

    assert_int_equal(ap_avro_encode_event(codec, &msg, &value, &len), AP_OK);
    /* C3 01, fingerprint little endian, then the string "RED-CHAIR" (zig-zag length 18). */
    assert_int_equal(len, 10 + 1 + 9);
    assert_int_equal(value[0], 0xC3);
    assert_int_equal(value[1], 0x01);
    for (int k = 0; k < 8; k++)
        assert_int_equal(value[2 + k], (uint8_t)(fp >> (8 * k)));
    assert_int_equal(value[10], 18);
    assert_memory_equal(value + 11, "RED-CHAIR", 9);
    free(value);
    ap_avro_codec_free(codec);
}

static void test_confluent_header_and_missing_id(void **state)
{
    ap_avro_codec_t *codec = NULL;
    ap_msg_t msg = event(AP_EVT_OUT_OF_STOCK);
    uint8_t *value = NULL;
    size_t len = 0;
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_CONFLUENT, &codec), AP_OK);
    /* No id registered for the schema yet: a configuration problem, not a crash. */
    assert_int_equal(ap_avro_encode_event(codec, &msg, &value, &len), AP_ERR_CONFIG);
    assert_int_equal(
        ap_avro_codec_set_schema_id(codec, "com.made.allocation.events.OutOfStock", 0x01020304),
        AP_OK);
    assert_int_equal(ap_avro_codec_set_schema_id(codec, "com.example.Nope", 7), AP_ERR_NOT_FOUND);
    assert_int_equal(ap_avro_encode_event(codec, &msg, &value, &len), AP_OK);
    assert_int_equal(len, 5 + 1 + 9);
    static const uint8_t header[] = {0x00, 0x01, 0x02, 0x03, 0x04, 18};
    assert_memory_equal(value, header, sizeof header);
    free(value);
    ap_avro_codec_free(codec);
}

static void test_json_of_null_eta_and_unknown_command_type(void **state)
{
    ap_avro_codec_t *codec = NULL;
    ap_msg_t msg = event(AP_EVT_BATCH_CREATED);
    ap_rejection_t r = rejection();
    uint8_t *value = NULL;
    size_t len = 0;
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    msg.has_eta = false;
    assert_int_equal(ap_avro_encode_event(codec, &msg, &value, &len), AP_OK);
    assert_json(codec, value, len,
                "{\"type\":\"BatchCreated\",\"ref\":\"b1\",\"sku\":\"RED-CHAIR\",\"qty\":100,"
                "\"eta\":null}");
    free(value);

    ap_msg_t cmd = create_batch(true);
    assert_int_equal(ap_avro_encode_command(codec, &cmd, &value, &len), AP_OK);
    assert_json(codec, value, len,
                "{\"type\":\"CreateBatch\",\"ref\":\"b1\",\"sku\":\"RED-CHAIR\",\"qty\":100,"
                "\"eta\":\"2026-12-01\"}");
    free(value);

    r.command_type = AP_MSG_NONE;
    r.source_offset = -1;
    assert_int_equal(ap_avro_encode_rejection(codec, &r, &value, &len), AP_OK);
    assert_json(codec, value, len,
                "{\"type\":\"CommandRejected\",\"command_type\":\"?\",\"reason\":\"invalid_sku\","
                "\"message\":\"Invalid sku NOPE\",\"source_topic\":\"allocation.commands\","
                "\"source_partition\":3,\"source_offset\":-1}");
    free(value);

    /* Wrong kinds of message are refused by the encoders. */
    assert_int_equal(ap_avro_encode_event(codec, &cmd, &value, &len), AP_ERR_INTERNAL);
    assert_int_equal(ap_avro_encode_command(codec, &msg, &value, &len), AP_ERR_INTERNAL);
    ap_avro_codec_free(codec);
}

/* Malformed input ------------------------------------------------------------------------- */

static ap_err_t decode(ap_avro_codec_t *codec, const uint8_t *value, size_t len, char *why,
                       size_t whylen)
{
    ap_msg_t cmd;
    char *json = NULL;
    char why2[256];
    ap_err_t err = ap_avro_decode_command(codec, value, len, &cmd, why, whylen);
    /* decode_to_json must agree that the input is bad (and not crash either). */
    ap_err_t err2 = ap_avro_decode_to_json(codec, value, len, &json, why2, sizeof why2);
    if (err2 == AP_OK)
        free(json);
    return err;
}

static void test_empty_and_header_only(void **state)
{
    ap_avro_codec_t *codec = confluent_codec();
    char why[256];
    static const uint8_t single[] = {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t confluent[] = {0x00, 0, 0, 0, 100};
    static const uint8_t json[] = "{\"type\":\"Allocate\"}";
    (void)state;

    assert_false(ap_avro_is_framed("", 0));
    assert_false(ap_avro_is_framed(json, sizeof json - 1));
    assert_true(ap_avro_is_framed(single, 1));
    assert_true(ap_avro_is_framed(confluent, 1));

    assert_int_equal(decode(codec, single, 0, why, sizeof why), AP_ERR_DECODE);
    assert_string_equal(why, "empty value");
    for (size_t n = 1; n < sizeof single; n++)
        assert_int_equal(decode(codec, single, n, why, sizeof why), AP_ERR_DECODE);
    assert_int_equal(decode(codec, (const uint8_t *)"\xC3\x02" "12345678", 10, why, sizeof why),
                     AP_ERR_DECODE);
    for (size_t n = 1; n < sizeof confluent; n++)
        assert_int_equal(decode(codec, confluent, n, why, sizeof why), AP_ERR_DECODE);
    /* Only the header of a known schema: an empty body is a truncated record. */
    assert_int_equal(decode(codec, confluent, sizeof confluent, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "truncated"));
    assert_int_equal(decode(codec, json, sizeof json - 1, why, sizeof why), AP_ERR_DECODE);
    ap_avro_codec_free(codec);
}

static void truncate_every_length(ap_avro_codec_t *codec, const ap_msg_t *cmd)
{
    uint8_t *value = NULL;
    size_t len = 0;
    char why[256];

    assert_int_equal(ap_avro_encode_command(codec, cmd, &value, &len), AP_OK);
    for (size_t n = 0; n < len; n++) {
        /* An exact-size copy, so ASan sees any read past the end. */
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, value, n);
        if (decode(codec, copy, n, why, sizeof why) != AP_ERR_DECODE)
            fail_msg("a value cut to %zu of %zu bytes was accepted", n, len);
        free(copy);
    }
    free(value);
}

static void test_truncated_at_every_length(void **state)
{
    ap_avro_codec_t *single = NULL, *confluent = confluent_codec();
    ap_msg_t cmds[3];
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &single), AP_OK);
    cmds[0] = create_batch(true);
    assert_int_equal(ap_msg_allocate(&cmds[1], "o1", "RED-CHAIR", 1000000), AP_OK);
    assert_int_equal(ap_msg_change_batch_quantity(&cmds[2], "b1", 5), AP_OK);
    for (size_t i = 0; i < 3; i++) {
        truncate_every_length(single, &cmds[i]);
        truncate_every_length(confluent, &cmds[i]);
    }
    ap_avro_codec_free(single);
    ap_avro_codec_free(confluent);
}

static void test_trailing_bytes(void **state)
{
    ap_avro_codec_t *codec = NULL;
    ap_msg_t cmd = create_batch(false);
    uint8_t *value = NULL;
    size_t len = 0;
    char why[256];
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    assert_int_equal(ap_avro_encode_command(codec, &cmd, &value, &len), AP_OK);
    uint8_t *longer = malloc(len + 2);
    memcpy(longer, value, len);
    longer[len] = 0x00;
    longer[len + 1] = 0x02;
    assert_int_equal(decode(codec, longer, len + 2, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "2 trailing bytes"));
    free(longer);
    free(value);
    ap_avro_codec_free(codec);
}

static void test_unknown_fingerprint(void **state)
{
    ap_avro_codec_t *codec = NULL;
    ap_msg_t cmd = create_batch(false);
    uint8_t *value = NULL;
    size_t len = 0;
    char why[256];
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    assert_int_equal(ap_avro_encode_command(codec, &cmd, &value, &len), AP_OK);
    value[5] ^= 0x40;
    assert_int_equal(decode(codec, value, len, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "unknown writer schema fingerprint"));
    free(value);
    ap_avro_codec_free(codec);
}

/* A fake schema registry: a few ids, a call counter and a canned error. */
struct registry {
    int calls;
    ap_err_t fail_with;
    struct {
        int32_t id;
        const char *json;
    } schemas[8];
};

static ap_err_t registry_lookup(void *ctx, int32_t id, char **schema_json)
{
    struct registry *registry = ctx;
    registry->calls++;
    if (registry->fail_with)
        return registry->fail_with;
    for (size_t i = 0; i < 8 && registry->schemas[i].json; i++) {
        if (registry->schemas[i].id == id) {
            *schema_json = strdup(registry->schemas[i].json);
            return *schema_json ? AP_OK : AP_ERR_NOMEM;
        }
    }
    return AP_ERR_NOT_FOUND;
}

static void test_unknown_confluent_id(void **state)
{
    ap_avro_codec_t *codec = confluent_codec();
    struct registry registry = {0};
    static const uint8_t value[] = {0x00, 0x00, 0x00, 0x30, 0x39, 0x02, 'x'};
    char why[256];
    (void)state;

    /* No registry configured. */
    assert_int_equal(decode(codec, value, sizeof value, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "unknown writer schema id 12345"));

    ap_avro_codec_set_lookup(codec, registry_lookup, &registry);
    assert_int_equal(decode(codec, value, sizeof value, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "unknown writer schema id 12345"));
    assert_true(registry.calls > 0);

    /* An unreachable registry is not the message's fault: the error is passed on. */
    registry.fail_with = AP_ERR_UNAVAILABLE;
    ap_msg_t cmd;
    assert_int_equal(ap_avro_decode_command(codec, value, sizeof value, &cmd, why, sizeof why),
                     AP_ERR_UNAVAILABLE);
    ap_avro_codec_free(codec);
}

static void test_string_over_255_bytes(void **state)
{
    ap_avro_codec_t *codec = NULL;
    const char *name, *text = NULL;
    uint8_t value[10 + 400];
    size_t len = 0;
    ap_msg_t cmd;
    char why[256] = "";
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    for (size_t i = 0; ap_avro_schema_at(codec, i, &name, &text); i++) {
        if (strcmp(name, "com.made.allocation.commands.Allocate") == 0)
            break;
    }
    /* Hand-made: the encoder cannot make an over-long field from an ap_msg_t. */
    char *canonical = NULL;
    assert_int_equal(ap_avro_canonical_form(text, &canonical), AP_OK);
    uint64_t fp = ap_avro_crc64(canonical, strlen(canonical));
    free(canonical);
    value[len++] = 0xC3;
    value[len++] = 0x01;
    for (int k = 0; k < 8; k++)
        value[len++] = (uint8_t)(fp >> (8 * k));
    value[len++] = 2 * 1; /* orderid "o" */
    value[len++] = 'o';
    value[len++] = (uint8_t)(0x80 | ((2 * 300) & 0x7f)); /* sku: 300 bytes */
    value[len++] = (uint8_t)((2 * 300) >> 7);
    memset(value + len, 'S', 300);
    len += 300;
    value[len++] = 2 * 7; /* qty 7 */

    assert_int_equal(ap_avro_decode_command(codec, value, len, &cmd, why, sizeof why),
                     AP_ERR_INVALID_COMMAND);
    assert_int_equal(cmd.type, AP_CMD_ALLOCATE);
    assert_non_null(strstr(why, "sku"));

    /* 255 bytes are fine. */
    value[12] = (uint8_t)(0x80 | ((2 * 255) & 0x7f));
    value[13] = (uint8_t)((2 * 255) >> 7);
    value[14 + 255] = 2 * 7;
    assert_int_equal(ap_avro_decode_command(codec, value, 14 + 256, &cmd, why, sizeof why), AP_OK);
    assert_int_equal(strlen(cmd.sku), 255);
    assert_int_equal(cmd.qty, 7);

    /* Text that is not UTF-8: an overlong '/', a lone surrogate, a cut sequence, a stray byte. */
    static const char *const not_utf8[] = {"\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xff"};
    for (size_t i = 0; i < 4; i++) {
        memcpy(value + 14, not_utf8[i], strlen(not_utf8[i]));
        assert_int_equal(ap_avro_decode_command(codec, value, 14 + 256, &cmd, why, sizeof why),
                         AP_ERR_INVALID_COMMAND);
        assert_non_null(strstr(why, "UTF-8"));
        memset(value + 14, 'S', 4);
    }
    memcpy(value + 14, "\xe2\x82\xac\xf0\x9f\x98\x80", 7); /* a euro sign and an emoji */
    assert_int_equal(ap_avro_decode_command(codec, value, 14 + 256, &cmd, why, sizeof why), AP_OK);

    /* A length far beyond the body, and a negative one. */
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    memcpy(value + 12, huge, sizeof huge);
    assert_int_equal(decode(codec, value, 12 + sizeof huge + 3, why, sizeof why), AP_ERR_DECODE);
    value[12] = 0x03; /* zig-zag -2 */
    assert_int_equal(decode(codec, value, 20, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "negative length"));
    ap_avro_codec_free(codec);
}

static void test_eta_out_of_range_and_bad_branch(void **state)
{
    ap_avro_codec_t *codec = NULL;
    ap_msg_t cmd = create_batch(true);
    uint8_t *value = NULL;
    size_t len = 0;
    char why[256] = "";
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    cmd.eta = INT32_MAX;
    assert_int_equal(ap_avro_encode_command(codec, &cmd, &value, &len), AP_OK);
    assert_int_equal(ap_avro_decode_command(codec, value, len, &cmd, why, sizeof why),
                     AP_ERR_INVALID_COMMAND);
    assert_int_equal(cmd.type, AP_CMD_CREATE_BATCH);
    assert_non_null(strstr(why, "eta"));
    /* Printed as a number rather than a date nobody can write. */
    assert_json(codec, value, len,
                "{\"type\":\"CreateBatch\",\"ref\":\"b1\",\"sku\":\"RED-CHAIR\",\"qty\":100,"
                "\"eta\":2147483647}");
    free(value);

    /* The edges: years 0001 and 9999 are dates, one day beyond is not. */
    const int32_t edges[] = {day("0001-01-01"), day("9999-12-31")};
    for (int k = 0; k < 2; k++) {
        for (int past = 0; past < 2; past++) {
            cmd = create_batch(true);
            cmd.eta = edges[k] + (past ? (k ? 1 : -1) : 0);
            assert_int_equal(ap_avro_encode_command(codec, &cmd, &value, &len), AP_OK);
            assert_int_equal(ap_avro_decode_command(codec, value, len, &cmd, why, sizeof why),
                             past ? AP_ERR_INVALID_COMMAND : AP_OK);
            free(value);
        }
    }

    cmd = create_batch(false);
    assert_int_equal(ap_avro_encode_command(codec, &cmd, &value, &len), AP_OK);
    assert_int_equal(value[len - 1], 0x00); /* the union's null branch */
    value[len - 1] = 0x04;                  /* branch 2 of 2 */
    assert_int_equal(decode(codec, value, len, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "union branch"));
    free(value);
    ap_avro_codec_free(codec);
}

/* Random corruption: whatever the bytes, a clean answer. */
static void test_random_corruption(void **state)
{
    ap_avro_codec_t *codec = confluent_codec();
    struct registry registry = {0};
    uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);
    ap_msg_t cmd = create_batch(true);
    uint8_t *value = NULL, *single = NULL;
    size_t len = 0, single_len = 0;
    ap_avro_codec_t *plain = NULL;
    (void)state;

    ap_avro_codec_set_lookup(codec, registry_lookup, &registry);
    assert_int_equal(ap_avro_encode_command(codec, &cmd, &value, &len), AP_OK);
    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &plain), AP_OK);
    assert_int_equal(ap_avro_encode_command(plain, &cmd, &single, &single_len), AP_OK);
    ap_avro_codec_free(plain);

    for (int round = 0; round < 20000; round++) {
        const uint8_t *src = round % 2 ? value : single;
        size_t n = round % 2 ? len : single_len;
        size_t header = round % 2 ? 5 : 10;
        uint8_t buf[64];
        char why[256];
        memcpy(buf, src, n);
        for (int flips = 0; flips < 1 + round % 4; flips++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            buf[header + seed % (n - header)] = (uint8_t)(seed >> 32);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        size_t cut = n - seed % 3;
        uint8_t *exact = malloc(cut);
        memcpy(exact, buf, cut);
        ap_err_t err = decode(codec, exact, cut, why, sizeof why);
        assert_true(err == AP_OK || err == AP_ERR_DECODE || err == AP_ERR_INVALID_COMMAND);
        free(exact);
    }
    free(value);
    free(single);
    ap_avro_codec_free(codec);
}

/* Schema resolution through the registry -------------------------------------------------- */

/* CreateBatch as an older producer wrote it: no eta, and a field we do not know. */
static const char create_batch_v0[] =
    "{\"type\":\"record\",\"name\":\"CreateBatch\",\"namespace\":\"com.made.allocation.commands\","
    "\"fields\":[{\"name\":\"ref\",\"type\":\"string\"},{\"name\":\"note\",\"type\":\"string\"},"
    "{\"name\":\"sku\",\"type\":\"string\"},{\"name\":\"qty\",\"type\":\"int\"}]}";
/* Allocate without its sku, which has no default. */
static const char allocate_no_sku[] =
    "{\"type\":\"record\",\"name\":\"Allocate\",\"namespace\":\"com.made.allocation.commands\","
    "\"fields\":[{\"name\":\"orderid\",\"type\":\"string\"},{\"name\":\"qty\",\"type\":\"long\"}]}";
static const char stranger[] =
    "{\"type\":\"record\",\"name\":\"Stranger\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}";

static void test_registry_writer_schemas(void **state)
{
    ap_avro_codec_t *codec = confluent_codec();
    struct registry registry = {.schemas = {{7, create_batch_v0},
                                            {8, allocate_no_sku},
                                            {9, stranger},
                                            {10, "{not json"},
                                            {11, "\"string\""}}};
    ap_msg_t cmd;
    char why[256] = "";
    (void)state;
    ap_avro_codec_set_lookup(codec, registry_lookup, &registry);

    /* ref "b1", note "hi", sku "S", qty 5 (an int widened to our long). */
    static const uint8_t v0[] = {0x00, 0, 0, 0, 7, 4, 'b', '1', 4, 'h', 'i', 2, 'S', 10};
    assert_int_equal(ap_avro_decode_command(codec, v0, sizeof v0, &cmd, why, sizeof why), AP_OK);
    assert_int_equal(cmd.type, AP_CMD_CREATE_BATCH);
    assert_string_equal(cmd.ref, "b1");
    assert_string_equal(cmd.sku, "S");
    assert_int_equal(cmd.qty, 5);
    assert_false(cmd.has_eta); /* our default */
    assert_json(codec, v0, sizeof v0,
                "{\"type\":\"CreateBatch\",\"ref\":\"b1\",\"sku\":\"S\",\"qty\":5,\"eta\":null}");
    /* The writer is cached: one lookup however many messages. */
    assert_int_equal(registry.calls, 1);
    assert_int_equal(ap_avro_decode_command(codec, v0, sizeof v0, &cmd, why, sizeof why), AP_OK);
    assert_int_equal(registry.calls, 1);
    /* Truncated under that writer too. */
    for (size_t n = 5; n < sizeof v0; n++)
        assert_int_equal(decode(codec, v0, n, why, sizeof why), AP_ERR_DECODE);

    static const uint8_t v8[] = {0x00, 0, 0, 0, 8, 2, 'o', 2};
    assert_int_equal(decode(codec, v8, sizeof v8, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "lacks field sku"));
    static const uint8_t v9[] = {0x00, 0, 0, 0, 9, 2};
    assert_int_equal(decode(codec, v9, sizeof v9, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "Stranger, which we do not know"));
    static const uint8_t v10[] = {0x00, 0, 0, 0, 10, 2};
    assert_int_equal(decode(codec, v10, sizeof v10, why, sizeof why), AP_ERR_DECODE);
    static const uint8_t v11[] = {0x00, 0, 0, 0, 11, 2, 'x'};
    assert_int_equal(decode(codec, v11, sizeof v11, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "not a record"));
    /* Failures are cached too: ids never change their schema. */
    int calls = registry.calls;
    assert_int_equal(decode(codec, v8, sizeof v8, why, sizeof why), AP_ERR_DECODE);
    assert_int_equal(registry.calls, calls);
    ap_avro_codec_free(codec);
}

/* Allocate with extra fields of every shape: a linked list, an array, a map, an enum, a
 * fixed, a float, a double, a boolean and bytes. */
static const char allocate_extras[] =
    "{\"type\":\"record\",\"name\":\"Allocate\",\"namespace\":\"com.made.allocation.commands\","
    "\"fields\":[{\"name\":\"orderid\",\"type\":\"string\"},"
    "{\"name\":\"next\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"Node\",\"fields\":"
    "[{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}]},"
    "{\"name\":\"sku\",\"type\":\"string\"},"
    "{\"name\":\"list\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
    "{\"name\":\"colour\",\"type\":{\"type\":\"enum\",\"name\":\"Colour\","
    "\"symbols\":[\"RED\",\"BLUE\"]}},"
    "{\"name\":\"hash\",\"type\":{\"type\":\"fixed\",\"name\":\"Hash\",\"size\":2}},"
    "{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"b\",\"type\":\"boolean\"},{\"name\":\"raw\",\"type\":\"bytes\"},"
    "{\"name\":\"qty\",\"type\":\"long\"}]}";
/* Allocate whose qty is a string: does not resolve. */
static const char allocate_string_qty[] =
    "{\"type\":\"record\",\"name\":\"Allocate\",\"namespace\":\"com.made.allocation.commands\","
    "\"fields\":[{\"name\":\"orderid\",\"type\":\"string\"},{\"name\":\"sku\",\"type\":\"string\"},"
    "{\"name\":\"qty\",\"type\":\"string\"}]}";
/* CreateBatch whose eta is a plain date, not a union with null. */
static const char create_batch_plain_eta[] =
    "{\"type\":\"record\",\"name\":\"CreateBatch\",\"namespace\":\"com.made.allocation.commands\","
    "\"fields\":[{\"name\":\"ref\",\"type\":\"string\"},{\"name\":\"sku\",\"type\":\"string\"},"
    "{\"name\":\"qty\",\"type\":\"long\"},"
    "{\"name\":\"eta\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}}]}";

/* Appends the extras body of allocate_extras after the orderid, with `depth` list nodes. */
static size_t extras_body(uint8_t *buf, size_t depth, bool blocks_with_sizes)
{
    size_t n = 0;
    static const uint8_t head[] = {0x00, 0, 0, 0, 20, 2, 'o'};
    memcpy(buf, head, sizeof head);
    n = sizeof head;
    for (size_t i = 0; i < depth; i++)
        buf[n++] = 2; /* branch Node */
    buf[n++] = 0;     /* null: the end of the list */
    buf[n++] = 2;     /* sku "S" */
    buf[n++] = 'S';
    if (blocks_with_sizes) {
        /* list: a block of -2 items in 2 bytes (1, 2), then a block of 1 (3), then 0. */
        static const uint8_t list[] = {3, 4, 2, 4, 2, 6, 0};
        memcpy(buf + n, list, sizeof list);
        n += sizeof list;
    } else {
        buf[n++] = 0; /* an empty list */
    }
    static const uint8_t rest[] = {
        2, 2, 'k', 2, 'v', 0,         /* tags {"k": "v"} */
        2,                            /* colour BLUE */
        0xAB, 0xCD,                   /* hash */
        0, 0, 0x80, 0x3f,             /* f 1.0 */
        0, 0, 0, 0, 0, 0, 0xf0, 0x3f, /* d 1.0 */
        1,                            /* b true */
        4, 0xff, 0x00,                /* raw, 2 bytes */
        14,                           /* qty 7 */
    };
    memcpy(buf + n, rest, sizeof rest);
    return n + sizeof rest;
}

static void test_registry_writer_with_unknown_fields_of_every_type(void **state)
{
    ap_avro_codec_t *codec = confluent_codec();
    struct registry registry = {.schemas = {{20, allocate_extras},
                                            {21, allocate_string_qty},
                                            {22, create_batch_plain_eta}}};
    uint8_t buf[256];
    ap_msg_t cmd;
    char why[256] = "";
    size_t len;
    (void)state;
    ap_avro_codec_set_lookup(codec, registry_lookup, &registry);

    for (int sizes = 0; sizes < 2; sizes++) {
        len = extras_body(buf, 5, sizes);
        ap_err_t err = ap_avro_decode_command(codec, buf, len, &cmd, why, sizeof why);
        if (err)
            fail_msg("%s: %s", ap_strerror(err), why);
        assert_string_equal(cmd.orderid, "o");
        assert_string_equal(cmd.sku, "S");
        assert_int_equal(cmd.qty, 7);
        assert_json(codec, buf, len,
                    "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":\"S\",\"qty\":7}");
        for (size_t n = 0; n < len; n++)
            assert_int_equal(decode(codec, buf, n, why, sizeof why), AP_ERR_DECODE);
    }
    /* A list nested deeper than we follow: refused before avro-c recurses into it. */
    len = extras_body(buf, 100, false);
    assert_int_equal(decode(codec, buf, len, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "nested too deeply"));
    /* A block whose size does not match its items; an enum symbol out of range. */
    len = extras_body(buf, 0, true);
    buf[11] = 6; /* the block of -2 items claims 3 bytes */
    assert_int_equal(decode(codec, buf, len, why, sizeof why), AP_ERR_DECODE);
    len = extras_body(buf, 0, false);
    buf[17] = 4; /* colour 2 of 2 */
    assert_int_equal(decode(codec, buf, len, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "enum symbol"));
    buf[17] = 2;
    buf[len - 5] = 2; /* b: neither 0 nor 1 */
    assert_int_equal(decode(codec, buf, len, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "boolean"));

    static const uint8_t v21[] = {0x00, 0, 0, 0, 21, 2, 'o', 2, 'S', 2, '7'};
    assert_int_equal(decode(codec, v21, sizeof v21, why, sizeof why), AP_ERR_DECODE);
    assert_non_null(strstr(why, "does not resolve"));

    /* A writer's plain int reaches our ["null", date] union. */
    int32_t eta = day("2026-12-01");
    uint8_t v22[] = {0x00, 0, 0, 0, 22, 2, 'b', 2, 'S', 2, 0, 0, 0, 0};
    uint32_t zz = (uint32_t)eta << 1; /* zig-zag of a positive int */
    size_t n = 10;
    while (zz >= 0x80) {
        v22[n++] = (uint8_t)(zz | 0x80);
        zz >>= 7;
    }
    v22[n++] = (uint8_t)zz;
    ap_err_t err = ap_avro_decode_command(codec, v22, n, &cmd, why, sizeof why);
    if (err)
        fail_msg("%s: %s", ap_strerror(err), why);
    assert_true(cmd.has_eta);
    assert_int_equal(cmd.eta, eta);
    ap_avro_codec_free(codec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_form_spec_vectors),
        cmocka_unit_test(test_canonical_form_refuses_non_schemas),
        cmocka_unit_test(test_every_schema_parses_and_is_documented),
        cmocka_unit_test(test_round_trip_single_object),
        cmocka_unit_test(test_round_trip_confluent),
        cmocka_unit_test(test_single_object_header_is_the_fingerprint),
        cmocka_unit_test(test_confluent_header_and_missing_id),
        cmocka_unit_test(test_json_of_null_eta_and_unknown_command_type),
        cmocka_unit_test(test_empty_and_header_only),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_unknown_fingerprint),
        cmocka_unit_test(test_unknown_confluent_id),
        cmocka_unit_test(test_string_over_255_bytes),
        cmocka_unit_test(test_eta_out_of_range_and_bad_branch),
        cmocka_unit_test(test_random_corruption),
        cmocka_unit_test(test_registry_writer_schemas),
        cmocka_unit_test(test_registry_writer_with_unknown_fields_of_every_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
