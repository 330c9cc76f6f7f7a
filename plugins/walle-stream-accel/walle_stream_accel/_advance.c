/* TriggerEngine.advance in C: a line-by-line transliteration of the pure-Python hot path in
 * walle_core/stream/triggers.py, on the engine's own Python objects.
 *
 * Trie nodes, event classes, key states and matches are __slots__ classes: their slot offsets
 * are read once from the member descriptors (setup()), so a slot read is a pointer load. The
 * engine's plain attributes (keys, watermark, _heap, _classes, fired) are read from its
 * __dict__. Rare paths call the engine's Python methods (event_class, transition, _expire,
 * _cancel, _trim, _add_pending, _one_per_task), so their behaviour is the Python one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyObject *NodeType, *ClassType, *KeyStateType, *MatchType, *PendingType;
static Py_ssize_t TRIM_AT = 512;
static Py_ssize_t n_max_within, n_trans, n_tasks, n_ends, n_edges, n_gap_slots, n_dup_ends;
static Py_ssize_t c_starts, c_keyed, c_cancels;
static Py_ssize_t k_active, k_gaps, k_wild, k_buf, k_base, k_pending;
static Py_ssize_t m_task, m_key, m_buf, m_lo, m_hi, m_events, m_start_ts, m_end_ts;
static PyObject *s_ts, *s_id, *s_page, *s_user, *s_args, *s_watermark, *s_heap, *s_classes,
    *s_keys, *s_trie, *s_fired, *s_event_class, *s_transition, *s_expire, *s_cancel, *s_trim,
    *s_add_pending, *s_one_per_task, *s_negations, *s_task, *s_within_ms, *s_negation,
    *s_not_within_ms, *s_dict, *s_advance;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static inline void set_slot(PyObject *o, Py_ssize_t off, PyObject *v) {
    PyObject *old = SLOT(o, off);
    Py_INCREF(v);
    SLOT(o, off) = v;
    Py_XDECREF(old);
}

static inline PyObject *get_slot(PyObject *o, Py_ssize_t off, const char *name) {
    PyObject *v = SLOT(o, off);
    if (v == NULL) PyErr_Format(PyExc_AttributeError, "slot %s is not set", name);
    return v;
}

static Py_ssize_t slot_offset(PyObject *type, const char *name) {
    PyObject *d = PyObject_GetAttrString(type, name);
    if (d == NULL) return -1;
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        Py_DECREF(d);
        PyErr_Format(PyExc_TypeError, "%s is not a __slots__ member", name);
        return -1;
    }
    Py_ssize_t off = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    return off;
}

static double as_double(PyObject *v) {
    if (PyFloat_CheckExact(v)) return PyFloat_AS_DOUBLE(v);
    return PyFloat_AsDouble(v);
}

/* start tuples are (seq, ts) of Python ints */
static inline long long start_seq(PyObject *start) {
    return PyLong_AsLongLong(PyTuple_GET_ITEM(start, 0));
}
static inline long long start_ts(PyObject *start) {
    return PyLong_AsLongLong(PyTuple_GET_ITEM(start, 1));
}

/* edges of node for cls: node.trans.get(cls) or node.transition(cls); new reference */
static PyObject *edges_of(PyObject *node, PyObject *cls) {
    PyObject *trans = get_slot(node, n_trans, "trans");
    if (trans == NULL) return NULL;
    PyObject *edges = PyDict_GetItemWithError(trans, cls);
    if (edges != NULL) {
        Py_INCREF(edges);
        return edges;
    }
    if (PyErr_Occurred()) return NULL;
    return PyObject_CallMethodOneArg(node, s_transition, cls);
}

/* land ``start`` on ``target`` unless a later start is there; 0 ok, -1 error */
static inline int land(PyObject *landed, PyObject *target, PyObject *start, long long seq) {
    PyObject *old = PyDict_GetItemWithError(landed, target);
    if (old == NULL) {
        if (PyErr_Occurred()) return -1;
        return PyDict_SetItem(landed, target, start);
    }
    long long old_seq = start_seq(old);
    if (old_seq < seq) return PyDict_SetItem(landed, target, start);
    return 0;
}

/* follow edges (check, target) of one cursor; sets *moved; 0 ok, -1 error */
static int follow(PyObject *edges, PyObject *event, PyObject *landed, PyObject *start,
                  long long seq, int *moved) {
    Py_ssize_t n = PyTuple_GET_SIZE(edges);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *edge = PyTuple_GET_ITEM(edges, i);
        PyObject *check = PyTuple_GET_ITEM(edge, 0);
        PyObject *target = PyTuple_GET_ITEM(edge, 1);
        if (check != Py_None) {
            PyObject *to = PyObject_CallOneArg(check, event);
            if (to == NULL) return -1;
            if (to == Py_None) {
                Py_DECREF(to);
                continue;
            }
            *moved = 1;
            int rc = land(landed, to, start, seq);
            Py_DECREF(to);
            if (rc < 0) return -1;
            continue;
        }
        *moved = 1;
        if (land(landed, target, start, seq) < 0) return -1;
    }
    return 0;
}

/* TriggerEngine._wake: move the gap cursors the event ends; new reference to those kept */
static PyObject *wake(PyObject *waiting, PyObject *cls, PyObject *event, long long ts,
                      PyObject *landed) {
    PyObject *kept = PyDict_New();
    if (kept == NULL) return NULL;
    Py_ssize_t pos = 0;
    PyObject *node, *start;
    while (PyDict_Next(waiting, &pos, &node, &start)) {
        PyObject *mw = get_slot(node, n_max_within, "max_within");
        if (mw == NULL) goto error;
        long long sts = start_ts(start);
        if ((double)(ts - sts) > as_double(mw)) continue;
        PyObject *edges = edges_of(node, cls);
        if (edges == NULL) goto error;
        int moved = 0;
        int rc = follow(edges, event, landed, start, start_seq(start), &moved);
        Py_DECREF(edges);
        if (rc < 0) goto error;
        if (!moved && PyDict_SetItem(kept, node, start) < 0) goto error;
    }
    if (PyErr_Occurred()) goto error;
    return kept;
error:
    Py_DECREF(kept);
    return NULL;
}

/* attribute of a plain (dict-backed) object, e.g. a TaskEnd; new reference */
static inline PyObject *plain_attr(PyObject *obj, PyObject *name) {
    PyObject **dp = _PyObject_GetDictPtr(obj);
    if (dp != NULL && *dp != NULL) {
        PyObject *v = PyDict_GetItemWithError(*dp, name);
        if (v != NULL) return Py_NewRef(v);
        if (PyErr_Occurred()) return NULL;
    }
    return PyObject_GetAttr(obj, name);
}

/* KeyState(), __init__ inlined: three empty dicts, an empty buffer, base 0, no pending */
static PyObject *new_keystate(void) {
    PyTypeObject *kt = (PyTypeObject *)KeyStateType;
    PyObject *st = kt->tp_alloc(kt, 0);
    if (st == NULL) return NULL;
    if ((SLOT(st, k_active) = PyDict_New()) == NULL || (SLOT(st, k_gaps) = PyDict_New()) == NULL ||
        (SLOT(st, k_wild) = PyDict_New()) == NULL || (SLOT(st, k_buf) = PyList_New(0)) == NULL ||
        (SLOT(st, k_pending) = PyList_New(0)) == NULL) {
        Py_DECREF(st);
        return NULL;
    }
    SLOT(st, k_base) = PyLong_FromLong(0);
    return st;
}

static inline Py_ssize_t window_len(PyObject *m) {
    PyObject *hi = SLOT(m, m_hi), *lo = SLOT(m, m_lo);
    Py_ssize_t h = PyLong_AsSsize_t(hi);
    if (h < 0) return PyList_GET_SIZE(SLOT(m, m_buf));
    return h - PyLong_AsSsize_t(lo);
}

/* TriggerEngine._one_per_task: a task fires at most once per key and event (shortest window) */
static PyObject *one_per_task(PyObject *edict, PyObject *fired) {
    PyObject *best = PyDict_New();
    if (best == NULL) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(fired);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(fired, i);
        if (!Py_IS_TYPE(m, (PyTypeObject *)MatchType)) {
            Py_DECREF(best);
            PyErr_SetString(PyExc_TypeError, "not a Match");
            return NULL;
        }
        PyObject *k = PyTuple_Pack(2, SLOT(m, m_task), SLOT(m, m_key));
        if (k == NULL) goto error;
        PyObject *seen = PyDict_GetItemWithError(best, k);
        int rc = 0;
        if (seen == NULL) {
            rc = PyErr_Occurred() ? -1 : PyDict_SetItem(best, k, m);
        } else if (window_len(m) < window_len(seen)) {
            rc = PyDict_SetItem(best, k, m);
        }
        Py_DECREF(k);
        if (rc < 0) goto error;
    }
    Py_ssize_t dropped = n - PyDict_GET_SIZE(best);
    if (dropped) {
        PyObject *total = PyDict_GetItem(edict, s_fired);
        PyObject *dec = PyLong_FromSsize_t(dropped);
        PyObject *diff = (total && dec) ? PyNumber_Subtract(total, dec) : NULL;
        Py_XDECREF(dec);
        if (diff == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_AttributeError, "fired");
            goto error;
        }
        int rc = PyDict_SetItem(edict, s_fired, diff);
        Py_DECREF(diff);
        if (rc < 0) goto error;
    }
    PyObject *out = PyDict_Values(best);
    Py_DECREF(best);
    return out;
error:
    Py_DECREF(best);
    return NULL;
}

static PyObject *call_method(PyObject *engine, PyObject *name, PyObject *a, PyObject *b,
                             PyObject *c) {
    PyObject *args[4] = {engine, a, b, c};
    size_t n = 1 + (a != NULL) + (b != NULL) + (c != NULL);
    return PyObject_VectorcallMethod(name, args, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static int release_key(PyObject *keys, PyObject *key, PyObject *state, long long seq) {
    /* no cursor left: forget the key, or keep only its pending negations */
    PyObject *pending = get_slot(state, k_pending, "pending");
    if (pending == NULL) return -1;
    if (PyObject_IsTrue(pending) == 0) return PyDict_DelItem(keys, key);
    PyObject *nb = PyLong_FromLongLong(seq + 1);
    if (nb == NULL) return -1;
    set_slot(state, k_base, nb);
    Py_DECREF(nb);
    PyObject *empty = PyList_New(0);
    if (empty == NULL) return -1;
    set_slot(state, k_buf, empty);
    Py_DECREF(empty);
    return 0;
}

static PyObject *advance(PyObject *self, PyObject *event) {
    PyObject *engine = PyTuple_GET_ITEM(self, 0);
    PyObject *edict = PyTuple_GET_ITEM(self, 1);
    PyObject *fired = NULL, *cls = NULL, *hits = NULL, *state = NULL, *landed = NULL;
    PyObject *new_start = NULL, *ts_obj;
    int dup = 0;

    if (!PyDict_CheckExact(event) || (ts_obj = PyDict_GetItem(event, s_ts)) == NULL ||
        !PyLong_CheckExact(ts_obj)) {
        /* not the validated shape: the Python method decides (and raises as it would) */
        PyObject *method = PyObject_GetAttr((PyObject *)Py_TYPE(engine), s_advance);
        if (method == NULL) return NULL;
        PyObject *out = PyObject_CallFunctionObjArgs(method, engine, event, NULL);
        Py_DECREF(method);
        return out;
    }
    long long ts = PyLong_AsLongLong(ts_obj);
    if (ts == -1 && PyErr_Occurred()) return NULL;

    PyObject *wm = PyDict_GetItem(edict, s_watermark);
    if (wm == NULL) return PyErr_Format(PyExc_AttributeError, "engine has no watermark");
    long long wmv = PyLong_AsLongLong(wm);
    if (wmv == -1 && PyErr_Occurred()) return NULL;
    if (ts > wmv) {
        if (PyDict_SetItem(edict, s_watermark, ts_obj) < 0) return NULL;
        PyObject *heap = PyDict_GetItem(edict, s_heap);
        if (heap != NULL && PyList_GET_SIZE(heap) > 0) {
            PyObject *top = PyList_GET_ITEM(heap, 0);
            long long deadline = PyLong_AsLongLong(PyTuple_GET_ITEM(top, 0));
            if (deadline < ts) {
                fired = call_method(engine, s_expire, ts_obj, NULL, NULL);
                if (fired == NULL) return NULL;
                if (fired == Py_None) {
                    Py_CLEAR(fired);
                } else {
                    dup = 1;
                }
            }
        }
    }
    PyObject *eid = PyDict_GetItem(event, s_id);
    PyObject *page = PyDict_GetItem(event, s_page);
    PyObject *key = PyDict_GetItem(event, s_user);
    if (eid == NULL || page == NULL || key == NULL) {
        PyErr_SetString(PyExc_KeyError, "event lacks id, page or user");
        goto error;
    }
    PyObject *classes = PyDict_GetItem(edict, s_classes);
    PyObject *pages = classes ? PyDict_GetItemWithError(classes, eid) : NULL;
    if (pages != NULL) {
        cls = PyDict_GetItemWithError(pages, page);
        Py_XINCREF(cls);
    }
    if (PyErr_Occurred()) goto error;
    if (cls == NULL) {
        PyObject *trie = PyDict_GetItem(edict, s_trie);
        if (trie == NULL) goto error;
        cls = call_method(trie, s_event_class, eid, page, NULL);
        if (cls == NULL) goto error;
    }
    PyObject *keys = PyDict_GetItem(edict, s_keys);
    if (keys == NULL) {
        PyErr_SetString(PyExc_AttributeError, "engine has no keys");
        goto error;
    }
    state = PyDict_GetItemWithError(keys, key);
    if (state == NULL && PyErr_Occurred()) goto error;
    Py_XINCREF(state);
    PyObject *starts = get_slot(cls, c_starts, "starts");
    PyObject *keyed = get_slot(cls, c_keyed, "keyed");
    if (starts == NULL || keyed == NULL) goto error;
    Py_ssize_t nkeyed = PyTuple_GET_SIZE(keyed);
    if (nkeyed) {
        PyObject *args = PyDict_GetItem(event, s_args);
        if (args == NULL) {
            PyErr_SetString(PyExc_KeyError, "args");
            goto error;
        }
        for (Py_ssize_t i = 0; i < nkeyed; i++) {
            PyObject *pair = PyTuple_GET_ITEM(keyed, i);
            PyObject *value;
            if (PyDict_CheckExact(args)) {
                value = PyDict_GetItemWithError(args, PyTuple_GET_ITEM(pair, 0));
                if (value == NULL && PyErr_Occurred()) goto error;
                value = Py_NewRef(value ? value : Py_None);
            } else {
                value = PyObject_CallMethod(args, "get", "O", PyTuple_GET_ITEM(pair, 0));
                if (value == NULL) goto error;
            }
            PyObject *text = PyObject_Str(value);
            Py_DECREF(value);
            if (text == NULL) goto error;
            PyObject *found = PyDict_GetItemWithError(PyTuple_GET_ITEM(pair, 1), text);
            Py_DECREF(text);
            if (found == NULL && PyErr_Occurred()) goto error;
            if (found != NULL && PyTuple_GET_SIZE(found) > 0) {
                if (hits == NULL) {
                    Py_INCREF(found);
                    hits = found;
                } else {
                    PyObject *both = PySequence_Concat(hits, found);
                    if (both == NULL) goto error;
                    Py_SETREF(hits, both);
                }
            }
        }
    }
    Py_ssize_t nstarts = PyTuple_GET_SIZE(starts);
    if (state == NULL) {
        if (nstarts == 0 && hits == NULL) goto done;
        state = new_keystate();
        if (state == NULL || PyDict_SetItem(keys, key, state) < 0) goto error;
    }
    PyObject *buf = get_slot(state, k_buf, "buf");
    PyObject *base_obj = get_slot(state, k_base, "base");
    if (buf == NULL || base_obj == NULL) goto error;
    Py_INCREF(buf);  /* state.buf may be replaced below (release, trim): keep ours alive */
    long long base = PyLong_AsLongLong(base_obj);
    long long seq = base + PyList_GET_SIZE(buf);
    if (PyList_Append(buf, event) < 0) {
        Py_DECREF(buf);
        goto error;
    }
    Py_DECREF(buf);  /* still owned by state until the end of this event */
    PyObject *active = get_slot(state, k_active, "active");
    PyObject *gaps = get_slot(state, k_gaps, "gaps");
    PyObject *wild = get_slot(state, k_wild, "wild");
    if (active == NULL || gaps == NULL || wild == NULL) goto error;
    int gaps_hit = 0;
    if (PyDict_GET_SIZE(gaps)) {
        gaps_hit = PyDict_Contains(gaps, eid);
        if (gaps_hit < 0) goto error;
    }
    PyObject *cancels = get_slot(cls, c_cancels, "cancels");
    if (cancels == NULL) goto error;
    if (!(PyDict_GET_SIZE(active) || nstarts || hits || PyDict_GET_SIZE(wild) || gaps_hit)) {
        PyObject *pending = get_slot(state, k_pending, "pending");
        if (pending == NULL) goto error;
        if (PyList_GET_SIZE(pending) && PyObject_IsTrue(cancels) == 1) {
            PyObject *r = call_method(engine, s_cancel, state, event, ts_obj);
            if (r == NULL) goto error;
            Py_DECREF(r);
        }
        if (PyDict_GET_SIZE(gaps) == 0) {
            if (release_key(keys, key, state, seq) < 0) goto error;
        } else if (PyList_GET_SIZE(buf) > TRIM_AT) {
            PyObject *r = call_method(engine, s_trim, state, NULL, NULL);
            if (r == NULL) goto error;
            Py_DECREF(r);
        }
        goto done;
    }
    landed = PyDict_New();
    if (landed == NULL) goto error;
    if (PyDict_GET_SIZE(active)) {
        Py_INCREF(active);
        PyObject *fresh = PyDict_New();
        if (fresh == NULL) {
            Py_DECREF(active);
            goto error;
        }
        set_slot(state, k_active, fresh);
        Py_DECREF(fresh);
        Py_ssize_t pos = 0;
        PyObject *node, *start;
        int bad = 0;
        while (PyDict_Next(active, &pos, &node, &start)) {
            PyObject *mw = get_slot(node, n_max_within, "max_within");
            if (mw == NULL) {
                bad = 1;
                break;
            }
            if ((double)(ts - start_ts(start)) > as_double(mw)) continue;
            PyObject *edges = edges_of(node, cls);
            if (edges == NULL) {
                bad = 1;
                break;
            }
            int moved = 0;
            int rc = follow(edges, event, landed, start, start_seq(start), &moved);
            Py_DECREF(edges);
            if (rc < 0) {
                bad = 1;
                break;
            }
        }
        Py_DECREF(active);
        if (bad || PyErr_Occurred()) goto error;
    }
    if (gaps_hit) {
        PyObject *waiting = PyDict_GetItemWithError(gaps, eid);
        if (waiting == NULL && PyErr_Occurred()) goto error;
        if (waiting != NULL && PyDict_GET_SIZE(waiting)) {
            PyObject *kept = wake(waiting, cls, event, ts, landed);
            if (kept == NULL) goto error;
            int rc = PyDict_GET_SIZE(kept) ? PyDict_SetItem(gaps, eid, kept)
                                           : PyDict_DelItem(gaps, eid);
            Py_DECREF(kept);
            if (rc < 0) goto error;
        }
    }
    if (PyDict_GET_SIZE(wild)) {
        PyObject *kept = wake(wild, cls, event, ts, landed);
        if (kept == NULL) goto error;
        set_slot(state, k_wild, kept);
        Py_DECREF(kept);
    }
    if (nstarts || hits) {
        PyObject *seq_obj = PyLong_FromLongLong(seq);
        if (seq_obj == NULL) goto error;
        new_start = PyTuple_Pack(2, seq_obj, ts_obj);
        Py_DECREF(seq_obj);
        if (new_start == NULL) goto error;
        for (Py_ssize_t i = 0; i < nstarts; i++) {
            PyObject *edge = PyTuple_GET_ITEM(starts, i);
            PyObject *check = PyTuple_GET_ITEM(edge, 0);
            if (check == Py_None) {
                if (PyDict_SetItem(landed, PyTuple_GET_ITEM(edge, 1), new_start) < 0) goto error;
            } else {
                PyObject *to = PyObject_CallOneArg(check, event);
                if (to == NULL) goto error;
                int rc = to == Py_None ? 0 : PyDict_SetItem(landed, to, new_start);
                Py_DECREF(to);
                if (rc < 0) goto error;
            }
        }
        if (hits) {
            Py_ssize_t nh = PyTuple_GET_SIZE(hits);
            for (Py_ssize_t i = 0; i < nh; i++)
                if (PyDict_SetItem(landed, PyTuple_GET_ITEM(hits, i), new_start) < 0) goto error;
        }
    }
    {
        PyObject *pending = get_slot(state, k_pending, "pending");
        if (pending == NULL) goto error;
        if (PyList_GET_SIZE(pending) && PyObject_IsTrue(cancels) == 1) {
            PyObject *r = call_method(engine, s_cancel, state, event, ts_obj);
            if (r == NULL) goto error;
            Py_DECREF(r);
        }
    }
    if (PyDict_GET_SIZE(landed)) {
        PyObject *now_active = get_slot(state, k_active, "active");
        if (now_active == NULL) goto error;
        Py_INCREF(now_active);
        Py_ssize_t count = 0, pos = 0;
        PyObject *node, *start;
        Py_ssize_t blen = PyList_GET_SIZE(buf);
        int bad = 1;
        while (PyDict_Next(landed, &pos, &node, &start)) {
            PyObject *ends = get_slot(node, n_ends, "ends");
            if (ends == NULL) goto landing_done;
            Py_ssize_t nends = PyTuple_GET_SIZE(ends);
            if (nends) {
                long long sts = start_ts(start);
                for (Py_ssize_t e = 0; e < nends; e++) {
                    PyObject *info = PyTuple_GET_ITEM(ends, e);
                    PyObject *end = PyTuple_GET_ITEM(info, 3);
                    if ((double)(ts - sts) > PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(info, 1)))
                        continue;
                    PyObject *task = Py_NewRef(PyTuple_GET_ITEM(info, 0));
                    PyObject *lo = PyLong_FromLongLong(start_seq(start) - base);
                    PyObject *hi = PyLong_FromSsize_t(blen);
                    PyObject *match = NULL;
                    if (lo != NULL && hi != NULL) {
                        /* Match(task, key, buf, start_ts, ts, lo, hi), __init__ inlined */
                        PyTypeObject *mt = (PyTypeObject *)MatchType;
                        match = mt->tp_alloc(mt, 0);
                        if (match != NULL) {
                            SLOT(match, m_task) = Py_NewRef(task);
                            SLOT(match, m_key) = Py_NewRef(key);
                            SLOT(match, m_buf) = Py_NewRef(buf);
                            SLOT(match, m_lo) = Py_NewRef(lo);
                            SLOT(match, m_hi) = Py_NewRef(hi);
                            SLOT(match, m_events) = Py_NewRef(Py_None);
                            SLOT(match, m_start_ts) = Py_NewRef(PyTuple_GET_ITEM(start, 1));
                            SLOT(match, m_end_ts) = Py_NewRef(ts_obj);
                        }
                    }
                    Py_XDECREF(lo);
                    Py_XDECREF(hi);
                    if (match == NULL) {
                        Py_DECREF(task);
                        goto landing_done;
                    }
                    if (PyTuple_GET_ITEM(info, 2) == Py_True) {
                        PyObject *pending = NULL, *nw = plain_attr(end, s_not_within_ms);
                        PyObject *negs = PyDict_GetItem(edict, s_negations);
                        PyObject *check = negs ? PyDict_GetItemWithError(negs, task) : NULL;
                        if (nw != NULL && check != NULL) {
                            PyObject *deadline = PyNumber_Add(ts_obj, nw);
                            if (deadline != NULL) {
                                pending = PyObject_CallFunctionObjArgs(
                                    PendingType, deadline, end, match, check, NULL);
                                Py_DECREF(deadline);
                            }
                        } else if (!PyErr_Occurred()) {
                            PyErr_SetObject(PyExc_KeyError, task);
                        }
                        Py_XDECREF(nw);
                        Py_DECREF(task);
                        Py_DECREF(match);
                        if (pending == NULL) goto landing_done;
                        PyObject *r = call_method(engine, s_add_pending, key, state, pending);
                        Py_DECREF(pending);
                        if (r == NULL) goto landing_done;
                        Py_DECREF(r);
                        continue;
                    }
                    Py_DECREF(task);
                    if (fired == NULL) {
                        fired = PyList_New(0);
                        if (fired == NULL) {
                            Py_DECREF(match);
                            goto landing_done;
                        }
                    }
                    int rc = PyList_Append(fired, match);
                    Py_DECREF(match);
                    if (rc < 0) goto landing_done;
                    count++;
                }
                PyObject *dup_ends = get_slot(node, n_dup_ends, "dup_ends");
                if (dup_ends == NULL) goto landing_done;
                if (dup_ends == Py_True) dup = 1;
            }
            PyObject *edges = get_slot(node, n_edges, "edges");
            if (edges == NULL) goto landing_done;
            if (PyList_GET_SIZE(edges) && PyDict_SetItem(now_active, node, start) < 0)
                goto landing_done;
            PyObject *slots = get_slot(node, n_gap_slots, "gap_slots");
            if (slots == NULL) goto landing_done;
            Py_ssize_t nslots = PyTuple_GET_SIZE(slots);
            if (nslots) {
                long long sseq = start_seq(start);
                for (Py_ssize_t g = 0; g < nslots; g++) {
                    PyObject *pair = PyTuple_GET_ITEM(slots, g);
                    PyObject *gap = PyTuple_GET_ITEM(pair, 0);
                    PyObject *wake_id = PyTuple_GET_ITEM(pair, 1);
                    PyObject *waiting;
                    if (wake_id == Py_None) {
                        waiting = get_slot(state, k_wild, "wild");
                        if (waiting == NULL) goto landing_done;
                    } else {
                        waiting = PyDict_GetItemWithError(gaps, wake_id);
                        if (waiting == NULL) {
                            if (PyErr_Occurred()) goto landing_done;
                            waiting = PyDict_New();
                            if (waiting == NULL) goto landing_done;
                            int rc = PyDict_SetItem(gaps, wake_id, waiting);
                            Py_DECREF(waiting);
                            if (rc < 0) goto landing_done;
                        }
                    }
                    if (land(waiting, gap, start, sseq) < 0) goto landing_done;
                }
            }
        }
        bad = 0;
    landing_done:
        Py_DECREF(now_active);
        if (bad || PyErr_Occurred()) goto error;
        if (count) {
            PyObject *total = PyDict_GetItem(edict, s_fired);
            PyObject *inc = PyLong_FromSsize_t(count);
            PyObject *sum = (total && inc) ? PyNumber_Add(total, inc) : NULL;
            Py_XDECREF(inc);
            if (sum == NULL) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_AttributeError, "fired");
                goto error;
            }
            int rc = PyDict_SetItem(edict, s_fired, sum);
            Py_DECREF(sum);
            if (rc < 0) goto error;
        }
        if (dup && fired != NULL && PyList_GET_SIZE(fired) > 1) {
            PyObject *one = one_per_task(edict, fired);
            if (one == NULL) goto error;
            Py_SETREF(fired, one);
        }
    }
    {
        PyObject *now_active = get_slot(state, k_active, "active");
        PyObject *now_wild = get_slot(state, k_wild, "wild");
        if (now_active == NULL || now_wild == NULL) goto error;
        if (!(PyDict_GET_SIZE(now_active) || PyDict_GET_SIZE(gaps) || PyDict_GET_SIZE(now_wild))) {
            if (release_key(keys, key, state, seq) < 0) goto error;
        } else if (PyList_GET_SIZE(buf) > TRIM_AT) {
            PyObject *r = call_method(engine, s_trim, state, NULL, NULL);
            if (r == NULL) goto error;
            Py_DECREF(r);
        }
    }
done:
    Py_XDECREF(cls);
    Py_XDECREF(hits);
    Py_XDECREF(state);
    Py_XDECREF(landed);
    Py_XDECREF(new_start);
    if (fired == NULL) Py_RETURN_NONE;
    return fired;
error:
    Py_XDECREF(cls);
    Py_XDECREF(hits);
    Py_XDECREF(state);
    Py_XDECREF(landed);
    Py_XDECREF(new_start);
    Py_XDECREF(fired);
    return NULL;
}

static PyMethodDef advance_def = {"advance", advance, METH_O,
                                  "Feed one validated event; return its batch of matches or None."};

static PyObject *bind(PyObject *module, PyObject *engine) {
    if (NodeType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call setup() first");
        return NULL;
    }
    PyObject *d = PyObject_GetAttr(engine, s_dict);
    if (d == NULL) return NULL;
    if (!PyDict_Check(d)) {
        Py_DECREF(d);
        PyErr_SetString(PyExc_TypeError, "engine __dict__ is not a dict");
        return NULL;
    }
    PyObject *self = PyTuple_Pack(2, engine, d);
    Py_DECREF(d);
    if (self == NULL) return NULL;
    PyObject *fn = PyCFunction_NewEx(&advance_def, self, NULL);
    Py_DECREF(self);
    return fn;
}

static PyObject *setup(PyObject *module, PyObject *args) {
    PyObject *node, *cls, *keystate, *match, *pending;
    Py_ssize_t trim;
    if (!PyArg_ParseTuple(args, "OOOOOn", &node, &cls, &keystate, &match, &pending, &trim))
        return NULL;
#define OFF(var, type, name) if ((var = slot_offset(type, name)) < 0) return NULL;
    OFF(n_max_within, node, "max_within")
    OFF(n_trans, node, "trans")
    OFF(n_tasks, node, "tasks")
    OFF(n_ends, node, "ends")
    OFF(n_edges, node, "edges")
    OFF(n_gap_slots, node, "gap_slots")
    OFF(n_dup_ends, node, "dup_ends")
    OFF(c_starts, cls, "starts")
    OFF(c_keyed, cls, "keyed")
    OFF(c_cancels, cls, "cancels")
    OFF(k_active, keystate, "active")
    OFF(k_gaps, keystate, "gaps")
    OFF(k_wild, keystate, "wild")
    OFF(k_buf, keystate, "buf")
    OFF(k_base, keystate, "base")
    OFF(k_pending, keystate, "pending")
    OFF(m_task, match, "task")
    OFF(m_key, match, "key")
    OFF(m_buf, match, "_buf")
    OFF(m_lo, match, "_lo")
    OFF(m_hi, match, "_hi")
    OFF(m_events, match, "_events")
    OFF(m_start_ts, match, "start_ts")
    OFF(m_end_ts, match, "end_ts")
#undef OFF
    Py_XSETREF(NodeType, Py_NewRef(node));
    Py_XSETREF(ClassType, Py_NewRef(cls));
    Py_XSETREF(KeyStateType, Py_NewRef(keystate));
    Py_XSETREF(MatchType, Py_NewRef(match));
    Py_XSETREF(PendingType, Py_NewRef(pending));
    TRIM_AT = trim;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(Node, EventClass, KeyState, Match, _Pending, trim_at): read the slot layouts."},
    {"bind", bind, METH_O, "bind(engine) -> advance(event) working on that engine's state."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_advance", NULL, -1, methods};

PyMODINIT_FUNC PyInit__advance(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN(s_ts, "ts") INTERN(s_id, "id") INTERN(s_page, "page") INTERN(s_user, "user")
    INTERN(s_args, "args") INTERN(s_watermark, "watermark") INTERN(s_heap, "_heap")
    INTERN(s_classes, "_classes") INTERN(s_keys, "keys") INTERN(s_trie, "trie")
    INTERN(s_fired, "fired") INTERN(s_event_class, "event_class")
    INTERN(s_transition, "transition") INTERN(s_expire, "_expire") INTERN(s_cancel, "_cancel")
    INTERN(s_trim, "_trim") INTERN(s_add_pending, "_add_pending")
    INTERN(s_one_per_task, "_one_per_task") INTERN(s_negations, "_negations")
    INTERN(s_task, "task") INTERN(s_within_ms, "within_ms") INTERN(s_negation, "negation")
    INTERN(s_not_within_ms, "not_within_ms") INTERN(s_dict, "__dict__")
    INTERN(s_advance, "advance")
#undef INTERN
    return PyModule_Create(&module_def);
}
