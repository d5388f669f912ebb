"""End-to-end tests of cloud-janitor against the simulated Proxmox VE, driven through a real Proxmox
client library (proxmoxer) as a CI job would: create CI-like guests, run `cloud-janitor once`, and
check the result through proxmoxer, plus the exit code and the report.

Owns its fixtures (the `pve_*` ones below) and does not use conftest.py or helpers.py, which serve the
OpenStack tests: run it with `--noconftest` (as .ci/proxmox-e2e.sh does). Where proxmoxer is not
installed (the OpenStack test venv) the module is skipped.

Environment: JANITOR_BIN (default target/debug/cloud-janitor).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

proxmoxer = pytest.importorskip("proxmoxer")
requests = pytest.importorskip("requests")
from proxmoxer import ProxmoxAPI  # noqa: E402
from proxmoxer.core import ResourceException  # noqa: E402
from proxmoxer.tools import Tasks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CI_TAG = "ci-janitor-test"
CLOUD = "pve-ci"
# Every janitor run, simulator start and task wait here ends within these bounds.
START_TIMEOUT = 60.0
ONCE_TIMEOUT = 180.0
TASK_TIMEOUT = 30


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def janitor_bin() -> Path:
    return Path(os.environ.get("JANITOR_BIN", REPO / "target" / "debug" / "cloud-janitor"))


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Polls `probe` until it returns a truthy value; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def janitor_env() -> dict:
    """The environment without CLOUD_JANITOR_* overrides that would change the test's config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUD_JANITOR_")}
    env["CLOUD_JANITOR_LOG"] = "warn"
    return env


@dataclasses.dataclass
class PveSim:
    """A running `cloud-janitor simulate --proxmox-listen`, as its printed lines describe it."""

    url: str
    host: str
    port: int
    token_id: str
    secret_file: Path
    ca_file: Path
    config_out: Path
    workdir: Path

    def api(self) -> ProxmoxAPI:
        user, token_name = self.token_id.split("!", 1)
        return ProxmoxAPI(
            self.host,
            port=self.port,
            user=user,
            token_name=token_name,
            token_value=self.secret_file.read_text().strip(),
            verify_ssl=str(self.ca_file),
            timeout=10,
        )

    def janitor_config(self, extra: str = "") -> Path:
        """A config with only the Proxmox cloud (the OpenStack part of simulate's is left out)."""
        path = self.workdir / "pve-janitor.toml"
        path.write_text(
            f"""# cloud-janitor config for the proxmoxer end-to-end tests: the simulated Proxmox VE only.
schedule = "0 */10 * * * *"
listen = "127.0.0.1:0"
pass_timeout = "2m"
state_file = "{self.workdir / 'state.json'}"

[retry]
max_attempts = 4
base_delay = "200ms"
max_delay = "1s"

[waits]
busy_timeout = "5s"
delete_timeout = "30s"
poll_interval = "100ms"

[[clouds]]
name = "{CLOUD}"
type = "proxmox"
url = "{self.url}"
token_id = "{self.token_id}"
token_secret_file = "{self.secret_file}"
ca_file = "{self.ca_file}"
poll_interval = "100ms"
task_timeout = "30s"
{extra}

[clouds.select]
tags_all = ["{CI_TAG}"]
"""
        )
        return path


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _parse_simulate_output(text: str) -> dict:
    patterns = {
        "url": r"^simulated Proxmox VE: (\S+) \(token (\S+)\)$",
        "secret_file": r"^token secret file: (.+)$",
        "ca_file": r"^Proxmox VE CA file: (.+)$",
    }
    found = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, text, re.MULTILINE)
        assert match, f"simulate printed no line matching {pattern!r}:\n{text}"
        found[key] = match.groups()
    return found


@pytest.fixture
def pve_sim(tmp_path):
    """`cloud-janitor simulate --empty --proxmox-listen 127.0.0.1:PORT` for one test, stopped after it."""
    binary = janitor_bin()
    if not binary.exists():
        pytest.exit(f"{binary} does not exist: run cargo build (or set JANITOR_BIN)", returncode=3)
    for attempt in range(3):  # a free port can be taken between the probe and the bind
        port = free_port()
        stdout_path = tmp_path / f"simulate-{attempt}.log"
        cmd = [str(binary), "simulate", "--listen", "127.0.0.1:0",
               "--clouds-yaml", str(tmp_path / "clouds.yaml"),
               "--config-out", str(tmp_path / "janitor.toml"),
               "--empty", "--proxmox-listen", f"127.0.0.1:{port}"]
        log(f"starting {' '.join(cmd)}")
        with open(stdout_path, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=REPO, env=janitor_env())

        def ready():
            text = stdout_path.read_text()
            return "serving until interrupted" in text or proc.poll() is not None

        try:
            wait_until("the simulator to serve", ready, timeout=START_TIMEOUT)
        except AssertionError:
            _stop(proc)
            raise
        text = stdout_path.read_text()
        if proc.poll() is None:
            break
        log(f"simulate exited with {proc.returncode}:\n{text}")
    else:
        raise AssertionError(f"the simulator did not start:\n{text}")
    try:
        found = _parse_simulate_output(text)
        url, token_id = found["url"]
        yield PveSim(
            url=url,
            host="127.0.0.1",
            port=port,
            token_id=token_id,
            secret_file=Path(found["secret_file"][0]),
            ca_file=Path(found["ca_file"][0]),
            config_out=tmp_path / "janitor.toml",
            workdir=tmp_path,
        )
    finally:
        _stop(proc)


@pytest.fixture
def pve(pve_sim):
    """A proxmoxer client of the simulated cluster, verifying its certificate with the CA file."""
    return pve_sim.api()


# ------------------------------------------------------------------------------------------ helpers
def wait_task(api: ProxmoxAPI, upid: str) -> dict:
    status = Tasks.blocking_status(api, upid, timeout=TASK_TIMEOUT, polling_interval=0.1)
    assert status is not None, f"task {upid} did not end within {TASK_TIMEOUT}s"
    assert status.get("exitstatus") == "OK", f"task {upid}: {status}"
    return status


def create_vm(api, node: str, vmid: int, name: str, tags: list[str] | None = None,
              storage: str = "local-lvm", start: bool = False, **extra) -> int:
    params = dict(vmid=vmid, name=name, memory=1024, cores=1, scsi0=f"{storage}:4",
                  net0="virtio,bridge=vmbr0", **extra)
    if tags:
        params["tags"] = ";".join(tags)
    if start:
        params["start"] = 1
    wait_task(api, api.nodes(node).qemu.create(**params))
    return vmid


def create_container(api, node: str, vmid: int, hostname: str, tags: list[str], start: bool) -> int:
    upid = api.nodes(node).lxc.create(
        vmid=vmid, hostname=hostname, tags=";".join(tags), rootfs="local-lvm:4", memory=512,
        ostemplate="local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        net0="name=eth0,bridge=vmbr0,ip=dhcp", start=int(start))
    wait_task(api, upid)
    return vmid


def guests(api) -> dict:
    """vmid -> the cluster resource entry of every guest."""
    return {g["vmid"]: g for g in api.cluster.resources.get(type="vm")}


def volids(api, node: str, storage: str) -> set:
    return {v["volid"] for v in api.nodes(node).storage(storage).content.get()}


def run_janitor(*args: str, timeout: float = ONCE_TIMEOUT) -> subprocess.CompletedProcess:
    cmd = [str(janitor_bin()), *args]
    log(f"running {' '.join(cmd)}")
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=janitor_env(),
                            cwd=REPO)
    log(f"exit {result.returncode} after {time.monotonic() - started:.1f}s\n{result.stdout}")
    if result.stderr.strip():
        log(f"stderr:\n{result.stderr}")
    return result


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name{labels}` in Prometheus text, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


# -------------------------------------------------------------------------------------------- tests
@pytest.mark.timeout(300)
def test_simulate_serves_https_and_writes_a_janitor_config_that_trusts_its_ca(pve_sim, pve):
    assert pve_sim.url.startswith("https://127.0.0.1:"), pve_sim.url
    assert pve.version.get()["version"]
    text = pve_sim.config_out.read_text()
    assert f'ca_file = "{pve_sim.ca_file}"' in text, text
    assert f'url = "{pve_sim.url}"' in text, text
    # Without the CA the certificate is refused: the file is what makes TLS work.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{pve_sim.url}/version", timeout=10)
    # And `plan` with that config reaches the cluster over TLS (exit 0: every cloud was listed).
    result = run_janitor("plan", "--config", str(pve_sim.config_out))
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(300)
def test_once_destroys_the_ci_guests_created_through_proxmoxer_and_keeps_the_rest(pve_sim, pve):
    job = [CI_TAG, "job-4711"]
    # What an interrupted CI job leaves: running VMs on both nodes (one on shared storage) and a
    # running container, all tagged by the job.
    ci_guests = {
        "vm": [create_vm(pve, "pve1", 990, "ci-k8s-node-1", job, start=True),
               create_vm(pve, "pve2", 991, "ci-k8s-node-2", job, storage="ceph", start=True)],
        "container": [create_container(pve, "pve1", 992, "ci-runner-cache", job, start=True)],
    }
    # What must survive: an untagged VM, a protected and a template with the CI tag, and one with the
    # protect tag.
    untagged = create_vm(pve, "pve1", 993, "prod-db", start=True)
    protected = create_vm(pve, "pve1", 994, "ci-keep-me", job, protection=1)
    template = create_vm(pve, "pve2", 9000, "ci-template", job, template=1)
    keep_tagged = create_vm(pve, "pve1", 995, "ci-debug-me", [*job, "keep"], start=True)
    survivors = {untagged, protected, template, keep_tagged}
    doomed = {*ci_guests["vm"], *ci_guests["container"]}

    before = guests(pve)
    assert set(before) == survivors | doomed
    for vmid in (990, 991, 992, 993):
        assert before[vmid]["status"] == "running", before[vmid]
    assert before[template]["template"] == 1
    assert "vm-990-disk-0" in {v.split(":", 1)[1] for v in volids(pve, "pve1", "local-lvm")}

    # A dry run first: lists the work, deletes nothing.
    config = pve_sim.janitor_config()
    plan = run_janitor("plan", "--config", str(config))
    assert plan.returncode == 0, plan.stderr
    for name in ("ci-k8s-node-1", "ci-k8s-node-2", "ci-runner-cache"):
        assert name in plan.stdout, plan.stdout
    assert set(guests(pve)) == survivors | doomed, "plan deleted nothing"

    metrics_file = pve_sim.workdir / "metrics.prom"
    result = run_janitor("once", "--config", str(config), "--metrics-file", str(metrics_file))
    assert result.returncode == 0, f"exit 0: nothing selected is left\n{result.stdout}\n{result.stderr}"
    first_line = result.stdout.splitlines()[0]
    assert re.match(r"pass 1 clean in [\d.]+s: 3 deleted, 0 already gone, 0 left, \d+ not selected",
                    first_line), result.stdout
    assert "Left in place" not in result.stdout, result.stdout
    assert re.search(rf"^{CLOUD}\s+vm\s+2\s+0\s+0\s+", result.stdout, re.MULTILINE), result.stdout
    assert re.search(rf"^{CLOUD}\s+container\s+1\s+0\s+0\s+", result.stdout, re.MULTILINE), result.stdout

    # Through proxmoxer: every tagged, unprotected, non-template guest is gone, with its disks.
    after = guests(pve)
    assert set(after) == survivors, after
    for vmid in doomed:
        kind = "lxc" if vmid in ci_guests["container"] else "qemu"
        node = "pve2" if vmid == 991 else "pve1"
        with pytest.raises(ResourceException) as gone:
            getattr(pve.nodes(node), kind)(vmid).status.current.get()
        assert "does not exist" in str(gone.value), gone.value
    assert not {v for v in volids(pve, "pve1", "local-lvm") if re.search(r"vm-99[02]-disk-", v)}
    assert not {v for v in volids(pve, "pve1", "ceph") if "vm-991-disk-" in v}
    # The survivors are as they were: the running ones still run, their disks are there.
    for vmid in (untagged, keep_tagged):
        assert pve.nodes("pve1").qemu(vmid).status.current.get()["status"] == "running"
    assert pve.nodes("pve1").qemu(protected).config.get()["protection"] in (1, "1")
    assert {f"local-lvm:vm-{untagged}-disk-0", f"local-lvm:vm-{protected}-disk-0"} <= volids(
        pve, "pve1", "local-lvm")

    metrics = metrics_file.read_text()
    assert metric(metrics, "cloud_janitor_deletes_total", cloud=CLOUD, kind="vm", outcome="deleted") == 2
    assert metric(metrics, "cloud_janitor_deletes_total", cloud=CLOUD, kind="container",
                  outcome="deleted") == 1
    assert metric(metrics, "cloud_janitor_passes_total", result="clean") == 1
    assert metric(metrics, "cloud_janitor_cloud_up", cloud=CLOUD) == 1

    # A second pass finds nothing left to do.
    again = run_janitor("once", "--config", str(config))
    assert again.returncode == 0, again.stdout
    assert re.match(r"pass 2 clean in [\d.]+s: 0 deleted", again.stdout), again.stdout
    assert set(guests(pve)) == survivors


@pytest.mark.timeout(300)
def test_a_guest_under_backup_lock_is_left_alone_and_cleaned_once_unlocked(pve_sim, pve):
    vmid = create_vm(pve, "pve1", 996, "ci-backed-up", [CI_TAG, "job-4712"], start=True)
    pve.nodes("pve1").qemu(vmid).config.put(lock="backup")
    config = pve_sim.janitor_config()

    locked = run_janitor("once", "--config", str(config))
    assert locked.returncode == 0, "a locked guest is not selected, so nothing selected is left"
    assert re.match(r"pass 1 clean in [\d.]+s: 0 deleted, 0 already gone, 0 left, 1 not selected",
                    locked.stdout), locked.stdout
    assert vmid in guests(pve), "the locked guest survives"
    assert pve.nodes("pve1").qemu(vmid).status.current.get()["status"] == "running"

    # The backup ends and unlocks the guest: the next pass destroys it.
    pve.nodes("pve1").qemu(vmid).config.put(delete="lock", skiplock=1)
    unlocked = run_janitor("once", "--config", str(config))
    assert unlocked.returncode == 0, unlocked.stdout
    assert re.match(r"pass 2 clean in [\d.]+s: 1 deleted", unlocked.stdout), unlocked.stdout
    assert vmid not in guests(pve)


@pytest.mark.timeout(300)
def test_a_destroy_the_cluster_refuses_exits_1_and_names_the_guest_and_the_error(pve_sim, pve):
    doomed = create_vm(pve, "pve1", 997, "ci-gone", [CI_TAG], start=True)
    refused = create_vm(pve, "pve1", 998, "ci-refused", [CI_TAG])
    # The cluster refuses to destroy one guest, as a token without VM.Allocate on it would be refused.
    fault = {
        "method": "DELETE",
        "path": f"/nodes/pve1/qemu/{refused}",
        "status": 403,
        "body": f'{{"data": null, "message": "Permission check failed (/vms/{refused}, VM.Allocate)\\n"}}',
    }
    base = pve_sim.url.split("/api2/json")[0]
    answer = requests.post(f"{base}/_sim/faults", json=fault, verify=str(pve_sim.ca_file), timeout=10)
    assert answer.ok, answer.text

    metrics_file = pve_sim.workdir / "metrics.prom"
    config = pve_sim.janitor_config()
    result = run_janitor("once", "--config", str(config), "--metrics-file", str(metrics_file))
    assert result.returncode == 1, f"exit 1: a selected guest is left\n{result.stdout}\n{result.stderr}"
    assert re.match(r"pass 1 leftovers in [\d.]+s: 1 deleted, 0 already gone, 1 left", result.stdout), \
        result.stdout
    left = [line for line in result.stdout.splitlines() if "ci-refused" in line]
    assert len(left) == 1 and "Permission check failed" in left[0], result.stdout
    assert set(guests(pve)) == {refused}, "the other guest was still cleaned"
    assert doomed not in guests(pve)
    metrics = metrics_file.read_text()
    assert metric(metrics, "cloud_janitor_leftover_resources", cloud=CLOUD, kind="vm",
                  reason="permanent_error") == 1
    assert metric(metrics, "cloud_janitor_passes_total", result="leftovers") == 1
