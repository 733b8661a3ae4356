"""TLS for the tests: certificates made here, and a Ceph RGW that serves S3 over TLS with them.

- ``tls_certificates``: a certificate authority made for this session and a server certificate it
  signed for 127.0.0.1 (an IP subject alternative name) and ``localhost``. Nothing trusts the CA but
  a client that is given ``ca.pem``.
- ``ceph_rgw_tls``: a second one-node Ceph cluster (``scripts/servers/ceph-rgw.sh`` with
  ``LORRY_RGW_SSL_CERTIFICATE``) whose gateway listens on plain HTTP and on TLS. Server-side encryption
  is accepted only over TLS (``rgw_crypt_require_ssl`` keeps its default); SSE-KMS works with the test
  key ``lorry-testkey`` of ``ceph.conf.in``.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures_s3 import S3Server, running_ceph

KMS_KEY_ID = "lorry-testkey"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the authority's certificate: what a client must trust
    certificate: Path  # the server's certificate, for 127.0.0.1 and localhost
    private_key: Path  # the server's key


@dataclass(frozen=True)
class TLSCeph:
    """A Ceph RGW on plain HTTP (``plain``, for setting up buckets) and on TLS (``https_endpoint``)."""

    plain: S3Server
    https_endpoint: str
    certificates: Certificates


def make_certificates(directory: Path) -> Certificates:
    """A CA and a server certificate signed by it, valid for an hour from a minute ago."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    later = now + datetime.timedelta(hours=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lorry test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    found = Certificates(
        ca=directory / "ca.pem",
        certificate=directory / "server.pem",
        private_key=directory / "server-key.pem",
    )
    found.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    found.certificate.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    found.private_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    found.private_key.chmod(0o600)
    return found


@pytest.fixture(scope="session")
def tls_certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def ceph_rgw_tls(tls_certificates: Certificates) -> Iterator[TLSCeph]:
    env = {
        "LORRY_RGW_SSL_CERTIFICATE": str(tls_certificates.certificate),
        "LORRY_RGW_SSL_PRIVATE_KEY": str(tls_certificates.private_key),
        # Small objects only: far less RAM than the main cluster's memstore.
        "LORRY_RGW_MEMSTORE_BYTES": str(1 << 30),
    }
    with running_ceph("Ceph RGW with TLS", env) as found:
        yield TLSCeph(
            plain=S3Server(
                name="ceph-rgw-tls",
                endpoint=found["LORRY_RGW_ENDPOINT"],
                access_key=found["LORRY_RGW_ACCESS_KEY"],
                secret_key=found["LORRY_RGW_SECRET_KEY"],
            ),
            https_endpoint=found["LORRY_RGW_SSL_ENDPOINT"],
            certificates=tls_certificates,
        )
