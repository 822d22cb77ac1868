// Makes fastmask._C importable as a Python module; the ops register themselves through
// TORCH_LIBRARY_IMPL when the shared library loads (schemas are defined in fastmask/ops.py).
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}
