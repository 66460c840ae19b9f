"""Shared test set-up.

Four XLA CPU devices let the default 4 chains run in parallel, as the CLI does; this must happen
before JAX initializes, hence here and not in a fixture. The library itself never sets it.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

# JAX's persistent compilation cache goes to a fresh directory per test session: tests never
# write into the user's ~/.cache, and a test that counts compilations is not fooled by programs
# cached by an earlier run.
if "ITELIB_JAX_CACHE" not in os.environ:
    import tempfile

    os.environ["ITELIB_JAX_CACHE"] = tempfile.mkdtemp(prefix="itelib-test-jax-cache-")
