"""Streamed backup encryption: round trips, wrong keys, truncation and corruption caught, keys kept to themselves."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from shop_ops.backup import crypto
from shop_ops.backup.crypto import (
    CHUNK_PLAIN,
    FINAL,
    HEADER_BYTES,
    MAGIC,
    TAG_BYTES,
    CryptoError,
    Encryptor,
    decrypt_chunks,
    decrypt_file,
    generate_key_file,
    key_from_env,
    key_id,
    load_key,
    read_key_id,
)
from shop_ops.backup.logical import BackupError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CHUNK_OVERHEAD = 5 + TAG_BYTES  # flags + length + tag


def encrypt(data: bytes, key: bytes = KEY, piece: int = 100_000) -> bytes:
    """`data` fed to an Encryptor in uneven pieces, as pg_dump's pipe delivers it."""
    enc = Encryptor(key)
    out = [enc.update(data[i : i + piece]) for i in range(0, len(data), piece)]
    return b"".join(out) + enc.finalize()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def chunk_offsets(blob: bytes) -> list[int]:
    """Where each chunk starts (its flags byte)."""
    offsets, at = [], HEADER_BYTES
    while at < len(blob):
        offsets.append(at)
        at += 5 + int.from_bytes(blob[at + 1 : at + 5], "big")
    return offsets


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_PLAIN - 1, CHUNK_PLAIN, CHUNK_PLAIN + 1, 2 * CHUNK_PLAIN + 12345], ids=lambda n: f"{n}B"
)
def test_round_trip(size: int, tmp_path: Path) -> None:
    plain = os.urandom(size)
    blob = encrypt(plain)
    chunks = size // CHUNK_PLAIN + 1  # whole chunks, then the final one (empty when size divides evenly)
    assert len(blob) == HEADER_BYTES + size + chunks * CHUNK_OVERHEAD
    assert blob.startswith(MAGIC) and read_key_id(write(tmp_path / "x.enc", blob)) == key_id(KEY)
    if size >= 64:
        assert plain[:64] not in blob  # not the plaintext in clear

    assert decrypt_file(tmp_path / "x.enc", tmp_path / "x.dump", KEY) == size
    assert (tmp_path / "x.dump").read_bytes() == plain
    assert (tmp_path / "x.dump").stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == ["x.dump", "x.enc"]  # no partial file left


def test_each_file_gets_its_own_nonces() -> None:
    plain = b"the same dump twice" * 1000
    first, second = encrypt(plain), encrypt(plain)
    assert (
        first != second and first[HEADER_BYTES - 16 : HEADER_BYTES - 8] != second[HEADER_BYTES - 16 : HEADER_BYTES - 8]
    )
    assert b"".join(decrypt_chunks(io.BytesIO(second), KEY, "second")) == plain


def test_the_wrong_key_is_named_by_id_and_nothing_is_written(tmp_path: Path) -> None:
    src = write(tmp_path / "x.enc", encrypt(b"secret rows" * 100))
    with pytest.raises(CryptoError) as failed:
        decrypt_file(src, tmp_path / "x.dump", OTHER_KEY)
    assert str(failed.value) == (
        f"{src} was encrypted with another key (key id {key_id(KEY)}, this key is {key_id(OTHER_KEY)})"
    )
    assert isinstance(failed.value, BackupError)
    assert leftovers(tmp_path) == ["x.enc"]


TRUNCATIONS = {
    "final chunk dropped": r"is truncated: no final chunk \(it ends after 2 chunks\)",
    "inside a chunk": r"is truncated: no final chunk \(chunk 1 is cut short: \d+ of \d+ bytes\)",
    "inside a chunk header": r"is truncated: no final chunk \(chunk 2 is cut short in its header\)",
    "inside the file header": r"is truncated: no final chunk \(it ends inside its header\)",
}


@pytest.mark.parametrize("cut", TRUNCATIONS)
def test_a_truncated_file_fails_and_leaves_nothing(cut: str, tmp_path: Path) -> None:
    blob = encrypt(os.urandom(2 * CHUNK_PLAIN + 500))
    offsets = chunk_offsets(blob)
    assert len(offsets) == 3
    end = {
        "final chunk dropped": offsets[2],
        "inside a chunk": offsets[1] + 1000,
        "inside a chunk header": offsets[2] + 3,
        "inside the file header": HEADER_BYTES - 1,
    }[cut]
    src = write(tmp_path / "cut.enc", blob[:end])
    with pytest.raises(CryptoError, match=TRUNCATIONS[cut]):
        decrypt_file(src, tmp_path / "cut.dump", KEY)
    assert leftovers(tmp_path) == ["cut.enc"]


@pytest.mark.parametrize("where", ["first chunk", "second chunk", "tag of the final chunk", "nonce prefix", "key id"])
def test_a_flipped_bit_is_caught_in_its_chunk(where: str, tmp_path: Path) -> None:
    blob = bytearray(encrypt(os.urandom(CHUNK_PLAIN + 777)))
    offsets = chunk_offsets(bytes(blob))
    at, expected = {
        "first chunk": (offsets[0] + 5 + 100, r"chunk 0 fails authentication \(corrupted\)"),
        "second chunk": (offsets[1] + 5 + 3, r"chunk 1 fails authentication \(corrupted\)"),
        "tag of the final chunk": (len(blob) - 1, r"chunk 1 fails authentication \(corrupted\)"),
        # The header is associated data of every chunk: the first one already fails.
        "nonce prefix": (len(MAGIC) + 1, r"chunk 0 fails authentication \(corrupted\)"),
        "key id": (HEADER_BYTES - 1, r"encrypted with another key"),
    }[where]
    blob[at] ^= 0x01
    src = write(tmp_path / "bad.enc", bytes(blob))
    with pytest.raises(CryptoError, match=expected):
        decrypt_file(src, tmp_path / "bad.dump", KEY)
    assert leftovers(tmp_path) == ["bad.enc"]


def test_reordered_chunks_a_moved_final_flag_and_trailing_bytes_fail(tmp_path: Path) -> None:
    blob = encrypt(os.urandom(2 * CHUNK_PLAIN + 10))
    first, second, final = chunk_offsets(blob)
    header = blob[:HEADER_BYTES]
    swapped = header + blob[second:final] + blob[first:second] + blob[final:]
    # The second-to-last chunk claims to be the last: its flags are associated data.
    early_final = bytearray(blob[:final])
    early_final[second] = FINAL
    for name, data, expected in [
        ("swapped", swapped, r"chunk 0 fails authentication"),
        ("early-final", bytes(early_final), r"chunk 1 fails authentication"),
        ("trailing", blob + b"\x00", r"has bytes after its final chunk"),
        ("joined", blob + blob, r"has bytes after its final chunk"),
    ]:
        with pytest.raises(CryptoError, match=expected):
            decrypt_file(write(tmp_path / f"{name}.enc", data), tmp_path / f"{name}.dump", KEY)
        assert not (tmp_path / f"{name}.dump").exists()


def test_a_plain_file_is_not_taken_for_an_encrypted_one(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.dump", b"PGDMP\x01\x0e\x00" + b"x" * 100)
    assert read_key_id(plain) is None
    with pytest.raises(CryptoError, match=r"plain.dump is not an encrypted backup"):
        decrypt_file(plain, tmp_path / "out", KEY)


def test_key_files_are_created_closed_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "secrets dir" / "backup.key"
    ident = generate_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    key = load_key(path)
    assert len(key) == 32 and key_id(key) == ident and path.read_text() == key.hex() + "\n"
    with pytest.raises(CryptoError, match="already exists: not overwritten"):
        generate_key_file(path)
    assert load_key(path) == key


def test_key_file_errors_say_what_to_do_and_never_show_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "none.key"
    with pytest.raises(CryptoError, match=rf"{missing} does not exist: make one with .*new-key {missing}"):
        load_key(missing)

    open_key = tmp_path / "open.key"
    open_key.write_text(KEY.hex())
    open_key.chmod(0o644)
    with pytest.raises(CryptoError) as failed:
        load_key(open_key)
    assert f"(mode 644): refusing to use it; run `chmod 600 {open_key}`" in str(failed.value)
    open_key.chmod(0o600)
    assert load_key(open_key) == KEY

    cases = {
        "short": (KEY.hex()[:-1], "holds 63 characters, not 64 hex digits"),
        "not hex": ("zz" + KEY.hex()[2:], "is not hexadecimal"),
        "binary": (None, "is not hexadecimal"),
    }
    for name, (text, expected) in cases.items():
        bad = tmp_path / f"{name}.key"
        bad.write_bytes(KEY + b"\xff" * 32 if text is None else text.encode())
        bad.chmod(0o600)
        with pytest.raises(CryptoError, match=expected) as failed:
            load_key(bad)
        assert KEY.hex()[2:20] not in str(failed.value)

    with pytest.raises(CryptoError, match="environment variable SHOP_OPS_BACKUP_KEY is not set"):
        key_from_env("SHOP_OPS_BACKUP_KEY", {})
    assert key_from_env("SHOP_OPS_BACKUP_KEY", {"SHOP_OPS_BACKUP_KEY": KEY.hex().upper() + "\n"}) == KEY
    with pytest.raises(CryptoError, match="in environment variable K holds 3 characters"):
        key_from_env("K", {"K": "abc"})


def test_the_key_stays_out_of_files_messages_and_reprs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_path = tmp_path / "keys" / "backup.key"
    assert crypto._main(["new-key", str(key_path)]) == 0
    key = load_key(key_path)
    out = capsys.readouterr().out
    assert key_id(key) in out and key.hex() not in out

    work = tmp_path / "work"
    work.mkdir()
    enc = Encryptor(key)
    assert key.hex() not in repr(enc) and key.hex() not in repr(vars(enc))
    src = write(work / "dump.enc", enc.update(b"rows " * 100_000) + enc.finalize())
    # The runbook's command line decrypts with the key file; with another key it names the cause, writes nothing.
    assert crypto._main(["decrypt", str(src), str(work / "dump"), "--key-file", str(key_path)]) == 0
    assert (work / "dump").read_bytes() == b"rows " * 100_000
    other_path = tmp_path / "keys" / "other.key"
    crypto._main(["new-key", str(other_path)])
    assert crypto._main(["decrypt", str(src), str(work / "x"), "--key-file", str(other_path)]) == 1
    assert "encrypted with another key" in capsys.readouterr().err and not (work / "x").exists()
    with pytest.raises(CryptoError) as failed:
        decrypt_file(src, work / "other", OTHER_KEY)
    texts = [str(failed.value)] + [p.read_bytes() for p in work.iterdir()]
    for text in texts:
        raw = text.encode() if isinstance(text, str) else text
        assert key not in raw and key.hex().encode() not in raw and key.hex().upper().encode() not in raw
