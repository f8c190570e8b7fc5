"""``daemond --check-config`` loads a TLS listener's pair and says what is wrong with it, where."""

import os
import subprocess

from tests.support.process import installed
from tests.support.tls import Certs


def check(tmp_path, tls: str):
    path = tmp_path / "daemond.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\nlisteners:\n  secure:\n    port: 0\n    plugins: [echo]\n"
                    f"    tls:\n{tls}")
    proc = subprocess.run([installed("daemond"), "--check-config", "-c", str(path)], capture_output=True, text=True)
    return str(path), proc


def test_a_good_pair_passes(tmp_path):
    crt, key = Certs(tmp_path / "tls").issue()
    _, proc = check(tmp_path, f"      cert: {crt}\n      key: {key}\n")
    assert proc.returncode == 0, proc.stderr


def test_each_problem_of_the_files_at_its_position(tmp_path):
    certs = Certs(tmp_path / "tls")
    crt, key = certs.issue()
    os.chmod(key, 0o644)
    shown, proc = check(tmp_path, f"      cert: {crt}\n      key: {key}\n")
    assert proc.returncode != 0
    assert f"{shown}:8:12: listeners.secure.tls.key: {key}: the private key may be read by others" in proc.stderr
    assert "Traceback" not in proc.stderr

    _, other_key = certs.issue("other")
    _, proc = check(tmp_path, f"      cert: {crt}\n      key: {other_key}\n")
    assert f"{shown}:8:12: listeners.secure.tls.key: {other_key}: this private key does not match" in proc.stderr

    old_crt, old_key = certs.expired()
    _, proc = check(tmp_path, f"      cert: {old_crt}\n      key: {old_key}\n")
    assert f"{shown}:7:13: listeners.secure.tls.cert: {old_crt}: the certificate expired on" in proc.stderr

    _, proc = check(tmp_path, f"      cert: tls/missing.pem\n      key: {key}\n")  # relative: in the state directory
    assert f"{shown}:7:13: listeners.secure.tls.cert: {tmp_path / 'state' / 'tls' / 'missing.pem'}: no such file" in proc.stderr


def test_client_certificates_need_a_ca_and_versions_are_named(tmp_path):
    crt, key = Certs(tmp_path / "tls").issue()
    _, proc = check(tmp_path, f"      cert: {crt}\n      key: {key}\n      client_cert: required\n      min_version: TLSv1.1\n")
    assert "listeners.secure.tls.min_version: must be one of TLSv1.2, TLSv1.3, not 'TLSv1.1'" in proc.stderr
    _, proc = check(tmp_path, f"      cert: {crt}\n      key: {key}\n      client_cert: required\n")
    assert "listeners.secure.tls.client_ca: is needed to verify client certificates" in proc.stderr
