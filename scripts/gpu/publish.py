"""Turns the GPU kit's results (scripts/gpu/all.sh) into what the repository keeps: the benchmark rows
appended to bench/results/<family>-<device>.jsonl (rows already there are not added twice),
bench/RESULTS.md and bench/plots/ regenerated, a session report docs/gpu-sessions/<date>-<device>.md
(the machine, versions, commit, each step's and check's outcome and time, the toolchain and
linkage, the headline table, the CUDA-graph replay, what is left for a second call; an existing
report is never overwritten: -2, -3, ... instead), and README.md's block between the
`gpu-results` markers (the latest headline table, a link to the report).

    python scripts/gpu/publish.py RESULTS                  # RESULTS: the results folder or the kit's gpu-results.tar.gz
    python scripts/gpu/publish.py RESULTS --out SCRATCH    # all of it into SCRATCH (a copy of those files), not the tree

A dry run's results (FASTMASK_GPU_DRY_RUN=1) are published only with --out.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_headline  # noqa: E402
import plot  # noqa: E402
import report  # noqa: E402

README_START, README_END = "<!-- gpu-results:start -->", "<!-- gpu-results:end -->"
SESSIONS = os.path.join("docs", "gpu-sessions")


class PublishError(Exception):
    pass


def _read(folder: str, name: str, default=None):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f) if name.endswith(".json") else f.read()


def _tsv(folder: str, name: str) -> list[list[str]]:
    return [line.split("\t") for line in (_read(folder, name) or "").splitlines() if line.strip()]


def unpack(source: str, scratch: str) -> str:
    """The results folder: `source` itself, or the one folder inside the kit's tarball."""
    if os.path.isdir(source):
        return source
    if not tarfile.is_tarfile(source):
        raise PublishError(f"{source}: neither a results folder nor the kit's gpu-results.tar.gz")
    with tarfile.open(source) as tar:
        tar.extractall(scratch, filter="data")
    (folder,) = [os.path.join(scratch, d) for d in os.listdir(scratch)]
    return folder


def slug(device: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")


def session_path(root: str, date: str, name: str) -> str:
    """docs/gpu-sessions/<date>-<name>.md under root, or -2, -3, ... if taken (here or in the tree)."""
    for n in range(1, 1000):
        rel = os.path.join(SESSIONS, f"{date}-{name}{'' if n == 1 else f'-{n}'}.md")
        if not os.path.exists(os.path.join(root, rel)) and not os.path.exists(os.path.join(ROOT, rel)):
            return os.path.join(root, rel)
    raise PublishError(f"too many reports named {date}-{name}")


def append_rows(results: str, dest_results: str, sha: str) -> dict[str, list[dict]]:
    """Appends the kit's rows to dest_results/<file> (a row already there is skipped); rows whose
    git_sha is unknown (no git on the machine) get `sha`. Returns file name -> the kit's rows."""
    os.makedirs(dest_results, exist_ok=True)
    published = {}
    for path in sorted(glob.glob(os.path.join(results, "bench", "*.jsonl"))):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for row in rows:
            if row.get("git_sha") in (None, "unknown"):
                row["git_sha"] = sha
        dest = os.path.join(dest_results, os.path.basename(path))
        existing = set()
        if os.path.exists(dest):
            with open(dest) as f:
                existing = {line.strip() for line in f if line.strip()}
        with open(dest, "a") as f:
            for row in rows:
                line = json.dumps(row)
                if line not in existing:
                    f.write(line + "\n")
        published[os.path.basename(path)] = rows
    return published


def _local_sha() -> str:
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def headline_block(rows: list[dict], report_link: str, env: dict, dry_run: bool) -> str:
    """What the README quotes: the latest headline table and where it comes from."""
    lines = [f"Latest GPU session: {env.get('device', '?')} ({'DRY RUN, ' if dry_run else ''}torch {env.get('torch')}, "
             f"commit {(env.get('commit') or 'unknown')[:7]}); the full report: [{report_link}]({report_link}). "
             "Medians over windows of steps, tokens/s, ratios against the baseline of the same run:", ""]
    lines += [bench_headline.summary_table(rows)] if rows else ["(the headline step measured nothing in that session: "
                                                                "see the report)"]
    return "\n".join(lines)


def session_report(results: str, kit: dict, env: dict, published: dict[str, list[dict]], sha: str,
                   bench_link: str) -> str:
    dry = kit.get("dry_run", False)
    device = env.get("device", "?")
    commit = env.get("commit")
    code = (f"commit {commit[:7]}" + (f" with {env['changed_files']} changed files" if env.get("changed_files") else "")
            if commit else f"commit unknown on the machine (no git); published from {sha}")
    out = [f"# GPU session {kit.get('date')}: {device}" + (" (DRY RUN on a CPU: no GPU figures)" if dry else ""), "",
           "Generated by `scripts/gpu/publish.py` from the results of `scripts/gpu/all.sh` "
           f"(started {kit.get('started')}, budget {kit.get('budget_s')} s, steps: {kit.get('steps')}).", "",
           f"Machine: {env.get('gpu') or device}; python {env.get('python')}, torch {env.get('torch')} "
           f"(CUDA {env.get('cuda')}), triton {env.get('triton')}, transformers {env.get('transformers')}"
           + (f", nvcc {env['nvcc']}" if env.get("nvcc") else "") + f". Code: {code}.", ""]
    out += ["## Steps", ""]
    out += _table(["step", "outcome", "exit", "seconds", "limit s"], _tsv(results, "steps.tsv"))
    out += ["", "Checks inside the steps (each log is in the results folder as `<check>.log`):", ""]
    out += _table(["check", "outcome", "exit", "seconds", "limit s"], _tsv(results, "checks.tsv"))
    headline = published.get(f"headline-{_tag(device)}.jsonl", [])
    out += ["", "## Headline: the training step", "",
            bench_headline.summary_table(headline) if headline else "Not measured (see the steps above).", ""]
    out += ["## Benchmarks", "",
            f"Rows appended to `bench/results/` (tables with every ratio: [bench/RESULTS.md]({bench_link})):", ""]
    out += [f"- `{name}`: {len(rows)} rows" for name, rows in published.items()] or ["- none"]
    compiles = [r for rows in published.values() for r in rows if "compile_s" in (r.get("metrics") or {})]
    if compiles:
        out += ["", "compiled-ref, its first call per shape outside the timings (dynamic shapes: one graph per "
                    "op and constant arguments):", ""]
        out += _table(["op", "shape", "dtype", "first call s", "new graph"],
                      [[r["op"], r["shape"], r["dtype"], f"{r['metrics']['compile_s']:.2f}",
                        "yes" if r["metrics"].get("new_graph") else "no"] for r in compiles])
    graph = _read(results, "graph_replay.json")
    out += ["", "## CUDA-graph replay (masking + gather, seed and epoch on the device)", ""]
    out += (_table(["backend", "graph", "fresh masks", "bit-exact", "gathered", "epoch advanced", "ok"],
                   [[r["backend"], *(str(r.get(k, "-")) for k in ("graph", "fresh_masks", "bit_exact", "gathered",
                                                                  "epoch_advanced")),
                     "yes" if r["ok"] else f"no: {r.get('error', 'a check failed')}"] for r in graph])
            if graph else ["Not run."])
    linkage = _read(results, "linkage.log") or ""
    toolchain = _read(results, "toolchain.txt")
    out += ["", "## Toolchain and linkage", "",
            "libstdc++ among the extension's NEEDED libraries: "
            + ("yes" if "libstdc++" in linkage else "**no** (a private static copy: see toolchain.txt)" if linkage
               else "not recorded"), ""]
    if toolchain:
        out += ["```", toolchain.strip(), "```"]
    if linkage.strip():
        out += ["", "```", linkage.strip(), "```"]
    left = [r for r in _tsv(results, "steps.tsv") if r[1] != "ok"]
    out += ["", "## Left for a second call", ""]
    if left:
        names = " ".join(["01_build"] + [r[0] for r in left if r[0] != "01_build"])
        out += [f"Not done: {', '.join(f'{r[0]} ({r[1]})' for r in left)}. On a fresh machine:", "",
                f"    scripts/gpu/all.sh --pack \"$OUT\" /tmp/gpu-results {names}"]
    else:
        out += ["Nothing: every step finished."]
    return "\n".join(out) + "\n"


def _tag(device: str) -> str:
    """The results files' device tag (bench/harness.py save)."""
    return "cpu" if device == "cpu" else device.replace(" ", "-")


def update_readme(path: str, block: str) -> None:
    with open(path) as f:
        text = f.read()
    if README_START not in text or README_END not in text:
        raise PublishError(f"{path} has no {README_START} ... {README_END} block to update")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{README_START}\n{block}\n{README_END}{tail}")


def publish(source: str, out: str | None) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        results = unpack(source, scratch)
        kit = _read(results, "kit.json")
        if kit is None:
            raise PublishError(f"{results}: no kit.json: not a results folder of scripts/gpu/all.sh")
        dry = kit.get("dry_run", False)
        if dry and out is None:
            raise PublishError(f"{results} holds a dry run's results (FASTMASK_GPU_DRY_RUN=1): publish them with "
                               "--out SCRATCH, never into the tree")
        env = _read(results, "environment.json", {})
        root = out or ROOT
        with open(os.path.join(ROOT, "README.md")) as f:
            if README_START not in f.read():  # before anything is written
                raise PublishError(f"README.md has no {README_START} ... {README_END} block to update")
        if out is not None:  # the tree's files this writes, copied first
            os.makedirs(os.path.join(out, "bench", "results"), exist_ok=True)
            for path in glob.glob(os.path.join(ROOT, "bench", "results", "*.jsonl")):
                shutil.copy(path, os.path.join(out, "bench", "results"))
            shutil.copy(os.path.join(ROOT, "README.md"), os.path.join(out, "README.md"))
        sha = (env.get("commit") or "")[:7] or _local_sha()
        published = append_rows(results, os.path.join(root, "bench", "results"), sha)
        results_md = report.write(os.path.join(root, "bench", "results"), os.path.join(root, "bench", "RESULTS.md"),
                                  include_quick=dry)
        pngs = plot.write(os.path.join(root, "bench", "results"), os.path.join(root, "bench", "plots"),
                          include_quick=dry)
        device = env.get("device", "unknown")
        doc = session_path(root, kit.get("date", "unknown-date"), "dry-run" if dry else slug(device))
        os.makedirs(os.path.dirname(doc), exist_ok=True)
        with open(doc, "w") as f:
            f.write(session_report(results, kit, env, published, sha, "../../bench/RESULTS.md"))
        link = os.path.relpath(doc, root)
        update_readme(os.path.join(root, "README.md"),
                      headline_block(published.get(f"headline-{_tag(device)}.jsonl", []), link, env, dry))
    return dict(report=doc, results_md=results_md, plots=pngs, rows={k: len(v) for k, v in published.items()},
                readme=os.path.join(root, "README.md"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="the kit's results folder, or its gpu-results.tar.gz")
    parser.add_argument("--out", help="write everything into this scratch folder instead of the tree")
    args = parser.parse_args(argv)
    try:
        done = publish(args.results, args.out)
    except PublishError as exc:
        print(f"publish.py: {exc}", file=sys.stderr)
        return 1
    print(f"rows: {done['rows']}\nwrote {done['results_md']}, {len(done['plots'])} plots, {done['report']}, "
          f"{done['readme']} (the gpu-results block)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
