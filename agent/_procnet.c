/* The collector's hot path in C: read a /proc/<pid>/net file, and parse the six kinds of file
 * read from every namespace on every collection. Each function returns exactly what its pure-Python
 * twin in agent/procnet.py returns for the same bytes (tests/unit/test_fastproc.py checks both on
 * captured and mutated files); agent/fastproc.py picks this module when it was built and falls back
 * to the Python one when it was not. Measured: bench/pool.py, bench/RESULTS.md.
 *
 * Whitespace and line ends are str.split()'s and str.splitlines()'s, not only what the kernel prints
 * (space, tab, newline), so that the two agree on any bytes; a token that is not a decimal integer
 * raises ValueError, as int() does. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 65536

/* str.isspace() of an ASCII character (what str.split() and str.strip() split on): \t-\r, \x1c-\x1f
 * and space. Other bytes decode to a character that is not (non-ASCII ones to U+FFFD). */
static const unsigned char SPACE[256] = {['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1,
                                        [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, [' '] = 1};
static inline int is_space(char c) { return SPACE[(unsigned char)c]; }

/* What int() strips around a number: \t-\r and space, not \x1c-\x1f. */
static int is_int_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* str.splitlines()'s line boundaries among ASCII characters: \n, \r (\r\n is one), \v, \f, \x1c-\x1e. */
static int is_eol(char c) { return (c >= '\n' && c <= '\r') || (c >= '\x1c' && c <= '\x1e'); }

/* The whole file behind `fd`, from offset 0, into *out (`first` when it fits, else malloc'd: the
 * caller frees it when *out != first); 0, an errno, or -1 when malloc failed (an ENOMEM from read is
 * an OSError, as os.read raises). pread from 0, not read: a seq_file read at offset 0 generates the
 * file afresh, so a descriptor kept open (agent/nsfiles.py) is read again like a new one. Runs
 * without the GIL, so plain malloc, no Python calls. */
static int slurp_fd(int fd, int single, char *first, char **out, size_t *outlen) {
    char *buf = first;
    size_t cap = CHUNK, len = 0;
    int err = 0;
    for (;;) {
        /* Grown only when full: a read into the space left ends most files. Growing whenever
         * less than CHUNK was left made every seq_file read (net/dev, if_inet6: a second read
         * for EOF) allocate 128 KiB: with the agent's 128 KiB mmap threshold (agent/malloc.py)
         * an mmap, page faults and a munmap each. */
        if (len == cap) {
            char *nb = buf == first ? malloc(cap * 2) : realloc(buf, cap * 2);
            if (nb == NULL) {
                err = -1;
                break;
            }
            if (buf == first)
                memcpy(nb, first, len);
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - len;
        ssize_t n = pread(fd, buf + len, want, (off_t)len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        len += (size_t)n;
        if (n == 0 || (single && (size_t)n < want))
            break;
    }
    if (err && buf != first)
        free(buf);
    *out = err ? NULL : buf;
    *outlen = len;
    return err;
}

/* slurp_fd of `path`, opened and closed here. */
static int slurp(const char *path, int single, char *first, char **out, size_t *outlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = slurp_fd(fd, single, first, out, outlen);
    close(fd);
    return err;
}

/* The bytes slurped into buf (freeing it), or the error raised (naming `path` when not NULL). */
static PyObject *slurped(int err, char *first, char *buf, size_t len, const char *path) {
    PyObject *out = NULL;
    if (err < 0) {
        PyErr_NoMemory();
    } else if (err && path != NULL) {
        PyObject *name = PyUnicode_DecodeFSDefault(path);
        if (name != NULL) {
            errno = err; /* after the decode, which may change errno */
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
            Py_DECREF(name);
        }
    } else if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        out = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
        if (buf != first)
            free(buf);
    }
    PyMem_RawFree(first);
    return out;
}

/* The bytes of `path` (opened and closed here) or, with path NULL, of `fd` from offset 0. The GIL is
 * released once for the open, the reads and the close (not per system call: with several reader
 * threads, each hand-off of the GIL costs more than a read of a small /proc file). */
static PyObject *read_whole(const char *path, int fd, int single) {
    char *first = PyMem_RawMalloc(CHUNK); /* per call: several threads may read at once */
    if (first == NULL)
        return PyErr_NoMemory();
    char *buf = NULL;
    size_t len = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = path != NULL ? slurp(path, single, first, &buf, &len) : slurp_fd(fd, single, first, &buf, &len);
    Py_END_ALLOW_THREADS
    return slurped(err, first, buf, len, path);
}

/* read_file(path: str, single: bool) -> bytes. `single`: a read shorter than the buffer was the
 * whole file (single_open files), so the read for EOF is skipped. OSError (FileNotFoundError,
 * ProcessLookupError...) carries errno and the path. */
static PyObject *read_file(PyObject *self, PyObject *args) {
    PyObject *pathobj;
    int single = 0;
    if (!PyArg_ParseTuple(args, "O&|p", PyUnicode_FSConverter, &pathobj, &single))
        return NULL;
    PyObject *out = read_whole(PyBytes_AS_STRING(pathobj), -1, single);
    Py_DECREF(pathobj);
    return out;
}

/* pread_fd(fd: int, single: bool) -> bytes: read_file of a descriptor kept open, from offset 0. */
static PyObject *pread_fd(PyObject *self, PyObject *args) {
    int fd, single = 0;
    if (!PyArg_ParseTuple(args, "i|p", &fd, &single))
        return NULL;
    return read_whole(NULL, fd, single);
}

/* One line: [p, end) without its newline. */
typedef struct {
    const char *p, *end;
} span;

static int next_line(const char **cur, const char *stop, span *line) {
    if (*cur >= stop)
        return 0;
    const char *nl = memchr(*cur, '\n', (size_t)(stop - *cur));
    line->p = *cur;
    line->end = nl ? nl : stop;
    *cur = nl ? nl + 1 : stop;
    return 1;
}

/* One line as str.splitlines() cuts them (parse_net_dev, parse_sockstat), terminator excluded. */
static int next_uline(const char **cur, const char *stop, span *line) {
    const char *p = *cur;
    if (p >= stop)
        return 0;
    while (p < stop && !is_eol(*p))
        p++;
    line->p = *cur;
    line->end = p;
    if (p < stop) {
        if (*p == '\r' && p + 1 < stop && p[1] == '\n')
            p++;
        p++;
    }
    *cur = p;
    return 1;
}

/* The line iterator for str.splitlines() over [p, p + n): next_line's memchr where the data has no
 * other line boundary than \n (what the kernel prints), next_uline's byte loop otherwise. */
typedef int (*line_fn)(const char **, const char *, span *);
static line_fn splitlines_fn(const char *p, size_t n) {
    static const char other[] = "\r\v\f\x1c\x1d\x1e";
    for (const char *o = other; *o; o++)
        if (memchr(p, *o, n) != NULL)
            return next_uline;
    return next_line;
}

/* How many bytes at the start of [p, end) the str `s` (its UTF-8, slen bytes) matches, as
 * [p, end).decode("ascii", "replace").startswith(s) would (a byte >= 0x80 is U+FFFD); -1 if not. */
static Py_ssize_t match_prefix(const char *p, const char *end, const char *s, Py_ssize_t slen) {
    const char *q = p;
    Py_ssize_t j = 0;
    while (j < slen) {
        if (q >= end)
            return -1;
        if ((unsigned char)*q < 0x80) {
            if (*q != s[j])
                return -1;
            j++;
        } else {
            if (slen - j < 3 || memcmp(s + j, "\xef\xbf\xbd", 3) != 0)
                return -1;
            j += 3;
        }
        q++;
    }
    return q - p;
}

/* The next whitespace-separated token of [*cur, end); 0 when there is none. */
static int next_token(const char **cur, const char *end, span *tok) {
    const char *p = *cur;
    while (p < end && is_space(*p))
        p++;
    if (p >= end) {
        *cur = p;
        return 0;
    }
    tok->p = p;
    while (p < end && !is_space(*p))
        p++;
    tok->end = p;
    *cur = p;
    return 1;
}

/* The tokens of [p, end) after the first one, in *arr: `local` (nlocal spans) while they fit, then
 * PyMem_Malloc'd (the caller frees *arr when it is not `local`). The count, or -1 (MemoryError). */
static Py_ssize_t tokens_after_first(const char *p, const char *end, span *local, Py_ssize_t nlocal, span **arr) {
    span *a = local, t;
    Py_ssize_t n = 0, cap = nlocal;
    *arr = local;
    if (!next_token(&p, end, &t))
        return 0;
    while (next_token(&p, end, &t)) {
        if (n == cap) {
            span *na = PyMem_Malloc((size_t)cap * 2 * sizeof(span));
            if (na == NULL) {
                if (a != local)
                    PyMem_Free(a);
                PyErr_NoMemory();
                return -1;
            }
            memcpy(na, a, (size_t)n * sizeof(span));
            if (a != local)
                PyMem_Free(a);
            a = na;
            cap *= 2;
        }
        a[n++] = t;
    }
    *arr = a;
    return n;
}

/* A decimal integer token (optional '-') as a Python int; ValueError like int() otherwise.
 * Counters are u64 (net/dev, the MIBs); a few MIB fields are signed (Tcp MaxConn -1). */
static PyObject *to_int(const char *p, const char *end) {
    int neg = 0;
    const char *q = p;
    if (q < end && (*q == '-' || *q == '+')) {
        neg = *q == '-';
        q++;
    }
    if (q >= end || end - q > 20)
        goto slow;
    uint64_t v = 0;
    for (const char *r = q; r < end; r++) {
        if (*r < '0' || *r > '9')
            goto slow;
        uint64_t d = (uint64_t)(*r - '0');
        if (v > (UINT64_MAX - d) / 10)
            goto slow;
        v = v * 10 + d;
    }
    if (!neg)
        return PyLong_FromUnsignedLongLong(v);
    if (v <= (uint64_t)INT64_MAX)
        return PyLong_FromLongLong(-(int64_t)v);
slow:; /* anything else: let int() decide (big numbers, or its ValueError) */
    PyObject *s = PyUnicode_DecodeASCII(p, end - p, "replace");
    if (s == NULL)
        return NULL;
    PyObject *r = PyLong_FromUnicodeObject(s, 10);
    Py_DECREF(s);
    return r;
}

/* d[key] = val, taking both references; a NULL key or val (its error already raised) fails. */
static int set_item_steal(PyObject *d, PyObject *key, PyObject *val) {
    int rc = key != NULL && val != NULL ? PyDict_SetItem(d, key, val) : -1;
    Py_XDECREF(key);
    Py_XDECREF(val);
    return rc;
}

static int get_buffer(PyObject *obj, Py_buffer *view) {
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE);
}

/* The tp_dealloc of a class statement's type (typeobject.c's subtype_dealloc), from a probe
 * class made at import: a tuple subclass with it, no fields and no __dict__ is freed by tuple's. */
static destructor class_dealloc;

static int plain_tuple_class(PyTypeObject *tp) {
    for (; tp != &PyTuple_Type; tp = tp->tp_base)
        if (tp == NULL || tp->tp_dealloc != class_dealloc || tp->tp_basicsize != PyTuple_Type.tp_basicsize)
            return 0;
    return 1;
}

/* parse_net_dev(data, cls=tuple) -> {iface: cls(rx_bytes, rx_packets, rx_errors, rx_dropped,
 * tx_bytes, tx_packets, tx_errors, tx_dropped)}; skips the two header lines and lines without ':'
 * or with fewer than 16 values. `cls`: a tuple subclass without fields of its own (a NamedTuple:
 * procnet.DevCounters), allocated here as tuple.__new__ would, without a Python call per row. */
static PyObject *parse_net_dev(PyObject *self, PyObject *args) {
    static const int cols[8] = {0, 1, 2, 3, 8, 9, 10, 11};
    PyObject *data, *cls = (PyObject *)&PyTuple_Type;
    if (!PyArg_ParseTuple(args, "O|O", &data, &cls))
        return NULL;
    /* tuple, or a class statement's subclass of it (or of such a subclass) without a __dict__ or
     * __weakref__ (a NamedTuple): tupledealloc frees it. Not any tuple subtype of tuple's size: a struct
     * sequence (time.struct_time, os.stat_result) has hidden fields past Py_SIZE, which its
     * dealloc would read and release beyond the 8 items allocated here. */
    if (!PyType_Check(cls) || !plain_tuple_class((PyTypeObject *)cls)) {
        PyErr_SetString(PyExc_TypeError, "cls must be tuple or a NamedTuple");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    Py_buffer view;
    if (get_buffer(data, &view) < 0)
        return NULL;
    const char *cur = view.buf, *stop = cur + view.len;
    PyObject *out = PyDict_New();
    if (out == NULL)
        goto fail;
    span line;
    int n = 0;
    line_fn lines = splitlines_fn(cur, (size_t)view.len);
    while (lines(&cur, stop, &line)) { /* text.splitlines()[2:] */
        if (n < 2) {
            n++;
            continue;
        }
        const char *colon = memchr(line.p, ':', (size_t)(line.end - line.p));
        if (colon == NULL)
            continue;
        span toks[16];
        const char *t = colon + 1;
        int k = 0;
        while (k < 16 && next_token(&t, line.end, &toks[k]))
            k++;
        if (k < 16)
            continue;
        const char *a = line.p, *b = colon;
        while (a < b && is_space(*a))
            a++;
        while (b > a && is_space(b[-1]))
            b--;
        PyObject *tup = tp == &PyTuple_Type ? PyTuple_New(8) : tp->tp_alloc(tp, 8);
        if (tup == NULL)
            goto fail;
        for (int i = 0; i < 8; i++) {
            PyObject *v = to_int(toks[cols[i]].p, toks[cols[i]].end);
            if (v == NULL) {
                Py_DECREF(tup);
                goto fail;
            }
            PyTuple_SET_ITEM(tup, i, v);
        }
        if (set_item_steal(out, PyUnicode_DecodeASCII(a, b - a, "replace"), tup) < 0)
            goto fail;
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* pick_net_snmp(data, wanted: {section: [field...]}) -> {section: {field: int}}: net/snmp and
 * net/netstat are pairs of lines, names then values; only the wanted sections' wanted fields are
 * converted (the last column of that name, as a dict built from the header would keep). */
static PyObject *pick_net_snmp(PyObject *self, PyObject *args) {
    PyObject *data, *wanted;
    if (!PyArg_ParseTuple(args, "OO", &data, &wanted))
        return NULL;
    Py_buffer view;
    if (get_buffer(data, &view) < 0)
        return NULL;
    const char *cur = view.buf, *stop = cur + view.len;
    PyObject *out = PyDict_New(), *fields = NULL, *got = NULL; /* fields: only within one pass */
    if (out == NULL)
        goto fail;
    span names, values, *htok, *vtok;
    while (next_line(&cur, stop, &names)) {
        /* Python pairs lines of text.split("\n"): a last names line without a values line is
         * dropped, and the empty string after a final newline is a line too. */
        if (cur >= stop && (view.len == 0 || ((const char *)view.buf)[view.len - 1] != '\n'))
            break;
        if (!next_line(&cur, stop, &values)) {
            values.p = values.end = stop; /* the "" after a final newline */
        }
        const char *colon = memchr(names.p, ':', (size_t)(names.end - names.p));
        const char *secend = colon ? colon : names.end;
        PyObject *sec = PyUnicode_DecodeASCII(names.p, secend - names.p, "replace");
        if (sec == NULL)
            goto fail;
        fields = PyObject_GetItem(wanted, sec); /* any mapping (the exporter's is read-only) */
        if (fields == NULL) {
            Py_DECREF(sec);
            if (!PyErr_ExceptionMatches(PyExc_KeyError))
                goto fail;
            PyErr_Clear();
            continue;
        }
        if (fields == Py_None) { /* wanted.get(sec) is None: not wanted */
            Py_CLEAR(fields);
            Py_DECREF(sec);
            continue;
        }
        /* A tuple (the same object when it is one): a list could be changed under the loop below
         * by a key's __hash__/__eq__, leaving `f` and the length stale. */
        PyObject *seq = PySequence_Tuple(fields);
        Py_CLEAR(fields);
        if (seq == NULL) {
            Py_DECREF(sec);
            goto fail;
        }
        got = PyDict_New();
        if (got == NULL) {
            Py_DECREF(seq);
            Py_DECREF(sec);
            goto fail;
        }
        /* Header and value tokens after the first ("Tcp:"), all of them (no column limit). */
        span hloc[256], vloc[256];
        htok = vtok = NULL;
        Py_ssize_t nh = tokens_after_first(names.p, names.end, hloc, 256, &htok);
        if (nh < 0)
            goto fail_seq;
        Py_ssize_t nv = tokens_after_first(values.p, values.end, vloc, 256, &vtok);
        if (nv < 0)
            goto fail_seq;
        Py_ssize_t nf = PyTuple_GET_SIZE(seq);
        for (Py_ssize_t i = 0; i < nf; i++) {
            PyObject *f = PyTuple_GET_ITEM(seq, i);
            if (!PyUnicode_Check(f)) /* idx.get(f): never a key of the str-keyed index */
                continue;
            Py_ssize_t flen;
            const char *fs = PyUnicode_AsUTF8AndSize(f, &flen);
            if (fs == NULL)
                goto fail_seq;
            int ascii = PyUnicode_IS_ASCII(f); /* else: U+FFFD matches a byte >= 0x80 */
            Py_ssize_t j = -1;
            for (Py_ssize_t h = 0; h < nh; h++) {
                Py_ssize_t hlen = htok[h].end - htok[h].p;
                if (ascii ? hlen == flen && memcmp(htok[h].p, fs, (size_t)flen) == 0
                          : match_prefix(htok[h].p, htok[h].end, fs, flen) == hlen)
                    j = h;
            }
            if (j < 0 || j >= nv)
                continue;
            PyObject *v = to_int(vtok[j].p, vtok[j].end);
            if (v == NULL || PyDict_SetItem(got, f, v) < 0) {
                Py_XDECREF(v);
                goto fail_seq;
            }
            Py_DECREF(v);
        }
        if (htok != hloc)
            PyMem_Free(htok);
        if (vtok != vloc)
            PyMem_Free(vtok);
        Py_DECREF(seq);
        int rc = set_item_steal(out, sec, got);
        got = NULL;
        if (rc < 0)
            goto fail;
        continue;
    fail_seq:
        if (htok != NULL && htok != hloc)
            PyMem_Free(htok);
        if (vtok != NULL && vtok != vloc)
            PyMem_Free(vtok);
        Py_DECREF(seq);
        Py_DECREF(sec);
        goto fail;
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(got);
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* parse_sockstat(data, wanted=None) -> {proto: {field: int}} for lines "PROTO: name value ...".
 * `wanted` (proto -> field names): only those protocols and fields, as procnet.parse_sockstat. */
static PyObject *parse_sockstat(PyObject *self, PyObject *args) {
    PyObject *arg, *wanted = Py_None;
    if (!PyArg_ParseTuple(args, "O|O", &arg, &wanted))
        return NULL;
    Py_buffer view;
    if (get_buffer(arg, &view) < 0)
        return NULL;
    const char *cur = view.buf, *stop = cur + view.len;
    PyObject *out = PyDict_New(), *d = NULL, *proto = NULL, *fields = NULL;
    if (out == NULL)
        goto fail;
    span line;
    line_fn lines = splitlines_fn(cur, (size_t)view.len);
    while (lines(&cur, stop, &line)) { /* text.splitlines() */
        const char *colon = memchr(line.p, ':', (size_t)(line.end - line.p));
        if (colon == NULL)
            continue;
        proto = PyUnicode_DecodeASCII(line.p, colon - line.p, "replace");
        if (proto == NULL)
            goto fail;
        if (wanted != Py_None) { /* wanted.get(proto), as a tuple (see pick_net_snmp) */
            PyObject *got = PyObject_GetItem(wanted, proto);
            if (got == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError))
                    goto fail;
                PyErr_Clear();
                Py_CLEAR(proto);
                continue;
            }
            if (got == Py_None) {
                Py_DECREF(got);
                Py_CLEAR(proto);
                continue;
            }
            fields = PySequence_Tuple(got);
            Py_DECREF(got);
            if (fields == NULL)
                goto fail;
        }
        d = PyDict_New();
        if (d == NULL)
            goto fail;
        const char *t = colon + 1;
        span k, v;
        while (next_token(&t, line.end, &k)) {
            if (!next_token(&t, line.end, &v))
                break;
            PyObject *key = PyUnicode_DecodeASCII(k.p, k.end - k.p, "replace");
            if (key != NULL && fields != NULL) {
                int in = PySequence_Contains(fields, key);
                if (in <= 0) { /* not wanted (its value is not converted), or an error */
                    Py_DECREF(key);
                    if (in < 0)
                        goto fail;
                    continue;
                }
            }
            if (set_item_steal(d, key, key ? to_int(v.p, v.end) : NULL) < 0)
                goto fail;
        }
        Py_CLEAR(fields);
        int rc = set_item_steal(out, proto, d);
        proto = d = NULL;
        if (rc < 0)
            goto fail;
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(fields);
    Py_XDECREF(proto);
    Py_XDECREF(d);
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* pick_net_snmp6(data, prefix) -> {field: int}: the run of "PrefixName value" lines that starts
 * at the first line (after the first) beginning with `prefix`, prefix removed; a name whose next
 * character is not upper case (UdpLite6... for Udp6... is not, but Udp6 vs UdpLite6 differ
 * already) is skipped. */
static PyObject *pick_net_snmp6(PyObject *self, PyObject *args) {
    PyObject *data;
    const char *prefix;
    Py_ssize_t plen;
    if (!PyArg_ParseTuple(args, "Os#", &data, &prefix, &plen))
        return NULL;
    Py_buffer view;
    if (get_buffer(data, &view) < 0)
        return NULL;
    const char *buf = view.buf, *stop = buf + view.len;
    PyObject *out = PyDict_New();
    if (out == NULL)
        goto fail;
    /* text.find("\n" + prefix) (match_prefix: as the decoded text's startswith) */
    const char *start = NULL;
    for (const char *p = buf; p < stop; p++) {
        p = memchr(p, '\n', (size_t)(stop - p));
        if (p == NULL)
            break;
        if (match_prefix(p + 1, stop, prefix, plen) >= 0) {
            start = p + 1;
            break;
        }
    }
    if (start != NULL) {
        /* the lines of text[start:].split("\n"): after a final newline (or none at all), an
         * empty one, which only an empty prefix starts */
        const char *cur = start;
        span line;
        int done = 0;
        while (!done) {
            if (!next_line(&cur, stop, &line)) {
                if (cur > start && cur[-1] != '\n')
                    break; /* the last line had no newline: no empty line after it */
                line.p = line.end = stop;
                done = 1;
            }
            /* ml: the bytes the prefix covers, len(prefix) in characters of the decoded text */
            Py_ssize_t ml = match_prefix(line.p, line.end, prefix, plen);
            if (ml < 0)
                break;
            const char *sp = memchr(line.p, ' ', (size_t)(line.end - line.p));
            const char *name_end = sp ? sp : line.end;
            if (name_end - line.p <= ml) { /* name[len(prefix)] would raise IndexError */
                PyErr_SetString(PyExc_IndexError, "string index out of range");
                goto fail;
            }
            char c = line.p[ml];
            if (!(c >= 'A' && c <= 'Z'))
                continue;
            const char *v = sp ? sp + 1 : line.end, *ve = line.end;
            while (v < ve && is_int_space(*v))
                v++;
            while (ve > v && is_int_space(ve[-1]))
                ve--;
            PyObject *val = to_int(v, ve);
            PyObject *key = val ? PyUnicode_DecodeASCII(line.p + ml, name_end - line.p - ml, "replace") : NULL;
            if (set_item_steal(out, key, val) < 0)
                goto fail;
        }
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* has_ipv6(data) -> bool: a line of net/if_inet6 whose last token is not "lo". */
static PyObject *has_ipv6(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (get_buffer(arg, &view) < 0)
        return NULL;
    const char *cur = view.buf, *stop = cur + view.len;
    span line, tok, last;
    int found = 0;
    while (!found && next_line(&cur, stop, &line)) {
        const char *t = line.p;
        int any = 0;
        while (next_token(&t, line.end, &tok)) {
            last = tok;
            any = 1;
        }
        if (any && !(last.end - last.p == 2 && memcmp(last.p, "lo", 2) == 0))
            found = 1;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"read_file", read_file, METH_VARARGS, "read_file(path, single=False) -> bytes"},
    {"pread_fd", pread_fd, METH_VARARGS, "pread_fd(fd, single=False) -> bytes, from offset 0"},
    {"parse_net_dev", parse_net_dev, METH_VARARGS, "parse_net_dev(data, cls=tuple) -> {iface: cls}"},
    {"pick_net_snmp", pick_net_snmp, METH_VARARGS, "pick_net_snmp(data, wanted) -> {sec: {f: int}}"},
    {"parse_sockstat", parse_sockstat, METH_VARARGS, "parse_sockstat(data, wanted=None) -> {proto: {f: int}}"},
    {"pick_net_snmp6", pick_net_snmp6, METH_VARARGS, "pick_net_snmp6(data, prefix) -> {f: int}"},
    {"has_ipv6", has_ipv6, METH_O, "has_ipv6(data) -> bool"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "agent._procnet", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__procnet(void) {
    PyObject *probe = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){s:()}", "_probe",
                                            (PyObject *)&PyTuple_Type, "__slots__");
    if (probe == NULL)
        return NULL;
    class_dealloc = ((PyTypeObject *)probe)->tp_dealloc;
    Py_DECREF(probe);
    return PyModule_Create(&module);
}
