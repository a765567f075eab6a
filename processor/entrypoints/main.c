/*
 * main.c - the command line: `allocation-processor [--config FILE] COMMAND [ARGS]`.
 *
 * Exit codes: 0 success; 1 a runtime failure (or `allocations` found nothing); 2 a usage or
 * configuration error, always reported as one line naming the problem.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/backoff.h"
#include "ap/bootstrap.h"
#include "ap/config.h"
#include "ap/denial.h"
#include "ap/log.h"
#include "ap/outcomes.h"
#include "ap/pg.h"
#include "ap/registry.h"
#include "entrypoints/command_gateway.h"
#include "entrypoints/consumer_pool.h"
#include "entrypoints/decode_stream.h"
#include "entrypoints/email_sender.h"
#include "ap/relay.h"
#include "entrypoints/http_routes.h"
#include "entrypoints/instruments.h"

extern char **environ;

static volatile sig_atomic_t stop_requested;

static const char usage[] =
    "Usage: allocation-processor [--config FILE] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  run                   apply migrations, then consume the command topics and serve\n"
    "                        HTTP on HTTP_ADDR until SIGINT/SIGTERM\n"
    "  migrate               apply the SQL migrations not applied yet\n"
    "  allocations ORDERID   print the read model for one order as JSON\n"
    "  decode                read event values framed as by kcat -f '%R%s' on stdin and\n"
    "                        print each as one line of JSON\n"
    "\n"
    "Options:\n"
    "  --config FILE         read KEY=value settings from FILE (the environment wins)\n"
    "  -h, --help            show this help\n"
    "  -V, --version         show the version\n"
    "\n"
    "Configuration comes from environment variables (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS,\n"
    "KAFKA_GROUP_ID, COMMAND_TOPICS, TOPIC_PREFIX, LOG_LEVEL, LOG_FORMAT, KAFKA_<NAME>, ...);\n"
    "see the README.\n";

/* Prints one line, "allocation-processor: <problem> <detail> (see --help)", and gives 2. */
static int fail_usage(const char *problem, const char *detail)
{
    fprintf(stderr, "allocation-processor: %s%s%s (see --help)\n", problem, *detail ? " " : "",
            detail);
    return 2;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Migrations, retried while Postgres is not reachable yet (it may start after us). */
static ap_err_t migrate_when_ready(const ap_config_t *cfg, ap_health_t *health)
{
    ap_clock_t *clock = ap_system_clock_new();
    ap_err_t err = AP_ERR_NOMEM;

    for (unsigned attempt = 0; clock; attempt++) {
        int applied = 0;
        err = ap_pg_migrate(cfg->database_url, &applied);
        if (err != AP_ERR_UNAVAILABLE || stop_requested)
            break;
        int64_t wait = ap_backoff_ms(250, 8000, attempt);
        /* A refusal was said once already (ap/denial.h); /readyz keeps saying it. */
        ap_log(ap_denial_get(AP_SERVICE_POSTGRES, NULL, 0) ? AP_LOG_DEBUG : AP_LOG_WARN, "main",
               "database not reachable; retrying in %lld ms", (long long)wait);
        for (int64_t slept = 0; slept < wait && !stop_requested; slept += 50) {
            atomic_store(&health->heartbeat_ms, ap_health_now_ms()); /* waiting, alive */
            ap_clock_sleep_ms(clock, 50);
        }
    }
    ap_clock_free(clock);
    return err;
}

/* The HTTP side: its own Postgres sessions and producer, then the listener. */
static ap_err_t start_http(const ap_config_t *cfg, ap_health_t *health,
                           const ap_instruments_t *ins, ap_outcome_store_t **outcomes,
                           ap_command_gateway_t **gateway, ap_http_api_t **api)
{
    ap_err_t err;
    if ((*outcomes = ap_pg_outcome_store_new(cfg, &err)) &&
        (*gateway = ap_command_gateway_start(cfg, &err))) {
        ap_http_api_deps_t deps = {.cfg = cfg, .gateway = *gateway, .outcomes = *outcomes,
                                   .health = health, .ins = ins};
        err = ap_http_api_start(&deps, api);
    }
    return err;
}

static int cmd_run(const ap_config_t *cfg)
{
    ap_consumer_pool_t *consumers = NULL;
    ap_relay_t *relay = NULL;
    ap_email_sender_t *email = NULL;
    ap_instruments_t ins;
    ap_health_t health;
    ap_outcome_store_t *outcomes = NULL;
    ap_command_gateway_t *gateway = NULL;
    ap_http_api_t *api = NULL;
    ap_err_t err;
    int rc = 1;

    install_signal_handlers();
    AP_INFO("main", "allocation-processor %s starting", AP_VERSION);
    if (!ap_instruments_init(&ins)) {
        AP_ERROR("main", "cannot start: %s", ap_strerror(AP_ERR_NOMEM));
        return 1;
    }
    ap_health_init(&health);
    /* HTTP first, so the probes answer (alive, not ready) while migrations wait. */
    if ((err = start_http(cfg, &health, &ins, &outcomes, &gateway, &api))) {
        AP_ERROR("main", "cannot start the HTTP API: %s", ap_strerror(err));
        goto out;
    }
    if ((err = migrate_when_ready(cfg, &health))) {
        if (stop_requested)
            rc = 0;
        else
            AP_ERROR("main", "migrations failed: %s", ap_strerror(err));
        goto out;
    }
    if (!(consumers = ap_consumer_pool_new(cfg, &ins, &err))) {
        AP_ERROR("main", "cannot start: %s", ap_strerror(err));
        goto out;
    }
    if (!(relay = ap_relay_start(cfg, &err))) {
        AP_ERROR("main", "cannot start the outbox relay: %s", ap_strerror(err));
        goto out;
    }
    if (!(email = ap_email_sender_start(cfg, &err))) {
        AP_ERROR("main", "cannot start the email sender: %s", ap_strerror(err));
        goto out;
    }
    ap_relay_observe_latency(relay, ins.event_latency);
    ap_http_api_set_relay(api, relay);
    ap_http_api_set_email_sender(api, email);
    rc = ap_consumer_pool_run(consumers, &health, &stop_requested);
    /* The consumers have committed their last records; let the relay deliver what it can. */
    ap_http_api_set_relay(api, NULL);
    ap_http_api_set_email_sender(api, NULL);
out:
    ap_relay_stop(relay);
    ap_email_sender_stop(email);
    ap_consumer_pool_free(consumers);
    ap_http_api_stop(api);
    ap_command_gateway_stop(gateway);
    ap_outcome_store_free(outcomes);
    ap_instruments_release(&ins);
    AP_INFO("main", "stopped");
    return rc;
}

static int cmd_migrate(const ap_config_t *cfg)
{
    int applied = 0;
    ap_err_t err = ap_pg_migrate(cfg->database_url, &applied);
    if (err) {
        AP_ERROR("main", "migrations failed: %s", ap_strerror(err));
        return 1;
    }
    AP_INFO("main", "%d migration(s) applied", applied);
    return 0;
}

static int cmd_allocations(const ap_config_t *cfg, const char *orderid)
{
    ap_views_t *views = NULL;
    ap_allocation_row_t *rows = NULL;
    size_t nrows = 0;
    int rc = 1;

    ap_err_t err = ap_pg_views_new(cfg->database_url, &views);
    if (err == AP_OK)
        err = ap_views_allocations(views, orderid, &rows, &nrows);
    if (err == AP_ERR_NOT_FOUND) {
        fputs("not found\n", stderr);
        goto out;
    }
    if (err) {
        AP_ERROR("main", "reading allocations: %s", ap_strerror(err));
        goto out;
    }

    json_t *array = ap_http_allocations_json(rows, nrows);
    char *text = json_dumps(array, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(array);
    if (text) {
        puts(text);
        free(text);
        rc = 0;
    }
out:
    free(rows);
    ap_views_free(views);
    return rc;
}

static ap_err_t lookup_schema(void *ctx, int32_t id, char **schema_json)
{
    return ap_registry_schema_by_id(ctx, id, schema_json);
}

/*
 * `decode`: a stream of (4-byte big-endian length, value) pairs, as kcat's -f '%R%s' writes
 * them, to one JSON line per value (entrypoints/decode_stream.c). A value that cannot be
 * decoded is reported on stderr and the stream goes on; the exit code says whether any failed.
 */
static int cmd_decode(const ap_config_t *cfg)
{
    ap_avro_codec_t *codec = NULL;
    ap_registry_t *registry = NULL;
    size_t failed = 0;
    int rc = 1;

    if (ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec))
        goto out;
    if (cfg->schema_registry_url) {
        if (ap_registry_new(cfg->schema_registry_url, &registry))
            goto out;
        ap_avro_codec_set_lookup(codec, lookup_schema, registry);
    }
    if (ap_decode_stream(codec, stdin, stdout, stderr, &failed) == AP_OK)
        rc = failed ? 1 : 0;
out:
    ap_registry_free(registry);
    ap_avro_codec_free(codec);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config_file = NULL;
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            printf("allocation-processor %s\n", AP_VERSION);
            return 0;
        }
        if (strcmp(arg, "--config") == 0) {
            if (++i == argc)
                return fail_usage("a file name must follow", arg);
            config_file = argv[i];
        } else if (strncmp(arg, "--config=", 9) == 0) {
            config_file = arg + 9;
        } else {
            return fail_usage("unknown option", arg);
        }
    }
    if (i == argc)
        return fail_usage("missing command", "");

    static const struct {
        const char *name;
        int nargs;
        const char *args;
    } commands[] = {{"run", 0, ""}, {"migrate", 0, ""}, {"allocations", 1, " ORDERID"},
                    {"decode", 0, ""}};
    const char *command = argv[i++];
    size_t c = 0;
    while (c < sizeof commands / sizeof *commands && strcmp(commands[c].name, command) != 0)
        c++;
    if (c == sizeof commands / sizeof *commands)
        return fail_usage("unknown command", command);
    if (argc - i != commands[c].nargs) {
        fprintf(stderr, "allocation-processor: usage: allocation-processor %s%s (see --help)\n",
                command, commands[c].args);
        return 2;
    }

    ap_config_t cfg;
    char err[512];
    if (ap_config_load(&cfg, config_file, environ, err, sizeof err)) {
        fprintf(stderr, "allocation-processor: %s\n", err);
        return 2;
    }
    ap_log_setup(cfg.log_level, cfg.log_json);

    int rc;
    if (strcmp(command, "run") == 0)
        rc = cmd_run(&cfg);
    else if (strcmp(command, "migrate") == 0)
        rc = cmd_migrate(&cfg);
    else if (strcmp(command, "decode") == 0)
        rc = cmd_decode(&cfg);
    else
        rc = cmd_allocations(&cfg, argv[i]);
    ap_config_release(&cfg);
    return rc;
}
