"""Writes shared/src/fl/secagg/sdk_vectors.json: test vectors made by the Octomil SDK's own,
unmodified secagg functions and SecAggPlusClient (version pinned in tests/sdk/requirements.txt),
so the Rust protocol core (shared/src/fl/secagg/) is checked byte for byte against the client
devices actually run.

Regenerate (from the repository root):
    "$(scripts/sdk-venv)" tests/sdk/secagg_vectors.py > shared/src/fl/secagg/sdk_vectors.json

Keys, seeds and update values are fixed; Shamir coefficients and AES-GCM nonces come from the
SDK's own randomness, so a regenerated file differs byte-wise but every check still holds.
"""

import hashlib
import json
import random
import secrets
import struct
import sys
from importlib.metadata import version

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from octomil.secagg import (
    DEFAULT_FIELD_SIZE,
    SecAggPlusClient,
    SecAggPlusConfig,
    create_shares_bytes,
    decrypt_share,
    derive_pairwise_mask,
    encrypt_share,
    generate_pairwise_key,
    generate_share_encryption_key,
    generate_shares,
    quantize,
    reconstruct_secret,
)
from octomil.secagg.crypto import ECKeyPair, _pseudo_rand_gen

CLIP = 3.0
TARGET = 1 << 16
MOD = 1 << 32


def fixed_bytes(label: str) -> bytes:
    """32 bytes named by a label, so every run uses the same keys and seeds."""
    return hashlib.sha256(label.encode()).digest()


def fixed_key_pair(label: str) -> ECKeyPair:
    private = fixed_bytes(label)
    public = (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return ECKeyPair(private_key_bytes=private, public_key_bytes=public)


def prg_vectors():
    out = []
    for label, count in (("prg-a", 8), ("prg-b", 40)):
        seed = fixed_bytes(label)
        out.append({"seed": seed.hex(), "values": _pseudo_rand_gen(seed, MOD, count)})
    return out


def key_agreement_vectors():
    a, b = fixed_key_pair("device-a"), fixed_key_pair("device-b")
    pairwise = generate_pairwise_key(a.private_key_bytes, b.public_key_bytes)
    assert pairwise == generate_pairwise_key(b.private_key_bytes, a.public_key_bytes)
    return {
        "sk_a": a.private_key_bytes.hex(),
        "pk_a": a.public_key_bytes.hex(),
        "sk_b": b.private_key_bytes.hex(),
        "pk_b": b.public_key_bytes.hex(),
        "pairwise_seed": pairwise.hex(),
        "pairwise_mask": derive_pairwise_mask(pairwise, 6, MOD),
        "share_key": generate_share_encryption_key(a.private_key_bytes, b.public_key_bytes).hex(),
    }


def shamir_vectors():
    secret = int.from_bytes(fixed_bytes("shamir-secret"), "big") % DEFAULT_FIELD_SIZE
    shares = generate_shares(secret, threshold=3, total_shares=5)
    assert reconstruct_secret(shares[1:4]) == secret
    sk1 = fixed_key_pair("shamir-sk1").private_key_bytes
    byte_shares = create_shares_bytes(sk1, threshold=3, total_shares=5)
    return {
        "threshold": 3,
        "secret": f"{secret:032x}",
        "shares": [s.to_bytes().hex() for s in shares],
        "sk1": sk1.hex(),
        "sk1_shares": [s.to_bytes().hex() for s in byte_shares],
    }


def ciphertext_vector(shamir):
    """Device a's shares for holder 2 of the Shamir vectors, sealed for device b as the client
    lays them out: u32be(40) || rd_seed share || sk1 share."""
    a, b = fixed_key_pair("device-a"), fixed_key_pair("device-b")
    key = generate_share_encryption_key(a.private_key_bytes, b.public_key_bytes)
    plaintext = (
        struct.pack(">I", 40)
        + bytes.fromhex(shamir["shares"][1])
        + bytes.fromhex(shamir["sk1_shares"][1])
    )
    ciphertext = encrypt_share(plaintext, key)
    assert decrypt_share(ciphertext, key) == plaintext
    return {"key": key.hex(), "plaintext": plaintext.hex(), "ciphertext": ciphertext.hex()}


def quantization_vectors():
    values = [-7.5, -3.0, -1.2345, -0.1, 0.0, 1e-9, 0.7071, 1.5, 2.999, 3.0, 42.0]
    random.seed(1313)
    uniforms = [random.random() for _ in values]
    random.seed(1313)
    return {"values": values, "uniforms": uniforms, "quantized": quantize(values, CLIP, TARGET)}


class SeedBelowPrimeClient(SecAggPlusClient):
    """The one-line seed fix: draw rd_seed below p, so the seed the self-mask uses is the seed
    Shamir shares."""

    def __init__(self, config):
        super().__init__(config)
        self._rd_seed = secrets.randbelow(config.field_size).to_bytes(32, "big")


def simulate_round(client_class, total, threshold, dropped, updates, label):
    """Runs the four stages the way a server would relay them; `dropped` devices share keys
    (stage 2) and then vanish before uploading a masked vector (stage 3)."""
    clients = {}
    for index in range(1, total + 1):
        config = SecAggPlusConfig(
            session_id=label, round_id=label, threshold=threshold, total_clients=total, my_index=index
        )
        client = client_class(config)
        client._kp1 = fixed_key_pair(f"{label}-{index}-sk1")
        client._kp2 = fixed_key_pair(f"{label}-{index}-sk2")
        clients[index] = client
    roster = {i: c.get_public_keys() for i, c in clients.items()}
    ciphertexts = {}
    for i, client in clients.items():
        client.receive_peer_public_keys(roster)
        ciphertexts[i] = client.generate_encrypted_shares()
    for j, client in clients.items():
        client.receive_encrypted_shares({i: ciphertexts[i][j] for i in clients if i != j})
    survivors = [i for i in clients if i not in dropped]
    masked, quantized = {}, {}
    for i in survivors:
        random.seed(1000 + i)
        masked[i] = clients[i].mask_model_update(updates[i])
        random.seed(1000 + i)
        quantized[i] = quantize(updates[i], CLIP, TARGET)
    unmask = {}
    for i in survivors:
        nids, shares = clients[i].unmask(survivors, sorted(dropped))
        unmask[i] = [{"of": n, "share": s.hex()} for n, s in zip(nids, shares)]
    expected = [sum(quantized[i][e] for i in survivors) % MOD for e in range(len(updates[1]))]
    return {
        "threshold": threshold,
        "devices": [
            {
                "index": i,
                "pk1": c.get_public_keys()[0].hex(),
                "pk2": c.get_public_keys()[1].hex(),
                "sk1": c._kp1.private_key_bytes.hex(),
                "sk2": c._kp2.private_key_bytes.hex(),
                "rd_seed": c._rd_seed.hex(),
            }
            for i, c in clients.items()
        ],
        "ciphertexts": [
            {"from": i, "to": j, "ciphertext": ct.hex()}
            for i in clients
            for j, ct in sorted(ciphertexts[i].items())
        ],
        "survivors": survivors,
        "dropped": sorted(dropped),
        "masked": {str(i): v for i, v in masked.items()},
        "unmask": {str(i): v for i, v in unmask.items()},
        "expected_quantized_sum": expected,
    }


def round_updates(total, length, rng_seed):
    """Updates whose last element is the canary: 0.0 on every device."""
    rng = random.Random(rng_seed)
    return {i: [rng.uniform(-4.0, 4.0) for _ in range(length - 1)] + [0.0] for i in range(1, total + 1)}


def main():
    shamir = shamir_vectors()
    vectors = {
        "generator": "tests/sdk/secagg_vectors.py",
        "octomil": version("octomil"),
        "prg": prg_vectors(),
        "key_agreement": key_agreement_vectors(),
        "shamir": shamir,
        "share_ciphertext": ciphertext_vector(shamir),
        "quantization": quantization_vectors(),
        "round_seed_fixed": simulate_round(
            SeedBelowPrimeClient, 5, 3, {4}, round_updates(5, 12, 5), "fixed"
        ),
        "round_stock": simulate_round(SecAggPlusClient, 3, 2, set(), round_updates(3, 4, 3), "stock"),
    }
    json.dump(vectors, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
