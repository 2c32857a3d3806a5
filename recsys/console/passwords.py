"""Password hashing for console users: argon2id (argon2-cffi), the only module importing it."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from recsys.errors import InputError

__all__ = ["MIN_LENGTH", "check_strength", "hash_password", "verify_password"]

MIN_LENGTH = 10

_HASHER = PasswordHasher()  # argon2id with the library's defaults (RFC 9106 low-memory profile)


def check_strength(password: str) -> None:
    """Refuse passwords too short to resist guessing."""
    if len(password) < MIN_LENGTH:
        raise InputError(f"the password needs at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    check_strength(password)
    return _HASHER.hash(password)


@cache
def _unknown_user_hash() -> str:
    return _HASHER.hash("a password that nobody has")


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no user (``None``) the same work is done, so the
    answer's timing does not tell whether the user exists."""
    try:
        return _HASHER.verify(stored_hash or _unknown_user_hash(), password) and (
            stored_hash is not None)
    except (VerificationError, InvalidHashError):
        return False
