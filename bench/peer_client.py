"""The driver's end of the peer worker: starts `bench/peers.py --serve` under the peers' Python and asks it for
timings, one JSON line each way."""

from __future__ import annotations

import json
import pathlib
import subprocess

PEERS_SCRIPT = pathlib.Path(__file__).resolve().parent / "peers.py"


class PeerError(RuntimeError):
    """The peer worker could not start or answered with an error."""


class Peer:
    """A running `peers.py --serve` process in the peers' environment (torch; no JAX).

    Use as a context manager; `measure(kind=..., repeats=..., **fields)` returns the worker's reply
    (`times_s`, `first_s` and what the workload reports, e.g. `params`).
    """

    def __init__(self, python: str | pathlib.Path):
        python = pathlib.Path(python)
        if not python.exists():
            raise PeerError(f"no peer Python at {python}; run `make bench-peers` to build .venv-peers")
        self._process = subprocess.Popen(
            [str(python), str(PEERS_SCRIPT), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.versions = self._ask({"kind": "versions"})

    def _ask(self, request: dict) -> dict:
        if self._process.poll() is not None:
            raise PeerError(f"the peer worker exited with code {self._process.returncode}")
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise PeerError("the peer worker closed its output; see its messages above")
        reply = json.loads(line)
        if "error" in reply:
            raise PeerError(f"peer workload {request.get('kind')!r} failed: {reply['error']}")
        return reply

    def measure(self, kind: str, repeats: int = 1, **fields) -> dict:
        return self._ask({"kind": kind, "repeats": repeats, **fields})

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
