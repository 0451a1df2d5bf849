/* The prober's wire in C: one ICMP socket's echo requests in flight, matched to replies by sequence number.
 *
 * threenines/probes/wire.py is the reference: the same types, methods and behaviour in Python, used when this
 * module was not built. Both are tested against real loopback ICMP. This one exists for CPU: at fleet scale
 * the Python wire's bytecode (packing, unpacking, dicts and tuples per request) cost as much as the system
 * calls, and the request table here is flat arrays indexed by sequence number.
 *
 * Counters live in ProbeCounters, the base of threenines.probes.ping.Probe, so a reply updates them with no
 * attribute lookup. A probe that finishes (every request answered or expired) is handed to `on_done`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define TABLE_SIZE 65536 /* one slot per sequence number */
#define RECEIVE_BYTES 256 /* an echo reply, or an ICMP error quoting a request (see wire.py) */
#define DRAIN_LIMIT 1024 /* replies read per call: one busy socket cannot starve the event loop */
#ifndef SO_TIMESTAMPNS
#define SO_TIMESTAMPNS 35
#endif
#ifndef SCM_TIMESTAMPNS
#define SCM_TIMESTAMPNS SO_TIMESTAMPNS
#endif

static const unsigned char PAYLOAD[16] = "threenines-probe"; /* no terminating NUL: 16 bytes on the wire */
static PyObject *reason_send_failed, *reason_no_socket;

/* -- ProbeCounters ------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *error; /* None, or why the probe could not be made */
    PyObject *port; /* the caller's record of the port probed (a PortState for the scheduler's passes below) */
    PyObject *route; /* (wire, destination) once resolved by the Pinger, else NULL or None */
    double timeout;
    double rtt_total;
    long packets;
    long remaining; /* requests not sent yet */
    long outstanding; /* sent, neither answered nor expired */
    long sent;
    long received;
} ProbeCounters;

/* A probe and its port refer to each other (PortState.probe, ProbeCounters.port): both take part in the GC. */
static int ProbeCounters_traverse(ProbeCounters *self, visitproc visit, void *arg) {
    Py_VISIT(self->port);
    Py_VISIT(self->route);
    return 0;
}

static int ProbeCounters_clear(ProbeCounters *self) {
    Py_CLEAR(self->port);
    Py_CLEAR(self->route);
    return 0;
}

static void ProbeCounters_dealloc(ProbeCounters *self) {
    PyObject_GC_UnTrack(self);
    ProbeCounters_clear(self);
    Py_CLEAR(self->error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef ProbeCounters_members[] = {
    {"error", T_OBJECT, offsetof(ProbeCounters, error), 0, NULL},
    {"port", T_OBJECT, offsetof(ProbeCounters, port), 0, NULL},
    {"route", T_OBJECT, offsetof(ProbeCounters, route), 0, NULL},
    {"timeout", T_DOUBLE, offsetof(ProbeCounters, timeout), 0, NULL},
    {"rtt_total", T_DOUBLE, offsetof(ProbeCounters, rtt_total), 0, NULL},
    {"packets", T_LONG, offsetof(ProbeCounters, packets), 0, NULL},
    {"remaining", T_LONG, offsetof(ProbeCounters, remaining), 0, NULL},
    {"outstanding", T_LONG, offsetof(ProbeCounters, outstanding), 0, NULL},
    {"sent", T_LONG, offsetof(ProbeCounters, sent), 0, NULL},
    {"received", T_LONG, offsetof(ProbeCounters, received), 0, NULL},
    {NULL},
};

static inline int finished(const ProbeCounters *p) { return p->remaining == 0 && p->outstanding == 0; }

static void restart(ProbeCounters *self) {
    self->remaining = self->packets;
    self->outstanding = self->sent = self->received = 0;
    self->rtt_total = 0.0;
    Py_CLEAR(self->error);
}

static PyObject *ProbeCounters_restart(ProbeCounters *self, PyObject *Py_UNUSED(ignored)) {
    restart(self);
    Py_RETURN_NONE;
}

static PyObject *ProbeCounters_finished(ProbeCounters *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(finished(self));
}

static PyObject *ProbeCounters_ok(ProbeCounters *self, void *Py_UNUSED(closure)) {
    if (self->error != NULL && self->error != Py_None) Py_RETURN_NONE; /* no evidence either way */
    return PyBool_FromLong(self->received > 0);
}

static PyObject *ProbeCounters_loss_ratio(ProbeCounters *self, void *Py_UNUSED(closure)) {
    return PyFloat_FromDouble(self->sent ? 1.0 - (double)self->received / (double)self->sent : 1.0);
}

static PyObject *ProbeCounters_rtt_mean(ProbeCounters *self, void *Py_UNUSED(closure)) {
    if (!self->received) Py_RETURN_NONE;
    return PyFloat_FromDouble(self->rtt_total / (double)self->received);
}

/* wire.py's RECORD, "=3q3d": total, failures, errors (int64), last_at, rtt, loss (double, NaN for none). */
#define RECORD_BYTES 48

/* The port's record after this finished probe (a new reference), or NULL with an exception set. */
static PyObject *fold_record(const ProbeCounters *self, PyObject *record, double at) {
    if (!PyBytes_Check(record) || PyBytes_GET_SIZE(record) != RECORD_BYTES) {
        PyErr_Format(PyExc_ValueError, "fold: the record must be %d bytes", RECORD_BYTES);
        return NULL;
    }
    int64_t counts[3]; /* total, failures, errors */
    double values[3]; /* last_at, rtt, loss */
    memcpy(counts, PyBytes_AS_STRING(record), sizeof counts);
    memcpy(values, PyBytes_AS_STRING(record) + sizeof counts, sizeof values);
    if (self->error != NULL && self->error != Py_None) {
        counts[2] += 1; /* could not be made: the last time, RTT and loss stay the last probe's */
    } else {
        counts[0] += 1;
        if (!self->received) counts[1] += 1;
        values[0] = at;
        values[1] = self->received ? self->rtt_total / (double)self->received : Py_NAN;
        values[2] = self->sent ? 1.0 - (double)self->received / (double)self->sent : 1.0;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, RECORD_BYTES);
    if (out == NULL) return NULL;
    memcpy(PyBytes_AS_STRING(out), counts, sizeof counts);
    memcpy(PyBytes_AS_STRING(out) + sizeof counts, values, sizeof values);
    return out;
}

static PyObject *ProbeCounters_fold(ProbeCounters *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "fold(record, at): 2 arguments expected");
        return NULL;
    }
    double at = PyFloat_AsDouble(args[1]);
    if (at == -1.0 && PyErr_Occurred()) return NULL;
    return fold_record(self, args[0], at);
}

static PyMethodDef ProbeCounters_methods[] = {
    {"restart", (PyCFunction)ProbeCounters_restart, METH_NOARGS,
     PyDoc_STR("Make the counters new again: a port's next probe reuses its finished one.")},
    {"fold", (PyCFunction)(void (*)(void))ProbeCounters_fold, METH_FASTCALL,
     PyDoc_STR("fold(record, at) -> the port's record (wire.RECORD) after this finished probe, stamped at.")},
    {NULL},
};

static PyGetSetDef ProbeCounters_getset[] = {
    {"finished", (getter)ProbeCounters_finished, NULL, PyDoc_STR("Every request answered or expired."), NULL},
    {"ok", (getter)ProbeCounters_ok, NULL, PyDoc_STR("True: answered; False: not; None: no evidence."), NULL},
    {"loss_ratio", (getter)ProbeCounters_loss_ratio, NULL, NULL, NULL},
    {"rtt_mean", (getter)ProbeCounters_rtt_mean, NULL, PyDoc_STR("Mean RTT of the answers, or None."), NULL},
    {NULL},
};

static PyTypeObject ProbeCountersType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "threenines.probes._wire.ProbeCounters",
    .tp_doc = PyDoc_STR("A probe's counters, kept where the native wire updates them directly."),
    .tp_basicsize = sizeof(ProbeCounters),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)ProbeCounters_dealloc,
    .tp_traverse = (traverseproc)ProbeCounters_traverse,
    .tp_clear = (inquiry)ProbeCounters_clear,
    .tp_members = ProbeCounters_members,
    .tp_methods = ProbeCounters_methods,
    .tp_getset = ProbeCounters_getset,
};

/* -- Wire ------------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject *probe; /* NULL: free */
    int64_t sent_ns; /* wall clock, in ns: the kernel stamps replies in wall-clock time */
    double sent_mono; /* monotonic: times the reply when the wall clock stepped in between */
    uint32_t generation; /* tells this request from an older one that used the same sequence number */
    unsigned char address[16]; /* the destination: only a reply from it counts */
} Slot;

typedef struct {
    double deadline; /* monotonic */
    uint32_t generation;
    uint16_t sequence;
} Expiry;

/* Requests with one timeout value expire in the order they were sent: a FIFO ring per timeout value. */
typedef struct {
    double timeout;
    Expiry *ring;
    size_t capacity, head, count; /* capacity is a power of two */
} Lane;

typedef struct {
    PyObject_HEAD
    int fd; /* -1 once closed */
    int version;
    char privileged; /* a raw socket: sees every ICMP packet, including errors quoting our requests */
    int header_skip; /* raw IPv4 sockets deliver the IP header too */
    unsigned ident;
    unsigned next_seq;
    uint32_t checksum_base; /* ones'-complement sum of an IPv4 request without its sequence number */
    uint32_t generation;
    PyObject *on_done;
    Slot *slots;
    Lane *lanes;
    size_t lane_count;
    Py_ssize_t in_flight;
    unsigned long long unmatched;
} Wire;

static double clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* In integer nanoseconds: an RTT is the difference of two of these, exact, then one division by 1e9 (below). The
 * difference of two stamps as doubles near 1.7e9 s was quantized to 0.24 us, and its text was 17 digits of that
 * noise: longer to format and to compress on every scrape. */
static int64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline unsigned read16(const unsigned char *at) { return ((unsigned)at[0] << 8) | at[1]; }

static int call_done(Wire *self, PyObject *probe) {
    PyObject *result = PyObject_CallOneArg(self->on_done, probe);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

/* Drop every request in flight without a result (close, or garbage collection). */
static void release_slots(Wire *self) {
    if (self->slots == NULL) return;
    for (size_t seq = 0; seq < TABLE_SIZE; seq++) {
        PyObject *probe = self->slots[seq].probe;
        if (probe != NULL) {
            self->slots[seq].probe = NULL;
            Py_DECREF(probe);
        }
    }
    self->in_flight = 0;
    for (size_t i = 0; i < self->lane_count; i++) self->lanes[i].count = self->lanes[i].head = 0;
}

static int Wire_init(Wire *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"sock", "version", "ident", "privileged", "on_done", NULL};
    int version, privileged;
    unsigned ident;
    PyObject *sock, *on_done;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OiIpO", keywords, &sock, &version, &ident, &privileged,
                                     &on_done))
        return -1;
    int fd = PyObject_AsFileDescriptor(sock); /* the socket stays its owner's: it closes it */
    if (fd < 0) return -1;
    if (version != 4 && version != 6) {
        PyErr_Format(PyExc_ValueError, "version must be 4 or 6, not %d", version);
        return -1;
    }
    if (!PyCallable_Check(on_done)) {
        PyErr_SetString(PyExc_TypeError, "on_done must be callable");
        return -1;
    }
    if (self->slots == NULL) {
        self->slots = PyMem_Calloc(TABLE_SIZE, sizeof(Slot));
        if (self->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    release_slots(self);
    self->fd = fd;
    self->version = version;
    self->privileged = privileged;
    self->header_skip = version == 4 && privileged;
    self->ident = ident & 0xFFFF;
    self->next_seq = 0;
    self->unmatched = 0;
    uint32_t sum = (version == 4 ? 8u : 128u) << 8; /* type, code 0; checksum and sequence are 0 here */
    sum += self->ident;
    for (size_t i = 0; i < sizeof PAYLOAD; i += 2) sum += ((uint32_t)PAYLOAD[i] << 8) | PAYLOAD[i + 1];
    self->checksum_base = sum;
    Py_INCREF(on_done);
    Py_XSETREF(self->on_done, on_done);
    return 0;
}

static int Wire_traverse(Wire *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_done);
    if (self->slots != NULL && self->in_flight)
        for (size_t seq = 0; seq < TABLE_SIZE; seq++) Py_VISIT(self->slots[seq].probe);
    return 0;
}

static int Wire_clear(Wire *self) {
    release_slots(self);
    Py_CLEAR(self->on_done);
    return 0;
}

static void Wire_dealloc(Wire *self) {
    PyObject_GC_UnTrack(self);
    Wire_clear(self);
    PyMem_Free(self->slots);
    for (size_t i = 0; i < self->lane_count; i++) PyMem_Free(self->lanes[i].ring);
    PyMem_Free(self->lanes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Lane *lane_for(Wire *self, double timeout) {
    for (size_t i = 0; i < self->lane_count; i++)
        if (self->lanes[i].timeout == timeout) return &self->lanes[i];
    Lane *lanes = PyMem_Realloc(self->lanes, (self->lane_count + 1) * sizeof(Lane));
    if (lanes == NULL) return NULL;
    self->lanes = lanes;
    Lane *lane = &lanes[self->lane_count++];
    lane->timeout = timeout;
    lane->ring = NULL;
    lane->capacity = lane->head = lane->count = 0;
    return lane;
}

/* Room for one more entry, made before the request is sent: a send is never left without its expiry. */
static int lane_reserve(Lane *lane) {
    if (lane->count == lane->capacity) {
        size_t capacity = lane->capacity ? lane->capacity * 2 : 1024;
        Expiry *ring = PyMem_Malloc(capacity * sizeof(Expiry));
        if (ring == NULL) return -1;
        for (size_t i = 0; i < lane->count; i++) ring[i] = lane->ring[(lane->head + i) & (lane->capacity - 1)];
        PyMem_Free(lane->ring);
        lane->ring = ring;
        lane->capacity = capacity;
        lane->head = 0;
    }
    return 0;
}

static inline int entry_live(const Wire *self, const Expiry *entry) {
    const Slot *slot = &self->slots[entry->sequence];
    return slot->probe != NULL && slot->generation == entry->generation;
}

/* Stop sending; without one request out, the probe is no evidence. */
static PyObject *give_up(Wire *self, ProbeCounters *probe, PyObject *reason, PyObject *result) {
    probe->remaining = 0;
    if (!probe->sent) {
        Py_INCREF(reason);
        Py_XSETREF(probe->error, reason);
    }
    if (finished(probe) && call_done(self, (PyObject *)probe) < 0) {
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

static int claim_sequence(Wire *self) {
    for (size_t tries = 0; tries < TABLE_SIZE; tries++) {
        unsigned seq = self->next_seq;
        self->next_seq = (seq + 1) & 0xFFFF;
        if (self->slots[seq].probe == NULL) return (int)seq;
    }
    return -1;
}

static int unreachable(int err) {
    return err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN || err == ENETDOWN;
}

PyDoc_STRVAR(Wire_send_doc,
             "send(probe, destination) -> None | int\n\n"
             "Send the probe's next echo request to `destination` (packed sockaddr bytes). Returns None, or the\n"
             "errno of a send that failed for a local reason (the probe gave up), or -1 when all 65536 sequence\n"
             "numbers are in flight.");

static PyObject *Wire_send(Wire *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &ProbeCountersType) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "send(probe: ProbeCounters, destination: bytes)");
        return NULL;
    }
    ProbeCounters *probe = (ProbeCounters *)args[0];
    const char *destination = PyBytes_AS_STRING(args[1]);
    Py_ssize_t destination_size = PyBytes_GET_SIZE(args[1]);
    Py_ssize_t expected = self->version == 4 ? (Py_ssize_t)sizeof(struct sockaddr_in)
                                             : (Py_ssize_t)sizeof(struct sockaddr_in6);
    if (destination_size != expected) {
        PyErr_Format(PyExc_ValueError, "destination is %zd bytes, an IPv%d sockaddr is %zd", destination_size,
                     self->version, expected);
        return NULL;
    }
    probe->remaining -= 1;
    if (self->fd < 0) return give_up(self, probe, reason_no_socket, Py_NewRef(Py_None));
    int seq = self->slots[self->next_seq].probe == NULL ? (int)self->next_seq : -1;
    if (seq >= 0)
        self->next_seq = (self->next_seq + 1) & 0xFFFF;
    else
        seq = claim_sequence(self); /* still in flight after a wrap-around: look further */
    if (seq < 0) return give_up(self, probe, reason_send_failed, PyLong_FromLong(-1));

    unsigned char packet[8 + sizeof PAYLOAD];
    unsigned checksum = 0;
    if (self->version == 4) { /* the kernel computes ICMPv6 checksums itself */
        uint32_t total = self->checksum_base + (uint32_t)seq;
        total = (total >> 16) + (total & 0xFFFF);
        total += total >> 16;
        checksum = ~total & 0xFFFF;
    }
    packet[0] = self->version == 4 ? 8 : 128;
    packet[1] = 0;
    packet[2] = checksum >> 8;
    packet[3] = checksum & 0xFF;
    packet[4] = self->ident >> 8;
    packet[5] = self->ident & 0xFF;
    packet[6] = (unsigned)seq >> 8;
    packet[7] = (unsigned)seq & 0xFF;
    memcpy(packet + 8, PAYLOAD, sizeof PAYLOAD);

    Lane *lane = lane_for(self, probe->timeout);
    if (lane == NULL || lane_reserve(lane) < 0) {
        probe->remaining += 1; /* not sent: the caller may try again */
        return PyErr_NoMemory();
    }
    int64_t sent_ns = clock_ns(CLOCK_REALTIME);
    if (sendto(self->fd, packet, sizeof packet, 0, (const struct sockaddr *)destination,
               (socklen_t)destination_size) < 0) {
        int err = errno;
        if (unreachable(err)) { /* a request that cannot leave towards the port is a lost one */
            probe->sent += 1;
            if (finished(probe) && call_done(self, (PyObject *)probe) < 0) return NULL;
            Py_RETURN_NONE;
        }
        return give_up(self, probe, reason_send_failed, PyLong_FromLong(err));
    }
    double sent_mono = clock_seconds(CLOCK_MONOTONIC);
    Expiry entry = {sent_mono + probe->timeout, ++self->generation, (uint16_t)seq};
    lane->ring[(lane->head + lane->count) & (lane->capacity - 1)] = entry;
    lane->count++;
    probe->sent += 1;
    probe->outstanding += 1;
    Slot *slot = &self->slots[seq];
    slot->probe = Py_NewRef((PyObject *)probe);
    slot->sent_ns = sent_ns;
    slot->sent_mono = sent_mono;
    slot->generation = entry.generation;
    if (self->version == 4)
        memcpy(slot->address, &((const struct sockaddr_in *)destination)->sin_addr, 4);
    else
        memcpy(slot->address, &((const struct sockaddr_in6 *)destination)->sin6_addr, 16);
    self->in_flight++;
    Py_RETURN_NONE;
}

static int is_error_type(int version, unsigned type) {
    if (version == 4) return type == 3 || type == 11 || type == 12; /* unreachable, time exceeded, parameter */
    return type >= 1 && type <= 4; /* unreachable, too big, time exceeded, parameter problem */
}

static int same_source(const Wire *self, const Slot *slot, const struct sockaddr_storage *source) {
    if (self->version == 4)
        return source->ss_family == AF_INET &&
               memcmp(&((const struct sockaddr_in *)source)->sin_addr, slot->address, 4) == 0;
    return source->ss_family == AF_INET6 &&
           memcmp(&((const struct sockaddr_in6 *)source)->sin6_addr, slot->address, 16) == 0;
}

/* Match one received datagram; -1 when on_done raised. */
static int take_reply(Wire *self, const unsigned char *data, size_t size, const struct sockaddr_storage *source,
                      int64_t arrived_ns) {
    size_t start = self->header_skip && size ? (size_t)(data[0] & 0x0F) * 4 : 0;
    if (size < start + 8) return 0;
    unsigned type = data[start], ident, seq;
    int is_error = 0;
    if (type == (self->version == 4 ? 0u : 129u)) {
        ident = read16(data + start + 4);
        seq = read16(data + start + 6);
    } else if (self->privileged && is_error_type(self->version, type)) {
        size_t inner = start + 8; /* the quoted request: its IP header, then its ICMP header */
        inner += self->version == 4 && size > inner ? (size_t)(data[inner] & 0x0F) * 4 : 40;
        if (size < inner + 8 || data[inner] != (self->version == 4 ? 8u : 128u)) return 0;
        ident = read16(data + inner + 4);
        seq = read16(data + inner + 6);
        is_error = 1;
    } else {
        return 0;
    }
    if (self->privileged && ident != self->ident) return 0; /* another process's ping on the raw socket */
    Slot *slot = &self->slots[seq];
    if (slot->probe == NULL || (!is_error && !same_source(self, slot, source))) {
        self->unmatched++;
        return 0;
    }
    ProbeCounters *probe = (ProbeCounters *)slot->probe;
    slot->probe = NULL; /* its expiry entry is skipped when it comes due */
    self->in_flight--;
    probe->outstanding -= 1;
    /* Divided, not multiplied by 1e-9: the double nearest the nanoseconds, whose text is those digits. */
    double rtt = (double)(arrived_ns - slot->sent_ns) / 1e9;
    if (!is_error && !(rtt >= 0.0 && rtt <= probe->timeout)) /* the wall clock stepped meanwhile, or it is late */
        rtt = clock_seconds(CLOCK_MONOTONIC) - slot->sent_mono; /* as read: an upper bound */
    if (!is_error && rtt <= probe->timeout) {
        probe->received += 1;
        probe->rtt_total += rtt;
    }
    int status = finished(probe) ? call_done(self, (PyObject *)probe) : 0;
    Py_DECREF(probe);
    return status;
}

static PyObject *Wire_drain(Wire *self, PyObject *Py_UNUSED(ignored)) {
    unsigned char data[RECEIVE_BYTES];
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(struct timespec))];
    } control;
    struct sockaddr_storage source;
    struct iovec iov = {data, sizeof data};
    for (int n = 0; n < DRAIN_LIMIT && self->fd >= 0; n++) {
        struct msghdr msg = {&source, sizeof source, &iov, 1, control.bytes, sizeof control.bytes, 0};
        ssize_t size = recvmsg(self->fd, &msg, MSG_DONTWAIT);
        if (size < 0) break; /* nothing queued (EAGAIN), or an error the next read will see again */
        int64_t arrived_ns = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec stamp;
                memcpy(&stamp, CMSG_DATA(c), sizeof stamp);
                arrived_ns = (int64_t)stamp.tv_sec * 1000000000 + stamp.tv_nsec;
            }
        }
        if (arrived_ns < 0) arrived_ns = clock_ns(CLOCK_REALTIME); /* not stamped: read time */
        if (take_reply(self, data, (size_t)size, &source, arrived_ns) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Wire_expire(Wire *self, PyObject *arg) {
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    /* Index, not pointer: on_done may send, and a send can grow the lanes. */
    for (size_t i = 0; i < self->lane_count; i++) {
        while (i < self->lane_count && self->lanes[i].count) {
            Lane *lane = &self->lanes[i];
            Expiry entry = lane->ring[lane->head];
            if (entry.deadline > now) break;
            lane->head = (lane->head + 1) & (lane->capacity - 1);
            lane->count--;
            if (!entry_live(self, &entry)) continue; /* answered already */
            Slot *slot = &self->slots[entry.sequence];
            ProbeCounters *probe = (ProbeCounters *)slot->probe;
            slot->probe = NULL;
            self->in_flight--;
            probe->outstanding -= 1;
            int status = finished(probe) ? call_done(self, (PyObject *)probe) : 0;
            Py_DECREF(probe);
            if (status < 0) return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Wire_next_expiry(Wire *self, PyObject *Py_UNUSED(ignored)) {
    double earliest = 0.0;
    int any = 0;
    for (size_t i = 0; i < self->lane_count; i++) {
        Lane *lane = &self->lanes[i];
        while (lane->count && !entry_live(self, &lane->ring[lane->head])) { /* answered: do not wake for it */
            lane->head = (lane->head + 1) & (lane->capacity - 1);
            lane->count--;
        }
        if (lane->count && (!any || lane->ring[lane->head].deadline < earliest)) {
            earliest = lane->ring[lane->head].deadline;
            any = 1;
        }
    }
    if (!any) Py_RETURN_NONE;
    return PyFloat_FromDouble(earliest);
}

static PyObject *Wire_close(Wire *self, PyObject *Py_UNUSED(ignored)) {
    self->fd = -1; /* the socket's owner closes it; sends from here give up */
    release_slots(self);
    Py_RETURN_NONE;
}

static PyObject *Wire_get_next_seq(Wire *self, void *Py_UNUSED(closure)) { return PyLong_FromUnsignedLong(self->next_seq); }

static int Wire_set_next_seq(Wire *self, PyObject *value, void *Py_UNUSED(closure)) {
    unsigned long seq = value ? PyLong_AsUnsignedLong(value) : (unsigned long)-1;
    if (PyErr_Occurred()) return -1;
    if (seq > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "next_seq is a 16-bit sequence number");
        return -1;
    }
    self->next_seq = (unsigned)seq;
    return 0;
}

static PyObject *Wire_get_unmatched(Wire *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->unmatched);
}

static PyMethodDef Wire_methods[] = {
    {"send", (PyCFunction)(void (*)(void))Wire_send, METH_FASTCALL, Wire_send_doc},
    {"drain", (PyCFunction)Wire_drain, METH_NOARGS, PyDoc_STR("Read and match every queued reply.")},
    {"expire", (PyCFunction)Wire_expire, METH_O,
     PyDoc_STR("expire(now): count requests whose monotonic deadline is <= now as lost.")},
    {"next_expiry", (PyCFunction)Wire_next_expiry, METH_NOARGS,
     PyDoc_STR("Monotonic deadline of the earliest unanswered request, or None.")},
    {"close", (PyCFunction)Wire_close, METH_NOARGS,
     PyDoc_STR("Forget every request in flight (no result); later sends give up.")},
    {NULL},
};

static PyMemberDef Wire_members[] = {
    {"version", T_INT, offsetof(Wire, version), READONLY, NULL},
    {"privileged", T_BOOL, offsetof(Wire, privileged), READONLY, NULL},
    {"ident", T_UINT, offsetof(Wire, ident), READONLY, NULL},
    {"in_flight", T_PYSSIZET, offsetof(Wire, in_flight), READONLY, NULL},
    {NULL},
};

static PyGetSetDef Wire_getset[] = {
    {"next_seq", (getter)Wire_get_next_seq, (setter)Wire_set_next_seq, NULL, NULL},
    {"unmatched", (getter)Wire_get_unmatched, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject WireType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "threenines.probes._wire.Wire",
    .tp_doc = PyDoc_STR("Wire(sock, version, ident, privileged, on_done): one ICMP socket's requests in flight."),
    .tp_basicsize = sizeof(Wire),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Wire_init,
    .tp_dealloc = (destructor)Wire_dealloc,
    .tp_traverse = (traverseproc)Wire_traverse,
    .tp_clear = (inquiry)Wire_clear,
    .tp_methods = Wire_methods,
    .tp_members = Wire_members,
    .tp_getset = Wire_getset,
};

/* -- The scheduler's passes over its ports and probes --------------------------------------------------
 *
 * At fleet scale the scheduler's loops over the probes of one wake-up (start the due ones, send them, fold the
 * finished ones into their ports' records) were bytecode reading and writing attributes of objects last touched a
 * whole interval ago. Here they are loops over C structs: 1.6 us of user CPU a probe less, side by side at 167
 * probes/s (bench/README.md). wire.py has each of them in Python, with the same arguments and results. */

typedef struct {
    PyObject_HEAD
    PyObject *record; /* bytes, wire.RECORD: the port's counters */
    PyObject *slot; /* int: its index in the exposition's layout, -1 when not in it */
    PyObject *token; /* what the answers' sink resolved its key to; NULL or None: not resolved (yet) */
    PyObject *probe; /* its last probe, reused once finished; NULL or None: none yet */
    double due; /* monotonic time its next probe is due */
    char retired; /* removed by a reload: a probe still in flight is dropped */
} PortState;

static int PortState_traverse(PortState *self, visitproc visit, void *arg) {
    Py_VISIT(self->token);
    Py_VISIT(self->probe);
    return 0;
}

static int PortState_clear(PortState *self) {
    Py_CLEAR(self->token);
    Py_CLEAR(self->probe);
    return 0;
}

static void PortState_dealloc(PortState *self) {
    PyObject_GC_UnTrack(self);
    PortState_clear(self);
    Py_CLEAR(self->record);
    Py_CLEAR(self->slot);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef PortState_members[] = {
    {"record", T_OBJECT, offsetof(PortState, record), 0, NULL},
    {"slot", T_OBJECT, offsetof(PortState, slot), 0, NULL},
    {"token", T_OBJECT, offsetof(PortState, token), 0, NULL},
    {"probe", T_OBJECT, offsetof(PortState, probe), 0, NULL},
    {"due", T_DOUBLE, offsetof(PortState, due), 0, NULL},
    {"retired", T_BOOL, offsetof(PortState, retired), 0, NULL},
    {NULL},
};

static PyTypeObject PortStateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "threenines.probes._wire.PortState",
    .tp_doc = PyDoc_STR("What the scheduler's passes read and write of a port: record, slot, token, probe, due."),
    .tp_basicsize = sizeof(PortState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)PortState_dealloc,
    .tp_traverse = (traverseproc)PortState_traverse,
    .tp_clear = (inquiry)PortState_clear,
    .tp_members = PortState_members,
};

static inline int is_none(const PyObject *object) { return object == NULL || object == Py_None; }

PyDoc_STRVAR(start_due_doc,
             "start_due(ports, head, now, interval, room, starting, renew, lags) -> (head, started)\n\n"
             "Start up to `room` probes of a lane: `ports` (a list of PortState) is a ring in order of due time from\n"
             "index `head`. Each port due at `now` or before moves to the ring's end, due one interval later (or one\n"
             "interval from now, far behind); its lag goes to `lags`; its finished probe is restarted and goes to\n"
             "`starting`, or, without one, the port goes to `renew` (the caller makes its probe). Returns the new\n"
             "head and how many ports were due.");

static PyObject *start_due(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyList_Check(args[0]) || !PyList_Check(args[5]) || !PyList_Check(args[6]) ||
        !PyList_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "start_due(ports: list, head, now, interval, room, starting: list, renew: list, lags: list)");
        return NULL;
    }
    PyObject *ports = args[0], *starting = args[5], *renew = args[6], *lags = args[7];
    Py_ssize_t head = PyLong_AsSsize_t(args[1]);
    double now = PyFloat_AsDouble(args[2]), interval = PyFloat_AsDouble(args[3]);
    Py_ssize_t room = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(ports), started = 0;
    if (count && (head < 0 || head >= count)) {
        PyErr_SetString(PyExc_IndexError, "start_due: head out of the lane");
        return NULL;
    }
    while (count && started < room) {
        PyObject *item = PyList_GET_ITEM(ports, head);
        if (!PyObject_TypeCheck(item, &PortStateType)) {
            PyErr_SetString(PyExc_TypeError, "start_due: the lane holds a port that is not a PortState");
            return NULL;
        }
        PortState *port = (PortState *)item;
        double due = port->due;
        if (due > now) break;
        head = head + 1 == count ? 0 : head + 1; /* to the back of the ring, due one interval later */
        PyObject *lag = PyFloat_FromDouble(now > due ? now - due : 0.0);
        if (lag == NULL) return NULL;
        int status = PyList_Append(lags, lag);
        Py_DECREF(lag);
        if (status < 0) return NULL;
        port->due = due + interval > now ? due + interval : now + interval; /* far behind: realign, no burst */
        started++;
        PyObject *probe = port->probe;
        if (!is_none(probe) && PyObject_TypeCheck(probe, &ProbeCountersType) && finished((ProbeCounters *)probe)) {
            restart((ProbeCounters *)probe);
            status = PyList_Append(starting, probe);
        } else { /* the first, or the last one is still running (a probe that outlasts its interval) */
            status = PyList_Append(renew, item);
        }
        if (status < 0) return NULL;
    }
    return Py_BuildValue("(nn)", head, started);
}

static PyObject *Wire_send(Wire *self, PyObject *const *args, Py_ssize_t nargs);

PyDoc_STRVAR(send_all_doc,
             "send_all(probes) -> list[tuple[probe, int | None]]\n\n"
             "Send each probe's next echo request through its route (wire, destination), in order. Returns the\n"
             "probes that did not go as routed: (probe, None) without a route yet (the caller resolves it and\n"
             "sends), (probe, code) when Wire.send returned a code (an errno, or -1: no sequence number free).");

static PyObject *send_all(PyObject *Py_UNUSED(module), PyObject *probes) {
    if (!PyList_Check(probes)) {
        PyErr_SetString(PyExc_TypeError, "send_all(probes: list)");
        return NULL;
    }
    PyObject *rest = PyList_New(0);
    if (rest == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(probes); i++) { /* a send may finish a probe: the list stays */
        PyObject *probe = PyList_GET_ITEM(probes, i);
        if (!PyObject_TypeCheck(probe, &ProbeCountersType)) {
            PyErr_SetString(PyExc_TypeError, "send_all: not a probe");
            goto fail;
        }
        PyObject *route = ((ProbeCounters *)probe)->route, *code;
        if (!is_none(route)) {
            if (!PyTuple_Check(route) || PyTuple_GET_SIZE(route) != 2 ||
                !PyObject_TypeCheck(PyTuple_GET_ITEM(route, 0), &WireType)) {
                PyErr_SetString(PyExc_TypeError, "send_all: a route is (Wire, destination)");
                goto fail;
            }
            Py_INCREF(probe); /* on_done runs Python: hold what the send uses */
            Py_INCREF(route);
            PyObject *send_args[2] = {probe, PyTuple_GET_ITEM(route, 1)};
            code = Wire_send((Wire *)PyTuple_GET_ITEM(route, 0), send_args, 2);
            Py_DECREF(route);
            Py_DECREF(probe);
            if (code == NULL) goto fail;
            if (code == Py_None) {
                Py_DECREF(code);
                continue;
            }
        } else {
            code = Py_NewRef(Py_None);
        }
        PyObject *pair = PyTuple_Pack(2, probe, code);
        Py_DECREF(code);
        if (pair == NULL || PyList_Append(rest, pair) < 0) {
            Py_XDECREF(pair);
            goto fail;
        }
        Py_DECREF(pair);
    }
    return rest;
fail:
    Py_DECREF(rest);
    return NULL;
}

PyDoc_STRVAR(fold_run_doc,
             "fold_run(probes, start, at, records, answered) -> int\n\n"
             "From index `start`, fold each finished probe into its port's record, stamped `at` (a retired port's\n"
             "is dropped), and store the record in `records` under the port's slot (when it has one); an answered\n"
             "probe whose port has a token appends the token to `answered`. Stops at the first probe that needs\n"
             "more (a failure or an error, or an answer without a token yet), folded already, and returns its\n"
             "index; len(probes) when none does.");

static PyObject *fold_run(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[0]) || !PyDict_Check(args[3]) || !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "fold_run(probes: list, start, at, records: dict, answered: list)");
        return NULL;
    }
    PyObject *probes = args[0], *records = args[3], *answered = args[4];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    double at = PyFloat_AsDouble(args[2]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(probes);
    for (Py_ssize_t i = start < 0 ? 0 : start; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(probes, i);
        if (!PyObject_TypeCheck(item, &ProbeCountersType) ||
            !PyObject_TypeCheck(((ProbeCounters *)item)->port, &PortStateType)) {
            PyErr_SetString(PyExc_TypeError, "fold_run: a probe whose port is a PortState expected");
            return NULL;
        }
        ProbeCounters *probe = (ProbeCounters *)item;
        PortState *port = (PortState *)probe->port;
        if (port->retired) continue;
        if (port->record == NULL || port->slot == NULL || !PyLong_Check(port->slot)) {
            PyErr_SetString(PyExc_TypeError, "fold_run: a port without its record or slot");
            return NULL;
        }
        PyObject *record = fold_record(probe, port->record, at);
        if (record == NULL) return NULL;
        Py_SETREF(port->record, record);
        Py_ssize_t slot = PyLong_AsSsize_t(port->slot);
        if (slot == -1 && PyErr_Occurred()) return NULL;
        if (slot >= 0 && PyDict_SetItem(records, port->slot, record) < 0) return NULL;
        if (!is_none(probe->error) || !probe->received || is_none(port->token)) return PyLong_FromSsize_t(i);
        if (PyList_Append(answered, port->token) < 0) return NULL;
    }
    return PyLong_FromSsize_t(count);
}

static PyMethodDef wire_functions[] = {
    {"start_due", (PyCFunction)(void (*)(void))start_due, METH_FASTCALL, start_due_doc},
    {"send_all", (PyCFunction)send_all, METH_O, send_all_doc},
    {"fold_run", (PyCFunction)(void (*)(void))fold_run, METH_FASTCALL, fold_run_doc},
    {NULL},
};

static struct PyModuleDef wire_module = {
    PyModuleDef_HEAD_INIT, .m_name = "threenines.probes._wire",
    .m_doc = PyDoc_STR("The prober's wire in C; threenines.probes.wire is the reference in Python."),
    .m_size = -1,
    .m_methods = wire_functions,
};

PyMODINIT_FUNC PyInit__wire(void) {
    if (PyType_Ready(&ProbeCountersType) < 0 || PyType_Ready(&WireType) < 0 || PyType_Ready(&PortStateType) < 0)
        return NULL;
    reason_send_failed = PyUnicode_InternFromString("send_failed");
    reason_no_socket = PyUnicode_InternFromString("no_socket");
    if (reason_send_failed == NULL || reason_no_socket == NULL) return NULL;
    PyObject *module = PyModule_Create(&wire_module);
    if (module == NULL) return NULL;
    if (PyModule_AddType(module, &ProbeCountersType) < 0 || PyModule_AddType(module, &WireType) < 0 ||
        PyModule_AddType(module, &PortStateType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
