"""Encryption of private keys at rest with the key-encryption key (AES-256-GCM)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


def seal(kek: bytes, plaintext: bytes, associated: str) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, plaintext, associated.encode())


def unseal(kek: bytes, sealed: bytes, associated: str) -> bytes:
    return AESGCM(kek).decrypt(sealed[:_NONCE], sealed[_NONCE:], associated.encode())
