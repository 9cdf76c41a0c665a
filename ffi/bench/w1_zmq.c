/*
 * The libzmq peer of W1: one inproc PUB socket, 8 SUB sockets in 8 threads,
 * high-water marks 0 on both sides so nothing drops; 1,000,000 messages of
 * 64 bytes; each subscriber counts. A warm-up handshake makes sure every
 * subscription has reached the publisher before the clock starts.
 * Prints "RESULT zmq <deliveries> <seconds> <peak KiB>".
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "bench_clock.h"

#define EVENTS 1000000L
#define NODES 8
#define PAYLOAD 64

static void *ctx;

static void *subscriber(void *arg) {
    (void)arg;
    int zero = 0;
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_connect(sub, "inproc://w1");
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    void *ready = zmq_socket(ctx, ZMQ_PUSH);
    zmq_connect(ready, "inproc://ready");
    char buf[PAYLOAD];
    long n = 0;
    int told = 0;
    while (n < EVENTS) {
        int len = zmq_recv(sub, buf, sizeof buf, 0);
        if (len <= 0) {
            continue;
        }
        if (buf[0] == 'W') {
            if (!told) {
                zmq_send(ready, "r", 1, 0);
                told = 1;
            }
            continue;
        }
        n++;
    }
    zmq_close(ready);
    zmq_close(sub);
    return NULL;
}

int main(void) {
    ctx = zmq_ctx_new();
    int zero = 0;
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_bind(pub, "inproc://w1");
    void *ready = zmq_socket(ctx, ZMQ_PULL);
    zmq_bind(ready, "inproc://ready");
    pthread_t t[NODES];
    for (int i = 0; i < NODES; i++) {
        pthread_create(&t[i], NULL, subscriber, NULL);
    }
    /* warm-up: publish until every subscriber has seen a message */
    int readies = 0;
    char r;
    while (readies < NODES) {
        zmq_send(pub, "W", 1, 0);
        while (zmq_recv(ready, &r, 1, ZMQ_DONTWAIT) == 1) {
            readies++;
        }
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    char payload[PAYLOAD];
    memset(payload, 'D', sizeof payload);
    double start = now_s();
    for (long i = 0; i < EVENTS; i++) {
        zmq_send(pub, payload, sizeof payload, 0);
    }
    for (int i = 0; i < NODES; i++) {
        pthread_join(t[i], NULL);
    }
    double secs = now_s() - start;
    printf("RESULT zmq %ld %.6f %ld\n", EVENTS * NODES, secs, peak_kib());
    zmq_close(ready);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    return 0;
}
