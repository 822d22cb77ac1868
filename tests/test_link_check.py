"""The build never carries a private libstdc++ (setup.py's SHARED_LIBSTDCXX_LINK_ARGS and its check
after the link), shown on tiny shared libraries linked in tmp_path, and on the installed fastmask._C.

A private static copy of libstdc++ in a library that torch's process loads numbers its locale
facets inconsistently with the process's shared libstdc++: numbers vanish from error messages
(GCC 12's libstdc++) or streaming one segfaults (GCC 13's), as on the first GPU machine's build.
"""

import os
import runpy
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="fastmask_setup")  # defines, builds nothing
problems = SETUP["libstdcxx_problems"]
PROJECT_LINK = SETUP["SHARED_LIBSTDCXX_LINK_ARGS"]
CXX = shutil.which("g++")
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GNU toolchain on Linux"),
    pytest.mark.skipif(CXX is None or shutil.which("readelf") is None or shutil.which("nm") is None,
                       reason="needs g++ and binutils"),
]

# What an error message does: stream a number through the classic locale's num_put facet.
SOURCE = """
#include <sstream>
#include <string>
extern "C" int describe(long value, char* out, int size) {
  std::ostringstream message;
  message << "got " << value;
  std::string text = message.str();
  return text.copy(out, size - 1);
}
"""


@pytest.fixture(scope="module")
def link(tmp_path_factory):
    """link(*flags) -> path of a shared library linked from SOURCE's object with those flags."""
    folder = tmp_path_factory.mktemp("link")
    (folder / "describe.cpp").write_text(SOURCE)
    obj = folder / "describe.o"
    subprocess.run([CXX, "-fPIC", "-O2", "-c", str(folder / "describe.cpp"), "-o", str(obj)], check=True)
    count = iter(range(1000))

    def run(*flags):
        out = folder / f"lib{next(count)}.so"
        subprocess.run([CXX, "-shared", str(obj), *flags, "-o", str(out)], check=True, capture_output=True)
        return str(out)

    return run


@pytest.fixture(scope="module")
def archive_only(tmp_path_factory):
    """-L flag of a folder holding libstdc++.a and no libstdc++.so: ld takes the archive for -lstdc++."""
    archive = subprocess.run([CXX, "-print-file-name=libstdc++.a"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(archive):
        pytest.skip("this g++ has no libstdc++.a")
    folder = tmp_path_factory.mktemp("archive-only")
    os.symlink(archive, folder / "libstdc++.a")
    return f"-L{folder}"


def test_plain_link_passes(link):
    assert problems(link()) == []


@pytest.mark.parametrize("flags", [["-static-libstdc++"], ["-static-libstdc++", "-Wl,--exclude-libs,ALL"]],
                         ids=["static", "static-exclude-libs"])
def test_static_libstdcxx_fails(link, flags):
    """--exclude-libs hides the copy from the dynamic symbol table; the full table still shows it."""
    found = problems(link(*flags))
    assert len(found) == 2, found
    assert found[0].startswith("libstdc++.so.6 is not among its NEEDED libraries")
    assert "of libstdc++'s own locale/stream symbols" in found[1]


def test_archive_only_folder_makes_a_plain_link_static(link, archive_only):
    """The silent way in: no static flag anywhere, just a folder on the search path."""
    assert len(problems(link(archive_only))) == 2


@pytest.mark.parametrize("environment", ["static-flag", "archive-only-folder", "both"])
def test_project_link_arguments_keep_libstdcxx_shared(link, archive_only, environment):
    added = {"static-flag": ["-static-libstdc++"], "archive-only-folder": [archive_only],
             "both": ["-static-libstdc++", archive_only]}[environment]
    # The environment's flags come first (LDFLAGS joins the link command's front), ours after the objects.
    assert problems(link(*added, *PROJECT_LINK)) == []


def test_stripped_library_is_checked_on_its_dynamic_symbols(link, tmp_path):
    library = link("-static-libstdc++")
    stripped = shutil.copy(library, tmp_path / "stripped.so")
    subprocess.run(["strip", str(stripped)], check=True)
    found = problems(str(stripped))
    assert len(found) == 2, found  # the copy's symbols are exported, so the dynamic table has them


def test_missing_binutils_is_reported_not_failed(link):
    def no_binutils(*args, **kwargs):
        raise FileNotFoundError("readelf")

    assert problems(link(), run=no_binutils) is None


def test_failed_check_names_the_link_environment(link, monkeypatch):
    monkeypatch.setenv("LDFLAGS", "-static-libstdc++")
    library = link("-static-libstdc++")
    with pytest.raises(RuntimeError, match=r"carries its own copy of libstdc\+\+.*LDFLAGS='-static-libstdc\+\+'"
                                           r".*-print-file-name=libstdc\+\+\.so` = /"):
        SETUP["check_shared_libstdcxx"](library)
    assert not os.path.exists(library), "a library that fails the check is not left behind"


def test_installed_extension_passes():
    import fastmask._C

    assert problems(fastmask._C.__file__) == []
