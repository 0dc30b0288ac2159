"""TLS key schedules and record protection, for reading captures (sans-IO).

Everything here is a pure function of secrets and bytes: no sockets, no
state beyond a record sequence number. The AEADs and HMAC/HKDF primitives come
from ``cryptography``; the key schedules and nonce rules are written from the
RFCs:

* TLS 1.2 (RFC 5246): ``PRF`` = P_<hash> (§5), the key block from the master
  secret (§6.3), AEAD record protection (§6.2.3.3) with the nonce of RFC 5288
  §3 for AES-GCM (4-byte implicit salt + 8-byte explicit nonce sent in the
  record) and of RFC 7905 §2 for ChaCha20-Poly1305 (12-byte IV XOR the
  sequence number, nothing sent).
* TLS 1.3 (RFC 8446): ``HKDF-Expand-Label`` (§7.1), traffic keys (§7.3),
  the next application traffic secret after a KeyUpdate (§7.2), the
  per-record nonce (§5.3) and the additional data = the record header (§5.2).

Only AEAD suites exist here: TLS 1.3 has nothing else, and for TLS 1.2 the
issue asks for (EC)DHE with AES-GCM and ChaCha20-Poly1305. The key exchange
does not matter once the key log gives the master secret, so the plain RSA
and DHE variants of those AEAD suites decrypt as well.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

__all__ = [
    "SUITES",
    "Aead",
    "CipherSuite",
    "DecryptError",
    "Decryptor",
    "HashAlg",
    "hkdf_expand_label",
    "keys12",
    "next_secret13",
    "prf12",
    "traffic_keys13",
]

TAG_SIZE = 16  # all three AEADs
_EXPLICIT_NONCE = 8  # RFC 5288 §3: GCMNonce.nonce_explicit, sent before the ciphertext
_CONTENT_TYPES = frozenset((20, 21, 22, 23))


class DecryptError(ValueError):
    """A record that cannot be opened: bad length, failed tag, or bad inner plaintext."""


class Aead(enum.Enum):
    AES_128_GCM = (16, 4)  # (key size, TLS 1.2 IV size): RFC 5288 §3 salt
    AES_256_GCM = (32, 4)
    CHACHA20_POLY1305 = (32, 12)  # RFC 7905 §2: a 12-byte IV in TLS 1.2 too

    @property
    def key_size(self) -> int:
        return self.value[0]

    @property
    def iv12_size(self) -> int:
        return self.value[1]


class HashAlg(enum.Enum):
    SHA256 = 32
    SHA384 = 48

    def algorithm(self) -> hashes.HashAlgorithm:
        return hashes.SHA256() if self is HashAlg.SHA256 else hashes.SHA384()

    @property
    def digest(self) -> str:
        return "sha256" if self is HashAlg.SHA256 else "sha384"


@dataclass(frozen=True, slots=True)
class CipherSuite:
    code: int
    name: str  # IANA name
    aead: Aead
    hash: HashAlg
    tls13: bool


def _suites() -> dict[int, CipherSuite]:
    a128, a256, chacha = Aead.AES_128_GCM, Aead.AES_256_GCM, Aead.CHACHA20_POLY1305
    s256, s384 = HashAlg.SHA256, HashAlg.SHA384
    table = [
        # RFC 8446 §B.4
        (0x1301, "TLS_AES_128_GCM_SHA256", a128, s256, True),
        (0x1302, "TLS_AES_256_GCM_SHA384", a256, s384, True),
        (0x1303, "TLS_CHACHA20_POLY1305_SHA256", chacha, s256, True),
        # RFC 5289 (ECDHE + GCM), RFC 5288 (RSA/DHE + GCM), RFC 7905 (ChaCha20)
        (0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", a128, s256, False),
        (0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", a256, s384, False),
        (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", a128, s256, False),
        (0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", a256, s384, False),
        (0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", a128, s256, False),
        (0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", a256, s384, False),
        (0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", a128, s256, False),
        (0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", a256, s384, False),
        (0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", chacha, s256, False),
        (0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", chacha, s256, False),
        (0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", chacha, s256, False),
    ]
    return {code: CipherSuite(code, name, aead, h, t13) for code, name, aead, h, t13 in table}


SUITES = _suites()


# -- TLS 1.2 ----------------------------------------------------------------------------
def prf12(secret: bytes, label: bytes, seed: bytes, length: int, alg: HashAlg) -> bytes:
    """RFC 5246 §5: PRF(secret, label, seed) = P_<hash>(secret, label + seed)."""
    seed = label + seed
    out = bytearray()
    a = seed  # A(0)
    while len(out) < length:
        a = hmac.digest(secret, a, alg.digest)  # A(i) = HMAC_hash(secret, A(i-1))
        out += hmac.digest(secret, a + seed, alg.digest)
    return bytes(out[:length])


@dataclass(frozen=True, slots=True)
class WriteKeys:
    key: bytes
    iv: bytes  # TLS 1.2: the implicit part (4 bytes GCM, 12 ChaCha); TLS 1.3: 12 bytes


def keys12(
    suite: CipherSuite, master_secret: bytes, client_random: bytes, server_random: bytes
) -> tuple[WriteKeys, WriteKeys]:
    """(client write, server write) from the master secret, RFC 5246 §6.3.

    key_block = PRF(master_secret, "key expansion", server_random + client_random),
    cut into client/server MAC keys (none for AEAD suites), then keys, then IVs.
    """
    k, iv = suite.aead.key_size, suite.aead.iv12_size
    block = prf12(
        master_secret, b"key expansion", server_random + client_random, 2 * (k + iv), suite.hash
    )
    client = WriteKeys(block[:k], block[2 * k : 2 * k + iv])
    server = WriteKeys(block[k : 2 * k], block[2 * k + iv : 2 * (k + iv)])
    return client, server


# -- TLS 1.3 ----------------------------------------------------------------------------
def hkdf_expand_label(
    secret: bytes, label: bytes, context: bytes, length: int, alg: HashAlg
) -> bytes:
    """RFC 8446 §7.1: HKDF-Expand(secret, HkdfLabel, length).

    struct { uint16 length; opaque label<7..255> = "tls13 " + Label;
             opaque context<0..255>; } HkdfLabel;
    """
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return _hkdf_expand(secret, info, length, alg)


def _hkdf_expand(prk: bytes, info: bytes, length: int, alg: HashAlg) -> bytes:
    """RFC 5869 §2.3: T(i) = HMAC-Hash(PRK, T(i-1) | info | i), the first ``length`` bytes.

    ``hmac.digest`` directly: a tenth of the cost of building ``cryptography``'s
    HKDFExpand object, and a TLS 1.3 connection derives a dozen of these.
    """
    if length > 255 * alg.value:
        raise ValueError(f"HKDF-Expand cannot produce {length} bytes")
    out, block = b"", b""
    for i in range(1, -(-length // alg.value) + 1):
        block = hmac.digest(prk, block + info + bytes((i,)), alg.digest)
        out += block
    return out[:length]


def traffic_keys13(suite: CipherSuite, secret: bytes) -> WriteKeys:
    """RFC 8446 §7.3: [sender]_write_key and [sender]_write_iv from a traffic secret."""
    key = hkdf_expand_label(secret, b"key", b"", suite.aead.key_size, suite.hash)
    iv = hkdf_expand_label(secret, b"iv", b"", 12, suite.hash)
    return WriteKeys(key, iv)


def next_secret13(suite: CipherSuite, secret: bytes) -> bytes:
    """RFC 8446 §7.2: application_traffic_secret_N+1 after a KeyUpdate."""
    return hkdf_expand_label(secret, b"traffic upd", b"", suite.hash.value, suite.hash)


# -- record protection ------------------------------------------------------------------
class Decryptor:
    """Opens the protected records of one direction, counting sequence numbers.

    ``open`` takes the record's header fields and fragment and returns
    ``(content type, plaintext)``: for TLS 1.2 the header's type; for TLS 1.3
    the type found in TLSInnerPlaintext after removing the zero padding
    (RFC 8446 §5.2, §5.4). Raises ``DecryptError``; the sequence number only
    advances on success, but a caller stops after the first failure anyway.
    """

    __slots__ = ("_aead", "_gcm12", "_iv", "_tls13", "seq")

    def __init__(self, suite: CipherSuite, keys: WriteKeys) -> None:
        if suite.aead is Aead.CHACHA20_POLY1305:
            self._aead: AESGCM | ChaCha20Poly1305 = ChaCha20Poly1305(keys.key)
        else:
            self._aead = AESGCM(keys.key)
        self._iv = int.from_bytes(keys.iv, "big")
        self._tls13 = suite.tls13
        self._gcm12 = not suite.tls13 and suite.aead is not Aead.CHACHA20_POLY1305
        self.seq = 0

    def open(self, ctype: int, version: int, fragment: bytes) -> tuple[int, bytes]:
        seq = self.seq
        if self._tls13:
            plain = self._open13(ctype, version, fragment, seq)
            self.seq = seq + 1
            return _inner_plaintext(plain)
        if self._gcm12:
            # RFC 5288 §3: nonce = salt (4, from the key block) || nonce_explicit (8, sent)
            if len(fragment) < _EXPLICIT_NONCE + TAG_SIZE:
                raise DecryptError(f"record of {len(fragment)} bytes is too short for AES-GCM")
            nonce = self._iv.to_bytes(4, "big") + fragment[:_EXPLICIT_NONCE]
            body = fragment[_EXPLICIT_NONCE:]
        else:
            # RFC 7905 §2: nonce = IV XOR the 64-bit sequence number, left-padded
            if len(fragment) < TAG_SIZE:
                raise DecryptError(f"record of {len(fragment)} bytes is too short for ChaCha20")
            nonce = (self._iv ^ seq).to_bytes(12, "big")
            body = fragment
        # RFC 5246 §6.2.3.3: additional_data = seq_num + type + version + length (plaintext)
        aad = seq.to_bytes(8, "big") + bytes((ctype, version >> 8, version & 0xFF))
        aad += (len(body) - TAG_SIZE).to_bytes(2, "big")
        plain = self._decrypt(nonce, body, aad)
        self.seq = seq + 1
        return ctype, plain

    def _open13(self, ctype: int, version: int, fragment: bytes, seq: int) -> bytes:
        # RFC 8446 §5.2: additional_data = opaque_type || legacy_record_version || length
        if len(fragment) < TAG_SIZE + 1:
            raise DecryptError(f"record of {len(fragment)} bytes is too short")
        aad = bytes((ctype, version >> 8, version & 0xFF)) + len(fragment).to_bytes(2, "big")
        nonce = (self._iv ^ seq).to_bytes(12, "big")  # §5.3: padded sequence XOR write IV
        return self._decrypt(nonce, fragment, aad)

    def _decrypt(self, nonce: bytes, body: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise DecryptError(f"record {self.seq}: authentication tag does not verify") from None


def _inner_plaintext(plain: bytes) -> tuple[int, bytes]:
    """RFC 8446 §5.4: strip trailing zeros; the last non-zero byte is the real type."""
    end = len(plain.rstrip(b"\x00"))
    if end == 0:
        raise DecryptError("inner plaintext is all padding (no content type)")
    ctype = plain[end - 1]
    if ctype not in _CONTENT_TYPES:
        raise DecryptError(f"inner content type {ctype} is unknown")
    return ctype, plain[: end - 1]
