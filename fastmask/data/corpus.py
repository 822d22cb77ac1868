"""Reading a corpus, one document at a time (never the whole corpus in memory): the built-in one (the
standard library's docstrings, read with :mod:`ast`, so every install has English text and nothing is
downloaded), ``.txt``/``.md``/``.jsonl``/``.parquet`` files, directories of them, and a Hugging Face
``datasets`` folder written by ``save_to_disk``; and a cheap fingerprint of the source, so a warm run
never reads or parses it."""

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
from typing import Iterable, Iterator

from fastmask.data.cache import _digest, _log, _progress, _texts_hash, _write_text

_CORPUS_VERSION = 1  # bump when text extraction changes, so old corpus-*.json entries are never looked up
_MIN_WORDS = 8  # shorter docstrings are mostly "Return self." style fragments, not prose
_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
)
_CORPUS_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_STMT_NODES = (ast.stmt, ast.excepthandler, ast.match_case)
_ARROW_BATCH = 4096  # rows per record batch read from parquet / arrow: bounded memory, few Python calls
TEXT_COLUMN = "text"  # the default field of .jsonl objects and column of .parquet / datasets folders


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


def _is_saved_dataset(path: Path) -> bool:
    """A folder written by ``datasets.Dataset.save_to_disk`` (its state.json lists the arrow files)."""
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _saved_dataset_files(corpus, path: Path) -> list[Path]:
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        return [path / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"corpus {str(corpus)!r}: unreadable datasets state.json ({e})") from e


def _corpus_files(corpus: str | os.PathLike) -> tuple[Path, list[Path]]:
    """(path, the files a corpus is read from), or ValueError for a missing/empty path."""
    path = Path(corpus).expanduser()
    if not path.exists():
        raise ValueError(f"corpus {str(corpus)!r}: no such file or directory")
    if not path.is_dir():
        return path, [path]
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise ValueError(f"corpus {str(corpus)!r}: a datasets DatasetDict; give one split's folder "
                         f"({', '.join(str(path / s) for s in splits)})")
    if _is_saved_dataset(path):
        return path, _saved_dataset_files(corpus, path)
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
        raise ValueError(f"corpus {str(corpus)!r}: empty corpus (no *.txt, *.md, *.jsonl or *.parquet files "
                         "in the directory)")
    return path, files


def _open(corpus, file: Path):
    try:
        return open(file, "rb")
    except OSError as e:
        raise ValueError(f"corpus {str(corpus)!r}: cannot read {file}: {e.strerror or e}") from e


def _lines(corpus, file: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 file, streamed; a byte-order mark is tolerated."""
    offset = 0
    with _open(corpus, file) as f:
        try:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"corpus {str(corpus)!r}: {file} is not UTF-8 text (invalid byte at offset "
                                     f"{offset + e.start})") from e
                offset += len(raw)
                yield lineno, line
        except OSError as e:
            raise ValueError(f"corpus {str(corpus)!r}: cannot read {file}: {e.strerror or e}") from e


def _jsonl_texts(corpus, file: Path, column: str) -> Iterator[str]:
    for lineno, line in _lines(corpus, file):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"corpus {str(corpus)!r}: {file} line {lineno} is not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict) or not isinstance(obj.get(column), str):
            raise ValueError(f'corpus {str(corpus)!r}: {file} line {lineno} has no "{column}" string field')
        if obj[column].strip():
            yield obj[column].strip()


def _pyarrow(corpus, file: Path):
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError as e:
        raise ValueError(f"corpus {str(corpus)!r}: reading {file.name} needs pyarrow "
                         "(pip install 'fastmask[datasets]')") from e
    return pyarrow


def _arrow_texts(corpus, file: Path, column: str) -> Iterator[str]:
    """The `column` strings of a .parquet file or an arrow stream file (save_to_disk), a batch at a time."""
    pa = _pyarrow(corpus, file)
    try:
        if file.suffix.lower() == ".parquet":
            reader = pa.parquet.ParquetFile(file)
            schema, batches = reader.schema_arrow, lambda: reader.iter_batches(_ARROW_BATCH, columns=[column])
        else:
            reader = pa.ipc.open_stream(pa.memory_map(str(file)))
            schema, batches = reader.schema, lambda: reader
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"corpus {str(corpus)!r}: cannot read {file}: {e}") from e
    if column not in schema.names:
        raise ValueError(f"corpus {str(corpus)!r}: {file} has no {column!r} column (columns: "
                         f"{', '.join(schema.names)}; choose one with --text-column)")
    kind = schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise ValueError(f"corpus {str(corpus)!r}: {file} column {column!r} holds {kind}, not strings "
                         "(choose another with --text-column)")
    try:
        for batch in batches():
            for text in batch.column(column).to_pylist():
                if text is not None and text.strip():
                    yield text.strip()
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"corpus {str(corpus)!r}: cannot read {file}: {e}") from e


def _file_texts(corpus, file: Path, column: str) -> Iterator[str]:
    suffix = file.suffix.lower()
    if suffix in (".parquet", ".arrow"):
        yield from _arrow_texts(corpus, file, column)
    elif suffix == ".jsonl":
        yield from _jsonl_texts(corpus, file, column)
    else:  # one document per non-empty line, stripped
        for _, line in _lines(corpus, file):
            if line.strip():
                yield line.strip()


def iter_texts(corpus: str | os.PathLike | None, text_column: str = TEXT_COLUMN, *,
               show_progress: bool = False) -> Iterator[str]:
    """The documents of a corpus, one at a time (see :func:`load_texts`); nothing is held but the
    current record batch or line."""
    if corpus is None:
        yield from _builtin(show_progress)
        return
    _, files = _corpus_files(corpus)
    empty = True
    for file in _progress(files, show_progress and len(files) > 1, desc="reading corpus", unit="file"):
        for text in _file_texts(corpus, file, text_column):
            empty = False
            yield text
    if empty:
        raise ValueError(f"corpus {str(corpus)!r}: empty corpus (no text in {len(files)} file(s))")


def load_texts(corpus: str | os.PathLike | None, text_column: str = TEXT_COLUMN) -> list[str]:
    """The documents of a corpus: ``None`` is :func:`builtin_texts`; else a path.

    A directory contributes every ``*.txt``, ``*.md``, ``*.jsonl`` and ``*.parquet`` file under it
    (recursively, hidden files and directories skipped, sorted by relative path); a folder written by
    ``datasets.Dataset.save_to_disk`` contributes its rows. ``.jsonl``: one JSON object per line with
    a `text_column` string; ``.parquet`` and datasets folders: the `text_column` column (needs
    pyarrow); any other file: one document per non-empty line. Texts are stripped, empty ones skipped.
    Raises ValueError naming the corpus and the reason: missing path, empty corpus, a file that is not
    UTF-8 or cannot be read, a JSONL line that is not JSON or lacks the field, a missing or non-string
    column.
    """
    return list(iter_texts(corpus, text_column))


def _corpus_fingerprint(corpus: str | os.PathLike | None, text_column: str = TEXT_COLUMN) -> str:
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
    # Paths: hash the raw bytes (cheaper than decoding and parsing them; robust to copied mtimes),
    # a megabyte at a time.
    path, files = _corpus_files(corpus)
    h = hashlib.sha256(f"path|{_CORPUS_VERSION}|{path.is_dir()}|{text_column}".encode())
    for f in files:
        rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
        h.update(f"\0{rel}\0".encode("utf-8", "surrogateescape"))
        with _open(corpus, f) as stream:
            try:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    h.update(block)
            except OSError as e:
                raise ValueError(f"corpus {str(corpus)!r}: cannot read {f}: {e.strerror or e}") from e
    return h.hexdigest()[:24]


class _Corpus:
    """A corpus streamed when needed; its texts hash (the content key) comes from the cache if known."""

    def __init__(self, corpus, cache: Path, show_progress: bool, text_column: str = TEXT_COLUMN):
        self.corpus, self.text_column = corpus, text_column
        self.name = "builtin (stdlib docstrings)" if corpus is None else str(corpus)
        self.show = show_progress
        self.fingerprint = _corpus_fingerprint(corpus, text_column)
        self._index = cache / f"corpus-{self.fingerprint}.json"
        self._hash: str | None = None
        try:
            self._hash = json.loads(self._index.read_text(encoding="utf-8"))["texts_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def texts(self) -> Iterator[str]:
        """The documents, streamed (a fresh pass per call)."""
        return iter_texts(self.corpus, self.text_column, show_progress=self.show)

    @property
    def texts_hash(self) -> str:
        if self._hash is None:
            t0 = time.perf_counter()
            count = [0, 0]  # texts, characters

            def counted():
                for text in self.texts():
                    count[0] += 1
                    count[1] += len(text)
                    yield text

            self._hash = _texts_hash(counted())
            _log(self.show, f"corpus {self.name}: {count[0]} texts, {count[1] / 1e6:.2f} M characters "
                            f"({time.perf_counter() - t0:.1f} s)")
            _write_text(self._index, json.dumps({"texts_hash": self._hash, "n_texts": count[0]}))
        return self._hash
