"""Group secrets: key stretching, the mutual proof bound to a link, and readable new secrets.

Pure standard library (hashlib, hmac, secrets), so it works in Pythonista. See docs/SECURITY.md
for the threat model.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from ._errors import ConfigurationError, InvalidArgument

__all__ = ["derive_key", "make_proof", "new_secret", "transcript_hash", "verify_proof"]

#: PBKDF2-HMAC-SHA256 iterations (OWASP's 2023 figure for this hash); paid once per object.
KDF_ITERATIONS = 600_000
_LABEL = b"mpstore group secret v1"
_CONSONANTS = "bdfghjklmnprstvz"
_VOWELS = "aeiou"


@functools.lru_cache(maxsize=16)
def derive_key(secret: str | bytes, service_type: str) -> bytes:
    """Stretch a passphrase (str) or secret bytes into a 32-byte key, salted by the service type."""
    if isinstance(secret, str):
        material = secret.encode("utf-8")
    elif isinstance(secret, (bytes, bytearray)):
        material = bytes(secret)
    else:
        raise InvalidArgument(f"secret must be str or bytes, not {type(secret).__name__}")
    if not material:
        raise ConfigurationError("secret must not be empty")
    salt = _LABEL + b"\x00" + service_type.encode("ascii")
    return hashlib.pbkdf2_hmac("sha256", material, salt, KDF_ITERATIONS, dklen=32)


def transcript_hash(hello_a: bytes, hello_b: bytes, channel_binding: bytes) -> bytes:
    """Hash both hellos (in a canonical order) and the link's channel binding."""
    first, second = sorted((hello_a, hello_b))
    digest = hashlib.sha256(_LABEL + b" transcript")
    for part in (first, second, channel_binding):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.digest()


def make_proof(key: bytes, prover_id: str, transcript: bytes) -> bytes:
    """The proof that ``prover_id`` holds ``key``, for this transcript only."""
    return hmac.new(key, _LABEL + b" proof " + prover_id.encode("ascii") + transcript, "sha256").digest()


def verify_proof(key: bytes, prover_id: str, transcript: bytes, proof: bytes) -> bool:
    """Check a proof in constant time."""
    return hmac.compare_digest(make_proof(key, prover_id, transcript), proof)


def new_secret(words: int = 6) -> str:
    """A strong random secret as short words to read aloud or type, e.g. 'dobu-kilo-...'.

    Each word is two consonant-vowel syllables (6,400 words, 12.6 bits each): six words carry
    75 bits of entropy.
    """
    if words < 1:
        raise ConfigurationError("words must be at least 1")

    def syllable() -> str:
        return secrets.choice(_CONSONANTS) + secrets.choice(_VOWELS)

    return "-".join(syllable() + syllable() for _ in range(words))
