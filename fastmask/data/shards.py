"""Pre-tokenised token shards: a corpus streamed once through the tokenizer, in parallel, into flat
files of token ids that training reads by memory map.

A prepared folder (``fastmask prepare --corpus PATH --out DIR``, or ``fastmask pretrain``'s cache)::

    prepare.json            what is being prepared (source fingerprint, tokenizer identity, layout):
                            written first, so an interrupted prepare is recognised and continued
    tokenizer/              the tokenizer (a Hugging Face folder: AutoTokenizer loads it)
    shard-00000.tokens      the token stream of one chunk of documents: each document's ids (no
                            special tokens) then one [SEP]; uint16 when the vocabulary fits, else uint32
    shard-00000.docs.npy    int64 offsets of the chunk's documents in the shard (its index of documents)
    shard-00000.json        the shard's counts and sha256: written last, so it marks the shard complete
    index.json              the whole: shards in order with their token and document counts, the
                            tokenizer identity, the corpus content hash; written last, it marks the
                            folder complete (a finished prepare is reused, never rewritten)

Every file is written under a temporary name and renamed, so a stopped prepare leaves whole shards
only, and a rerun tokenises only the chunks that are missing. Chunks are fixed by the text (a new
chunk every ``shard_chars`` characters, at a document boundary), so a rerun cuts the same chunks.

The stream of all shards, in order, is exactly what :func:`fastmask.data.pack` packs: training rows
are ``[CLS] + seq_len - 2 stream tokens + [SEP]`` cut from it at any seq_len (rows cross document
boundaries, which the [SEP]s mark), and the ragged tail is dropped.
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from fastmask.data.cache import _hash_text, _log, progress_bars
from fastmask.data.tokenizer import _tokenizer_identity, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

FORMAT = "fastmask-token-shards"
SHARDS_VERSION = 1  # bump when the layout changes: an older folder is then refused, not misread
INDEX, HEADER, TOKENIZER_DIR = "index.json", "prepare.json", "tokenizer"
SHARD_CHARS = 4 << 20  # characters of text per shard (about a million tokens): bounded memory per worker
_ENCODE_BATCH = 2048  # texts per tokenizer call inside a worker


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned type holding every id of a vocabulary of `vocab_size` tokens."""
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 32:
        return np.dtype(np.uint32)
    raise ValueError(f"the tokenizer has {vocab_size} tokens: ids above 2^32 do not fit a uint32 token shard")


def encode_stream(backend, texts: Sequence[str], sep_id: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(stream, document lengths): each text's ids (no special tokens) then one [SEP]; texts that
    tokenise to nothing are dropped. `backend` is a ``tokenizers.Tokenizer`` without truncation."""
    flat: list[int] = []
    lengths: list[int] = []
    for start in range(0, len(texts), _ENCODE_BATCH):
        for encoding in backend.encode_batch_fast(texts[start:start + _ENCODE_BATCH], add_special_tokens=False):
            ids = encoding.ids
            if ids:
                flat += ids
                flat.append(sep_id)
                lengths.append(len(ids) + 1)
    return np.array(flat, dtype=dtype), np.array(lengths, dtype=np.int64)


def plain_backend(tokenizer: PreTrainedTokenizerFast):
    """A private copy of the Rust tokenizer: no truncation or padding a tokenizer.json may carry, and
    no transformers per-call overhead or "sequence longer than model_max_length" warnings."""
    return _plain_backend_of(tokenizer.backend_tokenizer.to_str())


def _plain_backend_of(tokenizer_json: str):
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer_json)
    backend.no_truncation()
    backend.no_padding()
    return backend


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """`write(tmp)` then a rename: `path` is either absent or whole. Errors propagate (a full disk fails)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: Path, obj: dict) -> None:
    _write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8"))


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}"


# ----------------------------------------------------------------------------------- the workers

_WORKER: dict = {}  # per worker process: the tokenizer and the shard layout, set once by _start_worker


def _start_worker(tokenizer_json: str, sep_id: int, dtype: str, out: str) -> None:
    _WORKER.update(backend=_plain_backend_of(tokenizer_json), sep_id=sep_id, dtype=np.dtype(dtype), out=Path(out))


def _tokenize_shard(k: int, texts: list[str], texts_hash: str) -> dict:
    """Tokenises one chunk into its shard files (tokens, documents, then the record marking it whole)."""
    w = _WORKER
    start = time.perf_counter()
    stream, lengths = encode_stream(w["backend"], texts, w["sep_id"], w["dtype"])
    base = w["out"] / _shard_name(k)
    _write_atomically(base.with_suffix(".tokens"), lambda tmp: stream.tofile(tmp))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
    def write_offsets(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add .npy to the temporary name
            np.save(f, offsets)

    _write_atomically(base.with_suffix(".docs.npy"), write_offsets)
    record = dict(file=base.with_suffix(".tokens").name, tokens=int(stream.size), documents=int(lengths.size),
                  texts=len(texts), texts_hash=texts_hash, sha256=hashlib.sha256(stream.tobytes()).hexdigest(),
                  seconds=round(time.perf_counter() - start, 4))
    _write_json(base.with_suffix(".json"), record)
    return record


def _finished_shard(out: Path, k: int, texts_hash: str, itemsize: int) -> dict | None:
    """The record of shard k if a previous run finished it from the same texts (its files whole)."""
    try:
        record = json.loads((out / f"{_shard_name(k)}.json").read_text(encoding="utf-8"))
        size = (out / record["file"]).stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if record.get("texts_hash") == texts_hash and size == record["tokens"] * itemsize else None


def _chunks(texts: Iterable[str], shard_chars: int, corpus_hash) -> Iterator[tuple[list[str], str]]:
    """(texts, their content hash) of each chunk of about `shard_chars` characters; every text also
    goes into `corpus_hash` (the content hash of the whole corpus)."""
    chunk: list[str] = []
    chars = 0
    h = hashlib.sha256()
    for text in texts:
        chunk.append(text)
        chars += len(text)
        _hash_text(h, text)
        _hash_text(corpus_hash, text)
        if chars >= shard_chars:
            yield chunk, h.hexdigest()[:24]
            chunk, chars, h = [], 0, hashlib.sha256()
    if chunk:
        yield chunk, h.hexdigest()[:24]


def _pool(workers: int, initargs: tuple):
    """`workers` processes. Forked where the platform allows (no re-import: a worker is ready at
    once); TOKENIZERS_PARALLELISM=false over the fork, so each worker tokenises on one thread
    without the library's fork warning and the scaling is per process."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        return multiprocessing.get_context(method).Pool(workers, _start_worker, initargs)
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


# ------------------------------------------------------------------------------------ prepare


def default_workers() -> int:
    """All the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _claim(out: Path, header: dict, show: bool) -> tuple[bool, dict | None]:
    """(whether this call created `out`, the finished index if `out` already holds this prepare).

    Refuses a folder holding anything else: a finished prepare of another corpus or tokenizer, or
    files that are not a prepare's. An unfinished prepare of the same source is continued; of
    another source, restarted (its shards can never be used)."""
    if not out.exists():
        out.mkdir(parents=True)
        return True, None
    if not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    index_path, header_path = out / INDEX, out / HEADER
    if index_path.is_file():
        index = _read_json(index_path, out)
        same = all(index.get(k) == header[k] for k in ("format", "version", "source", "tokenizer"))
        if not same:
            raise ValueError(f"--out {str(out)!r} holds a finished prepare of another corpus or tokenizer "
                             f"({index.get('corpus')}); give another --out (nothing was changed)")
        return False, index
    if header_path.is_file():
        if _read_json(header_path, out) != header:
            _log(show, f"{out}: an unfinished prepare of another corpus or tokenizer; starting it again")
            for p in out.iterdir():
                if p.name.startswith(("shard-", ".shard-")):
                    p.unlink()
            shutil.rmtree(out / TOKENIZER_DIR, ignore_errors=True)
        return False, None
    if any(out.iterdir()):
        raise ValueError(f"--out {str(out)!r} holds files that are not a fastmask prepare; give an empty or "
                         "new folder (nothing was changed)")
    return False, None


def _read_json(path: Path, out: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{str(out)!r}: unreadable {path.name} ({e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{str(out)!r}: {path.name} is not a JSON object")
    return obj


def prepare_shards(texts: Callable[[], Iterable[str]], out: str | os.PathLike, tokenizer: PreTrainedTokenizerFast,
                   *, source: str, corpus_name: str, workers: int | None = None, shard_chars: int = SHARD_CHARS,
                   show_progress: bool = True) -> "Shards":
    """Tokenises the documents `texts()` yields into the token shards of folder `out` (see the module
    docstring); returns them. `source` is the corpus' fingerprint: with the tokenizer identity it
    decides whether `out` holds this prepare (reused when finished, continued when not).

    `workers` processes tokenise (default: every core); the calling process reads the corpus and
    hands each a chunk at a time, at most two per worker in flight, so memory stays bounded whatever
    the corpus size.
    """
    workers = default_workers() if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be an int >= 1, got {workers!r}")
    if not isinstance(shard_chars, int) or shard_chars < 1:
        raise ValueError(f"shard_chars must be an int >= 1, got {shard_chars!r}")
    sep_id = tokenizer.sep_token_id
    if sep_id is None or tokenizer.cls_token_id is None:
        raise ValueError("preparing needs a tokenizer with [CLS] and [SEP] (cls_token/sep_token) tokens")
    dtype = token_dtype(len(tokenizer))
    out = Path(out).expanduser()
    header = dict(format=FORMAT, version=SHARDS_VERSION, source=source, tokenizer=_tokenizer_identity(tokenizer),
                  dtype=dtype.name, shard_chars=shard_chars)
    created, index = _claim(out, header, show_progress)
    if index is not None:
        _log(show_progress, f"{out}: prepared before ({index['tokens']} tokens in {len(index['shards'])} shards), "
                            "reused")
        return Shards(out)
    try:
        _write_json(out / HEADER, header)
        for p in out.glob(".*.tmp"):  # what a killed writer left; the folder is ours
            p.unlink()
        if not (out / TOKENIZER_DIR / "tokenizer.json").is_file():
            staging = Path(tempfile.mkdtemp(dir=out, prefix=".tokenizer-"))
            tokenizer.save_pretrained(str(staging))
            os.replace(staging, out / TOKENIZER_DIR)
        index = _tokenize(texts, out, tokenizer, header, corpus_name, workers, show_progress)
    except BaseException:
        # A first attempt that finished no shard leaves nothing; one that did keeps its whole shards,
        # which a rerun continues from.
        if created and not any(out.glob("shard-*.json")):
            shutil.rmtree(out, ignore_errors=True)
        raise
    rate = index["tokens"] / max(index["seconds"], 1e-9)
    _log(show_progress, f"prepared {index['documents']} documents, {index['tokens']} tokens ({dtype.name}) in "
                        f"{len(index['shards'])} shards in {index['seconds']:.1f} s: {rate / 1e6:.2f} M tokens/s "
                        f"with {workers} worker(s), {rate / workers / 1e6:.2f} M per worker -> {out}")
    return Shards(out)


def _tokenize(texts, out: Path, tokenizer, header: dict, corpus_name: str, workers: int, show: bool) -> dict:
    start = time.perf_counter()
    itemsize = np.dtype(header["dtype"]).itemsize
    corpus_hash = hashlib.sha256()
    records: list[dict] = []
    bar = None
    if progress_bars(show):
        from tqdm.auto import tqdm

        bar = tqdm(desc="prepare", unit="tok", unit_scale=True, leave=False, dynamic_ncols=True)
    pool = _pool(workers, (plain_backend(tokenizer).to_str(), tokenizer.sep_token_id, header["dtype"], str(out)))
    pending: collections.deque = collections.deque()  # (k, AsyncResult or a finished record)

    def collect_one() -> None:
        k, job = pending.popleft()
        record = job if isinstance(job, dict) else job.get()
        records.append(record)
        if bar is not None:
            bar.update(record["tokens"])

    try:
        for k, (chunk, chunk_hash) in enumerate(_chunks(texts(), header["shard_chars"], corpus_hash)):
            done = _finished_shard(out, k, chunk_hash, itemsize)
            pending.append((k, done if done is not None else pool.apply_async(_tokenize_shard, (k, chunk, chunk_hash))))
            while len(pending) > 2 * workers:
                collect_one()
        while pending:
            collect_one()
    finally:
        pool.terminate()
        pool.join()
        if bar is not None:
            bar.close()
    if not records:
        raise ValueError(f"corpus {corpus_name!r}: empty corpus")
    tokens = sum(r["tokens"] for r in records)
    if tokens == 0:
        raise ValueError(f"corpus {corpus_name!r}: no document has a token under this tokenizer")
    index = dict(header, corpus=corpus_name, content_hash=corpus_hash.hexdigest()[:24], vocab_size=len(tokenizer),
                 cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, tokens=tokens,
                 documents=sum(r["documents"] for r in records), texts=sum(r["texts"] for r in records),
                 shards=[{k: r[k] for k in ("file", "tokens", "documents", "sha256")} for r in records],
                 seconds=round(time.perf_counter() - start, 3), workers=workers)
    _write_json(out / INDEX, index)
    return index


# ------------------------------------------------------------------------------------- reading


def is_prepared(path: str | os.PathLike | None) -> bool:
    """Whether `path` is a finished prepared folder (what ``fastmask prepare`` writes)."""
    return path is not None and (Path(path).expanduser() / INDEX).is_file()


class Shards:
    """A finished prepared folder, its shards memory-mapped read-only: every process reading them
    (DDP ranks, loader threads) shares the OS page cache, nothing is copied into a process."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        index = _read_json(self.folder / INDEX, self.folder)
        if index.get("format") != FORMAT or index.get("version") != SHARDS_VERSION:
            raise ValueError(f"{str(self.folder)!r}: not a fastmask token-shard folder of version {SHARDS_VERSION} "
                             f"(format {index.get('format')!r}, version {index.get('version')!r}); prepare it again")
        self.index = index
        self.dtype = np.dtype(index["dtype"])
        self.cls_id, self.sep_id = index["cls_id"], index["sep_id"]
        self.tokens = index["tokens"]
        self.maps, begins = [], []
        position = 0
        for shard in index["shards"]:
            if shard["tokens"] == 0:
                continue  # np.memmap cannot map an empty file; it holds nothing anyway
            path = self.folder / shard["file"]
            try:
                mapped = np.memmap(path, dtype=self.dtype, mode="r")
            except (OSError, ValueError) as e:
                raise ValueError(f"{str(self.folder)!r}: cannot map {shard['file']} ({e}); prepare it again") from e
            if mapped.size != shard["tokens"]:
                raise ValueError(f"{str(self.folder)!r}: {shard['file']} holds {mapped.size} tokens, the index says "
                                 f"{shard['tokens']}; prepare it again")
            self.maps.append(mapped)
            begins.append(position)
            position += shard["tokens"]
        self.begins = np.array(begins, dtype=np.int64)  # each mapped shard's first position in the stream
        self.ends = self.begins + np.array([m.size for m in self.maps], dtype=np.int64)

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer the shards were made with (checked against the index's identity)."""
        tokenizer = load_tokenizer(self.folder / TOKENIZER_DIR)
        if _tokenizer_identity(tokenizer) != self.index["tokenizer"]:
            raise ValueError(f"{str(self.folder)!r}: its tokenizer/ is not the one the shards were made with")
        return tokenizer

    def shard_of(self, positions: np.ndarray) -> np.ndarray:
        """The mapped shard holding each stream position."""
        return np.searchsorted(self.begins, positions, side="right") - 1

    def stream(self, start: int, stop: int, out: np.ndarray) -> None:
        """Writes stream tokens [start, stop) into `out` (converting to its dtype)."""
        k = int(self.shard_of(start))
        filled = 0
        while filled < stop - start:
            local = start + filled - int(self.begins[k])
            piece = self.maps[k][local:local + (stop - start - filled)]
            out[filled:filled + len(piece)] = piece
            filled += len(piece)
            k += 1

    def rows(self, seq_len: int) -> "PackedRows":
        return PackedRows(self, seq_len)


class PackedRows:
    """The rows ``[CLS] + seq_len - 2 stream tokens + [SEP]`` of a prepared stream, as
    :func:`fastmask.data.pack` cuts them; a row is read from the memory map when asked for."""

    def __init__(self, shards: Shards, seq_len: int):
        if not isinstance(seq_len, int) or seq_len < 3:
            raise ValueError(f"seq_len must be an int >= 3 ([CLS] + at least one token + [SEP]), got {seq_len!r}")
        self.shards, self.seq_len, self.body = shards, seq_len, seq_len - 2
        self.n = shards.tokens // self.body
        if self.n == 0:
            raise ValueError(f"corpus too small for seq_len {seq_len}: {shards.tokens} tokens (with [SEP]s) "
                             f"but one row needs {self.body}")

    def take(self, rows: np.ndarray) -> np.ndarray:
        """int32 (len(rows), seq_len): the rows of those numbers."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.seq_len), dtype=np.int32)
        out[:, 0], out[:, -1] = self.shards.cls_id, self.shards.sep_id
        starts = rows * self.body
        shard = self.shards.shard_of(starts)
        inside = starts + self.body <= self.shards.ends[shard]
        # Rows inside one shard (nearly all): one gather per shard from its memory map.
        for k in np.unique(shard[inside]).tolist():
            pick = np.flatnonzero(inside & (shard == k))
            local = starts[pick] - self.shards.begins[k]
            out[pick, 1:-1] = self.shards.maps[k][local[:, None] + np.arange(self.body)]
        for i in np.flatnonzero(~inside).tolist():  # rows across a shard boundary
            self.shards.stream(int(starts[i]), int(starts[i]) + self.body, out[i, 1:-1])
        return out


@dataclass(frozen=True)
class Permutation:
    """A pseudo-random bijection of [0, n) keyed by `key`, evaluated for any positions at O(1) each:
    no O(n) table, so a shuffle of a corpus of any size costs nothing to set up and nothing per step
    beyond its batch. A 4-round Feistel network on the smallest even number of bits covering n,
    cycle-walked back into range (under 4 rounds of walking on average)."""

    n: int
    key: int

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (int(positions.max()) >= self.n or int(positions.min()) < 0):
            raise IndexError(f"positions must be in [0, {self.n})")
        x = positions.astype(np.uint64)
        if self.n <= 1:
            return positions.copy()
        half = max(1, (int(self.n - 1).bit_length() + 1) // 2)
        outside = np.ones(x.shape, dtype=bool)
        y = x
        while outside.any():
            y[outside] = self._feistel(y[outside], half)
            outside = y >= np.uint64(self.n)
        return y.astype(np.int64)

    def _feistel(self, x: np.ndarray, half: int) -> np.ndarray:
        mask = np.uint64((1 << half) - 1)
        left, right = x >> np.uint64(half), x & mask
        for round_ in range(4):
            left, right = right, left ^ (_mix(right, self.key * 4 + round_) & mask)
        return (left << np.uint64(half)) | right


def _mix(x: np.ndarray, key: int) -> np.ndarray:
    """splitmix64's finaliser of x + key: every input bit moves every output bit."""
    with np.errstate(over="ignore"):
        z = x + np.uint64((key * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class RowSet:
    """Rows ``start .. start + length`` of `rows` in the order of `order`: the held-out or training
    part of a prepared corpus. Indexing (an int, a slice, an index array or tensor; optionally a
    second, column index) returns an int32 tensor read from the memory map."""

    def __init__(self, rows: PackedRows, order: Permutation, start: int, length: int):
        self.rows, self.order, self.start, self.length = rows, order, start, length
        self.seq_len = rows.seq_len

    def __len__(self) -> int:
        return self.length

    @property
    def shape(self) -> tuple[int, int]:
        return (self.length, self.seq_len)

    def row_numbers(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        if index.size and (int(index.min()) < 0 or int(index.max()) >= self.length):
            raise IndexError(f"row index out of range for {self.length} rows")
        return self.order(index + self.start)

    def numpy(self, index) -> np.ndarray:
        return self.rows.take(self.row_numbers(index))

    def __getitem__(self, key):
        import torch

        columns = slice(None)
        if isinstance(key, tuple):
            key, columns = key
        if isinstance(key, slice):
            index = np.arange(self.length)[key]
        elif isinstance(key, int):
            return self[np.array([key]), columns][0]
        else:
            index = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        return torch.from_numpy(self.numpy(index.reshape(-1))).reshape(*index.shape, self.seq_len)[..., columns]

    def tensor(self):
        """Every row, in memory (small corpora: experiments, tests)."""
        return self[:]
