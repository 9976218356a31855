"""TLS 1.3 for the LAN transport: ephemeral certificates and the channel binding.

Every transport makes a fresh key and certificate when it opens. Certificates prove nothing
about identity (anyone can make one); they exist so that every connection is encrypted, and so
that both ends can compute the same channel binding: SHA-256 over both DER certificates in a
canonical order. A relay that re-terminates TLS sees different certificates on each side, so
an authentication bound to this value (the group secret) cannot be forwarded.

Python's ``ssl`` module offers no verification callback, and OpenSSL only hands a server the
client's certificate when it verifies. So every node signs its leaf certificate with a
*well-known* CA whose key is derived from a public constant: verification then always passes
for any mpstore node, conveys no trust, and gives both ends both certificates.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TlsIdentity", "certificate_id", "channel_binding"]

_CA_SEED = b"mpstore LAN transport: public well-known CA, not a secret, conveys no trust, v1"
_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mpstore well-known CA (no trust)")])
_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    secret = int.from_bytes(hashlib.sha256(_CA_SEED).digest(), "big")
    key = ec.derive_private_key(secret, ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_CA_NAME)
        .issuer_name(_CA_NAME)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_EPOCH)
        .not_valid_after(_EPOCH + datetime.timedelta(days=365 * 100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


class TlsIdentity:
    """An ephemeral key and certificate, and the client and server contexts that use them."""

    def __init__(self, common_name: str = "mpstore") -> None:
        ca_key, ca_cert = _ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(_CA_NAME)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(ca_key, hashes.SHA256())
        )
        self.certificate_der = cert.public_bytes(serialization.Encoding.DER)
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_context.check_hostname = False
        for ctx in (self.server_context, self.client_context):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=ca_pem)
            _load_chain(ctx, cert_pem, key_pem)


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl can only load a certificate chain from files; they live only for this call.
    fd, path = tempfile.mkstemp(prefix="mpstore-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem + key_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def channel_binding(ssl_object: ssl.SSLObject | None, own_der: bytes) -> bytes:
    """SHA-256 of both ends' DER certificates, smaller first; empty if the peer sent none."""
    if ssl_object is None:
        return b""
    peer_der = ssl_object.getpeercert(binary_form=True)
    if not peer_der:
        return b""
    first, second = sorted((own_der, peer_der))
    h = hashlib.sha256(b"mpstore-lan-channel-binding-v1")
    for der in (first, second):
        h.update(len(der).to_bytes(4, "big"))
        h.update(der)
    return h.digest()


def certificate_id(der: bytes) -> bytes:
    """SHA-256 of a DER certificate: what names a LAN peer's TLS identity."""
    return hashlib.sha256(der).digest()


def peer_certificate_id(ssl_object: ssl.SSLObject | None) -> bytes | None:
    """The certificate id of the other end of a TLS connection, or None if it sent none."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return certificate_id(der) if der else None
