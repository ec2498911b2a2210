#include "forward.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static const char unknown_reason[] = "refused:unknown";

fwd_t *fwd_new(void *pub) {
    fwd_t *f = calloc(1, sizeof(fwd_t));
    if (f == NULL) return NULL;
    f->pub = pub;
    for (int i = 0; i < FWD_MAX_REASONS; i++) f->reason[i] = unknown_reason;
    return f;
}

static void free_reason(fwd_t *f, int code) {
    if (f->reason[code] != unknown_reason) free((void *)f->reason[code]);
    f->reason[code] = unknown_reason;
}

void fwd_free(fwd_t *f) {
    if (f == NULL) return;
    for (int i = 0; i < FWD_MAX_REASONS; i++) free_reason(f, i);
    free(f);
}

int fwd_add_source(fwd_t *f, void *socket, int kind) {
    if (f->nsources >= FWD_MAX_SOURCES) {
        errno = EINVAL;
        return -1;
    }
    size_t len = sizeof(f->fd[0]);
    if (zmq_getsockopt(socket, ZMQ_FD, &f->fd[f->nsources], &len) != 0) return -1;
    f->source[f->nsources] = socket;
    f->kind[f->nsources] = kind;
    f->nsources++;
    return 0;
}

int fwd_add_fed_source(fwd_t *f, int eventfd, int kind) {
    if (f->nsources >= FWD_MAX_SOURCES) {
        errno = EINVAL;
        return -1;
    }
    f->source[f->nsources] = NULL;
    f->fd[f->nsources] = eventfd;
    f->kind[f->nsources] = kind;
    return f->nsources++;
}

int fwd_put(fwd_t *f, int k, const int *source, const char *data, const size_t *topic_len,
            const size_t *body_len, const int *frames, const size_t *size) {
    int stored = 0;
    for (int j = 0; j < k && f->n < FWD_BATCH; j++) {
        int i = f->n;
        if (zmq_msg_init_size(&f->topic[i], topic_len[j]) != 0) break;
        if (zmq_msg_init_size(&f->body[i], body_len[j]) != 0) {
            zmq_msg_close(&f->topic[i]);
            break;
        }
        memcpy(zmq_msg_data(&f->topic[i]), data, topic_len[j]);
        data += topic_len[j];
        memcpy(zmq_msg_data(&f->body[i]), data, body_len[j]);
        data += body_len[j];
        f->src[i] = source[j];
        f->frames[i] = frames[j];
        f->size[i] = size[j];
        f->topic_data[i] = zmq_msg_data(&f->topic[i]);
        f->topic_len[i] = topic_len[j];
        f->body_data[i] = zmq_msg_data(&f->body[i]);
        f->body_len[i] = body_len[j];
        f->verdict[i] = FWD_SEND;
        f->n++;
        stored++;
    }
    return stored;
}

void fwd_set_reason(fwd_t *f, int code, const char *text) {
    if (code < FWD_DROP || code >= FWD_MAX_REASONS) return;
    free_reason(f, code);
    char *copy = strdup(text);
    if (copy != NULL) f->reason[code] = copy;
}

static int more(zmq_msg_t *m) { return zmq_msg_more(m); }

// A signal (the Go runtime preempts threads with SIGURG) may interrupt
// libzmq: that is "nothing yet", never an error.
static int transient(void) { return errno == EAGAIN || errno == EINTR; }

// recv_rest receives a frame that libzmq has already queued, retrying when a
// signal interrupts, so a message is never cut in two.
static int recv_rest(zmq_msg_t *m, void *sock) {
    int rc;
    do {
        rc = zmq_msg_recv(m, sock, 0);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

// Receive one whole message from source s into slot i. Returns 1 when a
// message was stored, 0 when none was waiting, -1 on error.
static int recv_one(fwd_t *f, int s, int i) {
    void *sock = f->source[s];
    if (sock == NULL) return 0; // fed from Go
    int kind = f->kind[s];
    zmq_msg_t *first = kind == FWD_ROUTER ? &f->ident[i] : &f->topic[i];
    zmq_msg_init(first);
    if (zmq_msg_recv(first, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(first);
        return transient() ? 0 : -1;
    }
    // The rest of a multipart message is already queued: no waiting below.
    f->src[i] = s;
    f->frames[i] = 0;
    f->size[i] = 0;
    int has_more = more(first);
    if (kind == FWD_ROUTER) {
        zmq_msg_init(&f->topic[i]);
        if (!has_more || recv_rest(&f->topic[i], sock) < 0) {
            // An identity alone cannot happen in ZMTP; keep the slot consistent.
            zmq_msg_init_size(&f->topic[i], 0);
        } else {
            has_more = more(&f->topic[i]);
        }
    }
    f->frames[i] = 1;
    f->size[i] = zmq_msg_size(&f->topic[i]);
    zmq_msg_init(&f->body[i]);
    if (has_more) {
        recv_rest(&f->body[i], sock);
        f->frames[i] = 2;
        f->size[i] += zmq_msg_size(&f->body[i]);
        has_more = more(&f->body[i]);
    }
    while (has_more) { // frames beyond two: count and discard
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        if (recv_rest(&extra, sock) < 0) {
            zmq_msg_close(&extra);
            break;
        }
        f->frames[i]++;
        f->size[i] += zmq_msg_size(&extra);
        has_more = more(&extra);
        zmq_msg_close(&extra);
    }
    f->topic_data[i] = zmq_msg_data(&f->topic[i]);
    f->topic_len[i] = zmq_msg_size(&f->topic[i]);
    f->body_data[i] = zmq_msg_data(&f->body[i]);
    f->body_len[i] = zmq_msg_size(&f->body[i]);
    f->verdict[i] = FWD_SEND;
    return 1;
}

// Drain every source without waiting, round-robin, until the batch is full
// or nothing is left.
static int drain(fwd_t *f) {
    int idle = 0;
    int s = f->next_source;
    while (f->n < FWD_BATCH && idle < f->nsources) {
        int r = recv_one(f, s, f->n);
        if (r < 0) return -1;
        if (r == 0) {
            idle++;
        } else {
            idle = 0;
            f->n++;
        }
        s = (s + 1) % f->nsources;
    }
    f->next_source = s;
    return f->n;
}

// readable reports whether any source has a message waiting. Asking
// ZMQ_EVENTS also processes the socket's pending commands, which is what
// makes waiting on ZMQ_FD afterwards safe.
static int readable(fwd_t *f) {
    for (int s = 0; s < f->nsources; s++) {
        if (f->source[s] == NULL) continue; // fed from Go
        int events = 0;
        size_t len = sizeof(events);
        if (zmq_getsockopt(f->source[s], ZMQ_EVENTS, &events, &len) != 0) return transient() ? 1 : -1;
        if (events & ZMQ_POLLIN) return 1;
    }
    return 0;
}

// read_subscriptions counts what the outbound peers sent: [1, topic] subscribes,
// [0, topic] unsubscribes; anything else is ignored. Reading also keeps
// libzmq's queue of them from growing.
static void read_subscriptions(fwd_t *f) {
    if (f->pub == NULL) return;
    zmq_msg_t m;
    zmq_msg_init(&m);
    int part = 0; // inside a multipart message: not a subscription
    while (zmq_msg_recv(&m, f->pub, ZMQ_DONTWAIT) >= 0 || errno == EINTR) {
        int whole = !part && !zmq_msg_more(&m);
        part = zmq_msg_more(&m);
        if (whole && zmq_msg_size(&m) > 0) {
            unsigned char kind = *(unsigned char *)zmq_msg_data(&m);
            if (kind == 1) f->subscriptions++;
            // A peer may unsubscribe what it never subscribed: never below 0.
            else if (kind == 0 && f->subscriptions > 0) f->subscriptions--;
        }
    }
    zmq_msg_close(&m);
}

long fwd_subscriptions(fwd_t *f, int timeout_ms) {
    // Let the inbound sockets process their commands without receiving: a
    // new producer's connection is attached and gets the SUB's subscription,
    // so its messages queue for the relay instead of being dropped.
    readable(f);
    read_subscriptions(f);
    if (f->pub == NULL) return 0;
    zmq_pollitem_t item = {f->pub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) > 0) read_subscriptions(f);
    return f->subscriptions;
}

int fwd_recv(fwd_t *f, int timeout_ms) {
    // f->n is 0 after fwd_flush, or what fwd_put stored.
    read_subscriptions(f); // once per batch: one non-blocking read when there are none
    if (drain(f) != 0) return f->n > 0 ? f->n : -1; // an error with nothing received
    // Wait with one poll(2) on the sockets' notification fds rather than
    // zmq_poll, which builds its poll set and polls twice on every call.
    int r = readable(f);
    if (r < 0) return -1;
    if (r == 0) {
        struct pollfd pfd[FWD_MAX_SOURCES];
        for (int s = 0; s < f->nsources; s++) {
            pfd[s].fd = f->fd[s];
            pfd[s].events = POLLIN;
            pfd[s].revents = 0;
        }
        if (poll(pfd, f->nsources, timeout_ms) < 0 && errno != EINTR) return -1;
        for (int s = 0; s < f->nsources; s++) {
            uint64_t count;
            if (f->source[s] == NULL && (pfd[s].revents & POLLIN))
                (void)!read(f->fd[s], &count, sizeof(count)); // reset the eventfd
        }
    }
    if (drain(f) < 0 && f->n == 0) return -1;
    return f->n;
}

int fwd_replace_body(fwd_t *f, int i, const void *data, size_t len) {
    // Allocate before freeing: on ENOMEM the received body stays whole, and
    // the failed zmq_msg_t (which libzmq leaves unsafe to close) is dropped.
    zmq_msg_t fresh;
    if (zmq_msg_init_size(&fresh, len) != 0) return -1;
    memcpy(zmq_msg_data(&fresh), data, len);
    zmq_msg_move(&f->body[i], &fresh); // frees the received body
    // Keep Go's view of the message on the new body: the old one is freed.
    f->body_data[i] = zmq_msg_data(&f->body[i]);
    f->body_len[i] = len;
    f->size[i] = f->topic_len[i] + len;
    f->verdict[i] = FWD_SEND_REPLACED;
    return 0;
}

// send_msg and send_buf never wait, but retry when a signal interrupts.
static int send_msg(zmq_msg_t *m, void *sock, int flags) {
    int rc;
    do {
        rc = zmq_msg_send(m, sock, flags | ZMQ_DONTWAIT);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

static int send_buf(void *sock, const char *buf, size_t len) {
    int rc;
    do {
        rc = zmq_send(sock, buf, len, ZMQ_DONTWAIT);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

static void reply(fwd_t *f, int i, const char *text) {
    void *router = f->source[f->src[i]];
    if (send_msg(&f->ident[i], router, ZMQ_SNDMORE) < 0) {
        zmq_msg_close(&f->ident[i]);
        return; // peer gone or over its HWM: it will time out and say so
    }
    send_buf(router, text, strlen(text));
}

int fwd_flush(fwd_t *f) {
    int sent = 0;
    for (int i = 0; i < f->n; i++) {
        int kind = f->source[f->src[i]] != NULL ? f->kind[f->src[i]] : -1; // Go answers fed sources
        int v = f->verdict[i];
        if ((v == FWD_SEND || v == FWD_SEND_REPLACED) && f->pub == NULL) {
            // Go published it (and copied it) already.
            zmq_msg_close(&f->topic[i]);
            zmq_msg_close(&f->body[i]);
            sent++;
            if (kind == FWD_ROUTER) reply(f, i, "ok");
        } else if (v == FWD_SEND || v == FWD_SEND_REPLACED) {
            // PUB never blocks: at a subscriber's HWM libzmq drops for that
            // subscriber only. zmq_msg_send takes ownership on success (and
            // leaves an empty message behind, safe to close).
            int failed = send_msg(&f->topic[i], f->pub, ZMQ_SNDMORE) < 0;
            if (!failed && send_msg(&f->body[i], f->pub, 0) < 0) {
                // The topic left with MORE: end the message with an empty
                // frame, or the next message's frames would join this one.
                failed = 1;
                send_buf(f->pub, "", 0);
            }
            if (failed) {
                f->send_errors++;
                zmq_msg_close(&f->topic[i]);
                zmq_msg_close(&f->body[i]);
                if (kind == FWD_ROUTER) reply(f, i, "refused:send");
                f->verdict[i] = FWD_SEND_FAILED;
                continue;
            }
            sent++;
            if (kind == FWD_ROUTER) reply(f, i, "ok");
        } else {
            zmq_msg_close(&f->topic[i]);
            zmq_msg_close(&f->body[i]);
            if (kind == FWD_ROUTER) reply(f, i, v < FWD_MAX_REASONS ? f->reason[v] : unknown_reason);
        }
    }
    f->n = 0;
    return sent;
}
