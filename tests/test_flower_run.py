"""The Flower app in ``examples/flower-app`` run with ``flwr run``, as a user would: against a
SuperLink in simulation mode (Ray backend, two virtual SuperNodes) and against a localhost
deployment (a SuperLink and two SuperNodes, partition-id 0 and 1). Both give the in-process
simulator's ``result.json`` numbers.

Slow (real Flower processes, a minute or two each) and offline: every process is started on free
localhost ports with its own ``FLWR_HOME`` under the test's tmp_path, and stopped (SIGTERM, then
SIGKILL) together with whatever it started, pass or fail.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import TINY, run_tiny
from test_flower import _same_numbers

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parents[1] / "examples" / "flower-app"
BIN = Path(sys.executable).parent  # flwr, flower-superlink, flower-supernode, flower-superexec
START_TIMEOUT_S = 120.0  # a process's /health answering 200
RUN_TIMEOUT_S = 1200.0  # `flwr run --stream` returning (Ray start-up is slow on a busy machine)
STOP_TIMEOUT_S = 30.0  # SIGTERM -> exit (Flower takes ~9 s), then SIGKILL


@pytest.fixture(autouse=True)
def _tiny_threads(one_thread):
    yield


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flower_env(home):
    """The environment of every Flower process: its own FLWR_HOME, no dependency installation,
    telemetry or update check, one torch thread, nothing downloaded."""
    env = dict(os.environ)
    env.update(FLWR_HOME=str(home), FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
               FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def _tail(path, n=3000):
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class Processes:
    """Flower processes started by a test, each logging to a file; ``stop`` ends them and every
    process they started (the SuperLink's and SuperNodes' SuperExec run in sessions of their own,
    Ray in the simulation's)."""

    def __init__(self, logs):
        self.logs, self.started = logs, []

    def start(self, name, args, *, env, cwd):
        log = self.logs / f"{name}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=fh,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.started.append((name, proc, log))
        return proc

    def wait_healthy(self, name, port):
        proc, log = next((p, lg) for n, p, lg in self.started if n == name)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        pytest.fail(f"{name} not healthy on port {port} after {START_TIMEOUT_S:g} s:\n"
                    f"{_tail(log)}")

    def stop(self):
        family = []
        for _, proc, _ in self.started:
            try:
                family += psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for _, proc, _ in reversed(self.started):  # SuperNodes first, then the SuperLink
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in self.started:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)
        for p in alive:  # what a stopped process left behind (e.g. a run cut short)
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


def _connection(home, name, port):
    """A ``$FLWR_HOME/config.toml`` with one SuperLink connection, the default."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')


def _flwr_run(connection, *, out, env, cwd, logs, extra=()):
    """``flwr run examples/flower-app <connection> --stream`` with the tiny run's overrides;
    returns ``out/result.json``."""
    run_config = f'set="{"; ".join(TINY)}" out="{out}"'
    log = logs / "flwr-run.log"
    with log.open("wb") as fh:
        done = subprocess.run([str(BIN / "flwr"), "run", str(APP), connection, "--stream",
                               "--run-config", run_config, *extra],
                              stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                              timeout=RUN_TIMEOUT_S)
    result = Path(cwd) / out / "result.json"
    assert done.returncode == 0 and result.is_file(), (
        f"flwr run exited with {done.returncode}, {result} "
        f"{'written' if result.is_file() else 'missing'}:\n{_tail(log)}")
    return json.loads(result.read_text())


def test_flwr_run_on_a_simulation_superlink_gives_the_simulators_numbers(tmp_path, processes):
    home, port = tmp_path / "flwr-home", _free_port()
    env = _flower_env(home)
    _connection(home, "sim", port)
    processes.start("superlink", ["flower-superlink", "--insecure", "--simulation",
                                  "--host", "127.0.0.1", "--port", str(port)],
                    env=env, cwd=tmp_path)
    processes.wait_healthy("superlink", port)

    # `out` relative: the ServerApp takes it against the SuperLink's working directory
    result = _flwr_run("sim", out="flower-sim", env=env, cwd=tmp_path, logs=tmp_path,
                       extra=["--federation-config",
                              "num-supernodes=2 client-resources-num-cpus=1"])

    plain, _ = run_tiny(tmp_path)
    assert result["status"] == "ok"
    assert _same_numbers(result, plain)


def test_flwr_run_on_a_localhost_deployment_gives_the_simulators_numbers(tmp_path, processes):
    home, port = tmp_path / "flwr-home", _free_port()
    env = _flower_env(home)
    _connection(home, "local-deployment", port)
    processes.start("superlink", ["flower-superlink", "--insecure",
                                  "--host", "127.0.0.1", "--port", str(port)],
                    env=env, cwd=tmp_path)
    processes.wait_healthy("superlink", port)
    node_ports = {}
    for partition in (0, 1):
        node_ports[partition] = _free_port()
        processes.start(f"supernode-{partition}",
                        ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}",
                         "--port", str(node_ports[partition]),
                         "--node-config", f"partition-id={partition} num-partitions=2"],
                        env=env, cwd=tmp_path)
    for partition, node_port in node_ports.items():
        processes.wait_healthy(f"supernode-{partition}", node_port)

    result = _flwr_run("local-deployment", out=tmp_path / "flower-deployment", env=env,
                       cwd=tmp_path, logs=tmp_path)

    plain, _ = run_tiny(tmp_path)
    assert result["status"] == "ok"
    assert _same_numbers(result, plain)

