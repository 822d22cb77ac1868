"""setup.py's CUDA toolkit search, on fake toolkits in tmp_path (no build, no nvcc run)."""

import os
import runpy
from types import SimpleNamespace

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="fastmask_setup")  # defines, builds nothing
find_cuda_home = SETUP["find_cuda_home"]
NO_CUDART = "no libcudart.so in lib64/, lib/ or targets/*/lib/"


def toolkit(root, nvcc=True, cudart="lib64"):
    """A fake toolkit at root: bin/nvcc (executable) and <cudart>/libcudart.so, each optional."""
    os.makedirs(root, exist_ok=True)
    if nvcc:
        os.makedirs(os.path.join(root, "bin"), exist_ok=True)
        path = os.path.join(root, "bin", "nvcc")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(path, 0o755)
    if cudart:
        os.makedirs(os.path.join(root, cudart), exist_ok=True)
        open(os.path.join(root, cudart, "libcudart.so"), "w").close()
    return str(root)


def wrapper(folder):
    """An nvcc wrapper script outside any toolkit (as /usr/local/bin/nvcc on the CI machines)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "nvcc")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec /somewhere/else/bin/nvcc \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def no_dry_run(nvcc):
    raise AssertionError("nvcc's dry run is only needed when the resolved path is not a toolkit")


def search(environ=None, nvcc=None, top=None, default="/nonexistent/cuda"):
    return find_cuda_home(environ or {}, lambda name: nvcc, (lambda _: top) if top else no_dry_run, default)


def test_cuda_home_environment_first(tmp_path):
    home = toolkit(tmp_path / "cuda-env")
    other = toolkit(tmp_path / "cuda-path")
    assert search({"CUDA_HOME": home, "CUDA_PATH": other}, nvcc=os.path.join(other, "bin", "nvcc"))[0] == home
    assert search({"CUDA_PATH": other})[0] == other


def test_invalid_cuda_home_is_passed_over_with_the_reason(tmp_path):
    broken = toolkit(tmp_path / "broken", cudart=None)
    good = toolkit(tmp_path / "good")
    home, rejected = search({"CUDA_HOME": broken}, nvcc=os.path.join(good, "bin", "nvcc"))
    assert home == good
    assert rejected == [f"{broken} ($CUDA_HOME): {NO_CUDART}"]


def test_symlinked_nvcc_is_resolved(tmp_path):
    real = toolkit(tmp_path / "cuda-13.0")
    os.makedirs(tmp_path / "bin")
    os.symlink(os.path.join(real, "bin", "nvcc"), tmp_path / "bin" / "nvcc")
    assert search(nvcc=str(tmp_path / "bin" / "nvcc"))[0] == real


def test_wrapper_script_uses_the_root_nvcc_reports(tmp_path):
    """torch's guess would be the wrapper's parent (no cudart there): the dry run's TOP is the toolkit."""
    real = toolkit(tmp_path / "cuda-13.0")
    nvcc = wrapper(tmp_path / "usr" / "local" / "bin")
    home, rejected = search(nvcc=nvcc, top=os.path.join(real, "bin", ".."))
    assert home == real
    assert rejected == [f"{tmp_path / 'usr' / 'local'} (nvcc on PATH ({nvcc})): {NO_CUDART}"]


@pytest.mark.parametrize("cudart", ["lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")])
def test_runtime_library_locations(tmp_path, cudart):
    home = toolkit(tmp_path / "cuda", cudart=cudart)
    assert search({"CUDA_HOME": home})[0] == home
    assert SETUP["cudart_dir"](home) == os.path.join(home, cudart)


def test_no_usable_toolkit_lists_every_candidate(tmp_path):
    nvcc = wrapper(tmp_path / "bin")
    home, rejected = search({"CUDA_HOME": str(tmp_path / "missing")}, nvcc=nvcc, top=str(tmp_path / "gone"))
    assert home is None
    assert rejected == [f"{tmp_path / 'missing'} ($CUDA_HOME): no such folder",
                            f"{tmp_path} (nvcc on PATH ({nvcc})): {NO_CUDART}",
                            f"{tmp_path / 'gone'} (`{nvcc} --dryrun` TOP): no such folder",
                            "/nonexistent/cuda (default): no such folder"]


def test_default_location_last(tmp_path):
    default = toolkit(tmp_path / "usr-local-cuda")
    assert search({"CUDA_HOME": str(tmp_path / "missing")}, default=default) == (
        default, [f"{tmp_path / 'missing'} ($CUDA_HOME): no such folder"])


def test_nvcc_without_runtime_library_is_not_usable(tmp_path):
    """nvcc alone (say, the pip nvidia-cuda-nvcc wheel, which ships libcudart.so.13 but no libcudart.so)."""
    bare = toolkit(tmp_path / "nvcc-only", cudart=None)
    open(os.path.join(bare, "bin", "libcudart.so.13"), "w").close()
    assert SETUP["why_unusable"](bare) == NO_CUDART
    assert SETUP["why_unusable"](toolkit(tmp_path / "no-nvcc", nvcc=False)) == "no bin/nvcc"


def test_dry_run_parses_top(tmp_path):
    """nvcc_reported_root on a fake nvcc that prints what the real one does."""
    fake = tmp_path / "nvcc"
    fake.write_text("#!/bin/sh\necho '#$ _HERE_=/opt/cuda/bin'\necho '#$ TOP=/opt/cuda/bin/..'\n")
    fake.chmod(0o755)
    assert SETUP["nvcc_reported_root"](str(fake)) == "/opt/cuda/bin/.."
    assert SETUP["nvcc_reported_root"](str(tmp_path / "absent")) is None


def fake_torch(cuda):
    return SimpleNamespace(__version__="2.14.1+cu130" if cuda else "2.13.0+cpu", version=SimpleNamespace(cuda=cuda))


@pytest.fixture
def cuda_home(monkeypatch):
    """setup.py's _cuda_home as .call, the toolkit search answering .found (None unless a test sets it)."""
    fn = SETUP["_cuda_home"]
    for var in ("FASTMASK_CUDA", "FASTMASK_NO_CUDA"):
        monkeypatch.delenv(var, raising=False)
    fixture = SimpleNamespace(call=fn, found=None)
    monkeypatch.setitem(fn.__globals__, "find_cuda_home",
                        lambda environ, which: (fixture.found, ["/usr/local ($CUDA_HOME): no bin/nvcc"]))
    return fixture


def test_cuda_torch_with_a_toolkit_builds_cuda(cuda_home):
    cuda_home.found = "/opt/cuda"
    assert cuda_home.call(fake_torch("13.0")) == "/opt/cuda"


def test_no_usable_toolkit_warns_and_builds_cpp_only(cuda_home, capsys):
    assert cuda_home.call(fake_torch("13.0")) is None
    assert ("WARNING: building the C++ kernels only: torch 2.14.1+cu130 is a CUDA build but no usable CUDA toolkit "
            "was found: /usr/local ($CUDA_HOME): no bin/nvcc") in capsys.readouterr().err


def test_fastmask_cuda_makes_a_missing_toolkit_an_error(cuda_home, monkeypatch):
    monkeypatch.setenv("FASTMASK_CUDA", "1")
    with pytest.raises(RuntimeError, match=r"FASTMASK_CUDA=1 .* no usable CUDA toolkit was found: /usr/local"):
        cuda_home.call(fake_torch("13.0"))
    with pytest.raises(RuntimeError, match="torch 2.13.0\\+cpu is not a CUDA build"):
        cuda_home.call(fake_torch(None))


def test_cpu_torch_and_fastmask_no_cuda_build_cpp_only(cuda_home, monkeypatch, capsys):
    cuda_home.found = "/opt/cuda"
    assert cuda_home.call(fake_torch(None)) is None
    assert "WARNING" not in capsys.readouterr().err  # a CPU torch is the ordinary case
    monkeypatch.setenv("FASTMASK_NO_CUDA", "1")
    assert cuda_home.call(fake_torch("13.0")) is None
