"""Drives the simulated Proxmox VE through proxmoxer, a real Proxmox client library, to show that the
simulator speaks what proxmoxer speaks: API token auth and ticket auth (with CSRF tokens on writes)
over HTTPS (proxmoxer only builds https:// URLs, so the simulator serves TLS with a self-signed
certificate; verify_ssl points at it).

Usage: python3 check_proxmoxer.py HOST:PORT  (with PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET,
PROXMOX_USER, PROXMOX_PASSWORD, PROXMOX_CA_FILE in the environment, as `serve_proxmox` prints them).
Creates CI-like guests, checks them, and prints "N passed, 0 failed".
"""

import os
import sys
import time

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException


def wait_task(api, node, upid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.nodes(node).tasks(upid).status.get()
        if status.get("status") == "stopped" and "exitstatus" in status:
            return status["exitstatus"]
        time.sleep(0.05)
    raise AssertionError(f"task {upid} did not finish")


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8006"
    ca = os.environ.get("PROXMOX_CA_FILE", False)
    user, token_name = os.environ["PROXMOX_TOKEN_ID"].split("!")
    checks = []

    token_api = ProxmoxAPI(host, user=user, token_name=token_name,
                           token_value=os.environ["PROXMOX_TOKEN_SECRET"], verify_ssl=ca)
    ticket_api = ProxmoxAPI(host, user=os.environ["PROXMOX_USER"],
                            password=os.environ["PROXMOX_PASSWORD"], verify_ssl=ca)

    checks.append(("version", token_api.version.get()["version"].startswith("8.")))
    ticket_api.pools.post(poolid="ci-pool", comment="CI guests")

    # CI-like guests: a running tagged VM (token auth) and a container (ticket auth + CSRF).
    upid = token_api.nodes("pve1").qemu.post(vmid=3001, name="ci-job-3001", tags="CI;job-3001",
                                             scsi0="local-lvm:4", memory=2048, start=1, pool="ci-pool")
    checks.append(("vm create task", wait_task(token_api, "pve1", upid) == "OK"))
    upid = ticket_api.nodes("pve2").lxc.post(vmid=3002, hostname="ci-ct-3002", ostemplate="local:vztmpl/debian-12.tar.zst",
                                             rootfs="local-lvm:8", tags=f"ci;ci-created-{int(time.time()) - 7200}")
    checks.append(("ct create task", wait_task(ticket_api, "pve2", upid) == "OK"))

    vms = {g["vmid"]: g for g in token_api.cluster.resources.get(type="vm")}
    checks.append(("vm listed running", vms.get(3001, {}).get("status") == "running"))
    checks.append(("tags lower-cased", vms.get(3001, {}).get("tags") == "ci;job-3001"))
    checks.append(("pool", vms.get(3001, {}).get("pool") == "ci-pool"))
    config = token_api.nodes("pve1").qemu(3001).config.get()
    checks.append(("meta ctime", "ctime=" in config.get("meta", "")))
    checks.append(("disk allocated", config.get("scsi0", "").startswith("local-lvm:vm-3001-disk-0")))
    ticket_api.nodes("pve2").lxc(3002).config.put(description="left by job 3002")

    # Errors come back as proxmoxer's ResourceException with Proxmox's status and text.
    try:
        token_api.nodes("pve1").qemu(3001).delete(purge=1)
        checks.append(("running destroy refused", False))
    except ResourceException as error:
        checks.append(("running destroy refused", error.status_code == 500 and "is running" in str(error)))

    upid = ticket_api.nodes("pve1").qemu(3001).status.stop.post(**{"overrule-shutdown": 1})
    checks.append(("stop", wait_task(ticket_api, "pve1", upid) == "OK"))
    upid = ticket_api.nodes("pve1").qemu(3001).delete(purge=1, **{"destroy-unreferenced-disks": 1})
    checks.append(("destroy", wait_task(ticket_api, "pve1", upid) == "OK"))
    content = token_api.nodes("pve1").storage("local-lvm").content.get()
    checks.append(("disks gone", all(v["vmid"] != 3001 for v in content if "vmid" in v)))

    failed = [name for name, ok in checks if not ok]
    for name, ok in checks:
        print(("ok   " if ok else "FAIL ") + name)
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
