/*
 * Distributed mode from C: two directors ("east" and "west") joined to one
 * fabric through a broker. West runs a "ledger" node in consumer group
 * "ledgers"; east emits orders and a signed root event.
 *
 * With a broker URL (nats://127.0.0.1:14222, redis://127.0.0.1:16379,
 * kafka://127.0.0.1:19092; libchronica built with the cargo feature of that
 * adapter: cargo build --release -p chronica-ffi --features nats), east is
 * this process and west a second one it starts (this program again, with
 * --west): two processes exchanging events over the broker. With the
 * default URL, memory://example, the broker lives in this process, so both
 * directors do too.
 *
 *   cc distributed_host.c $(pkg-config --cflags --libs chronica) -o distributed_host
 *   ./distributed_host [URL]
 *
 * Exits 0 once the ledger got the three orders (total 242) and the reload.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, fork, execv, pipe, poll */
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chronica.h"

#define TRY(expr)                                                                          \
    do {                                                                                   \
        chronica_status s_ = (expr);                                                       \
        if (s_ != CHRONICA_OK) {                                                           \
            char why_[256];                                                                \
            chronica_last_error(why_, sizeof why_);                                        \
            fprintf(stderr, "%s failed: %s (%s)\n", #expr, chronica_status_str(s_), why_); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

typedef struct ledger {
    atomic_long total;
    atomic_long orders;
    atomic_int reloads;
} ledger;

/* Runs on the ledger's fiber thread in the west director. */
static int32_t ledger_send(void *user_data, const chronica_event *events, size_t count) {
    ledger *l = user_data;
    for (size_t i = 0; i < count; i++) {
        const chronica_event *e = &events[i];
        if (e->kind == CHRONICA_EVENT_USER) {
            char amount[32] = {0};
            size_t n = e->payload_len < sizeof amount - 1 ? e->payload_len : sizeof amount - 1;
            memcpy(amount, e->payload, n);
            atomic_fetch_add(&l->total, atol(amount));
            atomic_fetch_add(&l->orders, 1);
        } else if (e->topic_len == 10 && memcmp(e->topic, "app.reload", 10) == 0) {
            atomic_fetch_add(&l->reloads, 1);
        }
    }
    return 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A director sharing the fabric's trust token, and its membership. */
static chronica_director *start(const char *url, const char *instance_id, chronica_distributed **out) {
    chronica_options *o = chronica_options_new();
    TRY(chronica_options_set_trust_token(o, "example-shared-secret"));
    chronica_director *d = NULL;
    TRY(chronica_director_new(o, &d));
    chronica_options_free(o);

    chronica_distributed_options *xo = chronica_distributed_options_new();
    TRY(chronica_distributed_options_set_instance_id(xo, instance_id));
    TRY(chronica_distributed_options_set_topic_prefix(xo, "chronica-example-c"));
    TRY(chronica_distributed_options_set_ack_mode(xo, CHRONICA_ACK_DELIVERY));
    TRY(chronica_distributed_new(d, url, xo, out));
    chronica_distributed_options_free(xo);
    return d;
}

/* West: the ledger, in consumer group "ledgers". Joins the broker group
   before returning. */
static void open_ledger(chronica_distributed *west, ledger *book) {
    chronica_node_options *no = chronica_node_options_new();
    TRY(chronica_node_options_add_topic(no, "orders.*"));
    TRY(chronica_node_options_set_group(no, "ledgers"));
    TRY(chronica_distributed_register_with(west, "ledger", no, ledger_send, book, NULL));
    chronica_node_options_free(no);
}

/* West: waits for the three orders and the reload; 0 when all came. */
static int settle_ledger(chronica_distributed *west, const ledger *book) {
    for (int waited = 0; waited < 20000 && (atomic_load(&book->orders) < 3 || atomic_load(&book->reloads) < 1);
         waited += 10) {
        sleep_ms(10);
    }
    chronica_distributed_stats s = {.struct_size = sizeof s};
    TRY(chronica_distributed_get_stats(west, &s));
    printf("west: received %llu, injected %llu\n", (unsigned long long)s.received, (unsigned long long)s.injected);
    printf("ledger: %ld orders, total %ld, %d reload\n", atomic_load(&book->orders), atomic_load(&book->total),
           atomic_load(&book->reloads));
    int ok = atomic_load(&book->orders) == 3 && atomic_load(&book->total) == 242 && atomic_load(&book->reloads) == 1;
    return ok ? 0 : 1;
}

/* East: the orders and a signed root event. */
static void emit_orders(chronica_distributed *east) {
    const char *amounts[] = {"100", "42", "100"};
    for (int i = 0; i < 3; i++) {
        uint64_t id = 0;
        TRY(chronica_distributed_emit(east, NULL, "orders.created", (const uint8_t *)amounts[i], strlen(amounts[i]), &id));
        printf("east: emitted order %d (wire id %llu)\n", i, (unsigned long long)id);
    }
    TRY(chronica_distributed_emit_root(east, NULL, "app.reload", NULL, 0, NULL));
}

/* Closes and frees one instance; returns what it left unpublished. */
static uint64_t stop(chronica_distributed *x, chronica_director *d) {
    uint64_t unpublished = 0, undelivered = 0;
    TRY(chronica_distributed_close(x, 5000, &unpublished));
    chronica_distributed_free(x);
    TRY(chronica_director_close(d, 5000, &undelivered));
    chronica_director_free(d);
    return unpublished + undelivered;
}

/* The second process: west, telling its parent through `ready_fd` once its
   ledger listens. */
static int run_west(const char *url, int ready_fd) {
    static ledger book;
    chronica_distributed *west = NULL;
    chronica_director *west_d = start(url, "west", &west);
    open_ledger(west, &book);
    if (write(ready_fd, "r", 1) != 1) {
        perror("west: ready pipe");
        return 1;
    }
    close(ready_fd);
    int rc = settle_ledger(west, &book);
    uint64_t left = stop(west, west_d);
    printf("west: closed, %llu left\n", (unsigned long long)left);
    return rc;
}

/* Starts west as a second process and waits (up to 60 s) until it listens;
   returns its pid, or -1. */
static pid_t spawn_west(const char *self, const char *url) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        char fd[16];
        snprintf(fd, sizeof fd, "%d", fds[1]);
        char *args[] = {(char *)self, (char *)url, "--west", fd, NULL};
        execv(self, args);
        perror("execv");
        _exit(127);
    }
    close(fds[1]);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    char byte = 0;
    int ready = poll(&p, 1, 60000) == 1 && read(fds[0], &byte, 1) == 1;
    close(fds[0]);
    if (!ready) {
        fprintf(stderr, "east: west did not get ready\n");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : "memory://example";
    if (argc > 3 && strcmp(argv[2], "--west") == 0) {
        return run_west(url, atoi(argv[3]));
    }
    if (strncmp(url, "memory://", 9) == 0) {
        /* One process: the in-memory broker is this process's. */
        static ledger book;
        chronica_distributed *east = NULL, *west = NULL;
        chronica_director *east_d = start(url, "east", &east);
        chronica_director *west_d = start(url, "west", &west);
        open_ledger(west, &book);
        emit_orders(east);
        int rc = settle_ledger(west, &book);
        uint64_t left = stop(east, east_d) + stop(west, west_d);
        printf("closed, %llu left\n", (unsigned long long)left);
        return rc;
    }
    pid_t west = spawn_west(argv[0], url);
    if (west < 0) {
        return 1;
    }
    chronica_distributed *east = NULL;
    chronica_director *east_d = start(url, "east", &east);
    emit_orders(east);
    bool flushed = false;
    TRY(chronica_distributed_flush(east, 10000, &flushed));
    if (!flushed) {
        fprintf(stderr, "east: not everything was published\n");
    }
    chronica_distributed_stats s = {.struct_size = sizeof s};
    TRY(chronica_distributed_get_stats(east, &s));
    printf("east: published %llu\n", (unsigned long long)s.published);
    int status = 0;
    waitpid(west, &status, 0);
    uint64_t left = stop(east, east_d);
    printf("east: closed, %llu left; west exited %d\n", (unsigned long long)left,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && left == 0 ? 0 : 1;
}
