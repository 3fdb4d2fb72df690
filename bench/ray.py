"""Ray executor benchmark: a CPU-bound pipeline on the local executor and on Ray.

The pipeline runs local NER (spaCy) and embeddings (MiniLM) over N generated
documents, the two fan-outs side by side. It runs:

- ``local``: the default in-process executor (models in this process, worker threads);
- ``ray x1``: the ray executor, each model in one Ray actor;
- ``ray x2``: the ray executor, each model in two Ray actors (calls round-robin).

Ray's cluster start and model loading are paid once in a warm-up run and excluded
from the timings; the tables report steady-state throughput. A second table gives
the per-step overhead Ray adds, from a map of zero-work steps.

    python bench/ray.py [--docs 500] [--trivial 300]

Writes bench/results/ray.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

# This file is named like the package it measures: keep its folder off the path so
# that `import ray` finds Ray, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import anyio  # noqa: E402

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, loopback-only cluster
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep the local Ray on 127.0.0.1
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from legato.engine import Pipeline  # noqa: E402
from legato.spec import load_pipeline  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ray.json"

SPEC = """
name: ner_embed
inputs:
  docs: {type: list}
steps:
  entities:
    task: ner
    with: {text: "${inputs.docs}"}
    map: text
    max_concurrency: 64
  embedding:
    task: embed
    with: {text: "${inputs.docs}"}
    map: text
    max_concurrency: 64
"""

PEOPLE = ["Maria Lopez", "John Smith", "Aiko Tanaka", "Omar Haddad", "Lena Fischer", "Carlos Mendes"]
ORGS = ["Acme Corp", "Harbor Bank", "Riverside Council", "Northwind Traders", "Globex", "Initech"]
PLACES = ["Paris", "Toronto", "Osaka", "Nairobi", "Berlin", "Lima"]
VERBS = ["met with", "signed a contract with", "criticised", "praised", "visited", "hired"]


def documents(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = [
            f"{rng.choice(PEOPLE)} {rng.choice(VERBS)} {rng.choice(ORGS)} in {rng.choice(PLACES)} "
            f"on {rng.randint(1, 28)} March, discussing a budget of {rng.randint(2, 90)} million dollars."
            for _ in range(rng.randint(3, 6))
        ]
        docs.append(" ".join(sentences))
    return docs


def count(entities: list[list[dict[str, Any]]], embedding: list[list[float]]) -> dict[str, int]:
    return {"documents": len(entities), "entities": sum(len(e) for e in entities), "vectors": len(embedding)}


async def timed(pipeline: Pipeline, executor: Any, docs: list[str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    result = await pipeline.run(docs=docs, executor=executor)
    elapsed = time.perf_counter() - start
    result.raise_for_status()
    return elapsed, result.outputs["counts"]


def trivial_pipeline() -> Pipeline:
    p = Pipeline("trivial")

    @p.step
    def items(n: int) -> list[int]:
        return list(range(n))

    @p.step(map="items", max_concurrency=64)
    def touch(items: int) -> int:
        return items

    return p


async def overhead(executor: Any, n: int) -> float:
    p = trivial_pipeline()
    await p.run(n=8, executor=executor)  # warm: workers started, functions shipped
    start = time.perf_counter()
    result = await p.run(n=n, executor=executor)
    result.raise_for_status()
    return (time.perf_counter() - start) / n * 1e6


async def main(n_docs: int, n_trivial: int) -> dict[str, Any]:
    from legato.executors.local import LocalExecutor
    from legato.executors.ray import RayExecutor

    docs = documents(n_docs)
    pipeline = load_pipeline(SPEC)
    pipeline.step(name="counts")(count)
    rows: list[dict[str, Any]] = []

    local = LocalExecutor()
    await timed(pipeline, local, docs[:16])  # load the models in this process
    wall, counts = await timed(pipeline, local, docs)
    rows.append({"executor": "local (asyncio + threads)", "wall_s": wall, "docs_per_s": n_docs / wall})

    import ray

    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    for replicas in (1, 2):
        executor = RayExecutor(actor_replicas=replicas)
        await timed(pipeline, executor, docs[:16])  # actors start and load their models
        wall, ray_counts = await timed(pipeline, executor, docs)
        assert ray_counts == counts, (ray_counts, counts)
        rows.append({"executor": f"ray, {replicas} actor(s) per model", "wall_s": wall, "docs_per_s": n_docs / wall})
        executor.shutdown()
    base = rows[0]["docs_per_s"]
    for row in rows:
        row["speedup_vs_local"] = row["docs_per_s"] / base
    two = rows[2]["docs_per_s"] / rows[1]["docs_per_s"]

    local_us = await overhead(LocalExecutor(), n_trivial)
    ray_us = await overhead(RayExecutor(), n_trivial)
    ray.shutdown()
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "documents": n_docs,
        "counts": counts,
        "throughput": rows,
        "scaling_efficiency_1_to_2_actors": two / 2,
        "per_step_us": {"local": local_us, "ray": ray_us, "ray_added": ray_us - local_us},
    }


def report(data: dict[str, Any]) -> None:
    print(f"\nNER + embeddings over {data['documents']} documents ({data['machine']['cpus']} CPUs)\n")
    print(f"{'executor':<32} {'wall s':>8} {'docs/s':>8} {'vs local':>9}")
    for row in data["throughput"]:
        print(f"{row['executor']:<32} {row['wall_s']:>8.2f} {row['docs_per_s']:>8.1f} {row['speedup_vs_local']:>8.2f}x")
    print(f"\nscaling efficiency 1 -> 2 actors per model: {data['scaling_efficiency_1_to_2_actors']:.0%}")
    step = data["per_step_us"]
    print(f"\nper-step cost of a zero-work step: local {step['local']:.0f} us, ray {step['ray']:.0f} us")
    print(f"Ray adds {step['ray_added']:.0f} us per step\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--trivial", type=int, default=300)
    args = parser.parse_args()
    data = anyio.run(main, args.docs, args.trivial)
    report(data)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {RESULTS}")
