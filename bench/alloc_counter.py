"""Count the memory blocks CPython allocates: an exact figure for "objects built".

``sys.getallocatedblocks()`` and tracemalloc see only what is alive at a
moment, so a tuple made and dropped inside one call never shows. This module
builds (once, with the system C compiler, cached in the temp directory) a
tiny extension that hooks ``PyMem_SetAllocator`` for the object and memory
domains (as tracemalloc does) and counts every fresh block: ``malloc``,
``calloc`` and a ``realloc`` of NULL; a realloc that grows a block is not a
new one. The raw domain (used without the GIL) is left alone.

``load()`` returns None when there is no C compiler or no Python headers;
the benchmark then prints allocations as unavailable rather than guessing.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyMemAllocatorEx orig_obj, orig_mem;
static unsigned long long blocks;
static int installed;

static void *c_malloc(void *ctx, size_t n) {
    PyMemAllocatorEx *o = (PyMemAllocatorEx *)ctx;
    blocks++;
    return o->malloc(o->ctx, n);
}
static void *c_calloc(void *ctx, size_t e, size_t n) {
    PyMemAllocatorEx *o = (PyMemAllocatorEx *)ctx;
    blocks++;
    return o->calloc(o->ctx, e, n);
}
static void *c_realloc(void *ctx, void *p, size_t n) {
    PyMemAllocatorEx *o = (PyMemAllocatorEx *)ctx;
    if (p == NULL) blocks++;
    return o->realloc(o->ctx, p, n);
}
static void c_free(void *ctx, void *p) {
    PyMemAllocatorEx *o = (PyMemAllocatorEx *)ctx;
    o->free(o->ctx, p);
}

static PyObject *install(PyObject *self, PyObject *unused) {
    if (!installed) {
        PyMemAllocatorEx hook_obj = {&orig_obj, c_malloc, c_calloc, c_realloc, c_free};
        PyMemAllocatorEx hook_mem = {&orig_mem, c_malloc, c_calloc, c_realloc, c_free};
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &orig_obj);
        PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &orig_mem);
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hook_obj);
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &hook_mem);
        installed = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *uninstall(PyObject *self, PyObject *unused) {
    if (installed) {
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &orig_obj);
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &orig_mem);
        installed = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *count(PyObject *self, PyObject *unused) {
    return PyLong_FromUnsignedLongLong(blocks);
}

static PyMethodDef methods[] = {
    {"install", install, METH_NOARGS, "start counting"},
    {"uninstall", uninstall, METH_NOARGS, "stop counting"},
    {"count", count, METH_NOARGS, "blocks allocated since install"},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tap_alloccount", NULL, -1, methods};
PyMODINIT_FUNC PyInit__tap_alloccount(void) { return PyModule_Create(&module); }
"""


def load() -> ModuleType | None:
    """The compiled counter (``install``, ``count``, ``uninstall``), or None."""
    cc = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths().get("include")
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    if cc is None or include is None or not (Path(include) / "Python.h").exists():
        return None
    tag = hashlib.sha256((_SOURCE + include + suffix).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"tapproxy-alloccount-{tag}"
    target = folder / f"_tap_alloccount{suffix}"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        src = folder / "alloccount.c"
        src.write_text(_SOURCE)
        cmd = [cc, "-shared", "-fPIC", "-O2", f"-I{include}", str(src), "-o", str(target)]
        if subprocess.run(cmd, capture_output=True, timeout=120).returncode != 0:
            return None
    loader = importlib.machinery.ExtensionFileLoader("_tap_alloccount", str(target))
    spec = importlib.util.spec_from_file_location("_tap_alloccount", target, loader=loader)
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
