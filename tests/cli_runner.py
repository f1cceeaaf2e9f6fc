"""Run a script in a real, separate process that starts with torch, Lightning and Hydra already
imported: a child of multiprocessing's fork server, which imported them once.

Importing torch + Lightning + Hydra takes 4-11 s of CPU per process on the CI machines; the tests
that must run the command line several times (interrupt and resume, concurrent runs) pay it once
per test worker this way instead of once per process. The child is a real process: its own
memory, files, signals, exit status and run folder; it only skips the imports. What it does not
see is what a fresh interpreter does at import time (warnings printed then, environment variables
read then: OpenMP's thread count is applied from ``OMP_NUM_THREADS`` by hand, MKL's settings are
not): the tests of those run the script with :func:`subprocess.run` (``conftest.run_script``).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOAD = ["cli_runner", "torch", "lightning", "hydra", "seqgen.runs", "seqgen.train", "sklearn.datasets"]  # + the digits recipes' data
_CONTEXT = None


def _context() -> multiprocessing.context.BaseContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _child(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """Run ``python *argv`` in this (forked) process and exit with the script's status."""
    import atexit
    import runpy
    import traceback

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for entry in reversed([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]):
        sys.path.insert(0, entry)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    if env.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    code = 0
    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 - the test's own snippet
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - as the interpreter would: print it, exit 1
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class Forked:
    """A started script; :meth:`result` waits for it and gives what ``subprocess.run`` would."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        self.args = list(args)
        self._dir = tempfile.mkdtemp(prefix="forked_")
        self._out, self._err = os.path.join(self._dir, "out"), os.path.join(self._dir, "err")
        self.process = _context().Process(target=_child, args=(self.args, str(cwd), dict(env), self._out, self._err))
        self.process.start()

    def result(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        """The exit status (-N when killed by signal N) and output; the output files are removed."""
        try:
            self.process.join(timeout)
            if self.process.exitcode is None:
                self.process.kill()
                self.process.join()
                raise subprocess.TimeoutExpired(self.args, timeout)
            stdout = Path(self._out).read_text(errors="replace")
            stderr = Path(self._err).read_text(errors="replace")
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return subprocess.CompletedProcess([sys.executable, *self.args], self.process.exitcode, stdout, stderr)


def run_forked(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *args], ...)`` in a process forked with the imports done.
    A process killed by signal N has return code -N, as with subprocess."""
    return Forked(args, cwd, env).result(timeout)
