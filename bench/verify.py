"""Signature verification: census_receiver against Census's recipe, raw SHA-256 and peers.

Figures (all ratios of medians of interleaved rounds, in one process):

- ``receiver.verify`` time / the documented recipe's time, on the documented
  ``sync.triggered`` and ``sync.alert.raised`` payloads;
- verify throughput / raw ``hashlib.sha256`` throughput on 64 KiB and 1 MiB bodies;
- ``receiver.verify`` time / the fastest peer's time, each peer verifying its own
  scheme on the same body: gidgethub, slack_sdk, stripe, standardwebhooks, svix.

Run on its own with ``python3 -m bench.verify``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from census_receiver import WebhookReceiver
from census_receiver.testing import DOCUMENTED_EXAMPLES, sign

from .harness import (
    Batch,
    Budget,
    Figure,
    Row,
    check,
    make_row,
    measure,
    run_alone,
)

__all__ = ["PEERS", "SECRET", "payloads", "run"]

GROUP = "verify"
#: A full run: four figure sets of up to 61 rounds, each capped at 8 s.
BUDGET = Budget(rounds=61, seconds=8.0)
SECRET = b"whsec-bench-0123456789abcdef0123456789"
#: The peers verifying their own schemes (the ``bench`` extra installs them).
PEERS = ("gidgethub", "slack_sdk", "stripe", "standardwebhooks", "svix")


def payloads() -> dict[str, bytes]:
    """The bodies of the figures: the documented examples, then 64 KiB and 1 MiB."""
    small = json.dumps(DOCUMENTED_EXAMPLES[0]).encode()
    alert = json.dumps(DOCUMENTED_EXAMPLES[6]).encode()
    out = {"small": small, "alert": alert}
    for label, size in (("64 KiB", 64 * 1024), ("1 MiB", 1024 * 1024)):
        # A valid alert whose free-text details fill the body to the exact size.
        base = json.dumps({**DOCUMENTED_EXAMPLES[6], "details": ""}).encode()
        details = "x" * (size - len(base))
        out[label] = json.dumps({**DOCUMENTED_EXAMPLES[6], "details": details}).encode()
        assert len(out[label]) == size
    return out


def recipe(secret: bytes) -> Callable[[bytes, str], bool]:
    """Census's documented Python recipe, verbatim in substance."""

    def validate(body: bytes, received: str) -> bool:
        digest = hmac.new(secret, body, hashlib.sha256).digest()
        return hmac.compare_digest(received, base64.b64encode(digest).decode())

    return validate


def _sha256(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def _repeat(fn: Callable[[], object]) -> Batch:
    def batch(n: int) -> None:
        for _ in range(n):
            fn()

    return batch


def _peer_batches(body: bytes, forged: bytes) -> dict[str, tuple[Batch, Callable[[], bool]]]:
    """Each peer verifying its own signature of ``body``, and a check that it refuses ``forged``.

    Peers with a timestamp in their scheme are signed now, well inside their
    tolerance (5 minutes) for the few seconds the group takes.
    """
    from gidgethub import ValidationFailure
    from gidgethub.sansio import validate_event
    from slack_sdk.signature import SignatureVerifier
    from standardwebhooks.webhooks import Webhook as StandardWebhook
    from standardwebhooks.webhooks import WebhookVerificationError
    from stripe import SignatureVerificationError, WebhookSignature
    from svix.webhooks import Webhook as SvixWebhook

    text_secret = SECRET.decode()
    out: dict[str, tuple[Batch, Callable[[], bool]]] = {}

    github_sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()

    def github_refuses() -> bool:
        try:
            validate_event(forged, signature=github_sig, secret=text_secret)
        except ValidationFailure:
            return True
        return False

    validate_event(body, signature=github_sig, secret=text_secret)
    out["gidgethub"] = (
        _repeat(lambda: validate_event(body, signature=github_sig, secret=text_secret)),
        github_refuses,
    )

    slack = SignatureVerifier(text_secret)
    stamp = str(int(time.time()))
    slack_sig = slack.generate_signature(timestamp=stamp, body=body)
    check(slack.is_valid(body, stamp, slack_sig), "slack_sdk refused its own signature")
    out["slack_sdk"] = (
        _repeat(lambda: slack.is_valid(body, stamp, slack_sig)),
        lambda: not slack.is_valid(forged, stamp, slack_sig),
    )

    stripe_header = WebhookSignature.generate_signature_header(body.decode(), text_secret)

    def stripe_refuses() -> bool:
        try:
            WebhookSignature.verify_header(forged, stripe_header, text_secret, 300)
        except SignatureVerificationError:
            return True
        return False

    WebhookSignature.verify_header(body, stripe_header, text_secret, 300)
    out["stripe"] = (
        _repeat(lambda: WebhookSignature.verify_header(body, stripe_header, text_secret, 300)),
        stripe_refuses,
    )

    wh_secret = "whsec_" + base64.b64encode(SECRET).decode()
    now = datetime.now(tz=UTC)
    standard = StandardWebhook(wh_secret)
    std_headers = {
        "webhook-id": "msg_bench",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": standard.sign("msg_bench", now, body.decode()),
    }

    def standard_refuses() -> bool:
        try:
            standard.verify(forged, std_headers, json_parse=False)
        except WebhookVerificationError:
            return True
        return False

    standard.verify(body, std_headers, json_parse=False)
    out["standardwebhooks"] = (
        _repeat(lambda: standard.verify(body, std_headers, json_parse=False)),
        standard_refuses,
    )

    svix = SvixWebhook(wh_secret)
    svix_headers = {
        "svix-id": "msg_bench",
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": svix.sign("msg_bench", now, body.decode()),
    }

    def svix_refuses() -> bool:
        try:
            svix.verify(forged, svix_headers)
        except WebhookVerificationError:
            return True
        return False

    svix.verify(body, svix_headers)
    out["svix"] = (_repeat(lambda: svix.verify(body, svix_headers)), svix_refuses)
    return out


def _check_census(receiver: WebhookReceiver, body: bytes, forged: bytes) -> str:
    signature = sign(body, SECRET)
    check(receiver.verify(body, signature), f"verify refused a valid {len(body)}-byte body")
    check(not receiver.verify(forged, signature), "verify accepted a tampered body")
    check(
        not receiver.verify(body, sign(body, b"another secret")),
        "verify accepted a signature made with another secret",
    )
    validate = recipe(SECRET)
    check(validate(body, signature), "the recipe refused a valid body")
    check(not validate(forged, signature), "the recipe accepted a tampered body")
    return signature


def _tampered(body: bytes) -> bytes:
    return body[:-2] + (b"0" if body[-2:-1] != b"0" else b"1") + body[-1:]


def run(budget: Budget) -> list[Row]:
    """Measure the verify figures.

    Args:
        budget: batch duration and rounds.

    Returns:
        The rows, in table order.

    Raises:
        CorrectnessError: if any contender accepts a forgery or refuses a valid body.
    """
    receiver = WebhookReceiver(secret=SECRET, max_body_size=2 * 1024 * 1024)
    validate = recipe(SECRET)
    verify = receiver.verify
    rows: list[Row] = []
    for label, body in payloads().items():
        forged = _tampered(body)
        signature = _check_census(receiver, body, forged)
        contenders: dict[str, Batch] = {
            "census_receiver": _repeat(partial(verify, body, signature)),
            "recipe": _repeat(partial(validate, body, signature)),
        }
        size = f"{label}, {len(body)} B" if label in ("small", "alert") else label
        if label in ("small", "alert"):
            peers = _peer_batches(body, forged)
            for name, (batch, refuses) in peers.items():
                check(refuses(), f"{name} accepted a tampered body")
                contenders[name] = batch
            samples = measure(contenders, budget)
            samples["fastest peer"] = [
                min(samples[name][r] for name in PEERS) for r in range(len(samples["recipe"]))
            ]
            fastest = max(
                PEERS,
                key=lambda name: sum(
                    samples[name][r] == samples["fastest peer"][r]
                    for r in range(len(samples["recipe"]))
                ),
            )
            figures = [
                Figure(
                    f"receiver.verify / recipe ({size})",
                    "census_receiver",
                    "recipe",
                    "time",
                    must=1.10,
                    aim=0.70,
                ),
                Figure(
                    f"receiver.verify / fastest peer ({size})",
                    "census_receiver",
                    "fastest peer",
                    "time",
                    must=1.0,
                    aim=0.7,
                    note=f"fastest peer was {fastest} in most rounds",
                ),
            ]
            figures += [
                Figure(f"receiver.verify / {name} ({size})", "census_receiver", name, "time")
                for name in PEERS
            ]
        else:
            contenders["sha256"] = _repeat(partial(_sha256, body))
            samples = measure(contenders, budget)
            figures = [
                Figure(
                    f"verify throughput / raw sha256 ({size})",
                    "census_receiver",
                    "sha256",
                    "rate",
                    must=0.90,
                    aim=0.97,
                ),
                Figure(f"verify throughput / recipe ({size})", "census_receiver", "recipe", "rate"),
            ]
        # Per-operation times read better than "verifications per second" here.
        rows += [
            make_row(GROUP, figure, samples, quick=budget.quick, unit="time") for figure in figures
        ]
    receiver.close()
    return rows


def main() -> int:
    """Run this group alone and print its table; non-zero if a must was missed."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
