"""Flask, in-process: the ``census_webhook`` decorator against a view written by hand.

Both apps are whole Flask apps called as WSGI apps with a built ``environ``, so
Flask's routing, request context and response building are in both sides.
Figures (requests per second, as ratios):

- a view decorated with ``census_webhook(receiver)`` / a view doing it by hand
  (``request.get_data()``, recipe, ``json.loads``);
- the WSGI middleware wrapped around ``app.wsgi_app`` / the same hand-written view.

Run on its own with ``python3 -m bench.flask_views``.
"""

from __future__ import annotations

import sys

from .apps import close_receivers, flask_apps
from .harness import (
    Budget,
    Figure,
    Row,
    make_row,
    run_alone,
)
from .wsgi import measure_apps

__all__ = ["FIGURES", "run"]

GROUP = "flask"
#: A full run: up to 61 rounds, capped at 12 s.
BUDGET = Budget(rounds=61, seconds=12.0)

FIGURES = [
    Figure(
        "Flask decorator / Flask by hand, req/s",
        "Flask decorator",
        "Flask by hand",
        "rate",
        must=0.95,
        aim=1.00,
    ),
    Figure(
        "Flask + WSGI middleware / Flask by hand, req/s",
        "Flask + WSGI middleware",
        "Flask by hand",
        "rate",
    ),
]


def run(budget: Budget) -> list[Row]:
    """Measure the Flask figures.

    Args:
        budget: batch duration and rounds.

    Returns:
        The rows, in table order.

    Raises:
        CorrectnessError: if a view answers wrongly or runs other than exactly
            once per valid request.
    """
    apps = flask_apps()
    try:
        samples = measure_apps(apps, budget)
    finally:
        close_receivers(apps)
    return [make_row(GROUP, figure, samples, quick=budget.quick) for figure in FIGURES]


def main() -> int:
    """Run this group alone and print its table; non-zero if a must was missed."""
    return run_alone(run, BUDGET)


if __name__ == "__main__":
    sys.exit(main())
