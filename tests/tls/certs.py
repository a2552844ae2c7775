"""Certificates made for the TLS tests with python's `cryptography`: a test CA, server
certificates (ECDSA P-256, RSA-2048) for localhost and 127.0.0.1 signed by it, and the
bad ones a verifying client must refuse (wrong name, expired, self-signed)."""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _key(kind):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _cert(subject_key, cn, names, issuer_key, issuer_cn, start, end, ca=False):
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer_cn))
         .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        alt = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def make(dir):
    """Writes the files into `dir`; returns {name: path}. Each server file holds key and
    chain (qmail-tls's servercert.pem), and there are separate cert/key files too."""
    ca_key = _key("ec")
    ca = _cert(ca_key, "rqmail test CA", None, ca_key, "rqmail test CA", NOW - DAY, NOW + 30 * DAY, ca=True)
    paths = {"ca": dir / "ca.pem"}
    paths["ca"].write_bytes(_pem_cert(ca))
    specs = {
        "ec": ("ec", ["localhost", "127.0.0.1"], ca_key, NOW - DAY, NOW + 30 * DAY),
        "rsa": ("rsa", ["localhost", "127.0.0.1"], ca_key, NOW - DAY, NOW + 30 * DAY),
        "wrongname": ("ec", ["mail.example.org"], ca_key, NOW - DAY, NOW + 30 * DAY),
        "expired": ("ec", ["localhost"], ca_key, NOW - 30 * DAY, NOW - DAY),
        "selfsigned": ("ec", ["localhost"], None, NOW - DAY, NOW + 30 * DAY),
    }
    for name, (kind, names, issuer, start, end) in specs.items():
        key = _key(kind)
        issuer_key, issuer_cn = (issuer, "rqmail test CA") if issuer else (key, names[0])
        cert = _cert(key, names[0], names, issuer_key, issuer_cn, start, end)
        for suffix, data in (("", _pem_key(key) + _pem_cert(cert)), (".crt", _pem_cert(cert)), (".key", _pem_key(key))):
            p = dir / f"{name}{suffix}.pem"
            p.write_bytes(data)
            p.chmod(0o600)
            paths[name + suffix] = p
    return paths
