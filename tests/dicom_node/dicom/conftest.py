"""The DICOM tests' shared fixture: a test CA with server and client certificates, made in the test's folder."""

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _certificate(folder, name, issuer=None, ca=False):
    """An EC key and a certificate for `name` (SAN 127.0.0.1), self-signed or signed by `issuer`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key, str(cert_path), str(key_path)


@pytest.fixture
def pki(tmp_path):
    ca_cert, ca_key, ca_path, _ = _certificate(tmp_path, "test-ca", ca=True)
    _, _, server_cert, server_key = _certificate(tmp_path, "node", issuer=(ca_cert, ca_key))
    _, _, client_cert, client_key = _certificate(tmp_path, "scanner", issuer=(ca_cert, ca_key))
    return {"ca": ca_path, "server": (server_cert, server_key), "client": (client_cert, client_key)}
