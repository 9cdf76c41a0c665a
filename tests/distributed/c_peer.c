/*
 * The C host of the cross-language tests (test_python_brokers.py): one
 * process joining the fabric at URL through the C API, with three nodes.
 *
 *   c-echo    topics to-c, from-c, unicast, ctl, PREFIX. Answers a user
 *             event on "to-c" with a broadcast on "from-c" carrying
 *             "c:" + payload (on behalf of c-echo, which subscribes to
 *             "from-c" too: sender exclusion keeps its own answer away from
 *             it). Runs the commands the Python host sends on "ctl":
 *               report        broadcast on "c-report" this process's counters
 *               unicast:UID   send "c-unicast" on "unicast" to node UID only
 *               root          a signed root event "c.root" to every node
 *               work:N        N broadcasts "w-c-I" on "work" (consumer group)
 *   c-other   topics to-c, from-c, unicast: sees c-echo's answers, never a
 *             unicast meant for another node.
 *   c-worker  topic work, in consumer group "workers" (shared with the Python
 *             host: each event reaches one member across both processes).
 *
 * Every node records what it receives. On the signed root event "test.stop"
 * the peer leaves the fabric, closes the director and prints, one line each
 * (fields separated by tabs, payloads %XX-escaped):
 *   seen NODE KIND TOPIC SOURCE|- PAYLOAD
 *   stats received=... foreign=... malformed=... dead_lettered=...
 *         rejected_unsigned=... rejected_forged=... duplicates=... unpublished=...
 * Exit status: 0 after "test.stop", 2 when it did not come within
 * TIMEOUT_S seconds (default 120), 1 on a setup failure.
 *
 *   c_peer URL TOPIC_PREFIX TRUST_TOKEN INSTANCE_ID [TIMEOUT_S]
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chronica.h"

static chronica_distributed *g_fabric;
static atomic_int g_stop;
static atomic_long g_work; /* events c-worker received */

/* ------------------------------------------------------------ the record */

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_log;
static size_t g_log_len, g_log_cap;

static void log_append(const char *s, size_t n) {
    if (g_log_len + n + 1 > g_log_cap) {
        size_t cap = g_log_cap ? g_log_cap : 4096;
        while (g_log_len + n + 1 > cap) cap *= 2;
        char *grown = realloc(g_log, cap);
        if (!grown) {
            fprintf(stderr, "c_peer: out of memory\n");
            exit(1);
        }
        g_log = grown;
        g_log_cap = cap;
    }
    memcpy(g_log + g_log_len, s, n);
    g_log_len += n;
    g_log[g_log_len] = '\0';
}

/* Appends `len` bytes, every byte outside [A-Za-z0-9._:-] as %XX. */
static void log_escaped(const void *bytes, size_t len) {
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = bytes;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == ':' || c == '-') {
            log_append((const char *)&c, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            log_append(esc, 3);
        }
    }
}

static void record(const char *node, const chronica_event *e) {
    pthread_mutex_lock(&g_log_lock);
    log_append("seen\t", 5);
    log_append(node, strlen(node));
    log_append(e->kind == CHRONICA_EVENT_ROOT ? "\troot\t" : "\tuser\t", 6);
    log_escaped(e->topic, e->topic_len);
    log_append("\t", 1);
    if (e->source_len) {
        log_escaped(e->source, e->source_len);
    } else {
        log_append("-", 1);
    }
    log_append("\t", 1);
    log_escaped(e->payload, e->payload_len);
    log_append("\n", 1);
    pthread_mutex_unlock(&g_log_lock);
}

/* ------------------------------------------------------------- the nodes */

static int is(const char *s, size_t len, const char *lit) {
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static int starts(const uint8_t *s, size_t len, const char *lit) {
    size_t n = strlen(lit);
    return len >= n && memcmp(s, lit, n) == 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int report_failure(const char *what, chronica_status s) {
    char why[256];
    chronica_last_error(why, sizeof why);
    fprintf(stderr, "c_peer: %s failed: %s (%s)\n", what, chronica_status_str(s), why);
    return 1;
}

static int emit(const char *topic, const char *payload) {
    chronica_status s =
        chronica_distributed_emit(g_fabric, "c-echo", topic, (const uint8_t *)payload, strlen(payload), NULL);
    return s == CHRONICA_OK ? 0 : report_failure("emit", s);
}

/* Runs one "ctl" command; nonzero on failure (the batch is then retried). */
static int command(const uint8_t *cmd, size_t len) {
    char arg[256] = {0};
    if (is((const char *)cmd, len, "report")) {
        chronica_distributed_stats s = {.struct_size = sizeof s};
        chronica_status st = chronica_distributed_get_stats(g_fabric, &s);
        if (st != CHRONICA_OK) return report_failure("get_stats", st);
        char out[512];
        snprintf(out, sizeof out,
                 "received=%llu foreign=%llu malformed=%llu dead_lettered=%llu rejected_unsigned=%llu "
                 "rejected_forged=%llu duplicates=%llu work=%ld",
                 (unsigned long long)s.received, (unsigned long long)s.foreign, (unsigned long long)s.malformed,
                 (unsigned long long)s.dead_lettered, (unsigned long long)s.rejected_unsigned,
                 (unsigned long long)s.rejected_forged, (unsigned long long)s.duplicates, atomic_load(&g_work));
        return emit("c-report", out);
    }
    if (starts(cmd, len, "unicast:") && len - 8 < sizeof arg) {
        memcpy(arg, cmd + 8, len - 8);
        chronica_status s = chronica_distributed_emit_to(g_fabric, "c-echo", arg, "unicast",
                                                         (const uint8_t *)"c-unicast", 9, NULL);
        return s == CHRONICA_OK ? 0 : report_failure("emit_to", s);
    }
    if (is((const char *)cmd, len, "root")) {
        chronica_status s = chronica_distributed_emit_root(g_fabric, NULL, "c.root", (const uint8_t *)"c-root", 6, NULL);
        return s == CHRONICA_OK ? 0 : report_failure("emit_root", s);
    }
    if (starts(cmd, len, "work:") && len - 5 < sizeof arg) {
        memcpy(arg, cmd + 5, len - 5);
        long n = atol(arg);
        for (long i = 0; i < n; i++) {
            char payload[32];
            snprintf(payload, sizeof payload, "w-c-%ld", i);
            if (emit("work", payload)) return 1;
            sleep_ms(2); /* spread them over time (and Kafka partitions) */
        }
        return 0;
    }
    fprintf(stderr, "c_peer: unknown command %.*s\n", (int)len, (const char *)cmd);
    return 0;
}

/* Every node's callback; user_data is the node's uid. Runs on that node's
 * fiber thread. */
static int32_t node_send(void *user_data, const chronica_event *events, size_t count) {
    const char *node = user_data;
    for (size_t i = 0; i < count; i++) {
        const chronica_event *e = &events[i];
        record(node, e);
        if (e->kind == CHRONICA_EVENT_ROOT) {
            if (strcmp(node, "c-echo") == 0 && is(e->topic, e->topic_len, "test.stop")) atomic_store(&g_stop, 1);
            continue;
        }
        if (strcmp(node, "c-worker") == 0) {
            atomic_fetch_add(&g_work, 1);
        } else if (strcmp(node, "c-echo") == 0 && is(e->topic, e->topic_len, "to-c")) {
            char out[256] = "c:";
            size_t n = e->payload_len < sizeof out - 3 ? e->payload_len : sizeof out - 3;
            memcpy(out + 2, e->payload, n);
            out[n + 2] = '\0';
            if (emit("from-c", out)) return 1;
        } else if (strcmp(node, "c-echo") == 0 && is(e->topic, e->topic_len, "ctl")) {
            if (command(e->payload, e->payload_len)) return 1;
        }
    }
    return 0;
}

static chronica_status add(const char *uid, const char *group, const char *const *topics) {
    chronica_node_options *no = chronica_node_options_new();
    chronica_status s = CHRONICA_OK;
    for (const char *const *t = topics; *t && s == CHRONICA_OK; t++) s = chronica_node_options_add_topic(no, *t);
    if (s == CHRONICA_OK && group) s = chronica_node_options_set_group(no, group);
    if (s == CHRONICA_OK) s = chronica_distributed_register_with(g_fabric, uid, no, node_send, (void *)uid, NULL);
    chronica_node_options_free(no);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: c_peer URL TOPIC_PREFIX TRUST_TOKEN INSTANCE_ID [TIMEOUT_S]\n");
        return 64;
    }
    const char *url = argv[1], *prefix = argv[2], *token = argv[3], *instance = argv[4];
    long timeout_ms = (argc == 6 ? atol(argv[5]) : 120) * 1000;

    chronica_options *o = chronica_options_new();
    chronica_director *d = NULL;
    chronica_distributed_options *xo = chronica_distributed_options_new();
    chronica_status s;
    if ((s = chronica_options_set_trust_token(o, token)) != CHRONICA_OK ||
        (s = chronica_director_new(o, &d)) != CHRONICA_OK ||
        (s = chronica_distributed_options_set_instance_id(xo, instance)) != CHRONICA_OK ||
        (s = chronica_distributed_options_set_topic_prefix(xo, prefix)) != CHRONICA_OK ||
        (s = chronica_distributed_options_set_connect_timeout(xo, 30000)) != CHRONICA_OK ||
        (s = chronica_distributed_new(d, url, xo, &g_fabric)) != CHRONICA_OK) {
        return report_failure("joining the fabric", s);
    }
    chronica_options_free(o);
    chronica_distributed_options_free(xo);

    const char *echo_topics[] = {"to-c", "from-c", "unicast", "ctl", prefix, NULL};
    const char *other_topics[] = {"to-c", "from-c", "unicast", NULL};
    const char *worker_topics[] = {"work", NULL};
    if ((s = add("c-echo", NULL, echo_topics)) != CHRONICA_OK ||
        (s = add("c-other", NULL, other_topics)) != CHRONICA_OK ||
        (s = add("c-worker", "workers", worker_topics)) != CHRONICA_OK) {
        return report_failure("registering the nodes", s);
    }
    printf("c_peer: ready\n");
    fflush(stdout);

    long waited = 0;
    while (!atomic_load(&g_stop) && waited < timeout_ms) {
        sleep_ms(10);
        waited += 10;
    }
    uint64_t unpublished = 0;
    s = chronica_distributed_close(g_fabric, 5000, &unpublished);
    if (s != CHRONICA_OK) report_failure("close", s);
    chronica_distributed_stats st = {.struct_size = sizeof st};
    chronica_distributed_get_stats(g_fabric, &st);
    chronica_distributed_free(g_fabric);
    chronica_director_free(d); /* closes it: every callback has returned */

    fputs(g_log ? g_log : "", stdout);
    printf("stats\treceived=%llu foreign=%llu malformed=%llu dead_lettered=%llu rejected_unsigned=%llu "
           "rejected_forged=%llu duplicates=%llu unpublished=%llu\n",
           (unsigned long long)st.received, (unsigned long long)st.foreign, (unsigned long long)st.malformed,
           (unsigned long long)st.dead_lettered, (unsigned long long)st.rejected_unsigned,
           (unsigned long long)st.rejected_forged, (unsigned long long)st.duplicates,
           (unsigned long long)unpublished);
    free(g_log);
    return atomic_load(&g_stop) ? 0 : 2;
}
