"""The tune's one Optuna study, in a journal file (OUT/study.log) that any number of processes share,
and the worker locks that tell a live worker's running trial from one a killed process left behind."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path

from .errors import TuneError

STUDY_FILE = "study.log"
STUDY_NAME = "leaps-tune"
WORKER_DIR = "workers"


def journal_storage(out: Path):
    from optuna.storages import JournalStorage

    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return JournalStorage(JournalFileBackend(str(Path(out) / STUDY_FILE)))


def open_study(out: Path, sampler, maximise: bool, identity: dict):
    """Create the study once (every later process loads it); ``identity`` (the space, objective and
    fixed setup) must match the one it was created with: one OUT holds one tune."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=journal_storage(out), sampler=sampler, study_name=STUDY_NAME,
                                direction="maximize" if maximise else "minimize", load_if_exists=True)
    text = json.dumps(identity, sort_keys=True, default=str)
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", text)
    elif stored != text:
        raise TuneError(f"{out} holds another tune (other space, objective or setup); use a new --out")
    return study


class WorkerLock:
    """An exclusive lock on OUT/workers/<token>.lock held while this process works: the OS drops it
    when the process dies, however it dies."""

    def __init__(self, out: Path):
        self.dir = Path(out) / WORKER_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._file = open(self.dir / f"{self.token}.lock", "w")  # noqa: SIM115 - held for the process's work
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def worker_alive(out: Path, token: str) -> bool:
    """Whether the worker ``token`` still holds its lock (a missing lock file: not alive)."""
    path = Path(out) / WORKER_DIR / f"{token}.lock"
    try:
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False
