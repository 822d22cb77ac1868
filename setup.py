"""Builds fastmask._C: the C++ CPU kernels always, the CUDA kernels when the installed torch is a
CUDA build and nvcc exists (never decided by whether a GPU is visible). Honours
TORCH_CUDA_ARCH_LIST and MAX_JOBS through torch's cpp_extension; downloads nothing."""

import glob
import os
import shutil
import sys

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    if os.environ.get("FASTMASK_NO_CUDA") == "1":
        return False
    return torch.version.cuda is not None and (CUDA_HOME is not None or shutil.which("nvcc") is not None)


def _extension():
    sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    # csrc/include: torch-free kernel headers (nvcc compiles them without torch); csrc/binding: the
    # torch-facing checks shared by the CPU and CUDA bindings.
    include_dirs = [os.path.join(ROOT, "csrc", "include"), os.path.join(ROOT, "csrc", "binding")]
    # The C++ standard is cpp_extension's choice, matching torch's headers. No FMA contraction:
    # proposal sampling must round every float operation exactly as the other backends do.
    cxx = ["-O3", "-ffp-contract=off"]
    link = []
    if torch.backends.openmp.is_available() and sys.platform.startswith("linux"):
        # at::parallel_for is inlined into our code: without OpenMP here it runs on one thread.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    if not _want_cuda():
        return CppExtension(
            "fastmask._C", sources, include_dirs=include_dirs, extra_compile_args={"cxx": cxx}, extra_link_args=link
        )
    sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*_cuda.cu")))
    nvcc = ["-O3", "-lineinfo"]  # IEEE floats (no --use_fast_math): see csrc/include/fastmask/proposal.h
    return CUDAExtension(
        "fastmask._C", sources, include_dirs=include_dirs, extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=link,
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
