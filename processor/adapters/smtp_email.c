/*
 * smtp_email.c - the email's text and its delivery over SMTP with libcurl (email.h).
 *
 * The message is built here, whole, before libcurl sees it: headers cleaned of control
 * characters (a sku typed into Kafka must not add a header), a non-ASCII subject as an
 * RFC 2047 encoded word, CRLF line ends. libcurl does the SMTP dialogue (EHLO, STARTTLS when
 * offered or smtps://, AUTH, MAIL FROM, RCPT TO, DATA with dot-stuffing). Neither the URL nor
 * the credentials are ever logged or put in an error text: only scheme, host and port.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/email.h"
#include "ap/log.h"
#include "ap/secret.h"
#include "ap/strbuf.h"

/* ---------------------------------------------------------------- the message */

void ap_email_message_id(const char *event_id, const char *from,
                         char out[AP_EMAIL_MESSAGE_ID_SIZE])
{
    const char *at = from ? strrchr(from, '@') : NULL;
    const char *domain = at && at[1] ? at + 1 : "allocation-processor.invalid";
    char clean[254]; /* a domain name has at most 253 characters */
    size_t n = 0;

    /* Only what an id-right may hold (dot-atom text), so the id stays one token. */
    for (const char *p = domain; *p && n + 1 < sizeof clean; p++) {
        unsigned char c = (unsigned char)*p;
        if (c > ' ' && c < 0x7f && !strchr("<>()[]\\,;:@\"", c))
            clean[n++] = (char)c;
    }
    clean[n] = '\0';
    snprintf(out, AP_EMAIL_MESSAGE_ID_SIZE, "<%.64s@%s>", event_id,
             n ? clean : "allocation-processor.invalid");
}

/* A header field's value on one line: every control character becomes a space. */
static void put_field(ap_strbuf_t *t, const char *name, const char *value)
{
    ap_strbuf_adds(t, name);
    ap_strbuf_adds(t, ": ");
    for (const char *p = value; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char ch = c < ' ' || c == 0x7f ? ' ' : (char)c;
        ap_strbuf_addch(t, ch);
    }
    ap_strbuf_adds(t, "\r\n");
}

static bool plain_ascii(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x7f)
            return false;
    }
    return true;
}

/* "=?UTF-8?B?...?=" words of at most 45 bytes of text each (60 of base64), folded. */
static void put_encoded_subject(ap_strbuf_t *t, const char *subject)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = strlen(subject);

    ap_strbuf_adds(t, "Subject:");
    for (size_t start = 0; start < len;) {
        /* Never split a UTF-8 sequence across words. */
        size_t end = start + 45 < len ? start + 45 : len;
        while (end < len && end > start && ((unsigned char)subject[end] & 0xC0) == 0x80)
            end--;
        ap_strbuf_adds(t, start ? "\r\n =?UTF-8?B?" : " =?UTF-8?B?");
        for (size_t i = start; i < end; i += 3) {
            unsigned char c[3] = {0, 0, 0};
            size_t k = end - i < 3 ? end - i : 3;
            for (size_t j = 0; j < k; j++) {
                unsigned char ch = (unsigned char)subject[i + j];
                c[j] = ch < ' ' || ch == 0x7f ? ' ' : ch;
            }
            char out[4] = {b64[c[0] >> 2], b64[(c[0] & 3) << 4 | c[1] >> 4],
                           k > 1 ? b64[(c[1] & 15) << 2 | c[2] >> 6] : '=',
                           k > 2 ? b64[c[2] & 63] : '='};
            ap_strbuf_add(t, out, 4);
        }
        ap_strbuf_adds(t, "?=");
        start = end;
    }
    ap_strbuf_adds(t, "\r\n");
}

char *ap_email_format(const char *from, const char *to, const char *subject, const char *body,
                      const char *message_id, time_t date)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    ap_strbuf_t t = AP_STRBUF_INIT;
    struct tm tm;
    char when[64];

    /* Spelled out rather than strftime'd: the names must not follow the locale. */
    gmtime_r(&date, &tm);
    snprintf(when, sizeof when, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    put_field(&t, "Date", when);
    put_field(&t, "From", from);
    put_field(&t, "To", to);
    if (plain_ascii(subject))
        put_field(&t, "Subject", subject);
    else
        put_encoded_subject(&t, subject);
    put_field(&t, "Message-ID", message_id);
    ap_strbuf_adds(&t, "MIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=UTF-8\r\n"
              "Content-Transfer-Encoding: 8bit\r\n"
              "Auto-Submitted: auto-generated\r\n"
              "\r\n");
    /* Any of CRLF, LF or CR ends a line; the text ends with one. */
    bool line_open = false;
    for (const char *p = body; *p; p++) {
        if (*p == '\r' || *p == '\n') {
            ap_strbuf_adds(&t, "\r\n");
            if (*p == '\r' && p[1] == '\n')
                p++;
            line_open = false;
        } else {
            ap_strbuf_addch(&t, *p);
            line_open = true;
        }
    }
    if (line_open)
        ap_strbuf_adds(&t, "\r\n");
    return ap_strbuf_detach(&t);
}

/* ---------------------------------------------------------------- SMTP */

struct ap_smtp {
    CURL *curl;
    char *url;      /* may hold credentials: never logged */
    char *username; /* NULL: none (or in the URL) */
    char *password;
    char where[256]; /* scheme://host:port, for the log */
    char errbuf[CURL_ERROR_SIZE];
    bool global_init; /* curl_global_init to balance */
    ap_smtp_cancel_fn cancel;
    void *cancel_ctx;
};

/* Reads the message for libcurl's upload. */
typedef struct upload {
    const char *data;
    size_t len, off;
} upload_t;

static size_t read_message(char *buf, size_t size, size_t nitems, void *userdata)
{
    upload_t *up = userdata;
    size_t room = size * nitems, left = up->len - up->off;
    size_t n = left < room ? left : room;
    memcpy(buf, up->data + up->off, n);
    up->off += n;
    return n;
}

/* scheme://host:port of `url`, through libcurl's own parser so userinfo never shows. */
static void describe(const char *url, char *out, size_t len)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        snprintf(out, len, "%s://%s:%s", scheme, host, port);
    else
        snprintf(out, len, "(unparsable SMTP_URL)");
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

ap_err_t ap_smtp_new(const char *url, const char *username, const char *password,
                     ap_smtp_t **out)
{
    ap_smtp_t *smtp = calloc(1, sizeof *smtp);
    if (!smtp)
        return AP_ERR_NOMEM;
    /* Reference-counted by libcurl (and thread-safe since 7.84), as registry_client.c's. */
    smtp->global_init = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!smtp->global_init || !(smtp->url = strdup(url)) ||
        (username && !(smtp->username = strdup(username))) ||
        (password && !(smtp->password = strdup(password))) || !(smtp->curl = curl_easy_init())) {
        ap_smtp_free(smtp);
        return AP_ERR_NOMEM;
    }
    describe(url, smtp->where, sizeof smtp->where);
    *out = smtp;
    return AP_OK;
}

void ap_smtp_set_cancel(ap_smtp_t *smtp, ap_smtp_cancel_fn cancel, void *ctx)
{
    smtp->cancel = cancel;
    smtp->cancel_ctx = ctx;
}

/* libcurl's progress callback: non-zero aborts the transfer. */
static int progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    ap_smtp_t *smtp = clientp;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return smtp->cancel && smtp->cancel(smtp->cancel_ctx) ? 1 : 0;
}

void ap_smtp_describe(const ap_smtp_t *smtp, char *out, size_t len)
{
    snprintf(out, len, "%s", smtp->where);
}

void ap_smtp_free(ap_smtp_t *smtp)
{
    if (!smtp)
        return;
    if (smtp->curl)
        curl_easy_cleanup(smtp->curl);
    ap_secret_free(smtp->url); /* may hold credentials */
    ap_secret_free(smtp->username);
    ap_secret_free(smtp->password);
    if (smtp->global_init)
        curl_global_cleanup();
    free(smtp);
}

/* Connection-level failures: the server is away or silent, not refusing this message. */
static bool unreachable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_ABORTED_BY_CALLBACK:
        return true;
    default:
        return false;
    }
}

ap_err_t ap_smtp_send(ap_smtp_t *smtp, const char *from, const char *to, const char *message,
                      char *why, size_t whylen)
{
    CURL *curl = smtp->curl;
    struct curl_slist *rcpt = NULL;
    char mail_from[AP_EMAIL_MESSAGE_ID_SIZE], mail_to[AP_EMAIL_MESSAGE_ID_SIZE];
    upload_t up = {message, strlen(message), 0};

    snprintf(mail_from, sizeof mail_from, "<%s>", from);
    snprintf(mail_to, sizeof mail_to, "<%s>", to);
    if (!(rcpt = curl_slist_append(NULL, mail_to))) {
        snprintf(why, whylen, "out of memory");
        return AP_ERR_NOMEM;
    }
    /* Options are set again for every message: the handle keeps the connection between
     * messages, and a reset keeps nothing else from the previous one. */
    curl_easy_reset(curl);
    smtp->errbuf[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, smtp->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    if (smtp->username)
        curl_easy_setopt(curl, CURLOPT_USERNAME, smtp->username);
    if (smtp->password)
        curl_easy_setopt(curl, CURLOPT_PASSWORD, smtp->password);
    curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, mail_from);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_message);
    curl_easy_setopt(curl, CURLOPT_READDATA, &up);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up.len);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, smtp->errbuf);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, smtp);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);

    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(rcpt);
    if (rc == CURLE_OK)
        return AP_OK;
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    /* libcurl's texts name the host at most, never the URL's userinfo. */
    const char *detail = smtp->errbuf[0] ? smtp->errbuf : curl_easy_strerror(rc);
    if (code)
        snprintf(why, whylen, "%s: %s (server said %ld)", smtp->where, detail, code);
    else
        snprintf(why, whylen, "%s: %s", smtp->where, detail);
    return unreachable(rc) ? AP_ERR_UNAVAILABLE : AP_ERR_REFUSED;
}
