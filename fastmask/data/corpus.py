"""Reading a corpus: the built-in one (the standard library's docstrings, read with :mod:`ast`, so
every install has English text and nothing is downloaded) or ``.txt``/``.md``/``.jsonl`` files and
directories; and a cheap fingerprint of the source, so a warm run never reads or parses it."""

from __future__ import annotations

import ast
import gc
import hashlib
import json
import os
import sys
import sysconfig
import time
import warnings
from pathlib import Path
from typing import Iterable

from fastmask.data.cache import _digest, _log, _progress, _texts_hash, _write_text

_CORPUS_VERSION = 1  # bump when text extraction changes, so old corpus-*.json entries are never looked up
_MIN_WORDS = 8  # shorter docstrings are mostly "Return self." style fragments, not prose
_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
)
_CORPUS_SUFFIXES = (".txt", ".md", ".jsonl")
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_STMT_NODES = (ast.stmt, ast.excepthandler, ast.match_case)


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    root = _stdlib_root()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        files.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    # Sorted by relative path (not walk order, which depends on the file system) for determinism.
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _docstrings(tree: ast.AST) -> Iterable[str]:
    """Docstrings of the module, classes and functions, depth first in source order."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _DOC_NODES):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc.split()) >= _MIN_WORDS:
                yield doc.strip()
        # Only statements can hold a def/class: skipping expressions makes the walk several times faster.
        stack.extend(reversed([c for c in ast.iter_child_nodes(node) if isinstance(c, _STMT_NODES)]))


def _read_stdlib(show_progress: bool = False) -> tuple[list[str], int]:
    """(docstrings, number of files that could not be read or parsed)."""
    texts: list[str] = []
    failed = 0
    files = _stdlib_files()
    # The cyclic GC keeps firing on the millions of AST nodes parsing allocates (which form no
    # cycles: refcounting frees them); pausing it makes the parse about 3x faster.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for path in _progress(files, show_progress, desc="stdlib docstrings", unit="file"):
            try:
                source = path.read_bytes()
                with warnings.catch_warnings():  # old modules have invalid escapes: SyntaxWarning noise
                    warnings.simplefilter("ignore")
                    tree = ast.parse(source, filename=str(path))  # bytes: honours coding cookies
            except (OSError, SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
                failed += 1
                continue
            texts.extend(_docstrings(tree))
    finally:
        if gc_was_enabled:
            gc.enable()
    return texts, failed


_BUILTIN: tuple[str, ...] | None = None  # the stdlib does not change while we run: parse it once


def builtin_texts() -> list[str]:
    """The standard library's module, class and function docstrings (>= 8 words), one per string.

    Read from the ``.py`` sources under ``sysconfig.get_paths()["stdlib"]`` with :mod:`ast` (nothing
    is imported), skipping site-packages and the test/idlelib/lib2to3/turtledemo trees; files that fail
    to read or parse are skipped. Deterministic
    for one Python version; about 1.5 MB of text on CPython 3.11.
    """
    return list(_builtin(False))


def _builtin(show_progress: bool) -> tuple[str, ...]:
    global _BUILTIN
    if _BUILTIN is None:
        texts, _ = _read_stdlib(show_progress)
        _BUILTIN = tuple(texts)
    return _BUILTIN


def _corpus_files(corpus: str | os.PathLike) -> tuple[Path, list[Path]]:
    """(path, the files load_texts reads for it), or ValueError for a missing/empty path."""
    path = Path(corpus).expanduser()
    if not path.exists():
        raise ValueError(f"corpus {str(corpus)!r}: no such file or directory")
    if path.is_dir():
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .git, .ipynb_checkpoints
            files.extend(
                Path(dirpath, f)
                for f in filenames
                if not f.startswith(".") and f.lower().endswith(_CORPUS_SUFFIXES)
            )
        files.sort(key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise ValueError(f"corpus {str(corpus)!r}: empty corpus (no *.txt, *.md or *.jsonl files in the directory)")
        return path, files
    return path, [path]


def _read_file(corpus, file: Path) -> list[str]:
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise ValueError(f"corpus {str(corpus)!r}: cannot read {file}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")  # -sig: tolerate a byte-order mark
    except UnicodeDecodeError as e:
        raise ValueError(f"corpus {str(corpus)!r}: {file} is not UTF-8 text (invalid byte at offset {e.start})") from e
    lines = text.split("\n")  # not splitlines(): line numbers must match what an editor shows
    if file.suffix.lower() != ".jsonl":
        return [s for s in (line.strip() for line in lines) if s]
    texts = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"corpus {str(corpus)!r}: {file} line {lineno} is not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise ValueError(f'corpus {str(corpus)!r}: {file} line {lineno} has no "text" string field')
        if obj["text"].strip():
            texts.append(obj["text"].strip())
    return texts


def _load_texts(corpus: str | os.PathLike | None, show_progress: bool) -> list[str]:
    if corpus is None:
        return list(_builtin(show_progress))
    _, files = _corpus_files(corpus)
    texts: list[str] = []
    for file in _progress(files, show_progress and len(files) > 1, desc="reading corpus", unit="file"):
        texts.extend(_read_file(corpus, file))
    if not texts:
        raise ValueError(f"corpus {str(corpus)!r}: empty corpus (no text in {len(files)} file(s))")
    return texts


def load_texts(corpus: str | os.PathLike | None) -> list[str]:
    """The documents of a corpus: ``None`` is :func:`builtin_texts`; else a path (see module docstring).

    A directory contributes every ``*.txt``, ``*.md`` and ``*.jsonl`` file under it (recursively,
    hidden files and directories skipped, sorted by relative path). ``.jsonl``: one JSON object with a
    ``"text"`` string per line; any other file: one document per non-empty line (stripped).
    Raises ValueError naming the corpus and the reason: missing path, empty corpus, a file that is not
    UTF-8, a JSONL line that is not JSON or has no "text" string.
    """
    return _load_texts(corpus, show_progress=False)


def _corpus_fingerprint(corpus: str | os.PathLike | None) -> str:
    """A cheap key for the source of a corpus, so a warm run can skip reading/parsing it."""
    if corpus is None:
        root = _stdlib_root()
        stats = []
        for p in _stdlib_files():
            try:
                st = p.stat()
                stats.append(f"{p.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                stats.append(f"{p.relative_to(root).as_posix()}:?")
        return _digest("stdlib", _CORPUS_VERSION, _MIN_WORDS, sys.version, root, *stats)
    # Paths: hash the raw bytes (cheaper than decoding and parsing them; robust to copied mtimes).
    path, files = _corpus_files(corpus)
    h = hashlib.sha256(f"path|{_CORPUS_VERSION}|{path.is_dir()}".encode())
    for f in files:
        rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
        try:
            data = f.read_bytes()
        except OSError as e:
            raise ValueError(f"corpus {str(corpus)!r}: cannot read {f}: {e.strerror or e}") from e
        h.update(f"\0{rel}\0{len(data)}\0".encode("utf-8", "surrogateescape"))
        h.update(data)
    return h.hexdigest()[:24]


class _Corpus:
    """A corpus whose texts are read only when needed; its texts hash comes from the cache if known."""

    def __init__(self, corpus, cache: Path, show_progress: bool):
        self.corpus = corpus
        self.name = "builtin (stdlib docstrings)" if corpus is None else str(corpus)
        self.show = show_progress
        self._texts: list[str] | None = None
        self._index = cache / f"corpus-{_corpus_fingerprint(corpus)}.json"
        self._hash: str | None = None
        try:
            self._hash = json.loads(self._index.read_text(encoding="utf-8"))["texts_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            pass

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            t0 = time.perf_counter()
            self._texts = _load_texts(self.corpus, self.show)
            n_chars = sum(map(len, self._texts))
            _log(
                self.show,
                f"corpus {self.name}: {len(self._texts)} texts, {n_chars / 1e6:.2f} M characters "
                f"({time.perf_counter() - t0:.1f} s)",
            )
        return self._texts

    @property
    def texts_hash(self) -> str:
        if self._hash is None:
            self._hash = _texts_hash(self.texts)
            _write_text(self._index, json.dumps({"texts_hash": self._hash, "n_texts": len(self.texts)}))
        return self._hash
