/* auditq_pii: the drain's encryption of personal fields (auditq/pii/writer.py), in C.
 *
 * Why C: with AUDITQ_PII_KEY set, the Python loop around each row's AES-GCM call (taking the
 * fields out, their JSON, the nonce, the associated data, base64, the pii text) cost the
 * worker more CPU than the cipher itself, and the encrypted drain ran at 0.63-0.70x the
 * plain one (bench/HISTORY.md, issue 15). Here the whole row is one pass in C. The
 * cryptography is OpenSSL's (EVP AES-256-GCM, RAND_bytes, EVP_EncodeBlock); this file only
 * moves bytes between Python objects and those calls.
 *
 * It writes exactly what auditq/pii/writer.py's Python path writes (the tests decrypt both
 * with the reader), for the rows it can take: every personal value a str, in the ip /
 * user_agent columns or at the top level of metadata. Any other row (a number, a nested
 * path, a value that is not valid UTF-8) is left to the Python path: ``split`` says which.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define NONCE 12
#define TAG 16
#define KEY 32

/* The field set, as auditq/pii/writer.py passes it to both functions:
 * (id index, actor index, pii index, metadata index,
 *  columns: ((escaped name, column index), ...),
 *  flat: ((escaped name, metadata key), ...),   -- metadata.<key>, one level deep
 *  deep: (metadata key, ...),                   -- the first key of deeper paths
 *  row aad prefix, pii prefix) */
typedef struct {
    Py_ssize_t id, actor, pii, metadata;
    PyObject *columns, *flat, *deep, *aad, *prefix;
} Spec;

static int pairs(PyObject *tuple, PyTypeObject *second) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); i++) {
        PyObject *pair = PyTuple_GET_ITEM(tuple, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(pair, 1), second))
            return 0;
    }
    return 1;
}

static int parse_spec(PyObject *o, Spec *s) {
    if (!PyArg_ParseTuple(o, "nnnnO!O!O!O!O!;spec", &s->id, &s->actor, &s->pii, &s->metadata,
                          &PyTuple_Type, &s->columns, &PyTuple_Type, &s->flat, &PyTuple_Type,
                          &s->deep, &PyBytes_Type, &s->aad, &PyBytes_Type, &s->prefix))
        return 0;
    int deep_ok = 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(s->deep); i++)
        deep_ok = deep_ok && PyUnicode_CheckExact(PyTuple_GET_ITEM(s->deep, i));
    if (!pairs(s->columns, &PyLong_Type) || !pairs(s->flat, &PyUnicode_Type) || !deep_ok) {
        PyErr_SetString(PyExc_TypeError, "auditq_pii: a malformed spec (writer.native_spec)");
        return 0;
    }
    return 1;
}

static PyObject *item(PyObject *row, Py_ssize_t index) {
    if (index < 0 || index >= PyList_GET_SIZE(row)) {
        PyErr_SetString(PyExc_IndexError, "auditq_pii: a row is shorter than the spec");
        return NULL;
    }
    return PyList_GET_ITEM(row, index); /* borrowed */
}

/* What a row needs: 0 nothing (sealed already, or no personal value), 1 this module can seal
 * it, 2 the Python path must (a value it does not take), -1 an error. */
static int classify(PyObject *row, const Spec *s) {
    if (!PyList_Check(row)) {
        PyErr_SetString(PyExc_TypeError, "auditq_pii: a row must be a list");
        return -1;
    }
    PyObject *pii = item(row, s->pii), *metadata = item(row, s->metadata);
    if (!pii || !metadata || !item(row, s->id) || !item(row, s->actor)) return -1;
    if (pii != Py_None) return 0;
    int found = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(s->columns); i++) {
        PyObject *spec = PyTuple_GET_ITEM(s->columns, i);
        PyObject *value = item(row, PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1)));
        if (!value) return -1;
        if (value == Py_None) continue;
        if (!PyUnicode_CheckExact(value)) return 2;
        found = 1;
    }
    if (!PyDict_CheckExact(metadata)) return 2;
    if (PyDict_GET_SIZE(metadata) == 0) return found;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(s->deep); i++) {
        int has = PyDict_Contains(metadata, PyTuple_GET_ITEM(s->deep, i));
        if (has) return has < 0 ? -1 : 2;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(s->flat); i++) {
        PyObject *value = PyDict_GetItemWithError(metadata, PyTuple_GET_ITEM(PyTuple_GET_ITEM(s->flat, i), 1));
        if (!value) {
            if (PyErr_Occurred()) return -1;
            continue;
        }
        if (!PyUnicode_CheckExact(value)) return 2;
        found = 1;
    }
    return found;
}

static PyObject *empty; /* "", made when the module loads */

/* A row's subject (auditq.pii.subject_of): its actor_id, "" without one. Borrowed. */
static PyObject *subject_of(PyObject *actor) { return actor == Py_None ? empty : actor; }

static PyObject *split(PyObject *self, PyObject *args) {
    PyObject *rows, *spec_args;
    Spec s;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &rows, &PyTuple_Type, &spec_args) ||
        !parse_spec(spec_args, &s))
        return NULL;
    PyObject *fast = PyList_New(0), *slow = PyList_New(0), *subjects = PySet_New(NULL);
    if (!fast || !slow || !subjects) goto error;
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        int kind = classify(row, &s);
        if (kind < 0) goto error;
        if (kind && PyList_Append(kind == 1 ? fast : slow, row) < 0) goto error;
        if (kind == 1 && PySet_Add(subjects, subject_of(PyList_GET_ITEM(row, s.actor))) < 0)
            goto error;
    }
    return Py_BuildValue("(NNN)", fast, slow, subjects);
error:
    Py_XDECREF(fast);
    Py_XDECREF(slow);
    Py_XDECREF(subjects);
    return NULL;
}

/* A growable byte buffer, freed by the caller. */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buffer;

static int reserve(Buffer *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, cap);
    if (!data) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buffer *b, const char *bytes, Py_ssize_t n) {
    if (reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

/* A str as a JSON string, quotes included: '"' and '\' escaped, control characters as \u00XX,
 * the rest as its UTF-8 (as orjson writes it). 1 when the str is not valid UTF-8 (a lone
 * surrogate): the Python path then raises as it would have. */
static int put_json_string(Buffer *b, PyObject *str) {
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(str, &n);
    if (!utf8) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    if (n > (PY_SSIZE_T_MAX - 2) / 6 || reserve(b, 6 * n + 2) < 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    static const char hex[] = "0123456789abcdef";
    char *out = b->data + b->len;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)utf8[i];
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 15];
            out += 6;
        } else {
            *out++ = (char)c;
        }
    }
    *out++ = '"';
    b->len = out - b->data;
    return 0;
}

/* One field into the plain text ('{"name":"value"', or ',"name":"value"' after the first)
 * and its name into the list of names. */
static int put_field(Buffer *plain, Buffer *names, PyObject *name, PyObject *value) {
    const char *sep = plain->len ? "," : "{";
    if (put(plain, sep, 1) < 0 || put(plain, "\"", 1) < 0 ||
        put(plain, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)) < 0 ||
        put(plain, "\":", 2) < 0)
        return -1;
    if (names->len && put(names, ",", 1) < 0) return -1;
    if (put(names, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)) < 0) return -1;
    return put_json_string(plain, value);
}

static int ascii(const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if ((unsigned char)s[i] > 127) return 0;
    return 1;
}

/* The row id's 16 bytes, big-endian (uuid.UUID.bytes), from its ``int``. */
static int uuid_bytes(PyObject *id, unsigned char *out) {
    static PyObject *int_name;
    if (!int_name && !(int_name = PyUnicode_InternFromString("int"))) return -1;
    PyObject *value = PyObject_GetAttr(id, int_name);
    int ok = value && PyLong_CheckExact(value);
#if PY_VERSION_HEX >= 0x030D0000
    if (ok) {
        Py_ssize_t size = PyLong_AsNativeBytes(
            value, out, 16,
            Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER |
                Py_ASNATIVEBYTES_REJECT_NEGATIVE);
        ok = size >= 0 && size <= 16;
    }
#else
    /* unsigned: a negative int or one past 128 bits raises OverflowError */
    if (ok) ok = _PyLong_AsByteArray((PyLongObject *)value, out, 16, 0, 0) == 0;
#endif
    Py_XDECREF(value);
    if (!ok) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "auditq_pii: a row id must be a uuid.UUID");
        return -1;
    }
    return 0;
}

/* The data key (id, raw key) of a row's subject. */
static int row_key(PyObject *keys, PyObject *actor, const char **key_id, Py_ssize_t *key_id_len,
                   const unsigned char **raw) {
    PyObject *subject = subject_of(actor);
    PyObject *entry = PyDict_GetItemWithError(keys, subject);
    if (!entry) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, subject);
        return -1;
    }
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(entry, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(entry, 1)) ||
        PyBytes_GET_SIZE(PyTuple_GET_ITEM(entry, 1)) != KEY) {
        PyErr_SetString(PyExc_TypeError, "auditq_pii: a key must be (key id, 32 bytes, ...)");
        return -1;
    }
    *key_id = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(entry, 0), key_id_len);
    *raw = (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 1));
    return *key_id ? 0 : -1;
}

static int seal_fields(PyObject *row, PyObject *keys, const Spec *s, EVP_CIPHER_CTX *ctx,
                       Buffer *plain, Buffer *names, Buffer *out, const unsigned char *nonce,
                       PyObject *metadata);

/* Seal one row (classify() == 1). 1: left for the Python path after all (a value not valid
 * UTF-8); 0: done; -1: an error, the row unchanged. */
static int seal_row(PyObject *row, PyObject *keys, const Spec *s, EVP_CIPHER_CTX *ctx,
                    Buffer *plain, Buffer *names, Buffer *out, const unsigned char *nonce) {
    /* Checked here, as it is used: every index in range, the values of the types read
     * below without further checks. */
    int rc = classify(row, s);
    if (rc != 1) {
        if (rc >= 0)
            PyErr_SetString(PyExc_ValueError, "auditq_pii: seal() takes split()'s first list");
        return -1;
    }
    plain->len = names->len = out->len = 0;
    PyObject *metadata = PyList_GET_ITEM(row, s->metadata);
    Py_INCREF(metadata); /* held: a lookup below may run Python code (a key's __eq__) */
    rc = seal_fields(row, keys, s, ctx, plain, names, out, nonce, metadata);
    Py_DECREF(metadata);
    return rc;
}

static int seal_fields(PyObject *row, PyObject *keys, const Spec *s, EVP_CIPHER_CTX *ctx,
                       Buffer *plain, Buffer *names, Buffer *out, const unsigned char *nonce,
                       PyObject *metadata) {
    Py_ssize_t ncolumns = PyTuple_GET_SIZE(s->columns), nflat = PyTuple_GET_SIZE(s->flat);
    int taken_from_metadata = 0, rc;
    for (Py_ssize_t i = 0; i < ncolumns; i++) {
        PyObject *spec = PyTuple_GET_ITEM(s->columns, i);
        /* checked again: classify()'s metadata lookups could have run Python code */
        PyObject *value = item(row, PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1)));
        if (!value) return -1;
        if (value == Py_None) continue;
        if (!PyUnicode_Check(value)) return 1;
        if ((rc = put_field(plain, names, PyTuple_GET_ITEM(spec, 0), value))) return rc;
    }
    for (Py_ssize_t i = 0; i < nflat && PyDict_GET_SIZE(metadata); i++) {
        PyObject *spec = PyTuple_GET_ITEM(s->flat, i);
        PyObject *value = PyDict_GetItemWithError(metadata, PyTuple_GET_ITEM(spec, 1));
        if (!value) {
            if (PyErr_Occurred()) return -1;
            continue;
        }
        if ((rc = put_field(plain, names, PyTuple_GET_ITEM(spec, 0), value))) return rc;
        taken_from_metadata = 1;
    }
    if (put(plain, "}", 1) < 0) return -1;

    /* associated data: the prefix, then the row id */
    unsigned char aad[64];
    Py_ssize_t aad_len = PyBytes_GET_SIZE(s->aad);
    if (aad_len > (Py_ssize_t)sizeof aad - 16) {
        PyErr_SetString(PyExc_ValueError, "auditq_pii: associated data prefix too long");
        return -1;
    }
    memcpy(aad, PyBytes_AS_STRING(s->aad), aad_len);
    PyObject *id = item(row, s->id);
    if (!id || uuid_bytes(id, aad + aad_len) < 0) return -1;
    aad_len += 16;

    const char *key_id;
    Py_ssize_t key_id_len;
    const unsigned char *raw;
    PyObject *actor = item(row, s->actor);
    if (!actor || row_key(keys, actor, &key_id, &key_id_len, &raw) < 0) return -1;

    /* nonce || ciphertext || tag, in ``out``; its base64 written after it */
    if (plain->len > INT_MAX - NONCE - TAG) {
        PyErr_SetString(PyExc_ValueError, "auditq_pii: personal fields too large");
        return -1;
    }
    Py_ssize_t sealed_len = NONCE + plain->len + TAG;
    Py_ssize_t b64_len = 4 * ((sealed_len + 2) / 3);
    if (reserve(out, sealed_len + b64_len + 1) < 0) return -1;
    unsigned char *sealed = (unsigned char *)out->data;
    int len = 0, final_len = 0;
    memcpy(sealed, nonce, NONCE);
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, raw, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1 ||
        EVP_EncryptUpdate(ctx, sealed + NONCE, &len, (const unsigned char *)plain->data,
                          (int)plain->len) != 1 ||
        EVP_EncryptFinal_ex(ctx, sealed + NONCE + len, &final_len) != 1 ||
        len + final_len != plain->len ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, sealed + NONCE + plain->len) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "auditq_pii: OpenSSL's AES-256-GCM failed");
        return -1;
    }
    char *b64 = out->data + sealed_len;
    if (EVP_EncodeBlock((unsigned char *)b64, sealed, (int)sealed_len) != b64_len) {
        PyErr_SetString(PyExc_RuntimeError, "auditq_pii: base64 failed");
        return -1;
    }

    /* pii: prefix, then "<key id>,<base64>,<names>"}, as an ASCII str (key ids and base64
     * are; a field name or prefix that is not leaves the row to the Python path) */
    Py_ssize_t prefix_len = PyBytes_GET_SIZE(s->prefix);
    if (!ascii(PyBytes_AS_STRING(s->prefix), prefix_len) || !ascii(names->data, names->len) ||
        !ascii(key_id, key_id_len))
        return 1;
    Py_ssize_t total = prefix_len + key_id_len + 1 + b64_len + 1 + names->len + 2;
    PyObject *text = PyUnicode_New(total, 127);
    if (!text) return -1;
    char *o = (char *)PyUnicode_DATA(text);
    memcpy(o, PyBytes_AS_STRING(s->prefix), prefix_len);
    o += prefix_len;
    memcpy(o, key_id, key_id_len);
    o += key_id_len;
    *o++ = ',';
    memcpy(o, b64, b64_len);
    o += b64_len;
    *o++ = ',';
    memcpy(o, names->data, names->len);
    o += names->len;
    *o++ = '"';
    *o++ = '}';

    /* Everything built: now the row changes, all at once. */
    PyObject *stripped = NULL;
    if (taken_from_metadata) {
        if (!(stripped = PyDict_Copy(metadata))) {
            Py_DECREF(text);
            return -1;
        }
        for (Py_ssize_t i = 0; i < nflat; i++) {
            PyObject *key = PyTuple_GET_ITEM(PyTuple_GET_ITEM(s->flat, i), 1);
            if (PyDict_Contains(stripped, key) == 1 && PyDict_DelItem(stripped, key) < 0) {
                Py_DECREF(stripped);
                Py_DECREF(text);
                return -1;
            }
        }
    }
    /* PyList_SetItem checks the index and takes the reference, even when it fails */
    if (stripped && PyList_SetItem(row, s->metadata, stripped) < 0) {
        Py_DECREF(text);
        return -1;
    }
    for (Py_ssize_t i = 0; i < ncolumns; i++) {
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(PyTuple_GET_ITEM(s->columns, i), 1));
        Py_INCREF(Py_None);
        if (PyList_SetItem(row, index, Py_None) < 0) {
            Py_DECREF(text);
            return -1;
        }
    }
    return PyList_SetItem(row, s->pii, text);
}

static PyObject *seal(PyObject *self, PyObject *args) {
    PyObject *rows, *keys, *spec_args;
    Spec s;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &rows, &PyDict_Type, &keys, &PyTuple_Type,
                          &spec_args) ||
        !parse_spec(spec_args, &s))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *left = PyList_New(0);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char *nonces = PyMem_Malloc(NONCE * (n ? n : 1));
    Buffer plain = {0}, names = {0}, out = {0};
    if (!left || !ctx || !nonces) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto error;
    }
    /* one read of OpenSSL's random generator for the batch's nonces */
    if (n > INT_MAX / NONCE || RAND_bytes(nonces, (int)(NONCE * (n ? n : 1))) != 1 ||
        EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "auditq_pii: OpenSSL failed to start");
        goto error;
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        int rc = seal_row(row, keys, &s, ctx, &plain, &names, &out, nonces + NONCE * r);
        if (rc < 0) goto error;
        if (rc == 1 && PyList_Append(left, row) < 0) goto error;
    }
    OPENSSL_cleanse(plain.data, plain.cap);
    OPENSSL_cleanse(nonces, NONCE * (n ? n : 1));
    EVP_CIPHER_CTX_free(ctx);
    PyMem_Free(nonces);
    PyMem_Free(plain.data);
    PyMem_Free(names.data);
    PyMem_Free(out.data);
    return left;
error:
    if (plain.data) OPENSSL_cleanse(plain.data, plain.cap);
    EVP_CIPHER_CTX_free(ctx);
    PyMem_Free(nonces);
    PyMem_Free(plain.data);
    PyMem_Free(names.data);
    PyMem_Free(out.data);
    Py_XDECREF(left);
    return NULL;
}

static PyMethodDef methods[] = {
    {"split", split, METH_VARARGS,
     "split(rows, spec) -> (rows seal() takes, rows for the Python path, the first list's "
     "subjects); rows with nothing to seal are in neither list."},
    {"seal", seal, METH_VARARGS,
     "seal(rows, keys, spec) -> rows left for the Python path. Seals split()'s first list in "
     "place; keys: subject -> (key id, 32-byte key, ...)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "auditq_pii", NULL, -1, methods};

PyMODINIT_FUNC PyInit_auditq_pii(void) {
    if (!empty && !(empty = PyUnicode_FromString(""))) return NULL;
    return PyModule_Create(&module);
}
