/*
 * bootstrap.c - the composition root. It decides which adapter fills which port and hands
 * the bus its handlers; nothing else in the program does either.
 */
#include "ap/bootstrap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/email.h"
#include "ap/log.h"
#include "ap/pg.h"
#include "ap/topics.h"

ap_err_t ap_bootstrap(ap_app_t *app, ap_uow_t *uow, ap_publisher_t *publisher,
                      ap_notifier_t *notifier, ap_clock_t *clock, const char *notify_to)
{
    memset(app, 0, sizeof *app);
    app->deps.uow = uow;
    app->deps.publisher = publisher;
    app->deps.notifier = notifier;
    app->deps.clock = clock;
    app->deps.notify_to = strdup(notify_to ? notify_to : AP_NOTIFY_TO_DEFAULT);
    ap_bus_init(&app->bus, &app->deps, &ap_default_handlers);
    if (!uow || !publisher || !notifier || !clock || !app->deps.notify_to) {
        ap_app_release(app);
        return AP_ERR_NOMEM;
    }
    return AP_OK;
}

void ap_app_release(ap_app_t *app)
{
    ap_bus_release(&app->bus);
    ap_uow_free(app->deps.uow);
    ap_publisher_free(app->deps.publisher);
    ap_notifier_free(app->deps.notifier);
    ap_clock_free(app->deps.clock);
    free((char *)app->deps.notify_to);
    memset(app, 0, sizeof *app);
}

/* The topic a compiled-in schema's records go to, or false for schemas we never write. */
static bool topic_of_schema(const ap_config_t *cfg, const char *full_name, char *buf, size_t len)
{
    const char *dot = strrchr(full_name, '.');
    const char *name = dot ? dot + 1 : full_name;
    if (strcmp(full_name, AP_AVRO_REJECTION_NAME) == 0) {
        ap_topic_rejections(cfg->topic_prefix, buf, len);
        return true;
    }
    ap_msg_type_t type = ap_msg_type_parse(name, strlen(name));
    if (!ap_msg_is_event(type))
        return false;
    ap_topic_event(cfg->topic_prefix, type, buf, len);
    return true;
}

static ap_err_t lookup_schema(void *ctx, int32_t id, char **schema_json)
{
    return ap_registry_schema_by_id(ctx, id, schema_json);
}

/* Registers every event schema under its topic's subject and tells the codec the ids. */
static ap_err_t register_schemas(ap_runtime_t *rt, const ap_config_t *cfg)
{
    const char *full_name, *schema;
    char topic[AP_TOPIC_SIZE], subject[AP_TOPIC_SIZE + 20], why[512];
    ap_err_t err;

    if ((err = ap_registry_new(cfg->schema_registry_url, &rt->registry)))
        return err;
    ap_avro_codec_set_lookup(rt->codec, lookup_schema, rt->registry);
    for (size_t i = 0; ap_avro_schema_at(rt->codec, i, &full_name, &schema); i++) {
        int32_t id;
        if (!topic_of_schema(cfg, full_name, topic, sizeof topic))
            continue;
        snprintf(subject, sizeof subject, "%s-value", topic);
        if ((err = ap_registry_register(rt->registry, subject, schema, &id, why, sizeof why))) {
            AP_ERROR("bootstrap", "schema registry refused %s: %s", subject, why);
            return err;
        }
        if ((err = ap_avro_codec_set_schema_id(rt->codec, full_name, id)))
            return err;
        AP_INFO("bootstrap", "registered %s as schema id %d", subject, (int)id);
    }
    return AP_OK;
}

ap_err_t ap_bootstrap_runtime(ap_runtime_t *rt, const ap_config_t *cfg)
{
    ap_uow_t *uow = NULL;
    ap_notifier_t *notifier = NULL;
    ap_err_t err;
    bool confluent = strcmp(cfg->avro_wire_format, "confluent") == 0;

    memset(rt, 0, sizeof *rt);
    err = ap_avro_codec_new(confluent ? AP_WIRE_CONFLUENT : AP_WIRE_SINGLE_OBJECT, &rt->codec);
    if (err == AP_OK && confluent)
        err = register_schemas(rt, cfg);
    if (err == AP_OK)
        err = ap_pg_uow_new(cfg->database_url, &uow);
    if (err == AP_OK && (err = ap_uow_keep_committed(uow, cfg->product_cache_bytes)))
        ap_uow_free(uow);
    if (err == AP_OK && (err = ap_pg_outbox_new(uow, rt->codec, cfg->topic_prefix, &rt->outbox)))
        ap_uow_free(uow);
    /* Out-of-stock emails are rows of email_outbox, sent by the email sender after commit. */
    if (err == AP_OK && (err = ap_pg_email_outbox_new(uow, cfg->topic_prefix, &notifier))) {
        ap_publisher_free(ap_outbox_publisher(rt->outbox));
        ap_uow_free(uow);
    }
    if (err == AP_OK)
        err = ap_bootstrap(&rt->app, uow, ap_outbox_publisher(rt->outbox), notifier,
                           ap_system_clock_new(), cfg->notify_to);
    if (err) {
        /* ap_bootstrap frees what it was given, also on failure. */
        rt->outbox = NULL;
        ap_runtime_release(rt);
    }
    return err;
}

void ap_runtime_release(ap_runtime_t *rt)
{
    if (rt->app.deps.uow)
        ap_app_release(&rt->app);
    ap_avro_codec_free(rt->codec);
    ap_registry_free(rt->registry);
    memset(rt, 0, sizeof *rt);
}
