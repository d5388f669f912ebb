"""Fixtures of cloud-janitor's end-to-end tests.

`JANITOR_E2E_TARGET` picks the cloud the tests run against:
- `sim` (default): `cloud-janitor simulate --empty` started for the session on 127.0.0.1:0; the tests use
  the `sim` entry of the clouds.yaml it writes (user demo, project demo).
- `real`: the stack from tests/real-openstack/up.sh; its clouds.yaml (`JANITOR_E2E_CLOUDS_YAML`, default
  /tmp/real-openstack/state/clouds.yaml) has clouds `demo`, `admin`, `other` and `demo-appcred`.
The janitor binary is `JANITOR_BIN` (default target/debug/cloud-janitor).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import openstack
import pytest
import yaml

import topology
from helpers import REPO, Tracker, janitor_bin, log, wait_until

TARGET = os.environ.get("JANITOR_E2E_TARGET", "sim")
if TARGET not in ("sim", "real"):
    raise pytest.UsageError(f"JANITOR_E2E_TARGET must be sim or real, not {TARGET!r}")


@dataclasses.dataclass
class Target:
    kind: str  # sim | real
    clouds_yaml: Path
    cloud: str  # the demo user's entry
    conn: object
    admin_conn: object | None
    other_conn: object | None
    project_id: str
    image_id: str
    flavor_id: str
    public_network_id: str
    shared_network_id: str | None
    has_block_storage: bool
    appcred_cloud: str | None = None


def connect(clouds_yaml: Path, cloud: str):
    config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)])
    conn = openstack.connection.Connection(config=config.get_one(cloud=cloud))
    conn.authorize()
    return conn


def cloud_names(clouds_yaml: Path) -> set:
    return set((yaml.safe_load(clouds_yaml.read_text()) or {}).get("clouds", {}))


def _start_simulator(workdir: Path):
    binary = janitor_bin()
    if not binary.exists():
        pytest.exit(f"{binary} does not exist: run cargo build (or set JANITOR_BIN)", returncode=3)
    clouds_yaml = workdir / "clouds.yaml"
    log_path = workdir / "simulate.log"
    cmd = [str(binary), "simulate", "--listen", "127.0.0.1:0", "--clouds-yaml", str(clouds_yaml),
           "--config-out", str(workdir / "janitor.toml"), "--empty"]
    log(f"starting {' '.join(cmd)}")
    log_file = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"simulator exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            return clouds_yaml.exists() and "sim" in cloud_names(clouds_yaml)
        except yaml.YAMLError:
            return False  # half-written

    wait_until("the simulator's clouds.yaml", ready, timeout=30, interval=0.1)
    return proc, clouds_yaml, log_path


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _first_image(conn) -> str | None:
    """`fake-img` or else any image, when the target has an image service."""
    try:
        if not conn.has_service("image"):
            return None
        images = list(conn.image.images())
    except Exception:  # noqa: BLE001 - no image service in the catalog, or it fails
        return None
    named = [i for i in images if i.name == "fake-img"]
    return (named or images)[0].id if images else None


def _flavor(conn) -> str:
    try:
        flavors = list(conn.compute.flavors())
    except Exception:  # noqa: BLE001
        return "1"
    ids = [f.id for f in flavors]
    return "1" if "1" in ids or not ids else ids[0]


@pytest.fixture(scope="session")
def target(tmp_path_factory):
    sim_proc = None
    sim_log = None
    if TARGET == "sim":
        workdir = tmp_path_factory.mktemp("sim")
        sim_proc, clouds_yaml, sim_log = _start_simulator(workdir)
        names = cloud_names(clouds_yaml)
        cloud = "sim"
        admin_cloud = next((n for n in ("sim-admin", "admin") if n in names), None)
        other_cloud = next((n for n in ("sim-other", "other") if n in names), None)
        appcred_cloud = next((n for n in ("sim-appcred",) if n in names), None)
        stack = {}
    else:
        clouds_yaml = Path(os.environ.get("JANITOR_E2E_CLOUDS_YAML", "/tmp/real-openstack/state/clouds.yaml"))
        if not clouds_yaml.exists():
            pytest.exit(f"{clouds_yaml} does not exist: run tests/real-openstack/up.sh first", returncode=3)
        stack_json = clouds_yaml.parent / "stack.json"
        stack = json.loads(stack_json.read_text()) if stack_json.exists() else {}
        cloud, admin_cloud, other_cloud, appcred_cloud = "demo", "admin", "other", "demo-appcred"
    try:
        conn = connect(clouds_yaml, cloud)
        admin = connect(clouds_yaml, admin_cloud) if admin_cloud else None
        other = connect(clouds_yaml, other_cloud) if other_cloud else None
        project_id = conn.current_project_id
        public = list(conn.network.networks(name="public", is_router_external=True))
        assert public, "no external network named public"
        shared = stack.get("shared_network")
        if not shared:
            candidates = [n for n in conn.network.networks(is_shared=True)
                          if not n.is_router_external and n.project_id != project_id]
            shared = candidates[0].id if candidates else None
        image = stack.get("image") or os.environ.get("JANITOR_E2E_IMAGE") or _first_image(conn) \
            or "00000000-0000-0000-0000-000000000001"
        t = Target(kind=TARGET, clouds_yaml=clouds_yaml, cloud=cloud, conn=conn, admin_conn=admin,
                   other_conn=other, project_id=project_id, image_id=image,
                   flavor_id=stack.get("flavor") or _flavor(conn), public_network_id=public[0].id,
                   shared_network_id=shared, has_block_storage=conn.has_service("block-storage"),
                   appcred_cloud=appcred_cloud)
        log(f"target {TARGET}: {clouds_yaml} cloud {cloud} (admin: {admin_cloud}, other: {other_cloud}), "
            f"block storage: {t.has_block_storage}, shared network: {shared}")
        yield t
    finally:
        if sim_proc is not None:
            _stop(sim_proc)
            if os.environ.get("JANITOR_E2E_SHOW_SIM_LOG") and sim_log:
                print(sim_log.read_text()[-20000:])


@pytest.fixture
def tracker(target, request):
    """Deletes everything the test created at teardown, pass or fail, so failures do not cascade."""
    tr = Tracker(conn=target.conn, admin=target.admin_conn,
                 owners={"other": target.other_conn} if target.other_conn else {})
    yield tr
    tr.cleanup()


@pytest.fixture
def job_tag():
    return topology.new_tag()


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


def pytest_report_header(config):
    return [f"cloud-janitor e2e target: {TARGET}, janitor: {janitor_bin()}"]
