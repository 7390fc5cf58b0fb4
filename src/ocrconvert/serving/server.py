"""A real NVIDIA Triton Inference Server on this machine: the ``tritonserver`` binary that the ``nvidia-pytriton``
wheel bundles (with the Python backend and one stub per Python version), taken from the wheel as data.

The wheel is fetched by exact pin and sha256 into the cache and never installed (it pins numpy < 2, which this
project's stack cannot take). :class:`TritonServer` runs it the way PyTriton does: its libraries on
``LD_LIBRARY_PATH``, the stub built for this interpreter's Python, and a small environment for that stub (numpy 1.26
first, then this interpreter's import path) — bound to 127.0.0.1 on free ports, in its own process group, ready
within a bounded wait, and stopped (SIGTERM, then SIGKILL to the group) by ``stop()`` / the context manager.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from ..errors import ConversionError, UsageError

log = logging.getLogger(__name__)

TRITON_WHEEL = "nvidia-pytriton==0.7.0"
TRITON_WHEEL_SHA256 = "21f063ff93bb426d0c06b7a55e7eb9efcfe62c0dddd9a908e9877e18710128df"
_MEMBERS = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")
STUB_NUMPY = "numpy==1.26.4"
STUB_NUMPY_SHA256 = {"3.11": "666dbfb6ec68962c033a450943ded891bed2d54e6755e35e5835d63f4f6931d5"}


def server_dist(progress: Callable[[str], None] | None = None) -> Path:
    """The extracted server for this Python (``bin/tritonserver``, ``backends/``, ``libs/``), from the cache."""
    from ..zoo.fetch import cache_dir, fetch_wheel

    say = progress or (lambda m: None)
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    dest = cache_dir() / "tritonserver" / f"{TRITON_WHEEL.replace('==', '-')}-py{py}"
    if (dest / "bin" / "tritonserver").is_file() and (dest / "backends" / "python" / "triton_python_backend_stub").is_file():
        return dest
    wheel = fetch_wheel(TRITON_WHEEL, TRITON_WHEEL_SHA256, say)
    say(f"extracting tritonserver from {wheel.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".ocx-triton.", dir=dest.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if not member.startswith(_MEMBERS) or member.endswith("/"):
                    continue
                rel = member[len("pytriton/tritonserver/"):] if member.startswith(_MEMBERS[0]) \
                    else "libs/" + member[len(_MEMBERS[1]):]
                target = stage / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        stub = stage / "python_backend_stubs" / py / "triton_python_backend_stub"
        if not stub.is_file():
            raise UsageError(f"{TRITON_WHEEL} has no Python-backend stub for Python {py}",
                             hint="Run with a Python it ships a stub for (3.8 - 3.13).")
        shutil.copy2(stub, stage / "backends" / "python" / "triton_python_backend_stub")
        for exe in (stage / "bin" / "tritonserver", stage / "backends" / "python" / "triton_python_backend_stub"):
            exe.chmod(0o755)
        _publish(stage, dest, dest / "bin" / "tritonserver")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest


def _publish(stage: Path, dest: Path, marker: Path) -> None:
    """``stage`` renamed to ``dest``; another process that published it first (a complete ``marker``) wins."""
    if marker.is_file():
        return
    shutil.rmtree(dest, ignore_errors=True)
    try:
        stage.rename(dest)
    except OSError:
        if not marker.is_file():
            raise


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stub_env(progress: Callable[[str], None] | None = None) -> Path:
    """A Python environment for the Python-backend stub: this interpreter, numpy < 2 first, then this interpreter's
    own import path (its site-packages and ocrconvert). The stub is built against numpy 1.x: under numpy 2 it
    reads and writes tensors as zeros (measured: every input arrived as zeros, every output as 0 bytes)."""
    import hashlib

    from ..zoo.fetch import cache_dir, fetch_wheel

    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pin = STUB_NUMPY_SHA256.get(py)
    if pin is None:
        raise UsageError(f"no numpy<2 wheel is pinned for Python {py} (the Triton Python-backend stub needs one)",
                         hint=f"Run with Python {' or '.join(STUB_NUMPY_SHA256)}.")
    paths = [p for p in sys.path if p and Path(p).is_dir() and not p.startswith(sys.base_prefix)]
    key = hashlib.sha256("\n".join([sys.executable, STUB_NUMPY, *paths]).encode()).hexdigest()[:12]
    dest = cache_dir() / "tritonserver" / f"stub-env-py{py}-{key}"
    site = dest / "lib" / f"python{py}" / "site-packages"
    if (site / "ocrconvert-paths.pth").is_file():
        return dest
    wheel = fetch_wheel(STUB_NUMPY, pin, progress or (lambda m: None))
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".ocx-stubenv.", dir=dest.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(stage)], check=True, capture_output=True)
        site_stage = stage / "lib" / f"python{py}" / "site-packages"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site_stage)
        (site_stage / "ocrconvert-paths.pth").write_text("\n".join(paths) + "\n", encoding="utf-8")
        # venv scripts name the staging path; the stub only needs bin/python and site-packages
        _publish(stage, dest, site / "ocrconvert-paths.pth")
    except subprocess.CalledProcessError as exc:
        raise ConversionError(f"could not create the stub's Python environment: {exc.stderr.decode()[-300:]}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest


def server_env(dist: Path, stub: Path) -> dict[str, str]:
    """The server's environment as PyTriton sets it: its libraries on LD_LIBRARY_PATH, and the stub's Python first
    on PATH (the embedded interpreter finds its prefix, so its site-packages, from the ``python`` on PATH)."""
    env = dict(os.environ)
    libs = [str(dist / "libs")]
    base_lib = Path(sys.base_prefix) / "lib"
    if any(base_lib.glob("libpython3*.so*")):
        libs.insert(0, str(base_lib))  # the stub embeds this interpreter's libpython, not the system's
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    env["PATH"] = os.pathsep.join([str(stub / "bin"), env.get("PATH", "")])
    for var in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(var, None)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONWARNINGS"] = "ignore"
    return env


class TritonServer:
    """``tritonserver`` on ``repository`` at 127.0.0.1 (HTTP, gRPC, metrics on free ports); a context manager.

    ``start()`` waits (at most ``ready_timeout`` s) until the server and every model are ready, else stops it and
    raises with the log's tail; ``kill()`` SIGKILLs its process group (as a crash would); ``stop()`` ends it."""

    def __init__(self, repository, *, log_path=None, ready_timeout: float = 180.0,
                 progress: Callable[[str], None] | None = None):
        self.repository = Path(repository).absolute()
        if not self.repository.is_dir():
            raise UsageError(f"{self.repository} is not a model repository folder")
        self.ready_timeout = ready_timeout
        self.log_path = Path(log_path) if log_path else None
        self.progress = progress
        self.proc: subprocess.Popen | None = None
        self.http_port = self.grpc_port = self.metrics_port = None
        self._log_file = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> "TritonServer":
        dist = server_dist(self.progress)
        stub = stub_env(self.progress)
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        cmd = [str(dist / "bin" / "tritonserver"), "--model-repository", str(self.repository),
               "--backend-directory", str(dist / "backends"),
               "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
               "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
               "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
               "--allow-metrics", "true", "--exit-timeout-secs", "10", "--log-verbose", "0"]
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=server_env(dist, stub), stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise ConversionError(f"tritonserver exited with code {self.proc.returncode} while starting: {tail}",
                                      hint=f"The whole log is {self.log_path}.")
            if self.ready():
                return self
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise ConversionError(f"tritonserver was not ready within {self.ready_timeout:.0f} s: {tail}",
                              hint=f"The whole log is {self.log_path}.")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""
        return " | ".join(ln.strip() for ln in text.splitlines()[-lines:] if ln.strip())

    def _signal(self, sig) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the server and its stubs (its process group), as a crash would."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=30)
        if self.proc is not None:  # stubs left behind in the group
            self._signal(signal.SIGKILL)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
