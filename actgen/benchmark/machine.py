"""A description of the machine a benchmark ran on: CPU, compiler, libraries, actgen's commit."""

from __future__ import annotations

import os
import platform
import subprocess

import numpy as np

from .. import __version__
from ..build import toolchain


def machine() -> dict:
    """CPU model, cores, compiler, glibc, library versions, actgen's build flags."""
    info = {"cpu": platform.processor() or platform.machine(), "cpu_flags": [], "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and info["cpu"] in ("", platform.machine(), platform.processor()):
                    info["cpu"] = value
                elif key == "flags" and not info["cpu_flags"]:
                    flags = value.split()
                    info["cpu_flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512dq", "avx512vl")
                                         if f in flags]
    except OSError:
        pass
    libc, version = platform.libc_ver()
    info["libc"] = f"{libc} {version}".strip()
    try:
        tc = toolchain()
        info["cc"] = tc.version
        info["cflags"] = " ".join(tc.flags)
    except Exception as exc:                                # noqa: BLE001 - reported, not fatal
        info["cc"] = f"unavailable ({exc})"
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    for module in ("scipy", "numexpr", "jax"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    info["actgen"] = __version__
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5)
        if rev.returncode == 0:
            info["actgen_commit"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info