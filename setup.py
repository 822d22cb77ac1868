"""Builds fastmask._C: the C++ CPU kernels always, the CUDA kernels too when the installed torch is a
CUDA build and a usable CUDA toolkit is found (never decided by whether a GPU is visible).
Downloads nothing.

The toolkit is the first usable one of:
  1. $CUDA_HOME, then $CUDA_PATH;
  2. the toolkit of the `nvcc` on PATH: its symlinks resolved, and where it is a wrapper script
     outside the toolkit, the root that nvcc itself reports (`nvcc --dryrun --version` prints
     `#$ TOP=<root>/bin/..`);
  3. /usr/local/cuda.
Usable means bin/nvcc and the runtime library to link (libcudart.so in lib64/, lib/ or
targets/<arch>/lib/). torch's own guess (the folder above the nvcc on PATH) is wrong for wrappers
and fails at link time with `cannot find -lcudart`.

Environment:
  FASTMASK_NO_CUDA=1    build the C++ kernels only.
  FASTMASK_CUDA=1       the CUDA kernels are required: an error, not a warning, when they cannot be built.
  TORCH_CUDA_ARCH_LIST  the GPU architectures to compile for. Unset and no GPU visible:
                        8.0;9.0;10.0+PTX (A100, H100/H200, B200, and PTX that newer GPUs JIT-compile).
  MAX_JOBS              parallel compile jobs (ninja), through torch's cpp_extension.
`pip install -v` shows what was chosen and why; `fastmask info` says whether the CUDA kernels were built.

libstdc++: the extension always links the shared libstdc++ that torch loads, never a private static
copy (whose locale facets disagree with the process's: numbers vanish from error messages with GCC 12's
libstdc++, streaming one segfaults with GCC 13's). SHARED_LIBSTDCXX_LINK_ARGS bind it by soname ahead
of anything the environment adds (`-static-libstdc++` in LDFLAGS or CXX, a folder on the search path
holding only libstdc++.a), and a check after the link (libstdcxx_problems) stops the build, naming what
it found and the link-related environment, if the library still carries libstdc++'s own code.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

DEFAULT_ARCH_LIST = "8.0;9.0;10.0+PTX"
ROOT = os.path.dirname(os.path.abspath(__file__))


# --- Finding the CUDA toolkit: a function of (environment, which(), filesystem), tested in tests/test_setup.py.

def nvcc_reported_root(nvcc: str) -> str | None:
    """The toolkit root that `nvcc` (maybe a wrapper script) reports in its dry run, or None."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return match.group(1).strip() if match else None


def cudart_dir(home: str) -> str | None:
    """The folder of `home` holding libcudart.so (what `-lcudart` links), or None."""
    for sub in ("lib64", "lib", *sorted(glob.glob(os.path.join(home, "targets", "*", "lib")))):
        lib = os.path.join(home, sub)
        if os.path.isfile(os.path.join(lib, "libcudart.so")):
            return lib
    return None


def why_unusable(home: str) -> str | None:
    """None if `home` is a toolkit the build can use, else what it lacks."""
    if not os.path.isdir(home):
        return "no such folder"
    if not os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
        return "no bin/nvcc"
    if cudart_dir(home) is None:
        return "no libcudart.so in lib64/, lib/ or targets/*/lib/"
    return None


def candidate_cuda_homes(environ, which, reported_root=nvcc_reported_root, default="/usr/local/cuda"):
    """(path, where it came from) in search order; the dry run of nvcc only runs when reached."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(var):
            yield environ[var], f"${var}"
    nvcc = which("nvcc")
    if nvcc:
        yield os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), f"nvcc on PATH ({nvcc})"
        root = reported_root(nvcc)
        if root:
            yield root, f"`{nvcc} --dryrun` TOP"
    yield default, "default"


def find_cuda_home(environ, which, reported_root=nvcc_reported_root, default="/usr/local/cuda"):
    """(the first usable toolkit root, resolved, or None; 'path (source): why not' for each one passed over)."""
    rejected = []
    for path, source in candidate_cuda_homes(environ, which, reported_root, default):
        why = why_unusable(path)
        if why is None:
            return os.path.realpath(path), rejected
        rejected.append(f"{path} ({source}): {why}")
    return None, rejected


# --- libstdc++: shared, never a private copy. Tested on tiny libraries in tests/test_link_check.py.

# Linux: name the shared libstdc++ by soname before the compiler driver's own `-lstdc++` (which
# `-static-libstdc++` turns into the archive): every libstdc++ symbol then resolves against the shared
# library, so a later archive has nothing left to supply. Needs no libstdc++.so development symlink.
SHARED_LIBSTDCXX_LINK_ARGS = ["-Wl,--push-state,-Bdynamic", "-l:libstdc++.so.6", "-Wl,--pop-state"]
LIBSTDCXX_SONAME = "libstdc++.so.6"
# Symbols that only libstdc++ itself defines (mangled): std::locale and std::ios_base members, the
# facets' ids (std::num_put<...>::id, std::codecvt<...>::id, ...), std::ostream::_M_insert.
LIBSTDCXX_OWN_SYMBOL = re.compile(r"^_ZNSt(6locale|8ios_base)|^_ZNSt\w*2idE$|^_ZNSo9_M_insert")
# What decides how a link treats libstdc++, reported when the check fails.
LINK_ENVIRONMENT = ("CXX", "CC", "LDSHARED", "LDFLAGS", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LIBRARY_PATH",
                    "LD_LIBRARY_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH")


def libstdcxx_problems(library: str, run=subprocess.run) -> list[str] | None:
    """Why the shared library at `library` carries its own libstdc++ ([] when it links the shared one
    and defines none of libstdc++'s locale/stream symbols), or None when binutils (readelf, nm) are
    missing. The full symbol table is read, so a copy hidden by `--exclude-libs` is caught too."""
    try:
        dynamic = run(["readelf", "-d", library], capture_output=True, text=True, check=True).stdout
        symbols = run(["nm", "--defined-only", library], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    problems = []
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
    if LIBSTDCXX_SONAME not in needed:
        problems.append(f"{LIBSTDCXX_SONAME} is not among its NEEDED libraries ({', '.join(needed) or 'none'})")
    if "no symbols" in symbols.stderr:  # stripped: only the dynamic table is left
        symbols = run(["nm", "-D", "--defined-only", library], capture_output=True, text=True, check=False)
    own = sorted({line.split()[-1] for line in symbols.stdout.splitlines()
                  if line.split() and LIBSTDCXX_OWN_SYMBOL.search(line.split()[-1])})
    if own:
        problems.append(f"it defines {len(own)} of libstdc++'s own locale/stream symbols (a private copy), "
                        f"e.g. {', '.join(own[:3])}")
    return problems


def link_environment(environ=os.environ) -> str:
    """The link-related environment, Python's own link command and where the C++ compiler finds
    libstdc++, for a failed check's message."""
    import shlex
    import sysconfig

    parts = [f"{var}={environ[var]!r}" for var in LINK_ENVIRONMENT if environ.get(var)]
    parts.append(f"python's LDSHARED={sysconfig.get_config_var('LDSHARED')!r}")
    cxx = shlex.split(environ.get("CXX") or "g++")
    for name in ("libstdc++.so", "libstdc++.a"):
        try:
            found = subprocess.run([*cxx, f"-print-file-name={name}"], capture_output=True, text=True, timeout=60)
            parts.append(f"`{' '.join(cxx)} -print-file-name={name}` = {found.stdout.strip() or found.stderr.strip()}")
        except (OSError, subprocess.SubprocessError) as error:
            parts.append(f"`{' '.join(cxx)} -print-file-name={name}` failed: {error}")
    return "; ".join(parts)


def check_shared_libstdcxx(library: str) -> None:
    """Stops the build when `library` carries its own libstdc++; says the verdict either way."""
    problems = libstdcxx_problems(library)
    if problems is None:
        _say(f"WARNING: readelf/nm (binutils) not found: {library} not checked for a private libstdc++")
    elif problems:
        os.remove(library)  # never leave a library behind that crashes on its first error message
        raise RuntimeError(
            f"{library} carries its own copy of libstdc++: " + "; ".join(problems)
            + ". Its error messages would lose their numbers or crash the process (README.md, 'libstdc++'). "
            f"Something in the link made libstdc++ static; the link-related environment: {link_environment()}")
    else:
        _say(f"libstdc++ check passed: {os.path.basename(library)} needs {LIBSTDCXX_SONAME} and defines none "
             "of its locale/stream symbols")


# --- The build.

def _say(message: str) -> None:
    print(f"fastmask setup.py: {message}", file=sys.stderr, flush=True)


def _cuda_home(torch) -> str | None:
    """The toolkit to build the CUDA kernels with, or None for a C++-only build (after saying why)."""
    if os.environ.get("FASTMASK_NO_CUDA") == "1":
        _say("FASTMASK_NO_CUDA=1: building the C++ kernels only")
        return None
    required = os.environ.get("FASTMASK_CUDA") == "1"
    if torch.version.cuda is None:
        why = f"torch {torch.__version__} is not a CUDA build"
    else:
        home, rejected = find_cuda_home(os.environ, shutil.which)
        if home is not None:
            return home
        why = f"torch {torch.__version__} is a CUDA build but no usable CUDA toolkit was found: " + "; ".join(rejected)
    if required:
        raise RuntimeError(f"FASTMASK_CUDA=1 asks for the CUDA kernels, but {why}")
    _say(("WARNING: " if torch.version.cuda else "") + f"building the C++ kernels only: {why}")
    return None


def _extension():
    import torch

    sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    # csrc/include: torch-free kernel headers (nvcc compiles them without torch); csrc/binding: the
    # torch-facing checks shared by the CPU and CUDA bindings.
    include_dirs = [os.path.join(ROOT, "csrc", "include"), os.path.join(ROOT, "csrc", "binding")]
    # The C++ standard is cpp_extension's choice, matching torch's headers. No FMA contraction:
    # proposal sampling must round every float operation exactly as the other backends do.
    cxx = ["-O3", "-ffp-contract=off"]
    link = list(SHARED_LIBSTDCXX_LINK_ARGS) if sys.platform.startswith("linux") else []
    if torch.backends.openmp.is_available() and sys.platform.startswith("linux"):
        # at::parallel_for is inlined into our code: without OpenMP here it runs on one thread.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    home = _cuda_home(torch)
    if home is not None:
        os.environ["CUDA_HOME"] = home  # before cpp_extension is imported: it reads CUDA_HOME then
    from torch.utils import cpp_extension

    if home is None:
        return cpp_extension.CppExtension(
            "fastmask._C", sources, include_dirs=include_dirs, extra_compile_args={"cxx": cxx}, extra_link_args=link
        )
    cpp_extension.CUDA_HOME = home  # in case it was imported earlier, with its own guess
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST  # else cpp_extension targets the visible GPUs
    _say(f"building the CUDA kernels with {home} for TORCH_CUDA_ARCH_LIST="
         f"{os.environ.get('TORCH_CUDA_ARCH_LIST') or '(the visible GPUs)'}")
    sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*_cuda.cu")))
    nvcc = ["-O3", "-lineinfo"]  # IEEE floats (no --use_fast_math): see csrc/include/fastmask/proposal.h
    return cpp_extension.CUDAExtension(
        "fastmask._C", sources, include_dirs=include_dirs, extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        library_dirs=[cudart_dir(home)], extra_link_args=link,
    )


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import the functions above
    from setuptools import setup

    extension = _extension()
    from torch.utils.cpp_extension import BuildExtension

    class BuildAndCheckExtension(BuildExtension.with_options(use_ninja=True)):
        """torch's build, then the libstdc++ check on each library it linked."""

        def build_extension(self, ext):
            super().build_extension(ext)
            if sys.platform.startswith("linux"):
                check_shared_libstdcxx(self.get_ext_fullpath(ext.name))

    setup(ext_modules=[extension], cmdclass={"build_ext": BuildAndCheckExtension})
