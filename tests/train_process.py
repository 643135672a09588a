"""A real ``basicsr train`` process for the kill/resume tests, and the cleanup that never leaves one behind."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

from tests.conftest import REPO_ROOT

ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
_RUNNING: List[subprocess.Popen] = []


def kill_leftover_runs() -> None:
    """SIGKILL every process group a test started and did not finish (a failed assertion must not leave one)."""
    while _RUNNING:
        proc = _RUNNING.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class TrainProcess:
    """``basicsr train -opt train.yml ARGS`` in ``folder``, in its own process group (as a scheduler starts it), its
    output collected line by line in the background."""

    def __init__(self, folder: Path, *args: str, cmd: tuple = (sys.executable, '-m', 'restormer_arch'), env=None,
                 **popen) -> None:
        cmd = [*cmd, 'train', '-opt', 'train.yml', *args]
        self.proc = subprocess.Popen(cmd, cwd=folder, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True, **popen)
        _RUNNING.append(self.proc)
        self.lines: List[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, '')),
                                        daemon=True)
        self._reader.start()

    def log(self) -> str:
        return ''.join(self.lines)

    def last_iter(self) -> int:
        found = re.findall(r'iter:\s+(\d+), lr', self.log())
        return int(found[-1]) if found else 0

    def wait_for_iter(self, iteration: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while not re.search(rf'iter:\s+{iteration}, lr', self.log()):
            assert self.proc.poll() is None and time.time() < deadline, self.log()
            time.sleep(0.005)

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code
