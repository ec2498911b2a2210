// The relay's hot path in C: receive a batch of messages from the inbound
// sockets and send or discard each one, as zero-copy zmq_msg_t moves, in two
// cgo calls per batch instead of a dozen per message.
#ifndef FEDMSG_RELAY_FORWARD_H
#define FEDMSG_RELAY_FORWARD_H

#include <stddef.h>
#include <zmq.h>

#define FWD_BATCH 256
#define FWD_MAX_SOURCES 4
#define FWD_MAX_REASONS 32

// Kinds of inbound socket. A ROUTER prefixes each message with the peer's
// identity and gets one reply frame per message.
enum { FWD_SUB = 0, FWD_ROUTER = 1, FWD_PULL = 2 };

// Verdicts Go writes for each message. Anything >= FWD_DROP is a drop
// reason code whose reply text was registered with fwd_set_reason.
// fwd_flush marks a message it failed to send FWD_SEND_FAILED, for Go to
// answer when the message came from a source it feeds.
enum { FWD_SEND_FAILED = -1, FWD_SEND = 0, FWD_SEND_REPLACED = 1, FWD_DROP = 2 };

typedef struct {
    // An XPUB with ZMQ_XPUB_VERBOSER: every (un)subscription is read. NULL
    // with the Go outbound engine: Go published the batch before fwd_flush.
    void *pub;
    int nsources;
    void *source[FWD_MAX_SOURCES];
    int kind[FWD_MAX_SOURCES];
    int fd[FWD_MAX_SOURCES]; // ZMQ_FD of each source, for waiting in poll(2)
    int next_source; // round-robin start, so no source starves the others

    const char *reason[FWD_MAX_REASONS];

    int n;
    int src[FWD_BATCH];
    int frames[FWD_BATCH];
    size_t size[FWD_BATCH];
    int verdict[FWD_BATCH];
    zmq_msg_t ident[FWD_BATCH];
    zmq_msg_t topic[FWD_BATCH];
    zmq_msg_t body[FWD_BATCH];
    // Views of topic and body for Go, valid until fwd_flush.
    void *topic_data[FWD_BATCH];
    size_t topic_len[FWD_BATCH];
    void *body_data[FWD_BATCH];
    size_t body_len[FWD_BATCH];

    // Counters Go reads and resets after each fwd_flush.
    long send_errors; // messages not sent (a torn one went out as [topic, ""])

    // Subscriptions the outbound peers hold now: subscribe messages minus
    // unsubscribes (libzmq reports one for each of a leaving peer's topics).
    long subscriptions;
} fwd_t;

fwd_t *fwd_new(void *pub);
void fwd_free(fwd_t *f);
int fwd_add_source(fwd_t *f, void *socket, int kind);
// Add a source fed from Go (fwd_put) as kind, with an eventfd that Go
// signals when it has messages: fwd_recv's poll wakes on it and resets it
// (-1: another source's eventfd wakes the loop for it). fwd_flush never
// replies to a fed source's messages: Go does, from their verdicts.
int fwd_add_fed_source(fwd_t *f, int eventfd, int kind);
// Append k messages to the batch from Go's buffers: message i came from
// source[i] and is topic_len[i] then body_len[i] bytes, in order, in data.
// Returns how many were stored (fewer on ENOMEM).
int fwd_put(fwd_t *f, int k, const int *source, const char *data, const size_t *topic_len,
            const size_t *body_len, const int *frames, const size_t *size);
void fwd_set_reason(fwd_t *f, int code, const char *text);
// Receive up to FWD_BATCH messages (after those fwd_put stored), waiting at
// most timeout_ms for the first.
// Returns the count, or -1 with errno set (ETERM when the context closes).
int fwd_recv(fwd_t *f, int timeout_ms);
// Replace message i's body with a copy of data (for signing).
int fwd_replace_body(fwd_t *f, int i, const void *data, size_t len);
// Read the outbound socket's pending (un)subscriptions, waiting at most
// timeout_ms for the first, and return the subscriptions held.
long fwd_subscriptions(fwd_t *f, int timeout_ms);
// Send, reply to and release every message of the batch per its verdict.
// Returns the number sent. The verdicts stay readable until the next batch.
int fwd_flush(fwd_t *f);

#endif
