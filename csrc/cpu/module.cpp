// Makes fastmask._C importable as a Python module; the ops register themselves through
// TORCH_LIBRARY_IMPL when the shared library loads (schemas are defined in fastmask/library.py,
// which fastmask.backends imports first). Exports the kernels' limits Python needs to route calls,
// and the collator's reader of Python int rows.
#include <Python.h>

#include <cstdint>
#include <cstring>

#include "fastmask/masking.h"

namespace {

// Reads one Python int, or any integer with __index__ (numpy's), as an int64 (bools are ints, as
// torch.tensor reads them); false with a Python error set otherwise.
bool read_int(PyObject* value, int64_t* out) {
  if (PyLong_Check(value)) {
    *out = PyLong_AsLongLong(value);  // OverflowError past int64
    return !(*out == -1 && PyErr_Occurred());
  }
  if (!PyIndex_Check(value)) {
    PyErr_Format(PyExc_TypeError, "expected an int, got %s", Py_TYPE(value)->tp_name);
    return false;
  }
  PyObject* index = PyNumber_Index(value);
  if (index == nullptr) return false;
  *out = PyLong_AsLongLong(index);
  Py_DECREF(index);
  return !(*out == -1 && PyErr_Occurred());
}

// int64_rows(rows, width) -> bytearray: the ints of a list of rows (lists or tuples) end to end, in
// native int64. width 0: each row holds ints; width w > 0: each row holds sequences of exactly w
// ints (a tokenizer's offset pairs: w = 2), flattened. TypeError, ValueError or OverflowError on
// anything else, so that the caller can fall back to numpy's general conversion. The collator's
// floor is reading Python objects: here that is one type check and one conversion per int, with no
// argument tuple built per row (as struct.pack needs).
PyObject* int64_rows(PyObject*, PyObject* args) {
  PyObject* rows;
  Py_ssize_t width;
  if (!PyArg_ParseTuple(args, "On", &rows, &width)) return nullptr;
  if (!PyList_Check(rows) && !PyTuple_Check(rows)) {
    PyErr_SetString(PyExc_TypeError, "rows must be a list or tuple");
    return nullptr;
  }
  const Py_ssize_t num_rows = PySequence_Fast_GET_SIZE(rows);
  Py_ssize_t total = 0;
  for (Py_ssize_t r = 0; r < num_rows; ++r) {
    PyObject* row = PySequence_Fast_GET_ITEM(rows, r);
    if (!PyList_Check(row) && !PyTuple_Check(row)) {
      PyErr_Format(PyExc_TypeError, "row %zd is a %s, not a list or tuple", r, Py_TYPE(row)->tp_name);
      return nullptr;
    }
    total += PySequence_Fast_GET_SIZE(row) * (width > 0 ? width : 1);
  }
  PyObject* result = PyByteArray_FromStringAndSize(nullptr, total * static_cast<Py_ssize_t>(sizeof(int64_t)));
  if (result == nullptr) return nullptr;
  char* out = PyByteArray_AS_STRING(result);
  for (Py_ssize_t r = 0; r < num_rows; ++r) {
    PyObject* row = PySequence_Fast_GET_ITEM(rows, r);
    const Py_ssize_t size = PySequence_Fast_GET_SIZE(row);
    for (Py_ssize_t i = 0; i < size; ++i) {
      PyObject* item = PySequence_Fast_GET_ITEM(row, i);
      int64_t value;
      if (width == 0) {
        if (!read_int(item, &value)) goto fail;
        std::memcpy(out, &value, sizeof value);
        out += sizeof value;
        continue;
      }
      if ((!PyList_Check(item) && !PyTuple_Check(item)) || PySequence_Fast_GET_SIZE(item) != width) {
        PyErr_Format(PyExc_ValueError, "item %zd of row %zd is not a sequence of %zd ints", i, r, width);
        goto fail;
      }
      for (Py_ssize_t j = 0; j < width; ++j) {
        if (!read_int(PySequence_Fast_GET_ITEM(item, j), &value)) goto fail;
        std::memcpy(out, &value, sizeof value);
        out += sizeof value;
      }
    }
  }
  return result;
fail:
  Py_DECREF(result);
  return nullptr;
}

PyMethodDef methods[] = {
    {"int64_rows", int64_rows, METH_VARARGS,
     "int64_rows(rows, width) -> bytearray: a list of rows of ints (width 0) or of width-int sequences, as int64."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddIntConstant(m, "CUDA_MAX_RANKED_LENGTH", fastmask::kMaxRankedLength) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
}
