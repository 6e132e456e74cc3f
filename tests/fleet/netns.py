"""Simulated hosts: Linux network namespaces joined to this host by veth pairs, each on its own /26 of a
private /24 that no interface or route of this host uses yet.

Used by tests/fleet/test_netns.py and benchmarks/fleet_netns_bench.py::

    problem = netns_problem()                # None, or why namespaces cannot be made here
    with Network(hosts=3) as net:            # namespaces + veths, removed on exit even after a failure
        net.hosts[0].host_ip                 # this host's end of host 0's veth (servers bind there)
        net.set_link(net.hosts[2], up=False) # a partition of host 2
        net.exec_argv(net.hosts[1], ["localagent", "run", ...])

Host ``i`` uses ``10.213.N.(64 i + 1)/26`` on the host side and ``.(64 i + 2)`` inside its namespace, whose
default route goes through the host side: a namespace reaches every host-side address (the host delivers to
its own addresses whatever interface they sit on), and nothing outside what this module made.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from types import TracebackType

IP = shutil.which("ip") or "/usr/sbin/ip"
SUBNET_SECOND_OCTET = 213
"""The /24s tried are 10.213.N.0/24: private (RFC 1918) and unlikely to be in use on a test machine."""


def netns_problem() -> str | None:
    """Why network namespaces cannot be made here, or None when they can (root, `ip netns add` works)."""
    if os.geteuid() != 0:
        return "network namespaces need root (the netns suite runs in .ci/run, which runs as root)"
    if not os.path.exists(IP):
        return "the `ip` command (iproute2) is not installed"
    probe = f"laprobe{uuid.uuid4().hex[:8]}"
    made = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip() or made.returncode}"
    subprocess.run([IP, "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def pick_subnet() -> str:
    """``"10.213.N"`` for a /24 that no address or route of this host mentions (N tried in random order)."""
    used = _ip("-o", "addr").stdout + _ip("route", "show", "table", "all").stdout
    candidates = list(range(1, 255))
    random.shuffle(candidates)
    for third in candidates:
        prefix = f"10.{SUBNET_SECOND_OCTET}.{third}."
        if prefix not in used:
            return prefix[:-1]
    raise RuntimeError(f"every 10.{SUBNET_SECOND_OCTET}.N.0/24 is in use on this host")


@dataclass(frozen=True)
class Host:
    """One simulated host: a network namespace and the veth pair that joins it to this host."""

    index: int
    netns: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    @property
    def label(self) -> str:
        """A label only this host's agents carry (``host-1``)."""
        return f"host-{self.index}"


class Network:
    """``hosts`` namespaces named with a per-instance prefix; ``close()`` (or leaving the ``with``) removes
    them and their veths, whatever state they are in."""

    def __init__(self, hosts: int = 3) -> None:
        if not 1 <= hosts <= 4:
            raise ValueError(f"hosts must be 1 to 4 (a /26 each in one /24), got {hosts}")
        # interface names are at most 15 bytes: "la" + 6 hex + "h0" fits, and is unique per instance
        tag = f"la{uuid.uuid4().hex[:6]}"
        self.subnet = pick_subnet()
        self.hosts = [
            Host(
                index=i,
                netns=f"{tag}-ns{i}",
                host_if=f"{tag}h{i}",
                ns_if=f"{tag}n{i}",
                host_ip=f"{self.subnet}.{64 * i + 1}",
                ns_ip=f"{self.subnet}.{64 * i + 2}",
            )
            for i in range(hosts)
        ]
        self._made: list[Host] = []
        try:
            for host in self.hosts:
                self._make(host)
        except BaseException:
            self.close()
            raise

    def _make(self, host: Host) -> None:
        _ip("netns", "add", host.netns)
        self._made.append(host)
        _ip("link", "add", host.host_if, "type", "veth", "peer", "name", host.ns_if)
        _ip("link", "set", host.ns_if, "netns", host.netns)
        _ip("addr", "add", f"{host.host_ip}/26", "dev", host.host_if)
        _ip("link", "set", host.host_if, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "addr", "add", f"{host.ns_ip}/26", "dev", host.ns_if)
        _ip("-n", host.netns, "link", "set", host.ns_if, "up")
        _ip("-n", host.netns, "route", "add", "default", "via", host.host_ip)

    def set_link(self, host: Host, *, up: bool) -> None:
        """Take host's link down (a partition: neither side reaches the other) or bring it back up."""
        _ip("link", "set", host.host_if, "up" if up else "down")
        if up:  # the routes through the link went with it; the namespace's default route must come back
            _ip("-n", host.netns, "route", "replace", "default", "via", host.host_ip)
            # and the host side's address, marked unreachable while the link was down, is asked for anew
            _ip("-n", host.netns, "neigh", "flush", "dev", host.ns_if, check=False)

    def exec_argv(self, host: Host, argv: list[str]) -> list[str]:
        """``argv`` run inside host's namespace (`ip netns exec` execs it: the pid is argv's own)."""
        return [IP, "netns", "exec", host.netns, *argv]

    def close(self) -> None:
        for host in reversed(self._made):
            _ip("link", "del", host.host_if, check=False)  # takes the peer inside the namespace with it
            _ip("netns", "del", host.netns, check=False)
        self._made.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
