"""Debian tools the deployment tests run (nginx, promtool), installed on demand.

A fresh machine of this project's kind has ``apt-get`` and runs as root but may lack these
binaries; the tests install the Debian package once, bounded in time, and skip with the
reason only where that is impossible (not root, no apt, no network).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

#: Upper bound on one ``apt-get`` call, so a hung mirror fails the fixture, not the session.
APT_TIMEOUT_SECONDS = 300


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT_SECONDS,
        check=False,
    )


def _which(binary: str) -> str | None:
    # nginx lives in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")


@functools.cache
def ensure_tool(binary: str, package: str) -> tuple[str | None, str]:
    """The path of ``binary``, installing Debian ``package`` first if it is missing.

    Returns ``(path, "")``, or ``(None, reason)`` when the binary cannot be had. Cached per
    process, so a missing package costs at most one install attempt.
    """
    found = _which(binary)
    if found:
        return found, ""
    if shutil.which("apt-get") is None:
        return None, f"{binary} is missing and there is no apt-get to install {package}"
    if os.geteuid() != 0:
        return None, f"{binary} is missing; installing {package} with apt-get needs root"
    try:
        result = _apt("install", "-y", "--no-install-recommends", package)
        if result.returncode != 0:
            # A fresh machine may have no package lists yet: fetch them and try once more.
            _apt("update")
            result = _apt("install", "-y", "--no-install-recommends", package)
    except subprocess.TimeoutExpired:
        return None, f"apt-get install {package} did not finish in {APT_TIMEOUT_SECONDS}s"
    found = _which(binary)
    if found:
        return found, ""
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    return None, f"apt-get install {package} did not provide {binary}: {' / '.join(tail)}"
