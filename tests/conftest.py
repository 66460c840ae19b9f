"""Shared test set-up.

Four XLA CPU devices let the default 4 chains run in parallel, as the CLI does; this must happen
before JAX initializes, hence here and not in a fixture. The library itself never sets it.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
