"""The workspace on disk (default ``~/.fisherlab``): datasets, models, embeddings, decoders,
extractors and results written atomically; trained runs and their logs; decoders and
feature extractors saved per embedding; background jobs. No maths of its own.
"""

from .checkpoints import checkpoint_dir, discard_run, interrupted_runs
from .decoders import (
    decoded_embeddings,
    edit_scores,
    extractor_entry,
    extractor_name,
    fid_curves,
    load_embedding_decoder,
    load_extractor,
    train_embedding_decoder,
    train_extractor,
)
from .distributed import distributed_fisher_scores
from .extract import CHUNKED_KINDS, ArrayRows, chunked_embedding, partial_folder
from .importer import import_dataset
from .jobs import Job, JobRegistry, JobSnapshot
from .names import derived_name
from .results import load_rows, result_key_name, save_rows
from .rows import DatasetRows
from .runs import (
    ModelRun,
    RunLog,
    best_model_name,
    data_config,
    list_models,
    load_saved_model,
    resume_run,
    saved_monitor,
    saved_samples,
    train_and_save,
)
from .store import KINDS, Entry, EntryError, Workspace, check_name, default_root
from .sweep import MONITOR_COLUMNS, SWEEP_CONFIGS, sweep_key, training_size_sweep

__all__ = [
    "KINDS",
    "MONITOR_COLUMNS",
    "SWEEP_CONFIGS",
    "Entry",
    "EntryError",
    "Job",
    "JobRegistry",
    "JobSnapshot",
    "ModelRun",
    "RunLog",
    "Workspace",
    "best_model_name",
    "checkpoint_dir",
    "check_name",
    "data_config",
    "decoded_embeddings",
    "default_root",
    "discard_run",
    "distributed_fisher_scores",
    "chunked_embedding",
    "import_dataset",
    "partial_folder",
    "CHUNKED_KINDS",
    "ArrayRows",
    "DatasetRows",
    "derived_name",
    "edit_scores",
    "extractor_entry",
    "extractor_name",
    "interrupted_runs",
    "fid_curves",
    "list_models",
    "load_embedding_decoder",
    "load_extractor",
    "load_rows",
    "load_saved_model",
    "result_key_name",
    "resume_run",
    "saved_monitor",
    "save_rows",
    "saved_samples",
    "train_and_save",
    "train_embedding_decoder",
    "sweep_key",
    "training_size_sweep",
    "train_extractor",
]
