"""Test certificates made with the openssl CLI: a CA, and server and client certificates it signs.

Short-lived (2 days), EC P-256, in a directory the test owns. The server certificate names
127.0.0.1 and localhost, which is how the tests connect.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PKI:
    ca: Pair
    server: Pair
    client: Pair
    other_ca: Pair  # an unrelated CA: what it signs must be refused
    stranger: Pair  # a client certificate signed by other_ca


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> Pair:
    pair = Pair(d / f"{name}.pem", d / f"{name}-key.pem")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(pair.key), "-out", str(pair.cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def _leaf(d: Path, name: str, ca: Pair, ext: str) -> Pair:
    pair = Pair(d / f"{name}.pem", d / f"{name}-key.pem")
    csr = d / f"{name}.csr"
    extfile = d / f"{name}.ext"
    extfile.write_text(ext + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(pair.key), "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-out", str(pair.cert), "-days", "2", "-extfile", str(extfile),
    )  # fmt: skip
    pair.key.chmod(0o600)
    return pair


def make_pki(d: Path) -> PKI:
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "ca")
    other = _ca(d, "other-ca")
    server = _leaf(d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    client = _leaf(d, "client", ca, "subjectAltName=DNS:prometheus.test\nextendedKeyUsage=clientAuth")
    stranger = _leaf(d, "stranger", other, "subjectAltName=DNS:stranger.test\nextendedKeyUsage=clientAuth")
    return PKI(ca=ca, server=server, client=client, other_ca=other, stranger=stranger)
