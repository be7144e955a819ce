"""The two HTTP servers of the ingest benchmark, each run as its own process by bench.ingest:

    python -m bench.servers ours --port P --key-file F   # orderbell's API (no embedded worker)
    python -m bench.servers baseline --port P            # the validate-only endpoint

Both are served by uvicorn on 127.0.0.1 with the same options. `ours` reads the ORDERBELL_*
settings from the environment (the SQLite file, the outbox file, log level), creates the demo
shop with credit for every message, and writes its API key to the key file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn

UVICORN: dict[str, Any] = {"host": "127.0.0.1", "log_level": "warning", "access_log": False}


def ours(port: int, key_file: Path) -> None:
    """orderbell's API on the configured database, as `orderbell serve --demo --no-worker`."""
    from orderbell.api.app import create_app
    from orderbell.billing import credits
    from orderbell.compose import build
    from orderbell.engine.demo import ensure_demo_shop
    from orderbell.logs import configure
    from orderbell.settings import Settings

    settings = Settings()
    configure(settings.log_level, json=settings.log_json)
    svc = build(settings)
    with svc.engine.begin() as conn:
        now = svc.clock.now()
        shop = ensure_demo_shop(conn, now)
        credits.topup(conn, shop.shop_id, "1000000", reference="bench", actor="bench", now=now)
    key_file.write_text(shop.api_key)
    app = create_app(svc, embedded_worker=False, freeze_heap=True)  # as `orderbell serve`
    uvicorn.run(app, port=port, **UVICORN)


def baseline(port: int) -> None:
    """The validate-only app."""
    from bench.baseline_app import app

    uvicorn.run(app, port=port, **UVICORN)


def main() -> None:
    """Parse the command line and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["ours", "baseline"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-file", type=Path)
    args = parser.parse_args()
    if args.kind == "ours":
        if args.key_file is None:
            parser.error("ours needs --key-file")
        ours(args.port, args.key_file)
    else:
        baseline(args.port)


if __name__ == "__main__":
    main()
