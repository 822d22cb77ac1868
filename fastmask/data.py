"""Pretraining data for ``fastmask pretrain``: corpus, WordPiece tokenizer, packed rows, held-out split.

Built-in corpus: the docstrings of the running Python's own standard library, read with :mod:`ast`
from the ``.py`` sources (never imported), so every install has a corpus of English text and nothing
is downloaded. Otherwise a ``.txt``/``.md`` file (one document per non-empty line), a ``.jsonl`` file
(one ``{"text": ...}`` object per line) or a directory of such files.

Caching (``$FASTMASK_CACHE``, else ``~/.cache/fastmask``; every file written to a temp name and then
``os.replace``-d, so concurrent or interrupted runs never leave a half-written file):

* ``corpus-<fingerprint>.json``: the content hash of the corpus texts, keyed by a cheap fingerprint of
  the source (stdlib: file names, sizes and mtimes; a path: the raw bytes), so a warm run never parses.
* ``tokenizer-<key>.json``: a trained tokenizer, key = hash(vocab_size, texts hash). WordPiece training
  is not deterministic, so the first process to publish an entry wins and racing ones load it.
* ``rows-<key>.pt``: packed rows, key = hash(texts hash, tokenizer identity, seq_len); the held-out
  split is recomputed (cheap and deterministic), so it is not part of the key.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import hashlib
import itertools
import json
import os
import sys
import sysconfig
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch

if TYPE_CHECKING:  # transformers/tokenizers are imported lazily: they take seconds to import
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "SPECIAL_TOKENS",
    "Prepared",
    "builtin_texts",
    "load_texts",
    "load_tokenizer",
    "pack",
    "prepare",
    "split",
    "train_tokenizer",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in every trained tokenizer

# Bump when the meaning of a cache file changes (text extraction, tokenizer recipe, packing layout),
# so old cache entries are simply never looked up again.
_CORPUS_VERSION = 1
_TOKENIZER_VERSION = 2  # 2: canonical ids (deterministic training)
_PACK_VERSION = 1

_MIN_WORDS = 8  # shorter docstrings are mostly "Return self." style fragments, not prose
_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
)
_CORPUS_SUFFIXES = (".txt", ".md", ".jsonl")
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_STMT_NODES = (ast.stmt, ast.excepthandler, ast.match_case)
_ENCODE_CHUNK = 2048  # texts per tokenizer call: large enough for the Rust thread pool, small for progress


# ----------------------------------------------------------------------------------------- helpers


def _log(show: bool, message: str) -> None:
    if show:
        print(f"fastmask: {message}", file=sys.stderr, flush=True)


def _progress(iterable, show: bool, **kwargs):
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


def _texts_hash(texts: Iterable[str]) -> str:
    """Content hash of a list of texts (length-prefixed, so document boundaries count)."""
    h = hashlib.sha256()
    for text in texts:
        b = text.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:24]


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("FASTMASK_CACHE") or os.path.join("~", ".cache", "fastmask")
    return Path(cache_dir).expanduser()


def _atomic_write(path: Path, write: Callable[[str], None], *, overwrite: bool = True) -> bool:
    """Writes via ``write(tmp_path)`` then renames; a cache that cannot be written only warns.

    ``overwrite=False`` publishes with a hard link, which fails if ``path`` exists: the first writer
    wins, so processes racing to create the same entry all end up reading one file.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a cache is fine to share read-only
        if overwrite:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # another process published first: keep theirs
        except OSError:  # a file system without hard links
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    except Exception as e:  # OSError, or whatever torch.save / tokenizers raise on a full disk
        warnings.warn(f"fastmask: could not write cache file {path}: {e}", stacklevel=3)
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write_text(path: Path, text: str) -> bool:
    return _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------------------ corpus


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


# --------------------------------------------------------------------------------------- tokenizer


def _wrap(backend) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep, mask_token=mask
    )


def _train_backend(texts: Sequence[str], vocab_size: int, show_progress: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),  # first, so they get ids 0..4
        continuing_subword_prefix="##",
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    # The trainer breaks frequency ties in hash-map order, which differs run to run: the same
    # vocabulary comes out under different ids. Canonical ids (specials first, then the tokens in
    # code-point order) make the trained tokenizer a function of the texts and vocab_size alone.
    learned = sorted(set(tok.get_vocab()) - set(SPECIAL_TOKENS))
    tok.model = models.WordPiece({t: i for i, t in enumerate([*SPECIAL_TOKENS, *learned])}, unk_token="[UNK]",
                                 continuing_subword_prefix="##")
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"trained tokenizer has special token ids {ids}, expected 0..{len(SPECIAL_TOKENS) - 1}")
    # BERT-style [CLS] a [SEP] (b [SEP]) when callers ask for special tokens; pack() does not.
    cls_id, sep_id = ids[2], ids[3]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _check_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be an int > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")


def _tokenizer_for(
    texts_hash: str, get_texts: Callable[[], Sequence[str]], vocab_size: int, cache: Path, show_progress: bool
) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer

    key = _digest("wordpiece", _TOKENIZER_VERSION, vocab_size, texts_hash)
    path = cache / f"tokenizer-{key}.json"
    if path.is_file():
        try:
            return _wrap(Tokenizer.from_file(str(path)))
        except Exception as e:  # a corrupt/foreign file: retrain and replace it
            warnings.warn(f"fastmask: ignoring unreadable cached tokenizer {path}: {e}", stacklevel=3)
            with contextlib.suppress(OSError):
                path.unlink()
    texts = get_texts()
    t0 = time.perf_counter()
    _log(show_progress, f"training a WordPiece tokenizer (vocab {vocab_size}) on {len(texts)} texts ...")
    backend = _train_backend(texts, vocab_size, show_progress)
    _log(show_progress, f"tokenizer trained ({backend.get_vocab_size()} tokens, {time.perf_counter() - t0:.1f} s)")
    # The tokenizers WordPiece trainer is not deterministic (hash-map order breaks ties; upstream
    # huggingface/tokenizers#1794), so processes sharing a cache that train at once (one per rank)
    # would disagree: the first to publish wins and everyone returns the published file.
    if not _atomic_write(path, lambda tmp: backend.save(tmp), overwrite=False) and path.is_file():
        try:
            return _wrap(Tokenizer.from_file(str(path)))
        except Exception:
            pass
    return _wrap(backend)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, cache_dir: str | os.PathLike | None = None, *, show_progress: bool = False
) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on ``texts``, cached as ``tokenizer-<key>.json``.

    Lowercasing BertNormalizer, BertPreTokenizer, WordPiece with the ``##`` continuing prefix and
    decoder; :data:`SPECIAL_TOKENS` get ids 0..4 and are set as pad/unk/cls/sep/mask. The key is a hash
    of (vocab_size, the texts' content hash): a cache hit skips training.
    """
    _check_vocab_size(vocab_size)
    texts = list(texts)
    return _tokenizer_for(_texts_hash(texts), lambda: texts, vocab_size, _cache_dir(cache_dir), show_progress)


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """A local Hugging Face tokenizer directory (never downloads); it needs mask/cls/sep/pad tokens."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not Path(path).expanduser().is_dir():
        raise ValueError(f"tokenizer {str(path)!r}: not a directory (expected a local Hugging Face tokenizer dir)")
    try:
        tok = AutoTokenizer.from_pretrained(str(Path(path).expanduser()), local_files_only=True)
    except Exception as e:  # transformers raises OSError/ValueError/KeyError/... depending on what is wrong
        raise ValueError(f"tokenizer {str(path)!r}: cannot be loaded ({type(e).__name__}: {e})") from e
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise ValueError(f"tokenizer {str(path)!r}: not a fast (tokenizers-backed) tokenizer: {type(tok).__name__}")
    missing = [name for name in ("mask", "cls", "sep", "pad") if getattr(tok, f"{name}_token_id", None) is None]
    if missing:
        raise ValueError(f"tokenizer {str(path)!r}: lacks a {'/'.join(missing)} token (BERT-style MLM needs them)")
    return tok


def _tokenizer_identity(tokenizer: PreTrainedTokenizerFast) -> str:
    """Hash of what determines pack()'s output: the tokenizer pipeline and vocabulary, and cls/sep ids."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    for volatile in ("truncation", "padding"):  # per-call settings transformers toggles; irrelevant here
        spec.pop(volatile, None)
    return _digest(json.dumps(spec, sort_keys=True), tokenizer.cls_token_id, tokenizer.sep_token_id)


# ------------------------------------------------------------------------------------------ packing


def pack(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerFast, seq_len: int, *, show_progress: bool = False
) -> torch.Tensor:
    """Packs documents into int32 rows ``[CLS] + (seq_len - 2) stream tokens + [SEP]`` of shape (N, seq_len).

    The stream is every document's ids (no special tokens) followed by one [SEP]; documents that
    tokenize to nothing are dropped and the ragged tail of the stream is dropped.
    """
    if not isinstance(seq_len, int) or seq_len < 3:
        raise ValueError(f"seq_len must be an int >= 3 ([CLS] + at least one token + [SEP]), got {seq_len!r}")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise ValueError("pack() needs a tokenizer with [CLS] and [SEP] (cls_token/sep_token) tokens")
    from tokenizers import Tokenizer

    # A private copy of the Rust tokenizer: no truncation/padding that a tokenizer.json may carry,
    # and no transformers per-call overhead or "sequence longer than model_max_length" warnings.
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    texts = list(texts)
    sep = [sep_id]
    chunks = []
    starts = range(0, len(texts), _ENCODE_CHUNK)
    for start in _progress(starts, show_progress, desc="packing", unit="chunk", total=len(starts)):
        encodings = backend.encode_batch_fast(texts[start : start + _ENCODE_CHUNK], add_special_tokens=False)
        stream = itertools.chain.from_iterable(x for e in encodings if e.ids for x in (e.ids, sep))
        chunks.append(np.fromiter(stream, dtype=np.int32))
    stream = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int32)
    body = seq_len - 2
    n = len(stream) // body
    if n == 0:
        raise ValueError(
            f"corpus too small for seq_len {seq_len}: {len(stream)} tokens (with [SEP]s) "
            f"but one row needs {body}"
        )
    rows = np.empty((n, seq_len), dtype=np.int32)
    rows[:, 0] = cls_id
    rows[:, 1:-1] = stream[: n * body].reshape(n, body)
    rows[:, -1] = sep_id
    return torch.from_numpy(rows)


def split(rows: torch.Tensor, eval_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic shuffled (train, held-out) split; >= 1 held-out row when eval_fraction > 0.

    Held-out gets ``round(N * eval_fraction)`` rows (at least 1, at most N - 1); train keeps the rest.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    n = rows.shape[0]
    if eval_fraction == 0:
        return rows, rows[:0]
    if n < 2:
        raise ValueError(f"cannot hold out rows from {n} row(s): need at least 2 (one to train on)")
    n_eval = min(max(1, round(n * eval_fraction)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return rows[perm[n_eval:]], rows[perm[:n_eval]]


# ------------------------------------------------------------------------------------------ prepare


@dataclass
class Prepared:
    """What the pretraining loop needs: the tokenizer and int32 (N, seq_len) train / held-out rows."""

    tokenizer: PreTrainedTokenizerFast
    train: torch.Tensor  # int32 (N_train, seq_len)
    eval: torch.Tensor  # int32 (N_eval, seq_len), N_eval >= 1 when eval_fraction > 0


def _load_rows(path: Path, seq_len: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        rows = torch.load(path, weights_only=True)
    except Exception as e:
        warnings.warn(f"fastmask: ignoring unreadable cached rows {path}: {e}", stacklevel=3)
        return None
    ok = isinstance(rows, torch.Tensor) and rows.dtype == torch.int32 and rows.dim() == 2 and rows.shape[1] == seq_len
    return rows if ok and rows.shape[0] > 0 else None


def prepare(
    corpus: str | os.PathLike | None,
    tokenizer_path: str | os.PathLike | None,
    vocab_size: int,
    seq_len: int,
    eval_fraction: float,
    cache_dir: str | os.PathLike | None,
    show_progress: bool = True,
) -> Prepared:
    """The whole pipeline: corpus -> tokenizer (loaded, or trained and cached) -> packed rows (cached) -> split.

    ``vocab_size`` only matters when training (``tokenizer_path`` is None). A warm run reads neither
    the corpus nor trains nor tokenizes: it loads two cache files.
    """
    # Validate first, so a typo fails before seconds of parsing and training.
    if tokenizer_path is None:
        _check_vocab_size(vocab_size)
    if not isinstance(seq_len, int) or seq_len < 3:
        raise ValueError(f"seq_len must be an int >= 3, got {seq_len!r}")
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    cache = _cache_dir(cache_dir)
    source = _Corpus(corpus, cache, show_progress)

    if tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path)
    else:
        tokenizer = _tokenizer_for(source.texts_hash, lambda: source.texts, vocab_size, cache, show_progress)

    key = _digest("rows", _PACK_VERSION, source.texts_hash, _tokenizer_identity(tokenizer), seq_len)
    path = cache / f"rows-{key}.pt"
    rows = _load_rows(path, seq_len)
    if rows is None:
        texts = source.texts
        t0 = time.perf_counter()
        rows = pack(texts, tokenizer, seq_len, show_progress=show_progress)
        _log(show_progress, f"packed {rows.shape[0]} rows of {seq_len} tokens ({time.perf_counter() - t0:.1f} s)")
        _atomic_write(path, lambda tmp: torch.save(rows, tmp))
    else:
        _log(show_progress, f"{rows.shape[0]} packed rows of {seq_len} tokens from the cache ({path.name})")
    train_rows, eval_rows = split(rows, eval_fraction)
    return Prepared(tokenizer=tokenizer, train=train_rows, eval=eval_rows)
