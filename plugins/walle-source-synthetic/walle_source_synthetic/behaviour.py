"""A per-user behaviour model of an e-commerce app, as a deterministic generator of events.

Each user is a small Markov walk over pages (home, search, item_detail, cart) inside sessions
separated by idle gaps. Within a page the user scrolls, sees items (exposure) and clicks one, which
leads to that item's detail page; on a detail page they may favorite, add to cart or buy. Every
``page_enter`` is closed by a ``page_exit`` of the same page before the next one, as a real app
would log it. Randomness comes from one ``random.Random`` per user seeded from (seed, user), so a
user's stream does not depend on how many other users there are.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]
NEXT_PAGE = {"home": (("item_detail", 0.55), ("search", 0.3), ("cart", 0.15)),
             "search": (("item_detail", 0.8), ("home", 0.2)),
             "item_detail": (("item_detail", 0.35), ("home", 0.35), ("cart", 0.2),
                             ("search", 0.1)),
             "cart": (("home", 0.6), ("item_detail", 0.4))}


@dataclass(frozen=True)
class Behaviour:
    """Tunable rates of the model (probabilities per page visit or per action)."""

    items: int = 1000
    session_pages: tuple[int, int] = (2, 12)
    idle_gap_s: tuple[float, float] = (60.0, 900.0)
    action_gap_s: tuple[float, float] = (0.3, 4.0)
    actions_per_page: tuple[int, int] = (2, 14)
    favorite_p: float = 0.08
    add_cart_p: float = 0.12
    buy_p: float = 0.05


def _pick(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    for page, p in choices:
        x -= p
        if x < 0:
            return page
    return choices[-1][0]


def user_events(user: str, rng: random.Random, start_ms: int, end_ms: int,
                model: Behaviour) -> Iterator[Event]:
    """Events of one user between ``start_ms`` and ``end_ms`` in time order."""
    t = start_ms + int(rng.uniform(0, model.idle_gap_s[1]) * 1000)

    def ev(eid: str, page: str, args: dict[str, Any]) -> Event:
        return {"user": user, "id": eid, "ts": t, "page": page, "args": args}

    while t < end_ms:
        yield ev("app_start", "", {})
        page, item = "home", 0
        for _ in range(rng.randint(*model.session_pages)):
            args: dict[str, Any] = {"item_id": f"i{item}"} if page == "item_detail" else {}
            yield ev("page_enter", page, args)
            clicked = None
            for _ in range(rng.randint(*model.actions_per_page)):
                t += int(rng.uniform(*model.action_gap_s) * 1000)
                yield from _action(rng, ev, page, args, model)
                if rng.random() < 0.15:
                    clicked = rng.randrange(model.items)
                    yield ev("click", page, {"item_id": f"i{clicked}"})
                    break
            t += int(rng.uniform(*model.action_gap_s) * 1000)
            yield ev("page_exit", page, args)
            nxt = _pick(rng, NEXT_PAGE[page])
            if clicked is not None:
                nxt, item = "item_detail", clicked
            elif nxt == "item_detail":
                item = rng.randrange(model.items)
            page = nxt
            if page == "search":
                yield ev("search", "search", {"query": f"q{rng.randrange(50)}"})
        t += 500
        yield ev("app_end", "", {})
        t += int(rng.uniform(*model.idle_gap_s) * 1000)


def _action(rng: random.Random, ev: Any, page: str, args: dict[str, Any],
            model: Behaviour) -> Iterator[Event]:
    x = rng.random()
    if x < 0.45:
        yield ev("scroll", page, {"dy": rng.randint(100, 2000)})
    elif x < 0.85:
        yield ev("exposure", page, {"item_id": f"i{rng.randrange(model.items)}"})
    elif page == "item_detail":
        if rng.random() < model.favorite_p * 4:
            yield ev("favorite", page, dict(args))
        if rng.random() < model.add_cart_p * 4:
            yield ev("add_cart", page, dict(args))
            if rng.random() < model.buy_p * 8:
                yield ev("buy", page, dict(args))
    else:
        yield ev("scroll", page, {"dy": rng.randint(100, 2000)})
