"""Group secrets: key stretching, the mutual proof bound to a link, per-link frame sealing,
and readable new secrets.

Pure standard library (hashlib, hmac, secrets), so it works in Pythonista. See docs/SECURITY.md
for the threat model and for what the frame seal is (and is not).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from ._errors import ConfigurationError, InvalidArgument

__all__ = [
    "SEAL_OVERHEAD",
    "FrameSeal",
    "derive_key",
    "hello_role",
    "is_sealed",
    "link_key",
    "make_proof",
    "new_secret",
    "transcript_hash",
    "verify_proof",
]

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


def make_proof(key: bytes, prover_id: str, transcript: bytes, role: int = 0) -> bytes:
    """The proof that ``prover_id``, whose hello has ``role`` (0: it sorts first, 1: second, in
    the transcript's canonical order), holds ``key``, for this transcript only."""
    if role not in (0, 1):
        raise ValueError("role must be 0 or 1")
    message = _LABEL + b" proof " + bytes((role,)) + prover_id.encode("ascii") + transcript
    return hmac.new(key, message, "sha256").digest()


def verify_proof(key: bytes, prover_id: str, transcript: bytes, proof: bytes, role: int = 0) -> bool:
    """Check a proof in constant time."""
    return hmac.compare_digest(make_proof(key, prover_id, transcript, role), proof)


def hello_role(own_hello: bytes, other_hello: bytes) -> int:
    """0 if ``own_hello`` sorts first in the transcript, 1 if second; ValueError if equal (a
    reflection: no honest peer repeats our hello, nonce included)."""
    if own_hello == other_hello:
        raise ValueError("the two hellos are identical")
    return 0 if own_hello < other_hello else 1


def link_key(key: bytes, transcript: bytes) -> bytes:
    """The 32-byte key of one link, from the group key and that link's transcript (both nonces)."""
    return hmac.new(key, _LABEL + b" link key " + transcript, "sha256").digest()


#: Bytes a seal adds to a frame: 2 (header) + 8 (sequence number) + 16 (tag).
SEAL_OVERHEAD = 26
_SEAL_KIND = 0x07  # _wire.Kind.SEALED (not imported: _auth stays free of the wire layer)
_SEAL_UNRELIABLE = 0x02


class FrameSeal:
    """Encrypts and authenticates the frames of one link in both directions (sans-IO).

    A sealed frame is ``0x07 | flags | seq (8, big-endian) | ciphertext | tag (16)``. The
    ciphertext is the inner frame XORed with SHAKE-256(direction key | flags | seq), a keystream
    never reused since (direction, channel, seq) is unique per link and the keys are fresh per
    link; the tag is HMAC-SHA256(direction MAC key, header | seq | ciphertext) truncated to 16
    bytes (encrypt-then-MAC). Reliable frames must arrive with consecutive sequence numbers, so
    nothing can be dropped, replayed or reordered unnoticed; unreliable frames (their own counter)
    must only move forward. This is a stream cipher built from standard-library primitives, not
    a vetted AEAD: see docs/SECURITY.md.
    """

    def __init__(self, link_key: bytes, own_role: int) -> None:
        def sub(label: bytes, role: int) -> bytes:
            return hmac.new(link_key, _LABEL + b" seal " + label + bytes((role,)), "sha256").digest()

        peer_role = 1 - own_role
        self._enc_out, self._mac_out = sub(b"enc", own_role), sub(b"mac", own_role)
        self._enc_in, self._mac_in = sub(b"enc", peer_role), sub(b"mac", peer_role)
        self._send_seq = [0, 0]  # reliable, unreliable
        self._recv_seq = [0, 0]

    def seal(self, frame: bytes, reliable: bool) -> bytes:
        """The sealed form of one frame."""
        channel = 0 if reliable else 1
        seq = self._send_seq[channel]
        self._send_seq[channel] = seq + 1
        head = bytes((_SEAL_KIND, 0 if reliable else _SEAL_UNRELIABLE)) + seq.to_bytes(8, "big")
        body = _xor(frame, _keystream(self._enc_out, head, len(frame)))
        return head + body + hmac.digest(self._mac_out, head + body, "sha256")[:16]

    def open(self, sealed: bytes) -> tuple[bytes, bool]:
        """The inner frame and whether it came reliably; ValueError if it is not authentic or
        out of order."""
        if len(sealed) < SEAL_OVERHEAD or sealed[0] != _SEAL_KIND or sealed[1] & ~_SEAL_UNRELIABLE:
            raise ValueError("not a sealed frame")
        head, body, tag = sealed[:10], sealed[10:-16], sealed[-16:]
        if not hmac.compare_digest(hmac.digest(self._mac_in, head + body, "sha256")[:16], tag):
            raise ValueError("a sealed frame failed its authentication")
        channel = 1 if sealed[1] & _SEAL_UNRELIABLE else 0
        seq = int.from_bytes(head[2:10], "big")
        expected = self._recv_seq[channel]
        if seq < expected or (channel == 0 and seq != expected):
            raise ValueError(f"sealed frame {seq} out of order (expected {expected})")
        self._recv_seq[channel] = seq + 1
        return _xor(body, _keystream(self._enc_in, head, len(body))), channel == 0


def is_sealed(frame: bytes) -> bool:
    """True if ``frame`` looks like a sealed frame (its first byte is the seal kind)."""
    return bool(frame) and frame[0] == _SEAL_KIND


def _keystream(key: bytes, head: bytes, size: int) -> bytes:
    return hashlib.shake_256(_LABEL + b" stream " + key + head).digest(size) if size else b""


def _xor(data: bytes, stream: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


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
