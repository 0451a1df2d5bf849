/* The per-port probe families' lines in C: six families, one line each per port, from the ports' packed records.
 *
 * threenines/exposition/port_lines.py is the reference: the same function in Python, used when this module was
 * not built, and a property test holds the two byte-identical. It exists for CPU: every probe changes its
 * port's lines, so a scrape formats six lines per port probed since the previous one, and in Python that was
 * half of what a scrape cost the exporter (16,700 ports probed every 100 s, scraped by two Prometheus).
 *
 * Floats are written as Python's repr() writes them (PyOS_double_to_string, mode 'r'), counts as "<n>.0".
 *
 * Given the records the ports had when their lines were last made, a family none of whose lines would change is
 * None and is not formatted: an answered probe changes its port's count, RTT and time, not its failures, errors
 * or loss (port_lines.py's changed_families says which bytes each family reads).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define FAMILIES 6 /* total, failures, errors, rtt, loss, last: the order of port_lines.py's FAMILIES */
#define RECORD_BYTES 48 /* struct "=3q3d": total, failures, errors, last_at, rtt, loss (NaN for none) */

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Buffer;

static int reserve(Buffer *b, Py_ssize_t more) {
    if (b->size + more <= b->capacity)
        return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->size + more)
        capacity *= 2;
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int put(Buffer *b, const char *text, Py_ssize_t size) {
    if (reserve(b, size) < 0)
        return -1;
    memcpy(b->data + b->size, text, size);
    b->size += size;
    return 0;
}

/* "<n>.0", written backwards into a small buffer (snprintf's format parsing cost more than the digits). */
static int put_count(Buffer *b, int64_t value) {
    char text[24];
    char *end = text + sizeof text, *at = end;
    *--at = '0';
    *--at = '.';
    uint64_t rest = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do {
        *--at = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest);
    if (value < 0)
        *--at = '-';
    return put(b, at, end - at);
}

/* The last value a family wrote, as text: the ports that one read of the socket finished share their stamp (the
 * `last` family), and answered ports share their loss, so neighbouring lines often write the same double. Compared
 * by its bits, so the text is always repr() of exactly that value. */
typedef struct {
    uint64_t bits;
    int size; /* 0: nothing cached */
    char text[32];
} FloatText;

/* repr() of a double in (0, 10) that is the nearest double to a whole number of nanoseconds n (an RTT: the wires
 * divide integer nanoseconds by 1e9), written from n's digits without dtoa (dtoa was ~0.5 us a line). Those digits
 * are its shortest repr: any shorter decimal is at least 1e-10 of the value away, the double's neighbours 1e-16.
 * Python writes an exponent below 1e-4 (decimal point position <= -4), e.g. 3.4094e-05, else fixed: 0.00034094,
 * 1.5, 2.0. Returns the text's size, or 0 when the value is not such a double (dtoa then writes it). */
static int nanoseconds_text(double value, char *text) {
    if (!(value > 0.0 && value < 10.0))
        return 0;
    int64_t n = (int64_t)(value * 1e9 + 0.5);
    if ((double)n / 1e9 != value)
        return 0;
    char buffer[12];
    char *digits = buffer + sizeof buffer; /* written backwards, as put_count does: most significant first */
    for (int64_t rest = n; rest; rest /= 10)
        *--digits = (char)('0' + rest % 10);
    int count = (int)(buffer + sizeof buffer - digits);
    int point = count - 9; /* value = 0.<digits> x 10^point */
    int kept = count;
    while (kept > 1 && digits[kept - 1] == '0')
        kept--;
    int size = 0;
    if (point <= -4) {
        int exponent = 1 - point; /* written as e-XX, at least two digits */
        text[size++] = digits[0];
        if (kept > 1) {
            text[size++] = '.';
            memcpy(text + size, digits + 1, (size_t)(kept - 1));
            size += kept - 1;
        }
        text[size++] = 'e';
        text[size++] = '-';
        text[size++] = (char)('0' + exponent / 10);
        text[size++] = (char)('0' + exponent % 10);
    } else if (point <= 0) {
        text[size++] = '0';
        text[size++] = '.';
        for (int i = 0; i < -point; i++)
            text[size++] = '0';
        memcpy(text + size, digits, (size_t)kept);
        size += kept;
    } else if (point < kept) {
        memcpy(text + size, digits, (size_t)point);
        size += point;
        text[size++] = '.';
        memcpy(text + size, digits + point, (size_t)(kept - point));
        size += kept - point;
    } else {
        memcpy(text + size, digits, (size_t)kept);
        size += kept;
        for (int i = kept; i < point; i++)
            text[size++] = '0';
        text[size++] = '.';
        text[size++] = '0';
    }
    return size;
}

static int put_float(Buffer *b, double value, FloatText *last) {
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    if (last->size && last->bits == bits)
        return put(b, last->text, last->size);
    int quick = nanoseconds_text(value, last->text);
    if (quick) {
        last->size = quick;
        last->bits = bits;
        return put(b, last->text, quick);
    }
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return -1;
    Py_ssize_t size = (Py_ssize_t)strlen(text);
    int failed = put(b, text, size);
    if (size < (Py_ssize_t)sizeof last->text) {
        memcpy(last->text, text, (size_t)size);
        last->size = (int)size;
        last->bits = bits;
    }
    PyMem_Free(text);
    return failed;
}

/* name + labels (+ extra inside the braces) + " " + value + "\n"; the value is written by the caller. */
static int put_head(Buffer *b, const char *name, Py_ssize_t name_size, const char *labels, Py_ssize_t labels_size,
                    const char *extra) {
    if (put(b, name, name_size) < 0)
        return -1;
    if (extra == NULL)
        return put(b, labels, labels_size) < 0 || put(b, " ", 1) < 0 ? -1 : 0;
    /* the labels end with '}': the extra label goes before it */
    if (put(b, labels, labels_size - 1) < 0 || put(b, extra, (Py_ssize_t)strlen(extra)) < 0)
        return -1;
    return put(b, "} ", 2);
}

/* The record's bytes each family's lines read, in family order (port_lines.py's _FIELDS). */
static const int FIELD_START[FAMILIES] = {0, 8, 16, 32, 40, 24};

static int is_record(PyObject *record, Py_ssize_t i) {
    if (PyBytes_Check(record) && PyBytes_GET_SIZE(record) == RECORD_BYTES)
        return 1;
    PyErr_Format(PyExc_ValueError, "port_lines: record %zd is not %d bytes", i, RECORD_BYTES);
    return 0;
}

/* Which families' lines differ between the records and the previous ones: a bit per family; -1 on bad input. */
static int changed_families(PyObject *records, PyObject *previous) {
    int changed = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records) && changed != (1 << FAMILIES) - 1; i++) {
        PyObject *record = PyList_GET_ITEM(records, i), *old = PyList_GET_ITEM(previous, i);
        if (record == Py_None || old == Py_None) {
            if (record != old)
                changed = (1 << FAMILIES) - 1;
            continue;
        }
        if (!is_record(record, i) || !is_record(old, i))
            return -1;
        const char *new_bytes = PyBytes_AS_STRING(record), *old_bytes = PyBytes_AS_STRING(old);
        for (int f = 0; f < FAMILIES; f++)
            if (memcmp(new_bytes + FIELD_START[f], old_bytes + FIELD_START[f], 8) != 0)
                changed |= 1 << f;
        double old_loss, new_loss; /* loss NaN <-> a number adds or removes the `last` line too */
        memcpy(&old_loss, old_bytes + FIELD_START[4], sizeof old_loss);
        memcpy(&new_loss, new_bytes + FIELD_START[4], sizeof new_loss);
        if ((old_loss != old_loss) != (new_loss != new_loss))
            changed |= 1 << 5;
    }
    return changed;
}

static PyObject *port_lines(PyObject *self, PyObject *args) {
    PyObject *names, *labels, *records, *previous = Py_None;
    if (!PyArg_ParseTuple(args, "O!O!O!|O", &PyTuple_Type, &names, &PyList_Type, &labels, &PyList_Type, &records,
                          &previous))
        return NULL;
    if (PyTuple_GET_SIZE(names) != FAMILIES) {
        PyErr_Format(PyExc_ValueError, "port_lines: %d family names expected", FAMILIES);
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(labels);
    if (PyList_GET_SIZE(records) != count) {
        PyErr_SetString(PyExc_ValueError, "port_lines: as many records as labels expected");
        return NULL;
    }
    int wanted = (1 << FAMILIES) - 1;
    if (previous != Py_None) {
        if (!PyList_Check(previous) || PyList_GET_SIZE(previous) != count) {
            PyErr_SetString(PyExc_ValueError, "port_lines: as many previous records as records expected");
            return NULL;
        }
        wanted = changed_families(records, previous);
        if (wanted < 0)
            return NULL;
    }
    const char *name[FAMILIES];
    Py_ssize_t name_size[FAMILIES];
    for (int f = 0; f < FAMILIES; f++) {
        name[f] = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(names, f), &name_size[f]);
        if (name[f] == NULL)
            return NULL;
    }
    Buffer out[FAMILIES] = {{0}};
    FloatText last_text[FAMILIES] = {{0}};
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        if (record == Py_None)
            continue; /* not published yet: no lines */
        if (!is_record(record, i))
            goto done;
        Py_ssize_t label_size;
        const char *label = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(labels, i), &label_size);
        if (label == NULL)
            goto done;
        if (label_size < 2 || label[label_size - 1] != '}') {
            PyErr_Format(PyExc_ValueError, "port_lines: labels %zd do not end with '}'", i);
            goto done;
        }
        int64_t counts[3];
        double values[3]; /* last_at, rtt, loss */
        memcpy(counts, PyBytes_AS_STRING(record), sizeof counts);
        memcpy(values, PyBytes_AS_STRING(record) + sizeof counts, sizeof values);
        for (int f = 0; f < 3; f++) {
            if (!(wanted & (1 << f)))
                continue;
            const char *extra = f == 2 ? ",reason=\"send_failed\"" : NULL;
            if (put_head(&out[f], name[f], name_size[f], label, label_size, extra) < 0
                || put_count(&out[f], counts[f]) < 0 || put(&out[f], "\n", 1) < 0)
                goto done;
        }
        double last_at = values[0], rtt = values[1], loss = values[2];
        if (rtt == rtt && (wanted & (1 << 3))) { /* NaN: none answered yet */
            if (put_head(&out[3], name[3], name_size[3], label, label_size, NULL) < 0 || put_float(&out[3], rtt, &last_text[3]) < 0
                || put(&out[3], "\n", 1) < 0)
                goto done;
        }
        if (loss == loss && (wanted & (1 << 4))) {
            if (put_head(&out[4], name[4], name_size[4], label, label_size, NULL) < 0
                || put_float(&out[4], loss, &last_text[4]) < 0 || put(&out[4], "\n", 1) < 0)
                goto done;
        }
        if (loss == loss && (wanted & (1 << 5))) {
            if (put_head(&out[5], name[5], name_size[5], label, label_size, NULL) < 0
                || put_float(&out[5], last_at, &last_text[5]) < 0 || put(&out[5], "\n", 1) < 0)
                goto done;
        }
    }
    result = PyList_New(FAMILIES);
    if (result == NULL)
        goto done;
    for (int f = 0; f < FAMILIES; f++) {
        if (!(wanted & (1 << f))) {
            PyList_SET_ITEM(result, f, Py_NewRef(Py_None));
            continue;
        }
        PyObject *text = PyBytes_FromStringAndSize(out[f].data ? out[f].data : "", out[f].size);
        if (text == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, f, text);
    }
done:
    for (int f = 0; f < FAMILIES; f++)
        PyMem_Free(out[f].data);
    return result;
}

static PyMethodDef methods[] = {
    {"port_lines", port_lines, METH_VARARGS,
     "port_lines(names, labels, records, previous=None) -> [bytes | None] * 6: the six per-port probe families' "
     "lines, None for a family whose lines are those of `previous` (port_lines.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "threenines.exposition._port_lines",
    .m_doc = "The per-port probe families' lines in C (threenines/exposition/port_lines.py is the reference).",
    .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__port_lines(void) { return PyModule_Create(&module); }
