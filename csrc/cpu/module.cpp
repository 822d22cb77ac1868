// Makes fastmask._C importable as a Python module; the ops register themselves through
// TORCH_LIBRARY_IMPL when the shared library loads (schemas are defined in fastmask/library.py,
// which fastmask.backends imports first). Exports the kernels' limits Python needs to route calls.
#include <Python.h>

#include "fastmask/masking.h"

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddIntConstant(m, "CUDA_MAX_RANKED_LENGTH", fastmask::kMaxRankedLength) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
}
