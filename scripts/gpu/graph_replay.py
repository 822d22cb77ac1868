"""A masking + gather step captured in a CUDA graph, seed and epoch as 0-dim device tensors that the
step advances in place: every replay must give fresh masks (the kernels read the epoch when they
run), each bit-identical to the reference op at that epoch, its gathered rows those of the hidden
states at the masked positions, with no host sync (set_sync_debug_mode("error") inside capture and
replays). One record per backend in --out (JSON); exit status 1 if a check fails. On CPU tensors
(the GPU kit's dry run) the step runs eagerly instead of replaying a graph, with the same checks.

    python scripts/gpu/graph_replay.py --device cuda --out graph_replay.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import harness  # noqa: E402

import fastmask  # noqa: E402

SEED, EPOCH = 11, 3  # the epoch (the ops' mask counter) the first replay reads; each replay advances it


def check(backend: str, device: torch.device, replays: int, batch: int, length: int, width: int) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = harness.random_ids(batch, length, torch.device("cpu")).to(device)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    hidden = torch.randn(batch, length, width, generator=g).to(device)
    seed = torch.tensor(SEED, device=device)
    epoch = torch.tensor(EPOCH, device=device)
    capacity = fastmask.gather_capacity(length, harness.P)

    def step():
        out = fastmask.mask_tokens(ids, maskable, harness.MASK_ID, harness.VOCAB, harness.P, exact_count=True,
                                   seed=seed, epoch=epoch, backend=backend)
        index = fastmask.masked_positions(out.labels, capacity, backend=backend).index
        gathered = fastmask.gather_masked(hidden, index, backend=backend)
        epoch.add_(1)
        return out.labels, index, gathered

    graph = device.type == "cuda"
    if graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream: Triton compiles, the allocator grows
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        epoch.fill_(EPOCH)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph):  # (its entry synchronises: the check starts inside)
            with harness.sync_checked(device):
                static = step()

        def replay():
            cuda_graph.replay()
            return static
    else:
        replay = step
    got = []
    with harness.sync_checked(device):
        for _ in range(replays):
            got.append([t.clone() for t in replay()])
    epochs = [EPOCH + r for r in range(replays)]
    fresh = all(not torch.equal(a[0], b[0]) for a, b in zip(got, got[1:]))
    exact, gathered_right = True, True
    for (labels, index, gathered), e in zip(got, epochs):
        want = fastmask.mask_tokens(ids, maskable, harness.MASK_ID, harness.VOCAB, harness.P, exact_count=True,
                                    seed=SEED, epoch=e, backend="reference")
        exact &= torch.equal(labels, want.labels)
        want_index = fastmask.masked_positions(want.labels, capacity, backend="reference").index
        gathered_right &= torch.equal(index, want_index) and torch.equal(
            gathered, fastmask.gather_masked(hidden, want_index, backend="reference"))
    advanced = int(epoch) == EPOCH + replays
    return dict(backend=backend, graph=graph, replays=replays, shape=f"{batch}x{length}x{width}", fresh_masks=fresh,
                bit_exact=exact, gathered=gathered_right, epoch_advanced=advanced,
                ok=fresh and exact and gathered_right and advanced)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--replays", type=int, default=4)
    parser.add_argument("--out", help="the JSON record")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    batch, length, width = (64, 512, 768) if device.type == "cuda" else (4, 64, 32)
    records = []
    for backend in ("cuda", "triton") if device.type == "cuda" else ("cpp", "triton"):
        why = fastmask.backends.why_unavailable(backend, device.type)
        if why is not None:
            records.append(dict(backend=backend, ok=False, error=f"unavailable: {why}"))
            continue
        try:
            records.append(check(backend, device, args.replays, batch, length, width))
        except Exception as exc:  # a sync under capture, a capture error: recorded, then the next backend
            traceback.print_exc()
            records.append(dict(backend=backend, ok=False, error=f"{type(exc).__name__}: {exc}"))
        print(json.dumps(records[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=2)
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
