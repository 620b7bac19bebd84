"""leaps.sweep across processes: torchrun ranks and killed-then-restarted sweeps give the same records
(job ids and per-job results) as one uninterrupted process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaps.sweep.manifest import read_records

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["sweep", "--model", "toy_r3d", "--stimuli", "toy:test:12", "--batch", "2", "--size", "16", "--frames", "4",
        "--steps", "10", "--quiet"]
JOBS = 12


def env():
    # One thread everywhere (torchrun's default for several processes), so float reductions agree.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}


def sweep_cmd(out, *launcher):
    return [sys.executable, *launcher, "-m", "leaps.sweep", *ARGS, "--out", str(out)]


def results(out):
    """job id -> what the job computed (not where or when)."""
    records = read_records(out)
    assert len(records) == len({r["job_id"] for r in records}), "a job was recorded twice"
    return {r["job_id"]: (r["status"], r["inversion_seed"], r["losses"], r["model_pred"]["probs"],
                          r["verifier_pred"]["probs"], r["frame_ssim"]) for r in records}


def assert_same_results(a, b):
    assert a.keys() == b.keys() and len(a) == JOBS
    for job, (status, seed, losses, pm, pv, ssim) in a.items():
        status_b, seed_b, losses_b, pm_b, pv_b, ssim_b = b[job]
        assert (status, seed) == (status_b, seed_b) == ("ok", seed)
        assert losses == pytest.approx(losses_b, rel=1e-4, abs=1e-6), job
        assert pm == pytest.approx(pm_b, abs=1e-5) and pv == pytest.approx(pv_b, abs=1e-5), job
        assert ssim == pytest.approx(ssim_b, abs=1e-5), job


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    subprocess.run(sweep_cmd(out), cwd=ROOT, env=env(), check=True, capture_output=True, timeout=300)
    return results(out)


def test_torchrun_two_ranks_match_one_process(tmp_path, reference):
    out = tmp_path / "out"
    done = subprocess.run(sweep_cmd(out, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (out / "manifests").iterdir()) == ["rank-0.jsonl", "rank-1.jsonl"]
    assert all(read_records(out)) and {r["worker"] for r in read_records(out)} == {0, 1}
    assert_same_results(results(out), reference)
    assert "| toy_r3d | leaps | 12 | 0 |" in done.stdout  # rank 0 printed the table of both ranks' work


def test_killed_sweep_restarts_to_the_same_records(tmp_path, reference):
    out = tmp_path / "out"
    manifest = out / "manifests" / "rank-0.jsonl"
    proc = subprocess.Popen(sweep_cmd(out), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(read_records(out))
    assert 0 < partial < JOBS, f"the kill came too late or too early ({partial} of {JOBS} jobs recorded)"
    with open(manifest, "ab") as f:  # as if killed in the middle of a write as well
        f.write(b'{"job_id": "half a line')
    subprocess.run(sweep_cmd(out), cwd=ROOT, env=env(), check=True, capture_output=True, timeout=300)
    assert_same_results(results(out), reference)
