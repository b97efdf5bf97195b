"""A private CA and certificates signed by it: for the demo on https, compose on TLS and the tests.

``python -m orchestrator.local.certs DIR`` writes, into ``DIR``:

- ``ca.pem`` (trust it: ``TLS_CA_FILE``) and ``ca-key.pem`` (keep it, or
  delete it once every certificate is made);
- for each service, ``NAME.pem`` and ``NAME-key.pem``, valid for the host
  names given with it (``--service NAME=host1,host2``; by default the names
  compose gives its services, plus ``localhost`` and ``127.0.0.1``);
- ``client.pem`` and ``client-key.pem``, a client certificate for a bank
  that requires mutual TLS (``TLS_CLIENT_CERT``, ``TLS_CLIENT_KEY``).

Keys are ECDSA P-256; certificates name their hosts as subject alternative
names, which is what clients check. Existing files are never overwritten.
Keys are readable by their owner only, unless ``--for-containers``: the
containers of compose.tls.yaml run as users of their own and read the files
through a read-only mount, so the directory and every file in it are made
readable by all (keep the directory on a machine only you use; a deployment
that others share hands each service its key through its own secrets).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orchestrator.local.supervisor import LocalTls

#: How long a certificate made here is valid by default.
DEFAULT_DAYS = 825
#: Where a local process is reached.
LOCAL_HOSTS = ("localhost", "127.0.0.1")
#: The services of compose.yaml, each under the name the others reach it by.
COMPOSE_SERVICES = {
    "source-bank": ("source-bank", *LOCAL_HOSTS),
    "target-bank": ("target-bank", *LOCAL_HOSTS),
    "promise-store": ("promise-store", *LOCAL_HOSTS),
    "console": ("console", *LOCAL_HOSTS),
    "postgres": ("postgres", *LOCAL_HOSTS),
}


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "crossbank private CA", days: int = 3650) -> KeyPair:
    """A self-signed CA: ``ca.pem`` and ``ca-key.pem`` in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "ca", cert, key)


def issue(
    ca: KeyPair,
    directory: Path,
    name: str,
    hosts: Sequence[str] = LOCAL_HOSTS,
    *,
    valid_from: datetime.datetime | None = None,
    days: int = DEFAULT_DAYS,
) -> KeyPair:
    """``NAME.pem`` and ``NAME-key.pem``, signed by ``ca``, for ``hosts``, as server and client."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    start = valid_from or _now() - datetime.timedelta(minutes=5)
    names: list[x509.GeneralName] = [_general_name(host) for host in hosts]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _write(directory, name, cert, key)


def make_set(
    directory: Path,
    services: dict[str, Sequence[str]] | None = None,
    *,
    for_containers: bool = False,
) -> dict[str, KeyPair]:
    """A CA, one certificate per service and a client certificate, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory)
    made = {"ca": ca}
    for name, hosts in (services or COMPOSE_SERVICES).items():
        made[name] = issue(ca, directory, name, hosts)
    made["client"] = issue(ca, directory, "client", ("crossbank-client",))
    if for_containers:
        directory.chmod(0o755)
        for pair in made.values():
            pair.cert.chmod(0o644)
            pair.key.chmod(0o644)
    return made


def local_tls(directory: Path) -> LocalTls:
    """A CA and one certificate for every local part (127.0.0.1 and localhost), in ``directory``.

    Made once: a directory that has them already is used as it is.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = KeyPair(directory / "ca.pem", directory / "ca-key.pem")
    local = KeyPair(directory / "local.pem", directory / "local-key.pem")
    if not local.cert.exists():
        if not ca.cert.exists():
            ca = make_ca(directory)
        local = issue(ca, directory, "local", LOCAL_HOSTS)
    return LocalTls(ca=ca.cert, cert=local.cert, key=local.key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> KeyPair:
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    for path in (pair.cert, pair.key):
        if path.exists():
            raise FileExistsError(f"{path} exists already; certificates are never overwritten")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Readable by the owner only, and written that way from the start.
    descriptor = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key_pem)
    return pair


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.local.certs",
        description="Make a private CA and a certificate per service, for crossbank on TLS.",
    )
    parser.add_argument("directory", type=Path, help="where to write the files (made if missing)")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=HOST[,HOST...]",
        help="a service and the host names it is reached by (default: compose's services)",
    )
    parser.add_argument(
        "--for-containers",
        action="store_true",
        help="make the keys readable by the containers' own users (compose.tls.yaml)",
    )
    args = parser.parse_args(argv)
    services: dict[str, Sequence[str]] = {}
    for given in args.service:
        name, _, hosts = given.partition("=")
        if not name or not hosts:
            parser.error(f"--service takes NAME=HOST[,HOST...], got {given!r}")
        services[name] = tuple(host.strip() for host in hosts.split(",") if host.strip())
    try:
        made = make_set(args.directory, services or None, for_containers=args.for_containers)
    except FileExistsError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 2
    for name, pair in made.items():
        print(f"{name:14} {pair.cert}  {pair.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
