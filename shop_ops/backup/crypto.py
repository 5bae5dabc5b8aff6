"""Streamed AES-256-GCM encryption of backup files, in authenticated chunks so truncation and corruption are detected.

Why chunks: one GCM tag over a whole dump would only be checked at the very end, after the
plaintext has already been handed out, and a file cut short at a chunk boundary would look
fine up to there. Here every chunk carries its own tag and the last one says it is the last,
so a reader authenticates as it goes and a truncated file fails.

The file format (version 1), all integers big-endian:

    header  MAGIC (7 bytes) | VERSION (1) | nonce prefix (8, random per file) | key id (8)
    chunk   flags (1: FINAL or 0) | length (4) | ciphertext + 16-byte tag (`length` bytes)

A chunk holds up to CHUNK_PLAIN plaintext bytes. Its nonce is the file's nonce prefix + the
chunk's counter (4 bytes, from 0), so no nonce repeats within a file, and the random prefix
keeps files apart. The associated data is the header + the chunk's flags: a chunk moved to
another file, a flipped FINAL flag or an edited header fails authentication. The last chunk
(possibly empty) has the FINAL flag; a file that ends without it is truncated, bytes after
it are refused.

The key id is the first 8 bytes of HMAC-SHA256(key, "shop-ops backup key id"): it tells
which key a file needs without revealing anything about the key.

Keys are 32 random bytes, kept as 64 hex digits in a secret file (mode 600, `generate_key_file`,
`load_key`) or in an environment variable (`key_from_env`). No function here logs, prints or
puts a key into a message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import struct
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shop_ops.backup.logical import BackupError

MAGIC = b"SHOPBAK"
VERSION = 1
KEY_BYTES = 32
PREFIX_BYTES = 8
KEY_ID_BYTES = 8
HEADER_BYTES = len(MAGIC) + 1 + PREFIX_BYTES + KEY_ID_BYTES
TAG_BYTES = 16
CHUNK_PLAIN = 1 << 20  # plaintext bytes per chunk: pg_dump's pipe reads come in at most this size
FINAL = 1
_CHUNK_HEAD = struct.Struct(">BI")  # flags, ciphertext length
_MAX_CHUNKS = 1 << 32  # the counter's 4 bytes: 4 PiB per file at 1 MiB a chunk
_KEY_ID_LABEL = b"shop-ops backup key id"


class CryptoError(BackupError):
    """A key or an encrypted file is unusable; the message names the file and the cause, never the key."""


def key_id(key: bytes) -> str:
    """The short public id of `key` (16 hex digits), written into every file it encrypts."""
    _check_key(key)
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_BYTES].hex()


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise CryptoError(f"an AES-256 key is {KEY_BYTES} bytes (64 hex digits in its file or variable)")


def parse_key(text: str, source: str) -> bytes:
    """The key written as 64 hex digits in `text`; `source` names where it came from, for the error."""
    value = text.strip()
    if len(value) != 2 * KEY_BYTES:
        raise CryptoError(
            f"backup key in {source} holds {len(value)} characters, not {2 * KEY_BYTES} hex digits "
            f"({KEY_BYTES} bytes): make a new one with `python -m shop_ops.backup.crypto new-key PATH`"
        )
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CryptoError(
            f"backup key in {source} is not hexadecimal: it must be {2 * KEY_BYTES} digits 0-9a-f"
        ) from None


def load_key(path: Path | str) -> bytes:
    """The key in the secret file `path` (64 hex digits); refused if group or others may read it.

    A key that others on the machine can read is as good as published: the error says how to
    close the file rather than using it.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CryptoError(
            f"backup key file {path} does not exist: make one with `python -m shop_ops.backup.crypto new-key {path}` "
            "(and keep a copy apart from the backups: without it they cannot be restored)"
        ) from None
    except OSError as exc:
        raise CryptoError(f"backup key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CryptoError(f"backup key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise CryptoError(
            f"backup key file {path} is open to group or others (mode {stat.S_IMODE(info.st_mode):03o}): "
            f"refusing to use it; run `chmod 600 {path}` (and consider the key exposed if others could read it)"
        )
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise CryptoError(
            f"backup key in {path} is not hexadecimal: it must be {2 * KEY_BYTES} digits 0-9a-f"
        ) from None
    except OSError as exc:
        raise CryptoError(f"backup key file {path}: {exc.strerror}") from None
    return parse_key(text, str(path))


def key_from_env(name: str, environ: Mapping[str, str] = os.environ) -> bytes:
    """The key held (as 64 hex digits) by the environment variable `name`, e.g. set from a `dg.EnvVar`."""
    value = environ.get(name)
    if not value:
        raise CryptoError(f"environment variable {name} is not set: it must hold the backup key (64 hex digits)")
    return parse_key(value, f"environment variable {name}")


def generate_key_file(path: Path | str) -> str:
    """Write a new random key to `path` (mode 600, never overwriting a file); returns its key id.

    Refusing to overwrite is deliberate: replacing a key file makes every backup made with
    the old key unreadable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CryptoError(
            f"backup key file {path} already exists: not overwritten (backups made with it would become "
            "unreadable); choose another path"
        ) from None
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask
        fh.write(key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key_id(key)


class Encryptor:
    """Encrypts one stream: `header` + `update(...)` outputs + `finalize()`, written in that order, make the file.

    The header comes out with the first `update` (or `finalize`), so a caller only writes
    what it is given. Not thread-safe; one instance per file.
    """

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._aead = AESGCM(key)
        self._prefix = os.urandom(PREFIX_BYTES)
        self.key_id = key_id(key)
        self.header = MAGIC + bytes([VERSION]) + self._prefix + bytes.fromhex(self.key_id)
        self._buffer = bytearray()
        self._counter = 0
        self._header_sent = False
        self._finalized = False
        self.plain_bytes = 0

    def _chunk(self, plain: bytes, flags: int) -> bytes:
        if self._counter >= _MAX_CHUNKS:
            raise CryptoError(f"stream too long for one encrypted file ({_MAX_CHUNKS} chunks)")
        nonce = self._prefix + self._counter.to_bytes(4, "big")
        self._counter += 1
        sealed = self._aead.encrypt(nonce, plain, self.header + bytes([flags]))
        return _CHUNK_HEAD.pack(flags, len(sealed)) + sealed

    def _start(self) -> bytes:
        if self._finalized:
            raise CryptoError("this encryptor is finalized: use a new one for another file")
        if self._header_sent:
            return b""
        self._header_sent = True
        return self.header

    def update(self, data: bytes) -> bytes:
        """Ciphertext for every whole chunk `data` completes (maybe none yet: the rest waits in a buffer)."""
        out = [self._start()]
        self.plain_bytes += len(data)
        self._buffer += data
        while len(self._buffer) >= CHUNK_PLAIN:
            out.append(self._chunk(bytes(self._buffer[:CHUNK_PLAIN]), 0))
            del self._buffer[:CHUNK_PLAIN]
        return b"".join(out)

    def finalize(self) -> bytes:
        """The rest of the stream and the FINAL chunk; call only once the plaintext is known complete."""
        out = self._start() + self._chunk(bytes(self._buffer), FINAL)
        self._buffer.clear()
        self._finalized = True
        return out


def _read_exact(fh: IO[bytes], size: int) -> bytes:
    parts, missing = [], size
    while missing:
        part = fh.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def read_key_id(path: Path | str) -> str | None:
    """The key id an encrypted file was made with, or None when `path` is not one (a plain dump)."""
    with open(path, "rb") as fh:
        header = _read_exact(fh, HEADER_BYTES)
    if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
        return None
    return header[-KEY_ID_BYTES:].hex()


def decrypt_chunks(fh: IO[bytes], key: bytes, name: str) -> Iterator[bytes]:
    """The plaintext of the encrypted stream `fh`, chunk by chunk, each authenticated before it is yielded.

    Raises CryptoError when the file was made with another key, is cut short, has a chunk
    that fails authentication or bytes after its final chunk. A consumer must treat what it
    got so far as unconfirmed until the iterator ends normally (`decrypt_file` does).
    """
    _check_key(key)
    header = _read_exact(fh, HEADER_BYTES)
    if not header or header[: len(MAGIC)] != MAGIC[: len(header)]:
        raise CryptoError(f"{name} is not an encrypted backup (no {MAGIC.decode()} header)")
    if len(header) < HEADER_BYTES:
        raise CryptoError(f"{name} is truncated: no final chunk (it ends inside its header)")
    if header[len(MAGIC)] != VERSION:
        raise CryptoError(
            f"{name} has encryption format version {header[len(MAGIC)]}; this shop-ops reads version {VERSION}"
        )
    prefix = header[len(MAGIC) + 1 : len(MAGIC) + 1 + PREFIX_BYTES]
    file_key_id, this_key_id = header[-KEY_ID_BYTES:].hex(), key_id(key)
    if not hmac.compare_digest(file_key_id, this_key_id):
        raise CryptoError(f"{name} was encrypted with another key (key id {file_key_id}, this key is {this_key_id})")
    aead = AESGCM(key)
    counter = 0
    while True:
        head = _read_exact(fh, _CHUNK_HEAD.size)
        if not head:
            raise CryptoError(f"{name} is truncated: no final chunk (it ends after {counter} chunks)")
        if len(head) < _CHUNK_HEAD.size:
            raise CryptoError(f"{name} is truncated: no final chunk (chunk {counter} is cut short in its header)")
        flags, length = _CHUNK_HEAD.unpack(head)
        if flags not in (0, FINAL) or not TAG_BYTES <= length <= CHUNK_PLAIN + TAG_BYTES:
            raise CryptoError(f"{name}: chunk {counter} fails authentication (corrupted): impossible header")
        sealed = _read_exact(fh, length)
        if len(sealed) < length:
            raise CryptoError(
                f"{name} is truncated: no final chunk (chunk {counter} is cut short: {len(sealed)} of {length} bytes)"
            )
        nonce = prefix + counter.to_bytes(4, "big")
        try:
            plain = aead.decrypt(nonce, sealed, header + bytes([flags]))
        except InvalidTag:
            raise CryptoError(f"{name}: chunk {counter} fails authentication (corrupted)") from None
        counter += 1
        yield plain
        if flags == FINAL:
            if fh.read(1):
                raise CryptoError(f"{name} has bytes after its final chunk (corrupted or two files joined)")
            return
        if counter >= _MAX_CHUNKS:
            raise CryptoError(f"{name}: more chunks than the format allows (corrupted)")


def decrypt_file(src: Path | str, dst: Path | str, key: bytes) -> int:
    """Decrypt `src` into `dst`; returns the plaintext bytes.

    The plaintext goes to a `.<name>.partial-*` file beside `dst`, which is fsynced and renamed
    to `dst` only when every chunk authenticated and the final one was seen: a failure leaves
    no `dst` (and no partial file) behind.
    """
    src, dst = Path(src), Path(dst)
    partial = dst.parent / f".{dst.name}.partial-{uuid.uuid4().hex[:8]}"
    written = 0
    try:
        with open(src, "rb") as source, open(partial, "wb") as target:
            os.fchmod(target.fileno(), 0o600)  # the plaintext is as sensitive as the database
            for plain in decrypt_chunks(source, key, str(src)):
                target.write(plain)
                written += len(plain)
            target.flush()
            os.fsync(target.fileno())
        os.replace(partial, dst)
    except FileNotFoundError as exc:
        partial.unlink(missing_ok=True)
        raise CryptoError(f"decrypting {src}: {exc.filename} does not exist") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def _main(argv: list[str]) -> int:
    """`python -m shop_ops.backup.crypto new-key PATH | decrypt SRC DST --key-file KEY` (the runbook's commands)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m shop_ops.backup.crypto", description="shop-ops backup key and files"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new-key", help="write a new key file (mode 600) and print its key id, never the key")
    new.add_argument("path")
    dec = sub.add_parser("decrypt", help="decrypt a stored dump (written to DST only when every chunk authenticated)")
    dec.add_argument("src")
    dec.add_argument("dst")
    dec.add_argument("--key-file", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "new-key":
            ident = generate_key_file(args.path)
            print(
                f"wrote a new backup key to {args.path} (mode 600), key id {ident}; keep a copy apart from the backups"
            )
        else:
            written = decrypt_file(args.src, args.dst, load_key(args.key_file))
            print(f"decrypted {args.src} -> {args.dst} ({written} bytes)")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
