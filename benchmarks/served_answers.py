"""Every served list for many products, carts, customers and histories, as JSON lines (request
ids left out): run it with one code base, then another, and compare the files byte for byte
(used to check that a change to the serving index changes no answer).

    PYTHONPATH=CHECKOUT .venv/bin/python benchmarks/served_answers.py STORE OUT.jsonl [N]
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.config import ServingSettings


def _clean(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _clean(v) for k, v in body.items() if k != "request_id"}
    if isinstance(body, list):
        return [_clean(v) for v in body]
    return body


def main() -> None:
    store, out = Path(sys.argv[1]), Path(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    version = store / "versions" / (store / "CURRENT").read_text().strip()
    ids = pq.read_table(version / "items.parquet").column("id").to_pylist()
    customers_file = version / "customers.parquet"
    customers = (pq.read_table(customers_file).column("id").to_pylist()
                 if customers_file.exists() else [])
    segments = version / "analytics/customer_segments.parquet"
    if segments.exists():
        customers += pq.read_table(segments).column("customer_id").to_pylist()[:50]
    rng = np.random.default_rng(3)
    products = [ids[i] for i in rng.integers(0, len(ids), n)] + ["no-such-product"]
    carts = [[ids[i] for i in rng.integers(0, len(ids), int(rng.integers(1, 8)))]
             for _ in range(n)]
    who = [customers[i] for i in rng.integers(0, len(customers), n)] if customers else []
    who += ["no-such-customer"]
    settings = ServingSettings(artifacts=str(store), database_url=f"sqlite:///{out}.db")
    with TestClient(create_app(settings)) as client, out.open("w") as fh:
        def get(path: str, **kw: Any) -> None:
            r = client.get(path, **kw)
            fh.write(json.dumps([path, r.status_code, _clean(r.json())], sort_keys=True) + "\n")

        for i, p in enumerate(products):
            q = urllib.parse.quote(p, safe="")
            customer = urllib.parse.quote(who[i % len(who)], safe="")
            history = urllib.parse.quote(",".join(carts[i % len(carts)][:3]), safe=",")
            for kind in ("bought-together", "also-viewed", "similar", "upsell", "bundles"):
                get(f"/v1/items/{q}/{kind}")
                get(f"/v1/items/{q}/{kind}?customer_id={customer}")
            get(f"/v1/items/{q}/also-viewed?history={history}")
            get(f"/v1/items/{q}/bought-together?history={history}")
        for cart in carts:
            r = client.post("/v1/cart/add-ons?k=10", json={
                "items": [{"product_id": p, "quantity": 1} for p in cart]})
            fh.write(json.dumps([cart, r.status_code, _clean(r.json())], sort_keys=True) + "\n")
        for i, c in enumerate(who):
            q = urllib.parse.quote(c, safe="")
            history = urllib.parse.quote(",".join(carts[i % len(carts)][:2]), safe=",")
            for path in (f"/v1/customers/{q}/recommendations", f"/v1/customers/{q}/profile",
                         f"/v1/customers/{q}/recommendations?history={history}"):
                get(path, headers={"X-API-Key": "change-me"})
        get("/v1/popular")
    print("wrote", out)


if __name__ == "__main__":
    main()
