"""TLS between client, scheduler and worker, set up the way the README says (Dask's own settings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import REPO_ROOT
from tests.cluster.conftest import DaskCluster


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, its own CA: enough for a loopback test."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kmh-test",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_cluster(tmp_path):  # type: ignore[no-untyped-def]
    cert, key = _certificate(tmp_path)
    flags = ("--tls-ca-file", str(cert), "--tls-cert", str(cert), "--tls-key", str(key))
    cluster = DaskCluster(tmp_path, flags=("--protocol", "tls", *flags))
    cluster.start_scheduler()
    try:
        cluster.flags = flags  # workers take the protocol from the tls:// address
        cluster.start_worker()
        from distributed.security import Security

        cluster.wait_for_workers(
            1,
            security=Security(
                tls_ca_file=str(cert),
                tls_client_cert=str(cert),
                tls_client_key=str(key),
                require_encryption=True,
            ),
        )
        yield cluster, cert, key
    finally:
        cluster.stop()


@pytest.mark.kbuild
def test_kmh_run_over_tls_with_the_readme_settings(tls_cluster, kernel_61):
    cluster, cert, key = tls_cluster
    assert cluster.address.startswith("tls://127.0.0.1:")
    env = dict(
        os.environ,
        DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION="True",
        DASK_DISTRIBUTED__COMM__TLS__CA_FILE=str(cert),
        DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=str(cert),
        DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=str(key),
    )
    command = [sys.executable, "-m", "harness.cli", "run", "modules/bad/compile_error.toml", "--kernel",
               "bookworm", "--cluster", cluster.address]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr  # the module's own verdict: it does not compile
    assert "kmh_broken" in result.stdout and "1 failed" in result.stdout
    # Without the client's TLS settings: one line naming them, exit 2.
    plain = {k: v for k, v in env.items() if "__TLS__" not in k}
    result = subprocess.run(command, cwd=REPO_ROOT, env=plain, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"kmh: error: --cluster {cluster.address}: no TLS settings for the client; set "
        "distributed.comm.tls.ca-file and client.cert/client.key "
        "(DASK_DISTRIBUTED__COMM__TLS__CA_FILE, ...; see README)"
    ]
