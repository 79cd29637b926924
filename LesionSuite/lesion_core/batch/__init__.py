"""Batch runs over a cohort: ``lesion-suite batch <task> --inputs DIR|CSV --out DIR``.

One case per image, each run through what ``<task> predict`` runs
(:mod:`lesion_core.tasks.cases`), its files in ``OUT/<case_id>/``; resumable, shardable
between machines that do not talk to each other, in K worker processes. One job per module:

* :mod:`.cohort`: the cases of a folder or a CSV table (torch-free);
* :mod:`.shard`: ``--shard I/N``, a deterministic 1/N of the cases (torch-free);
* :mod:`.records`: each case's record (its "done" marker), the folder's settings, events;
* :mod:`.summary`: the cohort summary CSV, and the merge of the shards' summaries;
* :mod:`.worker`: one worker process (the model loaded once, one case after another);
* :mod:`.pool`: K spawned workers that survive each other's deaths;
* :mod:`.run`: one run: what to skip, the workers, the records, the summary.

Nothing here imports torch until a worker starts.
"""

from __future__ import annotations

from .cohort import BatchCase, list_cases
from .records import CRASHED, DONE, FAILED, PENDING, STATE_FOLDER, BatchState, CaseRecord
from .run import BatchOutcome, BatchPlan, run_batch, threads_per_worker
from .shard import Shard
from .summary import merge_summaries, summary_path
from .worker import WorkerSetup

__all__ = ["BatchCase", "BatchOutcome", "BatchPlan", "BatchState", "CRASHED", "CaseRecord",
           "DONE", "FAILED", "PENDING", "STATE_FOLDER", "Shard", "WorkerSetup", "list_cases",
           "merge_summaries", "run_batch", "summary_path", "threads_per_worker"]
